"""EdgeTAM-style video object segmentation: a SAM 2-like tracker with searchable memory variants."""

#: The family's name in the registry and the kind of its staged pipeline runs.
FAMILY = "edgetam"
