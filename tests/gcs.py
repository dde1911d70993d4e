"""A real Google Cloud Storage API server for tests: gcp-storage-emulator, a subprocess on 127.0.0.1.

Fixtures (registered in tests/conftest.py, usable from every test folder), shaped like tests/s3.py:

- `gcs_server` (session): starts `gcp-storage-emulator start --in-memory` on a free port once per
  test session, waits until it answers, stops it at the end. Its `env` holds what a client needs:
  `STORAGE_EMULATOR_HOST` (which google-cloud-storage, gcsfs, and so Streaming, Composer and mixc
  read), a project, and `GOOGLE_APPLICATION_CREDENTIALS`: an authorized-user credentials file whose
  access token never expires, so Application Default Credentials resolve (Streaming's and
  Composer's GCS clients require them) without reaching Google's token endpoint.
- `gcs` (per test): the server with its `env` set in this process (monkeypatch) and a fresh bucket:
  `gcs.url` is `gs://<unique bucket>`.
- `store` (per test, parametrized): the same test once on S3 (moto) and once on GCS.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.s3 import Bucket, free_port, stop, wait_until_up

EMULATOR = Path(sys.executable).with_name("gcp-storage-emulator")
CREDENTIALS = {"type": "authorized_user", "client_id": "test", "client_secret": "test", "refresh_token": "test",
               "token": "test", "expiry": "2999-01-01T00:00:00Z"}


@dataclass
class GCSServer:
    endpoint: str
    credentials: Path
    process: subprocess.Popen | None = None
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.env = {"STORAGE_EMULATOR_HOST": self.endpoint, "GOOGLE_CLOUD_PROJECT": "test",
                    "GOOGLE_APPLICATION_CREDENTIALS": str(self.credentials)}

    def client(self):
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage
        return storage.Client(project="test", credentials=AnonymousCredentials(), client_options={
            "api_endpoint": self.endpoint})

    def bucket(self, name: str | None = None) -> str:
        """Creates a bucket (a fresh unique name by default) and returns its gs:// URL."""
        name = name or f"test-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(name)
        return f"gs://{name}"

    def keys(self, url: str) -> dict[str, bytes]:
        """Every object below a gs:// URL: its key below the URL -> its bytes."""
        bucket, _, prefix = url.removeprefix("gs://").partition("/")
        return {blob.name[len(prefix):].lstrip("/"): blob.download_as_bytes()
                for blob in self.client().list_blobs(bucket, prefix=prefix)}

    def put(self, url: str, data: bytes) -> None:
        bucket, _, key = url.removeprefix("gs://").partition("/")
        self.client().bucket(bucket).blob(key).upload_from_string(data)


def start(credentials: Path) -> GCSServer:
    credentials.write_text(json.dumps(CREDENTIALS))
    port = free_port()
    process = subprocess.Popen([str(EMULATOR), "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    wait_until_up(process, f"{endpoint}/storage/v1/b?project=test", "gcp-storage-emulator")
    return GCSServer(endpoint, credentials, process)


@pytest.fixture(scope="session")
def gcs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GCSServer]:
    server = start(tmp_path_factory.mktemp("gcs") / "credentials.json")
    try:
        yield server
    finally:
        stop(server.process)


@pytest.fixture
def gcs(gcs_server: GCSServer, monkeypatch: pytest.MonkeyPatch) -> Bucket:
    for name, value in gcs_server.env.items():
        monkeypatch.setenv(name, value)
    return Bucket(gcs_server, gcs_server.bucket())


@pytest.fixture(params=["s3", "gs"])
def store(request: pytest.FixtureRequest) -> Bucket:
    """A fresh bucket on S3 (moto), then on GCS (the emulator): the same test runs on both."""
    return request.getfixturevalue("s3" if request.param == "s3" else "gcs")
