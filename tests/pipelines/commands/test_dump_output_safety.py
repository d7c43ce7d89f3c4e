"""`elmo dump` never destroys its input or an existing file, and checks the output before any work."""

import os
import stat
import subprocess

import h5py
import pytest

from elmo_model.infer.dump import dump_embeddings
from elmo_model.errors import ElmoError

from support import run_elmo

TEXT = "The bank raised its rates .\nWe sat on the river bank .\n"


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "in.txt"
    path.write_text(TEXT)
    return path


def _dump(tiny_files, input_file, output_file, *flags, weight_file=None):
    return run_elmo("dump", str(input_file), str(output_file), "--options-file", str(tiny_files[0]),
                    "--weight-file", str(weight_file or tiny_files[1]), "--top", *flags, timeout=300)


def _one_line_error(result) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def test_output_equal_to_input_is_refused_and_input_kept(tmp_path, tiny_files, text_file):
    line = _one_line_error(_dump(tiny_files, text_file, text_file, "--overwrite"))
    assert "is the input file" in line and str(text_file) in line
    assert text_file.read_text() == TEXT


@pytest.mark.parametrize("spelling", ["dotdot", "relative", "symlink", "hardlink"])
def test_output_equal_to_input_under_another_name_is_refused(tmp_path, tiny_files, text_file, spelling, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    if spelling == "dotdot":
        output = tmp_path / "sub" / ".." / "in.txt"
    elif spelling == "relative":
        output = "./in.txt"
    elif spelling == "symlink":
        output = tmp_path / "sub" / "link.hdf5"
        output.symlink_to(text_file)
    else:
        output = tmp_path / "sub" / "hard.hdf5"
        os.link(text_file, output)
    with pytest.raises(ElmoError, match="is the input file"):
        dump_embeddings(text_file, output, *tiny_files, mode="top", overwrite=True, progress=False)
    assert text_file.read_text() == TEXT


def test_existing_output_needs_overwrite(tmp_path, tiny_files, text_file):
    out = tmp_path / "out.hdf5"
    out.write_bytes(b"precious")
    line = _one_line_error(_dump(tiny_files, text_file, out))
    assert "already exists" in line and "--overwrite" in line and str(out) in line
    assert out.read_bytes() == b"precious"
    result = _dump(tiny_files, text_file, out, "--overwrite")
    assert result.returncode == 0, result.stderr
    with h5py.File(out, "r") as fin:
        assert fin["0"].shape[0] == len(TEXT.splitlines()[0].split())


def _readonly_dir(path):
    """A directory this process cannot write to, even as root (chattr +i); None if impossible here."""
    path.mkdir()
    path.chmod(stat.S_IRUSR | stat.S_IXUSR)
    if os.access(path, os.W_OK):  # root ignores modes
        path.chmod(0o755)
        if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
            return None
    return path


@pytest.mark.parametrize("where", ["missing_dir", "is_directory", "under_a_file", "read_only"])
def test_bad_output_location_fails_before_loading_the_model(tmp_path, tiny_files, text_file, where):
    """The weights file does not exist: an error about the output proves it was checked first."""
    if where == "missing_dir":
        out, expected = tmp_path / "nope" / "out.hdf5", "does not exist"
    elif where == "is_directory":
        (tmp_path / "adir").mkdir()
        out, expected = tmp_path / "adir", "is a directory"
    elif where == "under_a_file":
        out, expected = text_file / "out.hdf5", "not a directory"
    else:
        ro = _readonly_dir(tmp_path / "ro")
        if ro is None:
            pytest.skip("no way to make a read-only directory here (root without chattr)")
        out, expected = ro / "out.hdf5", "cannot write"
    try:
        line = _one_line_error(_dump(tiny_files, text_file, out, weight_file=tmp_path / "missing.hdf5"))
    finally:
        if where == "read_only":
            subprocess.run(["chattr", "-i", str(out.parent)], capture_output=True)
            out.parent.chmod(0o755)
    assert expected in line and "missing.hdf5" not in line, line


def test_stale_partial_of_the_same_output_is_removed(tmp_path, tiny_files, text_file):
    out = tmp_path / "out.hdf5"
    stale = tmp_path / "_out.hdf5.partial"  # what a SIGKILLed run leaves
    stale.write_bytes(b"x" * 1000)
    other = tmp_path / "_other.hdf5.partial"  # another output's: not ours to remove
    other.write_bytes(b"y")
    bad_input = tmp_path / "bad.txt"
    bad_input.write_text("a line\n\n")  # the rerun itself fails (empty line 2), after its output checks
    assert "line 2 is empty" in _one_line_error(_dump(tiny_files, bad_input, out))
    assert not stale.exists() and other.exists() and not out.exists()
    assert _dump(tiny_files, text_file, out).returncode == 0 and out.exists()
