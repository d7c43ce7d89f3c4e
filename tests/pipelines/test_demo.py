"""The README's first command, `make demo` (= `elmo demo`), end to end."""

import pytest

from pipelines.demo import DemoConfig, run_demo

from pipelines_support import patched_env


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_demo_runs_end_to_end_and_separates_the_senses_of_bank(tmp_path, capsys):
    with patched_env({"RAY_AUTH_MODE": "disabled"}):
        scores = run_demo(DemoConfig(workdir=str(tmp_path / "demo"), steps=450))
    out = capsys.readouterr().out
    for step in range(1, 7):
        assert f"[{step}/6]" in out
    for name in ("model/options.json", "model/weights.hdf5", "model/vocab.txt", "vocab/vocab.txt", "vectors/_manifest.json"):
        assert (tmp_path / "demo" / name).exists(), name
    assert list((tmp_path / "demo/vectors").glob("*/*.parquet"))
    # the trained model puts occurrences of the same sense of "bank" nearer each other
    assert scores["same_sense"] > scores["other_sense"] + 0.05
