"""MobileLLM-Flash candidates: a MobileLLM-style decoder with per-layer attention modes and widths."""

#: The family's name in the registry and the kind of its staged pipeline runs.
FAMILY = "mobilellm-flash"
