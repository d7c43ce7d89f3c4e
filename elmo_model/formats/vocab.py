"""bilm-tf's vocabulary file: one token a line, most frequent first, with ``<S>``, ``</S>``, ``<UNK>``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from elmo_model.errors import ElmoError
from elmo_model.formats.local_files import LocalPath, read_bytes, write_atomically

BOS, EOS, UNK = "<S>", "</S>", "<UNK>"
SPECIAL_TOKENS = (BOS, EOS, UNK)


class Vocabulary:
    """Token ↔ id, ids in file order (so id order is frequency order, as the sampler assumes)."""

    def __init__(self, tokens: Sequence[str], source: str = "vocabulary") -> None:
        missing = [t for t in SPECIAL_TOKENS if t not in tokens]
        if missing:
            raise ElmoError(f"{source}: vocabulary lacks the special tokens {missing} (bilm-tf needs <S>, </S>, <UNK>)")
        self.tokens: list[str] = list(tokens)
        self.index: dict[str, int] = {}
        for i, token in enumerate(self.tokens):
            if token in self.index:
                raise ElmoError(f"{source}: token {token!r} appears twice (lines {self.index[token] + 1} and {i + 1})")
            self.index[token] = i
        self.bos, self.eos, self.unk = self.index[BOS], self.index[EOS], self.index[UNK]

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: str) -> bool:
        return token in self.index

    def id(self, token: str) -> int:
        return self.index.get(token, self.unk)

    def encode(self, tokens: Iterable[str]) -> np.ndarray:
        """Token ids (int64), unknown tokens → ``<UNK>``."""
        get, unk = self.index.get, self.unk
        return np.fromiter((get(t, unk) for t in tokens), dtype=np.int64)

    @classmethod
    def from_counts(cls, counts: Mapping[str, int], max_size: int | None = None, min_count: int = 1) -> Vocabulary:
        """Specials first, then tokens by descending count, ties by token; at most ``max_size`` in all."""
        ranked = sorted(((t, c) for t, c in counts.items() if c >= min_count and t not in SPECIAL_TOKENS),
                        key=lambda tc: (-tc[1], tc[0]))
        limit = None if max_size is None else max(0, max_size - len(SPECIAL_TOKENS))
        return cls([*SPECIAL_TOKENS, *(t for t, _ in ranked[:limit])])

    @classmethod
    def load(cls, path: LocalPath) -> Vocabulary:
        """A local ``vocab.txt``."""
        return cls.parse(read_bytes(path, "vocabulary file"), source=str(path))

    @classmethod
    def parse(cls, raw: bytes, source: str = "vocabulary") -> Vocabulary:
        """A ``vocab.txt``'s bytes; errors name ``source``."""
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ElmoError(f"{source}: vocabulary is not valid UTF-8 (byte {exc.start})") from None
        tokens = [line.strip() for line in text.split("\n")]
        tokens = [t for t in tokens if t and t != "!!!MAXTERMID"]
        if not tokens:
            raise ElmoError(f"{source}: vocabulary file is empty")
        return cls(tokens, source=source)

    def to_text(self) -> str:
        return "".join(f"{t}\n" for t in self.tokens)

    def save(self, path: LocalPath) -> None:
        write_atomically(path, lambda p: p.write_text(self.to_text(), encoding="utf-8"))
