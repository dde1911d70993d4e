import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
GOLDEN = REPO / "tests" / "golden"
UPDATE = os.environ.get("MIXC_UPDATE_GOLDEN") == "1"


@pytest.fixture
def repo() -> Path:
    return REPO
