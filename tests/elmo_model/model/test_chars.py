import numpy as np
import torch

from elmo_model.model.chars import BOS_TOKEN, EOS_TOKEN, batch_char_ids, token_char_ids
from elmo_model.infer.elmo import add_sentence_boundaries, batch_to_ids


def test_plain_token_is_bow_bytes_eow_then_padding_all_plus_one():
    ids = token_char_ids("ab")
    assert ids.shape == (50,)
    assert ids[:4].tolist() == [259, 98, 99, 260]  # 258+1, 'a'+1, 'b'+1, 259+1
    assert (ids[4:] == 261).all()  # padding char 260 + 1


def test_utf8_bytes_not_code_points():
    ids = token_char_ids("é")  # two UTF-8 bytes 0xC3 0xA9
    assert ids[:4].tolist() == [259, 0xC3 + 1, 0xA9 + 1, 260]


def test_long_token_truncated_keeping_word_boundaries():
    ids = token_char_ids("x" * 80)
    assert ids[0] == 259 and ids[49] == 260
    assert (ids[1:49] == ord("x") + 1).all()


def test_sentence_boundary_tokens():
    assert token_char_ids(BOS_TOKEN)[:4].tolist() == [259, 257, 260, 261]
    assert token_char_ids(EOS_TOKEN)[:4].tolist() == [259, 258, 260, 261]


def test_batch_padding_is_zero():
    ids = batch_char_ids([["a", "b", "c"], ["d"]])
    assert ids.shape == (2, 3, 50)
    assert (ids[1, 1:] == 0).all() and (ids[1, 0] > 0).all()


def test_add_sentence_boundaries_matches_encoding_with_boundaries():
    sentences = [["The", "cat"], ["A", "much", "longer", "one"], ["x"]]
    with_bounds = add_sentence_boundaries(batch_to_ids(sentences))
    expected = torch.from_numpy(batch_char_ids(sentences, add_boundaries=True)).long()
    assert torch.equal(with_bounds, expected)
    assert np.array_equal(batch_to_ids(sentences).numpy(), batch_char_ids(sentences))
