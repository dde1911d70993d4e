"""A real S3-compatible server for tests: moto in server mode, a subprocess on 127.0.0.1.

Fixtures (registered in tests/conftest.py, usable from every test folder):

- `s3_server` (session): starts `moto_server -H 127.0.0.1 -p PORT` on a free port once per test
  session, waits until it answers, stops it at the end. Yields an `S3Server`: its `endpoint`
  (http://127.0.0.1:PORT), `env` (the variables a client needs: dummy AWS credentials, a region, and
  `S3_ENDPOINT_URL`, which MosaicML Streaming, mixc and, through mixc, fsspec read), and
  `bucket(name)`, which creates a bucket and returns its `s3://name` URL.
- `s3` (per test): the server with its `env` set in this process (monkeypatch: undone after the
  test) and a fresh bucket of its own: `s3.url` is `s3://<unique bucket>`. For subprocesses, pass
  `env={**os.environ, **s3.env}` (already the case inside the test, since os.environ is patched).

Streaming's uploader needs the bucket to exist first; moto keeps everything in memory, so buckets
of one session never collide as long as each test takes a fresh one (`s3`) or names its own.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import pytest

MOTO = Path(sys.executable).with_name("moto_server")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class S3Server:
    endpoint: str
    process: subprocess.Popen | None = None
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                    "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1",
                    "S3_ENDPOINT_URL": self.endpoint}

    def client(self):
        import boto3
        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id="testing",
                            aws_secret_access_key="testing", region_name="us-east-1")

    def bucket(self, name: str | None = None) -> str:
        """Creates a bucket (a fresh unique name by default) and returns its s3:// URL."""
        name = name or f"test-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return f"s3://{name}"

    def keys(self, url: str) -> dict[str, bytes]:
        """Every object below an s3:// URL: its key below the URL -> its bytes."""
        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        client = self.client()
        out = {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                rel = obj["Key"][len(prefix):].lstrip("/")
                out[rel] = client.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
        return out

    def put(self, url: str, data: bytes) -> None:
        bucket, _, key = url.removeprefix("s3://").partition("/")
        self.client().put_object(Bucket=bucket, Key=key, Body=data)


def wait_until_up(process: subprocess.Popen, url: str, name: str, timeout: float = 60.0) -> None:
    """Wait until a server started as `process` answers at `url`; kill it and raise if it never does."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"{name} did not start on {url}") from None
            time.sleep(0.2)


def stop(process: subprocess.Popen | None) -> None:
    assert process is not None
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()


def start() -> S3Server:
    port = free_port()
    command = [str(MOTO), "-H", "127.0.0.1", "-p", str(port)] if MOTO.exists() else \
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    wait_until_up(process, endpoint, "moto server")
    return S3Server(endpoint, process)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    server = start()
    try:
        yield server
    finally:
        stop(server.process)


class Server(Protocol):
    env: dict[str, str]

    def keys(self, url: str) -> dict[str, bytes]: ...

    def put(self, url: str, data: bytes) -> None: ...


@dataclass
class Bucket:
    """One test's bucket on a server (S3 here, GCS in tests/gcs.py): `url`, and the server's `env`."""
    server: Server
    url: str

    @property
    def env(self) -> dict[str, str]:
        return self.server.env

    def keys(self, prefix: str = "") -> dict[str, bytes]:
        return self.server.keys(f"{self.url}/{prefix}".rstrip("/"))

    def put(self, key: str, data: bytes) -> None:
        self.server.put(f"{self.url}/{key}", data)


@pytest.fixture
def s3(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> Bucket:
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    return Bucket(s3_server, s3_server.bucket())

