import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
ELMO_TINY = FIXTURES / "elmo_tiny"


@pytest.fixture(scope="session")
def tiny_dir() -> Path:
    return ELMO_TINY


@pytest.fixture(scope="session")
def tiny_files() -> tuple[Path, Path]:
    return ELMO_TINY / "options.json", ELMO_TINY / "lm_weights.hdf5"


@pytest.fixture(scope="session")
def tiny_sentences() -> list[list[str]]:
    """The fixture's 3 lists of 10 sentences."""
    return json.loads((ELMO_TINY / "sentences.json").read_text())


@pytest.fixture
def tmpfs(tmp_path_factory):
    """``mount(size)`` → a directory on a tmpfs of that size (``remount(size)`` to resize it)."""
    mounted: list[Path] = []

    def mount(size: str) -> Path:
        directory = tmp_path_factory.mktemp("tmpfs") / f"m{uuid.uuid4().hex[:6]}"
        directory.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({(done.stderr or done.stdout).strip()}): needs root")
        mounted.append(directory)
        return directory

    yield mount
    for directory in mounted:
        if subprocess.run(["umount", str(directory)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(directory)], capture_output=True)


RAY_ALLOWED_VAR = "ELMO_TEST_RAY_ALLOWED"  # read by support.run_elmo


@pytest.fixture(autouse=True)
def _ray_only_in_tests_marked_ray(request):
    """A test that starts Ray (in this process, or an ``elmo`` command that does) must be marked
    ``ray``: ``make test-fast`` deselects those and must not start Ray."""
    marked = request.node.get_closest_marker("ray") is not None
    before = "ray" in sys.modules and sys.modules["ray"].is_initialized()
    os.environ[RAY_ALLOWED_VAR] = "1" if marked else "0"
    try:
        yield
    finally:
        os.environ.pop(RAY_ALLOWED_VAR, None)
    started = "ray" in sys.modules and sys.modules["ray"].is_initialized() and not before
    if started and not marked:
        pytest.fail(f"{request.node.nodeid} started Ray but is not marked ray", pytrace=False)
