"""EdgeTAM-style video object segmentation: a SAM 2-like tracker with searchable memory variants."""
