"""Scripts that measure hilnas's speed and quality targets and print a table (``python -m benchmarks.X``)."""
