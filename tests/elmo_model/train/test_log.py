"""The training log: rows by step, CSV/JSON, resumption, progress lines."""

import csv
import io
import json

from elmo_model.train.log import COLUMNS, MetricsLog, progress_line

ROW = dict(step=2, loss=4.0, perplexity=54.6, perplexity_forward=50.0, perplexity_backward=60.0,
           tokens_per_s=1234.4, learning_rate=0.002)


def test_rows_of_one_step_merge_and_a_resume_drops_later_rows():
    log = MetricsLog()
    log.add(ROW)
    log.add({"step": 2, "valid_perplexity": 70.0})  # the evaluation of the same step
    log.add({**ROW, "step": 4})
    assert [r["step"] for r in log.rows] == [2, 4] and log.rows[0]["valid_perplexity"] == 70.0
    resumed = MetricsLog.load(log.state(), resumed_at=2)
    assert [r["step"] for r in resumed.rows] == [2] and resumed.resumes == [2]
    assert json.loads(resumed.to_json(run="x")) == {"rows": resumed.rows, "resumed_at_steps": [2], "run": "x"}


def test_csv_has_the_columns_and_progress_line_says_the_step():
    log = MetricsLog([ROW])
    rows = list(csv.DictReader(io.StringIO(log.to_csv())))
    assert list(rows[0]) == COLUMNS and rows[0]["step"] == "2"
    line = progress_line({**ROW, "valid_perplexity": 70.0}, 10)
    assert line == "step 2/10 loss 4.0000 ppl 54.6 (fwd 50.0 bwd 60.0) 1234 tok/s lr 0.002 | valid ppl 70.0"
