"""Perplexity, held-out evaluation, baselines, text generation, plots and the comparison table."""
