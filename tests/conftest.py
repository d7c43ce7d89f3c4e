import json
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
