"""Sentences in, numpy vectors out: the in-process inference path shared by ``elmo dump``,
the Ray embedding actors and the benchmarks."""

from __future__ import annotations

import contextlib
import logging
from collections import OrderedDict
from collections.abc import Generator, Iterator, Sequence

import numpy as np
import torch

from elmo_model.model.bilm import BiLm, BiLmState
from elmo_model.model.chars import BOS_TOKEN, EOS_TOKEN, token_char_ids
from elmo_model.model.options import ElmoOptions
from elmo_model.model.precision import resolve_precision, use_precision
from elmo_model.infer.stateful import CarriedState

# Sentences longer than this (with <S> and </S>) are embedded window by window (see
# :meth:`SentenceEmbedder.iter_pieces`): working memory stays bounded, vectors do not change.
WINDOW_TOKENS = 1024

log = logging.getLogger(__name__)


class TokenVectors:
    """Token strings → token vectors: the char-CNN runs once per distinct token of a call.

    With ``cache_size > 0`` the vectors of up to that many tokens are kept between calls (least
    recently used dropped first). The cache empties itself when the encoder's weights change.
    """

    def __init__(self, bilm: BiLm, device: torch.device, cache_size: int = 0) -> None:
        self.encoder = bilm.token_encoder
        self.max_chars = bilm.options.max_characters_per_token
        self.device = device
        self.cache_size = cache_size
        self.cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._weights_version = self._version()

    def _version(self) -> int:
        return sum(p._version for p in self.encoder.parameters())

    def __call__(self, sentences: Sequence[Sequence[str]]) -> tuple[torch.Tensor, torch.Tensor]:
        """``sentences`` as given (no <S>/</S> added) → ``(tokens (batch, T, proj), mask (batch, T))``."""
        vocab: dict[str, int] = {}
        rows = [[vocab.setdefault(token, len(vocab)) for token in sentence] for sentence in sentences]
        table = self._encode(list(vocab))  # (n_distinct, proj)
        table = torch.cat([table, table.new_zeros(1, table.shape[1])])  # row len(vocab): padding
        steps = max((len(r) for r in rows), default=0)
        index = np.full((len(rows), steps), len(vocab), dtype=np.int64)
        for b, r in enumerate(rows):
            index[b, : len(r)] = r
        index_t = torch.from_numpy(index).to(self.device)
        vectors = table[index_t]  # (batch, T, proj)
        if vectors.dtype in (torch.bfloat16, torch.float16):  # char-CNN under autocast: the LSTM
            vectors = vectors.float()  # state (made like the tokens) stays float32
        return vectors, index_t < len(vocab)  # (batch, T, proj), (batch, T)

    def _encode(self, words: list[str]) -> torch.Tensor:
        """Vectors ``(len(words), proj)`` of distinct ``words``, from the cache where possible."""
        if not self.cache_size:
            return self._run_encoder(words)
        if self._version() != self._weights_version:
            self.cache.clear()
            self._weights_version = self._version()
        missing = [w for w in words if w not in self.cache]
        if missing:
            for word, vector in zip(missing, self._run_encoder(missing)):
                self.cache[word] = vector.clone()  # a copy: a view would pin the whole batch
        vectors = []
        for word in words:
            self.cache.move_to_end(word)
            vectors.append(self.cache[word])
        while len(self.cache) > self.cache_size:
            self.cache.popitem(last=False)
        return torch.stack(vectors)

    def _run_encoder(self, words: list[str]) -> torch.Tensor:
        if not words:
            return self.encoder.encode_distinct(torch.zeros(0, self.max_chars, dtype=torch.long, device=self.device))
        ids = np.stack([token_char_ids(w, self.max_chars) for w in words])  # (n, max_chars)
        return self.encoder.encode_distinct(torch.from_numpy(ids).long().to(self.device))


Piece = tuple[int, int, slice, np.ndarray]  # (row, start, columns, piece): see SentenceEmbedder.iter_pieces
ALL_COLUMNS = slice(None)


class SentenceEmbedder:
    """Runs a :class:`BiLm` on token lists and returns, per sentence, ``(L+1, n_tokens, 2·proj)``.

    ``<S>``/``</S>`` are added before the biLM and removed from the result. Stateless unless
    ``stateful=True``, which carries each batch row's LSTM state into the next call (the
    original's behaviour; row ``k`` of one call continues row ``k`` of the previous).
    Sentences longer than ``window_tokens`` go window by window, with the same vectors:
    :meth:`iter_pieces` (the backward half right to left, then the forward half left to right;
    what ``elmo dump`` writes to disk as it comes, and what a call fills its result with) or
    :meth:`iter_long` (whole pieces in order). ``token_cache_size`` keeps that many token vectors
    between calls. ``precision``: ``"fp32"`` (default), or opt-in ``"bf16"`` / ``"int8"``
    (faster where the hardware supports it, with a bounded error; see :mod:`elmo_model.model.precision`),
    or ``"auto"`` (bf16 where the device has bf16 matrix units, fp32 elsewhere); :attr:`precision`
    is the one that runs.
    """

    def __init__(
        self,
        bilm: BiLm,
        device: str | torch.device = "cpu",
        stateful: bool = False,
        *,
        window_tokens: int = WINDOW_TOKENS,
        token_cache_size: int = 0,
        precision: str = "fp32",
    ) -> None:
        if window_tokens < 3:
            raise ValueError("window_tokens must be at least 3")
        self.precision, why = resolve_precision(precision, device)
        if precision == "auto":
            log.info("precision %s (%s)", self.precision, why)
        self.bilm = bilm.to(device).eval()
        self.device = torch.device(device)
        self.carried = CarriedState(self.bilm) if stateful else None
        self.window = window_tokens
        self.token_vectors = TokenVectors(self.bilm, self.device, token_cache_size)

    @contextlib.contextmanager
    def _inference(self) -> Iterator[None]:
        """Inference mode and the precision; never held open across a ``yield`` of a generator."""
        with torch.inference_mode(), use_precision(self.precision, self.device):
            yield

    def __call__(self, sentences: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """The vectors of each sentence, float32 ``(L+1, n_tokens, 2·proj)``."""
        results: list[np.ndarray | None] = [None] * len(sentences)
        layers, width = self.bilm.options.n_layers + 1, self.bilm.options.output_dim
        for row, start, columns, piece in self.iter_pieces(sentences):
            n = len(sentences[row])
            if results[row] is None and columns == ALL_COLUMNS and piece.shape[1] == n:
                results[row] = piece  # a sentence in one piece: no copy
                continue
            if results[row] is None:
                results[row] = np.zeros((layers, n, width), dtype=np.float32)
            results[row][:, start : start + piece.shape[1], columns] = piece
        return [r if r is not None else np.zeros((layers, 0, width), np.float32) for r in results]

    def is_long(self, sentence: Sequence[str]) -> bool:
        """Whether ``sentence`` (with ``<S>``, ``</S>``) is embedded window by window."""
        return len(sentence) + 2 > self.window

    def iter_pieces(self, sentences: Sequence[Sequence[str]]) -> Iterator[Piece]:
        """The vectors of ``sentences`` as pieces to put in place, in working memory of one batch
        of short sentences or one window of a long one.

        Each item ``(row, start, columns, piece)`` means ``vectors[row][:, start : start + w,
        columns] = piece`` for the ``(L+1, n_tokens, 2·proj)`` result of sentence ``row``, with
        ``piece (L+1, w, ·)`` float32. A sentence of at most ``window_tokens`` positions comes in
        one piece (all columns; short sentences first, together); a longer one as the windows of
        its backward half (``columns`` = the last ``proj``) right to left, each carrying the
        backward LSTMs' state to the next, then of its forward half left to right: exact, every
        LSTM runs once per position, time linear in its length. With ``stateful``, the carried
        state is updated once every piece has been taken.
        """
        if not sentences:
            return
        with self._inference():
            state = self.carried.take(len(sentences)) if self.carried else None
        long_rows = [b for b, s in enumerate(sentences) if self.is_long(s)]
        if not long_rows:
            with self._inference():
                results, final = self._embed_batch(sentences, state)
            for b, vectors in enumerate(results):
                yield b, 0, ALL_COLUMNS, vectors
        else:
            with self._inference():
                if state is None:
                    state = self.bilm.zero_state(len(sentences), self.bilm.token_encoder.char_embedding.weight)
                final = BiLmState(state.h.clone(), state.c.clone())
                short_rows = sorted(set(range(len(sentences))) - set(long_rows))
                results = []
                if short_rows:
                    rows = torch.tensor(short_rows, device=self.device)
                    results, short_final = self._embed_batch([sentences[b] for b in short_rows],
                                                             state.select(rows))
                    final.h[:, :, rows], final.c[:, :, rows] = short_final.h, short_final.c
            for b, vectors in zip(short_rows, results):
                yield b, 0, ALL_COLUMNS, vectors
            for b in long_rows:
                row = torch.tensor([b], device=self.device)
                with self._inference():
                    start = state.select(row)
                row_final = yield from self._halves(b, sentences[b], start)
                with self._inference():
                    final.h[:, :, row], final.c[:, :, row] = row_final.h, row_final.c
        if self.carried:
            with self._inference():
                self.carried.keep(final)

    def _embed_batch(
        self, sentences: Sequence[Sequence[str]], state: BiLmState | None
    ) -> tuple[list[np.ndarray], BiLmState]:
        tokens, mask = self.token_vectors([[BOS_TOKEN, *s, EOS_TOKEN] for s in sentences])
        output = self.bilm.contextualize(tokens, mask, state)
        stacked = torch.stack(output.layers, dim=1).float().cpu().numpy()  # (batch, L+1, T, D)
        return [stacked[b, :, 1 : len(s) + 1] for b, s in enumerate(sentences)], output.state

    def _bounds(self, n_positions: int) -> list[tuple[int, int]]:
        return [(a, min(a + self.window, n_positions)) for a in range(0, n_positions, self.window)]

    def _halves(self, row: int, sentence: Sequence[str], state: BiLmState | None
                ) -> Generator[Piece, None, BiLmState]:
        """:meth:`iter_pieces` of one long sentence; returns its final state (one row)."""
        seq = [BOS_TOKEN, *sentence, EOS_TOKEN]
        proj = self.bilm.options.projection_dim
        if state is None:
            with self._inference():
                state = self.bilm.zero_state(1, self.bilm.token_encoder.char_embedding.weight)
        carried = {}
        for direction, bounds in ((1, self._bounds(len(seq))[::-1]), (0, self._bounds(len(seq)))):
            columns = slice(direction * proj, (direction + 1) * proj)
            direction_state = state
            for a, b in bounds:
                with self._inference():
                    tokens, mask = self.token_vectors([seq[a:b]])
                    layers, direction_state = self.bilm.contextualize_direction(tokens, mask, direction_state,
                                                                                direction)
                    piece = torch.stack(layers, dim=1)[0].float().cpu().numpy()  # (L+1, w, proj)
                lo, hi = max(a, 1), min(b, len(seq) - 1)  # without <S>, </S>
                if hi > lo:
                    yield row, lo - 1, columns, piece[:, lo - a : hi - a]
            carried[direction] = direction_state
        with self._inference():
            return BiLmState(torch.stack([carried[0].h[0], carried[1].h[1]]),
                             torch.stack([carried[0].c[0], carried[1].c[1]]))

    def iter_long(self, sentence: Sequence[str], state: BiLmState | None = None) -> Iterator[np.ndarray]:
        """Embed one sentence window by window; yields whole ``(L+1, w, D)`` pieces, in order.

        Exact: the forward LSTMs carry their state left to right across windows; the backward
        LSTMs' state at each window's right edge comes from a first, backward-only pass right
        to left that keeps just those states. Working memory is one window of
        ``window_tokens`` positions plus one ``(2, L, proj + cell)`` state per window; the
        backward stack runs twice (:meth:`iter_pieces` runs it once, in any-order pieces).
        ``state`` is a one-row :class:`BiLmState` to start from.
        """
        seq = [BOS_TOKEN, *sentence, EOS_TOKEN]
        bounds = self._bounds(len(seq))
        with self._inference():
            if state is None:
                state = self.bilm.zero_state(1, self.bilm.token_encoder.char_embedding.weight)
            right_edges: list[BiLmState] = []  # the backward state entering each window
            backward = state
            for a, b in reversed(bounds):
                right_edges.append(backward)
                tokens, mask = self.token_vectors([seq[a:b]])
                backward = self.bilm.backward_final_state(tokens, mask, backward)
            right_edges.reverse()
        forward = state
        for (a, b), edge in zip(bounds, right_edges):
            with self._inference():
                start = BiLmState(torch.stack([forward.h[0], edge.h[1]]), torch.stack([forward.c[0], edge.c[1]]))
                tokens, mask = self.token_vectors([seq[a:b]])
                output = self.bilm.contextualize(tokens, mask, start)
                forward = output.state
                layers = torch.stack(output.layers, dim=1)[0].float().cpu().numpy()  # (L+1, w, D)
            yield layers[:, max(a, 1) - a : min(b, len(seq) - 1) - a]  # without <S>, </S>


# Sentences per call that reach the packed path's speed: each LSTM step is a GEMM with one row
# per sentence still running, and on the benchmark machine rows 64 → 256 raise its rate by ~1.35×
# (original shape) while the fixture shape, bound by per-step overhead, embedded 3× more tokens/s
# at 256 than at 64 (measured 2026-12-01, 2 threads). Capped so that the returned vectors of a
# call stay under ``BATCH_OUTPUT_MB`` for sentences of ``TYPICAL_POSITIONS`` positions.
MAX_DEFAULT_BATCH = 256
BATCH_OUTPUT_MB = 256
TYPICAL_POSITIONS = 40


def default_batch_size(options: ElmoOptions) -> int:
    """Sentences per :class:`SentenceEmbedder` call for ``elmo embed`` / ``elmo dump`` by default."""
    per_sentence = TYPICAL_POSITIONS * (options.n_layers + 1) * 2 * options.projection_dim * 4  # bytes
    return max(16, min(MAX_DEFAULT_BATCH, BATCH_OUTPUT_MB * 2**20 // per_sentence))
