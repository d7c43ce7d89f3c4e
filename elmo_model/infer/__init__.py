"""A trained biLM in use: the sentence embedder, the ``Elmo`` module, ``elmo dump``."""
