"""ELMo in pure PyTorch: weight-compatible with bilm-tf / AllenNLP. Never imports Ray."""

from elmo_model.bilm import BiLm, BiLmOutput, BiLmState
from elmo_model.chars import batch_char_ids
from elmo_model.elmo import Elmo, batch_to_ids
from elmo_model.embedder import SentenceEmbedder
from elmo_model.errors import ElmoError
from elmo_model.options import ElmoOptions
from elmo_model.scalar_mix import ScalarMix
from elmo_model.weights import load_bilm, read_options, save_options, save_weights

__all__ = [
    "BiLm", "BiLmOutput", "BiLmState", "Elmo", "ElmoError", "ElmoOptions", "ScalarMix",
    "SentenceEmbedder", "batch_char_ids", "batch_to_ids", "load_bilm", "read_options",
    "save_options", "save_weights",
]
