"""Hardware backends (measurement protocol) and learned latency predictors."""
