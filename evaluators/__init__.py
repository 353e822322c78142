"""Quality evaluators: LM loss/perplexity, VOS J&F, quantized-model quality, data quality."""
