"""MobileLLM-Flash candidates: a MobileLLM-style decoder with per-layer attention modes and widths."""
