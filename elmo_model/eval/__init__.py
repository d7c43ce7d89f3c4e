"""Evaluating a biLM: perplexity, layer probes, nearest neighbours."""
