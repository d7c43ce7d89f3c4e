"""``tools/corpora/text.py``: the regex sentence splitter and tokenizer on inline samples."""
from __future__ import annotations

from tools.corpora.text import paragraphs, sentences_from_text, split_sentences, tokenize


def test_tokenize_splits_punctuation_keeps_word_internal_marks():
    assert tokenize("Mr. Woodhouse's well-known house, 3.5 miles--off... (really)!") == [
        "Mr.", "Woodhouse's", "well-known", "house", ",", "3.5", "miles", "--", "off", "...",
        "(", "really", ")", "!"]
    assert tokenize("Between _them_ it was; o'er the U.S. “line”") == [
        "Between", "them", "it", "was", ";", "o'er", "the", "U.S", ".", "“", "line", "”"]
    assert tokenize("It’s good—(applause)—no") == ["It’s", "good", "—", "(", "applause", ")",
                                                   "—", "no"]
    assert tokenize("   ") == []


def test_split_sentences_respects_abbreviations_initials_and_quotes():
    para = ('Sixteen years had Miss Taylor been in Mr. Woodhouse\'s family. "Is it so?" said '
            'J. Smith. "Yes!" He paid $3.50 (i.e. cheap). the end stays')
    assert split_sentences(para) == [
        "Sixteen years had Miss Taylor been in Mr. Woodhouse's family.",
        '"Is it so?" said J. Smith.',
        '"Yes!"',
        "He paid $3.50 (i.e. cheap). the end stays",
    ]


def test_paragraphs_join_wrapped_lines_and_split_at_blank_lines():
    text = "one line\nwrapped here.\n\n  \nSecond\r\nparagraph.\n"
    assert paragraphs(text) == ["one line wrapped here.", "Second paragraph."]
    assert sentences_from_text(text) == [["one", "line", "wrapped", "here", "."],
                                         ["Second", "paragraph", "."]]
