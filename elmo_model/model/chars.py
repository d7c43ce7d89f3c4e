"""Token → character ids, exactly as the original bilm-tf / AllenNLP encoding.

Each token becomes ``max_characters_per_token`` ids: begin-of-word, its UTF-8 bytes (truncated so
that begin/end-of-word always fit), end-of-word, then the in-token padding character. The
sentence pseudo-tokens ``<S>`` / ``</S>`` have their own reserved characters. Every id is shifted
by +1 so that 0 marks a padding *token* (a position with no token at all).

Pure functions, numpy in and out: the same code runs in Ray stages, the embedder and the tests.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MAX_CHARS = 50
BOS_CHAR = 256  # beginning of sentence
EOS_CHAR = 257  # end of sentence
BOW_CHAR = 258  # beginning of word
EOW_CHAR = 259  # end of word
PAD_CHAR = 260  # padding inside a token
BOS_TOKEN = "<S>"
EOS_TOKEN = "</S>"


def _special_row(char: int, max_chars: int) -> np.ndarray:
    row = np.full(max_chars, PAD_CHAR, dtype=np.int32)
    row[:3] = (BOW_CHAR, char, EOW_CHAR)
    return row + 1


def token_char_ids(token: str, max_chars: int = MAX_CHARS) -> np.ndarray:
    """Char ids of one token, shape ``(max_chars,)`` int32, with the +1 offset applied."""
    if token == BOS_TOKEN:
        return _special_row(BOS_CHAR, max_chars)
    if token == EOS_TOKEN:
        return _special_row(EOS_CHAR, max_chars)
    encoded = token.encode("utf-8", "ignore")[: max_chars - 2]
    row = np.full(max_chars, PAD_CHAR, dtype=np.int32)
    row[0] = BOW_CHAR
    row[1 : 1 + len(encoded)] = np.frombuffer(encoded, dtype=np.uint8)
    row[1 + len(encoded)] = EOW_CHAR
    return row + 1


def sentence_char_ids(
    tokens: Sequence[str], add_boundaries: bool = False, max_chars: int = MAX_CHARS
) -> np.ndarray:
    """Char ids of one sentence, shape ``(n_tokens [+2], max_chars)`` int32."""
    if add_boundaries:
        tokens = [BOS_TOKEN, *tokens, EOS_TOKEN]
    out = np.empty((len(tokens), max_chars), dtype=np.int32)
    for i, token in enumerate(tokens):
        out[i] = token_char_ids(token, max_chars)
    return out


def batch_char_ids(
    sentences: Sequence[Sequence[str]], add_boundaries: bool = False, max_chars: int = MAX_CHARS
) -> np.ndarray:
    """Padded char ids of a batch, shape ``(batch, max_len, max_chars)`` int32; 0 = no token."""
    extra = 2 if add_boundaries else 0
    max_len = max((len(s) for s in sentences), default=0) + extra
    out = np.zeros((len(sentences), max_len, max_chars), dtype=np.int32)
    for b, sentence in enumerate(sentences):
        ids = sentence_char_ids(sentence, add_boundaries, max_chars)
        out[b, : len(ids)] = ids
    return out
