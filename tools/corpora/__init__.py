"""Reproducible corpora for training and evaluating ELMo (``python -m tools.corpora.fetch``).

Not part of the installed package: run it from the root of a checkout. See
``tools/corpora/fetch.py`` and docs/data.md.
"""
