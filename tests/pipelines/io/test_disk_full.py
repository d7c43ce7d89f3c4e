"""A full disk under `elmo dump` and `elmo embed`: one line naming the path and "no space left on
device", a non-zero exit, nothing partial visible and no crash (a real 1 MB tmpfs; skipped where
the test cannot mount one)."""

from __future__ import annotations

import random

import pytest

from support import run_elmo

WORDS = "the bank raised its rates we sat on river a third line here another file with words and".split()


def _text(n_lines: int) -> str:
    rng = random.Random(0)
    return "".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 14))) + "\n" for _ in range(n_lines))


def _one_line(result) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
    assert "Traceback" not in result.stderr and "Segmentation" not in result.stderr, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if "no space left on device" in line]
    assert len(lines) == 1, result.stderr[-3000:]
    return lines[0]


def test_dump_on_a_full_disk(tiny_files, tmp_path, tmpfs):
    disk = tmpfs("1m")
    (tmp_path / "in.txt").write_text(_text(1_000))  # ~10k tokens x 384 bytes (all layers): 3.8 MB
    result = run_elmo("dump", str(tmp_path / "in.txt"), str(disk / "out.hdf5"), "--options-file", str(tiny_files[0]),
                      "--weight-file", str(tiny_files[1]), "--all")
    assert str(disk / "out.hdf5") in _one_line(result)
    assert list(disk.iterdir()) == []  # no output, no partial


@pytest.mark.ray
def test_embed_on_a_full_disk(tiny_files, tmp_path, tmpfs):
    disk = tmpfs("1m")
    model = tmp_path / "tiny"
    model.mkdir()
    (model / "options.json").write_bytes(tiny_files[0].read_bytes())
    (model / "weights.hdf5").write_bytes(tiny_files[1].read_bytes())
    (tmp_path / "in.txt").write_text(_text(3_000))
    result = run_elmo("embed", "--model", str(model), "--input", str(tmp_path / "in.txt"), "--output",
                      str(disk / "vectors"), "--actors", "1,1", "--cpus-per-actor", "0.5",
                      env={"RAY_AUTH_MODE": "disabled"})
    assert "vectors" in _one_line(result)
    visible = [p for p in (disk / "vectors").rglob("*") if p.is_file() and not p.name.startswith(("_", "."))
               and "/_" not in str(p.relative_to(disk))]
    assert visible == []
