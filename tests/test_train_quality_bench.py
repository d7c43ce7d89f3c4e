"""The quality-per-compute benchmark: its plain PyTorch reference computes the project's biLM function,
and ``--quick`` runs end to end.

The reference is written without the project's model code; here (and only here) the project's
weights are copied into it — gate order i,j,f,o → i,f,g,o, the +1 forget bias folded into
``bias_ih`` — for a shape without clipping (``nn.LSTM`` has none), and both must give the same
summed losses, per direction, on real batches. That is the independent check that the benchmark
compares like with like.
"""

import json
import math
from collections import Counter

import pytest
import torch

from benchmarks import train_quality_bench as bench
from elmo_model.train.batching import collate, make_windows
from elmo_model.model.language_model import BiLmWithSoftmax, initialize_like_bilm_tf
from elmo_model.model.options import ElmoOptions
from elmo_model.formats.vocab import Vocabulary

SHAPE = dict(filters=[[1, 8], [2, 8], [3, 16]], char_embedding_dim=4, n_highway=2, lstm_dim=24,
             projection_dim=12, n_layers=2, use_skip_connections=True)
SENTENCES = [s.split() for s in (
    "the cat sat on the mat .", "a dog ran .", "colourless green ideas sleep furiously tonight , said he .",
    "it rained", "the cat ran after a dog on the mat .")]
pytestmark = pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")


def copy_project_into_reference(project: BiLmWithSoftmax, reference: bench.ReferenceBiLm) -> None:
    enc, ref = project.bilm.token_encoder, reference.encoder
    with torch.no_grad():
        ref.embedding.weight.copy_(enc.char_embedding.weight)
        for mine, theirs in zip(ref.convolutions, enc.convolutions):
            mine.weight.copy_(theirs.weight)
            mine.bias.copy_(theirs.bias)
        for mine, theirs in zip(ref.highways, enc.highways):
            mine.weight.copy_(torch.cat([theirs.carry.weight, theirs.transform.weight]))
            mine.bias.copy_(torch.cat([theirs.carry.bias, theirs.transform.bias]))
        ref.projection.weight.copy_(enc.projection.weight)
        ref.projection.bias.copy_(enc.projection.bias)
        for stack, layers in ((reference.forward_lm, project.bilm.forward_layers),
                              (reference.backward_lm, project.bilm.backward_layers)):
            for lstm, theirs in zip(stack.layers, layers):
                order = lambda w: torch.cat([w.chunk(4)[k] for k in (0, 2, 1, 3)])  # i,j,f,o → i,f,g,o
                lstm.weight_ih_l0.copy_(order(theirs.input_weight))
                lstm.weight_hh_l0.copy_(order(theirs.recurrent_weight))
                lstm.bias_ih_l0.copy_(order(theirs.folded_bias()))
                lstm.bias_hh_l0.zero_()
                lstm.weight_hr_l0.copy_(theirs.projection)
        reference.softmax.weight.copy_(project.softmax.weight)
        reference.softmax.bias.copy_(project.softmax.bias)


def test_reference_computes_the_projects_bilm_loss():
    vocab = Vocabulary.from_counts(Counter(t for s in SENTENCES[:3] for t in s))  # some words unknown
    torch.manual_seed(0)
    project = BiLmWithSoftmax(ElmoOptions(**{**SHAPE, "filters": tuple(map(tuple, SHAPE["filters"]))}),
                              len(vocab), dropout=0.0)
    initialize_like_bilm_tf(project)
    with torch.no_grad():  # non-zero biases everywhere, so a misplaced bias would show
        for p in project.parameters():
            p.add_(0.05 * torch.randn_like(p))
    reference = bench.ReferenceBiLm(SHAPE, len(vocab), dropout=0.0)
    copy_project_into_reference(project, reference)
    batch = collate(make_windows(SENTENCES, 6), vocab)  # windows of different lengths: padding
    char_ids, token_ids = torch.from_numpy(batch["char_ids"]).long(), torch.from_numpy(batch["token_ids"])
    project.eval()
    reference.eval()
    with torch.no_grad():
        theirs = project(char_ids, token_ids)
        forward_nll, backward_nll, n = reference(char_ids, token_ids)
    assert n == theirs.n_targets
    assert float(forward_nll) == pytest.approx(float(theirs.forward_nll), rel=1e-5)
    assert float(backward_nll) == pytest.approx(float(theirs.backward_nll), rel=1e-5)
    # and the per-sentence evaluations agree with the project's
    ours = bench.reference_sentence_perplexity(reference, vocab, SENTENCES)
    project_ppl = bench.sentence_perplexity(project, vocab, SENTENCES)
    assert ours["n_targets"] == project_ppl["n_targets"] == sum(len(s) + 1 for s in SENTENCES)
    assert ours["perplexity_forward"] == pytest.approx(project_ppl["perplexity_forward"], rel=1e-5)
    assert ours["perplexity_backward"] == pytest.approx(project_ppl["perplexity_backward"], rel=1e-5)


def test_reference_training_step_lowers_the_loss_on_its_batch():
    settings = bench.Settings(SHAPE, learning_rate=0.01, dropout=0.0)
    vocab = Vocabulary.from_counts(Counter(t for s in SENTENCES for t in s))
    torch.manual_seed(0)
    trainer = bench.ReferenceTrainer(bench.ReferenceBiLm(SHAPE, len(vocab), 0.0), settings)
    batch = collate(make_windows(SENTENCES, 40), vocab)
    losses = [trainer.train_step(batch)["loss"] for _ in range(5)]
    assert losses[0] == pytest.approx(math.log(len(vocab)), rel=0.2)  # near uniform at the start
    assert losses[-1] < losses[0] - 0.1


def test_quick_run_writes_a_row_for_both_models(tmp_path):
    threads = torch.get_num_threads()
    try:
        result = bench.main(["--quick", "--out", str(tmp_path)])
    finally:
        torch.set_num_threads(threads)
    row = result["rows"][0]
    assert row["steps_project"] > 0 and row["steps_reference"] > 0
    assert row["train_s_project"] >= row["budget_s_each"] and row["train_s_reference"] >= row["budget_s_each"]
    for key in ("ppl_fwd_project", "ppl_bwd_project", "ppl_fwd_reference", "ppl_bwd_reference"):
        assert 1 < row[key] < 10 * row["vocab"], (key, row[key])
    assert row["ratio_fwd"] == pytest.approx(row["ppl_fwd_project"] / row["ppl_fwd_reference"])
    assert json.loads((tmp_path / "train_quality.json").read_text())["rows"][0]["corpus"] == row["corpus"]
    assert "plain PyTorch reference" in (tmp_path / "train_quality.md").read_text()
