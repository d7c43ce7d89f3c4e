import numpy as np

from elmo_model.infer.embedder import SentenceEmbedder
from elmo_model.eval.neighbors import Occurrence, nearest, occurrences, sense_accuracy
from elmo_model.formats.weights import load_bilm



def _occ(tokens, index, vector):
    return Occurrence(tuple(tokens), index, np.asarray(vector, dtype=np.float32))


def test_nearest_ranks_by_cosine_and_skips_the_query_itself():
    q = _occ(["a", "bank"], 1, [1, 0])
    pool = [q, _occ(["b", "bank"], 1, [0, 1]), _occ(["c", "bank"], 1, [2, 0.1]), _occ(["d", "bank"], 1, [1, 1])]
    got = nearest(q, pool, k=2)
    assert [o.tokens[0] for _, o in got] == ["c", "d"]
    assert abs(got[1][0] - 1 / np.sqrt(2)) < 1e-6


def test_sense_accuracy_is_leave_one_out_1nn():
    labelled = [(_occ(["x", "bank"], 1, [1, 0]), "river"), (_occ(["y", "bank"], 1, [0.9, 0.1]), "river"),
                (_occ(["z", "bank"], 1, [0, 1]), "money"), (_occ(["w", "bank"], 1, [0.6, 0.5]), "money")]
    # x→y ✓, y→x ✓, z→w ✓, w→y ✗ (0.6,0.5 is nearer (0.9,0.1) than (0,1))
    assert sense_accuracy(labelled) == 0.75


def test_occurrences_use_the_sentence_context(tiny_files):
    embedder = SentenceEmbedder(load_bilm(*tiny_files))
    found = occurrences(embedder, [["The", "bank", "closed"], ["river", "Bank", "."]], {"bank"})
    assert [(o.tokens, o.index) for o in found] == [(("The", "bank", "closed"), 1), (("river", "Bank", "."), 1)]
    stack = embedder([["The", "bank", "closed"]])[0]
    np.testing.assert_allclose(found[0].vector, stack[-1][1], atol=1e-6)
    assert found[0].context() == "The [bank] closed"
