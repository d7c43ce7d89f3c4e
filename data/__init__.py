"""Reproducible corpora for training and evaluating ELMo (``python -m data.fetch``).

Not part of the installed package: run it from a checkout. See ``data/fetch.py`` and the
README's "Data" section.
"""
