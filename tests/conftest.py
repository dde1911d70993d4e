import os
from pathlib import Path

import pytest

from tests.gcs import gcs, gcs_server, store  # noqa: F401  (a GCS emulator, a fresh bucket, either store)
from tests.s3 import s3, s3_server  # noqa: F401  (fixtures: a moto S3 server, a fresh bucket)

REPO = Path(__file__).resolve().parent.parent
GOLDEN = REPO / "tests" / "golden"
UPDATE = os.environ.get("MIXC_UPDATE_GOLDEN") == "1"


@pytest.fixture
def repo() -> Path:
    return REPO
