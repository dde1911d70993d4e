"""mixc.storage against a real S3-compatible server (moto, started by the `s3_server` fixture):
listing, globbing, transfers, the ETag a resumed upload compares, and errors a user can act on."""

from __future__ import annotations

import pytest

from mixc import storage
from mixc.storage import MissingObject, StorageError


def test_is_remote():
    assert storage.is_remote("s3://bucket/x") and storage.is_remote("gs://b/y")
    assert not storage.is_remote("build/out") and not storage.is_remote("/abs/path")
    assert not storage.is_remote("file:///tmp/x")


def test_round_trip_listing_and_glob(s3, tmp_path):
    src = tmp_path / "a.txt"
    src.write_bytes(b"hello")
    storage.upload(src, f"{s3.url}/data/a.txt")
    s3.put("data/sub/b.jsonl", b"{}\n")
    s3.put("data/sub/c.txt", b"c")
    assert set(storage.listing(f"{s3.url}/data")) == {"a.txt", "sub/b.jsonl", "sub/c.txt"}
    assert storage.glob(f"{s3.url}/data/**/*.txt") == [f"{s3.url}/data/a.txt", f"{s3.url}/data/sub/c.txt"]
    assert storage.glob(f"{s3.url}/data/sub") == [f"{s3.url}/data/sub/b.jsonl", f"{s3.url}/data/sub/c.txt"]
    assert storage.glob(f"{s3.url}/data/none*") == []
    got = storage.download(f"{s3.url}/data/a.txt", tmp_path / "copy" / "a.txt")
    assert got.read_bytes() == b"hello"
    assert storage.read_bytes(f"{s3.url}/data/sub/c.txt") == b"c"
    storage.remove(f"{s3.url}/data/sub/c.txt")
    assert not storage.exists(f"{s3.url}/data/sub/c.txt")


@pytest.mark.parametrize("size", [0, 5, storage.MULTIPART + 3])
def test_etag_matches_what_s3_reports(s3, tmp_path, size):
    """The ETag computed locally is the one S3 gives an upload through boto3's upload_file (what
    Streaming's uploader calls), multipart uploads included."""
    import boto3
    path = tmp_path / "f.bin"
    path.write_bytes(bytes(range(256)) * (size // 256) + b"x" * (size % 256))
    client = boto3.client("s3", endpoint_url=s3.server.endpoint)
    client.upload_file(str(path), s3.url.removeprefix("s3://"), "f.bin")
    entry = storage.listing(s3.url)["f.bin"]
    assert entry.size == size and entry.etag == storage.etag(path)
    assert storage.same_bytes(path, entry)
    path.write_bytes(path.read_bytes()[:-1] + b"y") if size else None
    assert storage.same_bytes(path, entry) == (size == 0)


def test_missing_bucket_is_a_clear_error(s3):
    with pytest.raises(StorageError, match="bucket 'no-such-bucket' does not exist") as info:
        storage.listing("s3://no-such-bucket/x")
    assert "create it" in (info.value.hint or "")
    with pytest.raises(StorageError, match="does not exist"):
        storage.check_bucket("s3://no-such-bucket/x")


def test_missing_object_is_a_data_error(s3, tmp_path):
    with pytest.raises(MissingObject, match="does not exist"):
        storage.download(f"{s3.url}/nothing.txt", tmp_path / "x")
    assert not list(tmp_path.iterdir()) or not (tmp_path / "x").exists()


def test_unreachable_endpoint_is_a_clear_error(s3, monkeypatch):
    from tests.s3 import free_port
    monkeypatch.setenv("S3_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with pytest.raises(StorageError, match="does not answer") as info:
        storage.listing(f"{s3.url}/x")
    assert "S3_ENDPOINT_URL" in (info.value.hint or "")


def test_missing_credentials_are_a_clear_error(s3, monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(StorageError, match="no credentials") as info:
        storage.listing(f"{s3.url}/x")
    assert "AWS_ACCESS_KEY_ID" in (info.value.hint or "")


def test_a_gs_url_is_refused_with_the_s3_compatible_route():
    with pytest.raises(storage.StorageError) as caught:
        storage.exists("gs://bucket/x")
    assert "gs:// is not readable here" in caught.value.message
    assert "S3_ENDPOINT_URL=https://storage.googleapis.com" in (caught.value.hint or "")
