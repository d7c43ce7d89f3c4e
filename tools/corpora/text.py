"""A deliberately simple sentence splitter and tokenizer for raw English prose.

Used to turn the public-domain books and speeches fetched by ``tools.corpora.fetch`` into the
common layout (one sentence per line, whitespace-tokenized, UTF-8). It is regex-based and has no
model or data files, so its output is reproducible anywhere:

Paragraphs
    Text is split into paragraphs at blank lines; the lines inside a paragraph are joined
    with a space (hard-wrapped prose and verse both become one running text).

Sentences (``split_sentences``)
    A sentence ends after ``.``, ``!`` or ``?`` (optionally followed by closing quotes or
    brackets) when whitespace and then an upper-case letter, a digit or an opening
    quote/bracket follow. A period after a known abbreviation (``Mr.``, ``Mrs.``, ``Dr.``,
    ``St.``, single capital initials such as ``J.``, ...) does not end a sentence. Nothing else
    (no ``;``, ``:`` or line breaks) ends a sentence.

Tokens (``tokenize``)
    * words: runs of letters/digits, keeping *internal* hyphens, apostrophes and periods
      (``well-known``, ``don't``, ``o'er``, ``3.5``, ``U.S``), so contractions are not split;
    * the known abbreviations keep their period (``Mr.``);
    * every other non-space character is its own token, except runs of ``-`` and ``.``
      (``--``, ``...``) which stay together. ``_`` (Gutenberg's italics marker) is removed.

Text is NFC-normalised first. Case is kept (ELMo's character encoder sees it).
"""
from __future__ import annotations

import re
import unicodedata

__all__ = [
    "ABBREVIATIONS",
    "normalize",
    "paragraphs",
    "split_sentences",
    "tokenize",
    "sentences_from_text",
]

#: Words whose trailing period is part of the word and does not end a sentence.
ABBREVIATIONS = (
    "Mr", "Mrs", "Messrs", "Ms", "Dr", "St", "Jr", "Sr", "Mt", "Rev", "Hon", "Gen", "Col",
    "Capt", "Lieut", "Gov", "Sen", "Rep", "Prof", "No", "vs", "viz", "etc", "i.e", "e.g",
)
_ABBREV_ALT = "|".join(re.escape(a) for a in sorted(ABBREVIATIONS, key=len, reverse=True))

_WORD = r"[^\W_]+(?:[-'’.][^\W_]+)*"
_TOKEN_RE = re.compile(
    rf"(?<![^\W_])(?:{_ABBREV_ALT})\.(?![^\W_])"  # Mr.  (not the tail of a longer word)
    rf"|{_WORD}"
    r"|-{2,}|\.{2,}|[^\w\s]"
)

# A candidate sentence end: terminal punctuation, optional closers, whitespace, then an
# opener / capital / digit. The abbreviation check happens in split_sentences.
_BOUNDARY_RE = re.compile(r"[.!?]+[\"'”’)\]]*(?=\s+[\"'“‘(\[]*[A-Z0-9])")
_NO_BREAK_BEFORE_RE = re.compile(rf"(?:^|[\s\"'“‘(\[])(?:{_ABBREV_ALT}|[A-Z])\.$")


def normalize(text: str) -> str:
    """NFC-normalise, unify line endings, turn non-breaking/odd spaces into plain spaces."""
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    return re.sub(r"[\t\f\v\u00a0\u2000-\u200b\u3000]", " ", text)


def paragraphs(text: str) -> list[str]:
    """Split at blank lines; join each paragraph's lines with single spaces."""
    out = []
    for block in re.split(r"\n[ \t]*\n", normalize(text)):
        para = " ".join(block.split())
        if para:
            out.append(para)
    return out


def split_sentences(paragraph: str) -> list[str]:
    """Split one paragraph (no line breaks needed) into sentence strings."""
    paragraph = " ".join(paragraph.split())
    sentences, start = [], 0
    for m in _BOUNDARY_RE.finditer(paragraph):
        head = paragraph[start:m.end()]
        if m.group().startswith(".") and _NO_BREAK_BEFORE_RE.search(head[: m.start() - start + 1]):
            continue  # "Mr. Knightley", "J. Smith"
        sentences.append(head.strip())
        start = m.end()
    tail = paragraph[start:].strip()
    if tail:
        sentences.append(tail)
    return [s for s in sentences if s]


def tokenize(sentence: str) -> list[str]:
    """Whitespace-free tokens of one sentence (see the module docstring for the rules)."""
    return [t for t in _TOKEN_RE.findall(normalize(sentence).replace("_", " ")) if t]


def sentences_from_text(text: str) -> list[list[str]]:
    """Paragraphs → sentences → tokens, dropping sentences that tokenize to nothing."""
    out = []
    for para in paragraphs(text):
        for sent in split_sentences(para):
            toks = tokenize(sent)
            if toks:
                out.append(toks)
    return out
