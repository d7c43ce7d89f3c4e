"""Oracles for the tests and benchmarks: a readable step-by-step biLM and an AllenNLP-style batched one."""
