"""Object storage: `s3://` and `gs://` URLs, read and written through fsspec (s3fs, gcsfs).

Where mixc accepts a folder it may accept a URL instead: `mixc compile --out s3://bucket/prefix`,
`--cache-dir s3://bucket/cache`, `mixc train s3://bucket/prefix/plan.json`, and sources' files. The
compiler and the runtime still work on local files: this module lists, fetches and stores objects,
and turns what goes wrong into errors a user can act on (missing credentials, a missing bucket, an
endpoint that does not answer), never a botocore or google-api-core traceback.

S3: `S3_ENDPOINT_URL` names an S3-compatible server (MinIO, Ceph, moto): the variable MosaicML
Streaming reads, so the shards' uploader and loader, fsspec and mixc all talk to the same one.
Credentials are boto's usual ones (`AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`, `AWS_PROFILE`,
an instance role).

Google Cloud Storage: credentials are Google's Application Default Credentials
(`GOOGLE_APPLICATION_CREDENTIALS`, `gcloud auth application-default login`, a VM's service
account), what Streaming's and Composer's GCS clients use too. `STORAGE_EMULATOR_HOST` names an
emulator (fake-gcs-server, gcp-storage-emulator); the Google clients all honour it.
"""

from __future__ import annotations

import base64
import hashlib
import os
import posixpath
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from mixc.errors import DataError, SetupError
from mixc.hashing import json_digest

ENDPOINT_ENV = "S3_ENDPOINT_URL"
GCS_EMULATOR_ENV = "STORAGE_EMULATOR_HOST"
SCHEMES = ("s3", "gs", "gcs")
# boto3's upload_file (what Streaming's uploader calls) splits files from 8 MiB into 8 MiB parts;
# an S3 ETag is then the MD5 of the parts' MD5s, "-" and the part count (else the file's MD5)
MULTIPART = 8 * 1024 * 1024


class StorageError(SetupError):
    """Object storage refused or could not be reached: no credentials, no such bucket, an endpoint
    that does not answer, access denied. The message names the URL."""


class MissingObject(DataError):
    """A URL names an object or folder that is not in its bucket."""


def is_remote(path: object) -> bool:
    """Whether a path is an object-storage URL (s3://, gs://) rather than a local path."""
    return isinstance(path, str) and urlparse(path).scheme in SCHEMES and "://" in path


def join(url: str, *parts: str) -> str:
    """`url` with `parts` appended, `/`-separated."""
    return posixpath.join(url.rstrip("/"), *(p.strip("/") for p in parts if p))


def bucket_of(url: str) -> str:
    return urlparse(url).netloc


def _key(url: str) -> str:
    """The bucket/key form fsspec takes (no scheme)."""
    parsed = urlparse(url)
    return f"{parsed.netloc}{parsed.path}".rstrip("/")


# what an S3 client is made from: a filesystem is reused while these (and the process) stay the same
_CLIENT_ENV = (ENDPOINT_ENV, "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
               "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE",
               GCS_EMULATOR_ENV, "GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT")
_filesystems: dict[tuple, Any] = {}


def filesystem(url: str) -> Any:
    """The fsspec filesystem for a URL; S3 honours `$S3_ENDPOINT_URL`. Listings are not cached:
    other writers (Streaming's uploader, a second compile) change the bucket under us. One instance
    per process and client settings (making a client costs a fraction of a second)."""
    import fsspec

    scheme = urlparse(url).scheme
    key = (scheme, os.getpid(), *(os.environ.get(name) for name in _CLIENT_ENV))
    if key not in _filesystems:
        if scheme == "s3":
            endpoint = os.environ.get(ENDPOINT_ENV) or None
            _filesystems[key] = fsspec.filesystem("s3", endpoint_url=endpoint, use_listings_cache=False,
                                                  skip_instance_cache=True)
        elif scheme == "gs":
            _filesystems[key] = _gcs_filesystem()
        else:
            raise StorageError(f"{url}: write Google Cloud Storage URLs as gs://BUCKET/PATH",
                               "gs:// is the form MosaicML Streaming and Composer read as well")
    return _filesystems[key]


def _gcs_filesystem() -> Any:
    """gcsfs's filesystem. gcsfs 2026.6 asks GCS's gRPC control plane what kind each bucket is;
    an emulator has none (every call would wait out a minute's timeout), so there mixc uses the
    plain JSON-API filesystem, the one gcsfs itself falls back to."""
    if os.environ.get(GCS_EMULATOR_ENV):
        from gcsfs.core import GCSFileSystem
    else:
        from gcsfs import GCSFileSystem
    return GCSFileSystem(use_listings_cache=False, skip_instance_cache=True)


@dataclass(frozen=True)
class _Store:
    """What an error message says of one kind of store."""
    endpoint_env: str  # the variable that points the clients at another server
    server: str  # what such a server is
    make_bucket: str  # the command that creates a bucket
    credentials: str  # where credentials come from


_STORES = {
    "s3": _Store(ENDPOINT_ENV, "an S3-compatible server", "aws s3 mb s3://BUCKET",
                 "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), and S3_ENDPOINT_URL for an "
                 "S3-compatible server"),
    "gs": _Store(GCS_EMULATOR_ENV, "a GCS emulator", "gcloud storage buckets create gs://BUCKET",
                 "set GOOGLE_APPLICATION_CREDENTIALS or log in with `gcloud auth application-default login`"),
}


def _store(url: str) -> tuple[_Store, str]:
    """The store a URL is on, and " at ENDPOINT" when its endpoint variable names another server."""
    store = _STORES["gs" if urlparse(url).scheme == "gs" else "s3"]
    endpoint = os.environ.get(store.endpoint_env)
    return store, f" at {endpoint}" if endpoint else ""


def missing_bucket(url: str) -> StorageError:
    store, where = _store(url)
    return StorageError(f"bucket '{bucket_of(url)}' does not exist{where} ({url})",
                        f"create it first (e.g. `{store.make_bucket}`), or fix the URL")


def translate(exc: Exception, url: str) -> Exception:
    """The MixcError a storage failure on `url` means (or `exc` itself when it is not one)."""
    name = type(exc).__name__
    text = str(exc)
    store, where = _store(url)
    if name in ("NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError",
                "DefaultCredentialsError") or "Unable to locate credentials" in text or \
            "`GCS_KEY` and `GCS_SECRET`" in text:  # Streaming's GCS clients found no credentials
        return StorageError(f"no credentials to reach {url}", store.credentials)
    if name in ("EndpointConnectionError", "ConnectTimeoutError", "ClientConnectorError", "ConnectionError",
                "ConnectionRefusedError", "ServerDisconnectedError", "ReadTimeoutError") or \
            "Could not connect to the endpoint" in text or "Cannot connect to host" in text:
        return StorageError(f"the object store{where} does not answer ({url})",
                            f"check {store.endpoint_env} ({store.server}'s URL) and the network" if where
                            else f"check the network, or set {store.endpoint_env} for {store.server}")
    if "NoSuchBucket" in text or "bucket does not exist" in text or "specified bucket" in text:
        return missing_bucket(url)
    if isinstance(exc, PermissionError) or "AccessDenied" in text or "InvalidAccessKeyId" in text or \
            "SignatureDoesNotMatch" in text or "Forbidden" in text or " 403" in text:
        return StorageError(f"access to {url} is denied{where} ({text.strip() or name})",
                            "check the credentials and the bucket's permissions; " + store.credentials)
    if isinstance(exc, FileNotFoundError) or "NoSuchKey" in text or "Not Found" in text or " 404" in text:
        if urlparse(url).scheme == "gs" and not _bucket_answers(url):  # gcsfs says 404 alike for both
            return missing_bucket(url)
        return MissingObject(f"{url} does not exist", "check the URL (and that the compile that writes it finished)")
    return exc


def _bucket_answers(url: str) -> bool:
    """Whether the URL's bucket exists (True when that cannot be told: the first error stands)."""
    try:
        return bool(filesystem(url).exists(bucket_of(url)))
    except Exception:
        return True


@contextmanager
def errors(url: str) -> Iterator[None]:
    """Inside: storage failures on `url` become StorageError / MissingObject with hints."""
    try:
        yield
    except (StorageError, MissingObject):
        raise
    except Exception as exc:
        mapped = translate(exc, url)
        if mapped is exc:
            raise
        raise mapped from None


@dataclass(frozen=True)
class Entry:
    """An object under a prefix: its path below the prefix, its size, its ETag (changes whenever the
    object does), and the MD5 of its bytes in hex where the store reports one (GCS's md5Hash; an S3
    ETag is an MD5 only for single-part uploads, so S3 objects leave it empty)."""
    rel: str
    size: int
    etag: str
    md5: str = ""


def _entry(rel: str, info: dict) -> Entry:
    """An Entry from what fsspec's `info` / `find(detail=True)` says of an object (s3fs or gcsfs)."""
    md5 = base64.b64decode(info["md5Hash"]).hex() if info.get("md5Hash") else ""
    return Entry(rel, int(info.get("size") or 0), str(info.get("ETag") or info.get("etag") or "").strip('"'), md5)


def check_bucket(url: str) -> None:
    """Raise StorageError unless the URL's bucket exists and answers."""
    fs = filesystem(url)
    with errors(url):
        if not fs.exists(bucket_of(url)):
            raise missing_bucket(url)


def listing(url: str) -> dict[str, Entry]:
    """Every object below the folder `url`, by its `/`-separated path below it (empty: none)."""
    fs = filesystem(url)
    base = _key(url)
    with errors(url):
        found = fs.find(base, detail=True)
    out = {}
    for key, info in found.items():
        if info.get("type", "file") != "file" or key.rstrip("/") == base:
            continue
        rel = key[len(base):].lstrip("/")
        out[rel] = _entry(rel, info)
    return out


def _matches(pattern: str) -> dict[str, Entry]:
    """Object URL -> its Entry, for every object a glob or URL names (see `glob`)."""
    fs = filesystem(pattern)
    scheme = urlparse(pattern).scheme
    with errors(pattern):
        if any(c in pattern for c in "*?["):
            found = fs.glob(_key(pattern), detail=True)
        elif fs.isdir(_key(pattern)):
            found = fs.find(_key(pattern), detail=True)
        elif fs.exists(_key(pattern)):
            found = {_key(pattern): fs.info(_key(pattern))}
        else:
            found = {}
    return {f"{scheme}://{k}": _entry(posixpath.basename(k), v) for k, v in found.items()
            if v.get("type", "file") == "file"}


def glob(pattern: str) -> list[str]:
    """The object URLs a glob (`*`, `**`, `?`) names, sorted; a URL without magic names itself, or
    every object below it when it is a folder."""
    return sorted(_matches(pattern))


def mirror(patterns: tuple[str, ...] | list[str], root: Path) -> list[tuple[str, Path]]:
    """Every object the URL globs name, as (its URL, a local copy under `root`), sorted by URL.

    The copy lives at `root/<scheme>/<bucket>/<key>` with a stamp of the object's size and ETag
    beside it; an object whose size or ETag changed is fetched again, an unchanged one never is. A
    URL without magic that names no object is a MissingObject error (a glob may match nothing)."""
    found: dict[str, Entry] = {}
    for pattern in patterns:
        matched = _matches(pattern)
        if not matched and not any(c in pattern for c in "*?["):
            raise MissingObject(f"{pattern} does not exist", "check the source's `files` URL")
        found |= matched
    out = []
    for url, entry in sorted(found.items()):
        local = root / urlparse(url).scheme / _key(url)
        stamp = local.with_name(f"{local.name}.mixc-object")
        want = f'{{"size": {entry.size}, "etag": "{entry.etag}"}}\n'
        if not (local.is_file() and stamp.is_file() and stamp.read_text() == want):
            download(url, local)
            stamp.write_text(want)
        out.append((url, local))
    return out


def info(url: str) -> Entry:
    """One object's size and ETag; MissingObject when it is not there."""
    fs = filesystem(url)
    with errors(url):
        found = fs.info(_key(url))
    return _entry(posixpath.basename(url), found)


def exists(url: str) -> bool:
    fs = filesystem(url)
    with errors(url):
        return bool(fs.exists(_key(url)))


def read_bytes(url: str) -> bytes:
    fs = filesystem(url)
    with errors(url):
        return bytes(fs.cat_file(_key(url)))


def download(url: str, local: Path) -> Path:
    """Fetch one object to `local`, atomically (a partial download never looks finished)."""
    local.parent.mkdir(parents=True, exist_ok=True)
    tmp = local.with_name(f"{local.name}.{os.getpid()}.part")
    fs = filesystem(url)
    try:
        with errors(url):
            fs.get_file(_key(url), str(tmp))
        os.replace(tmp, local)
    finally:
        tmp.unlink(missing_ok=True)
    return local


def upload(local: Path, url: str) -> None:
    """Store one local file at `url`."""
    fs = filesystem(url)
    with errors(url):
        fs.put_file(str(local), _key(url))


def remove(url: str) -> None:
    """Delete one object if it is there."""
    fs = filesystem(url)
    with errors(url):
        if fs.exists(_key(url)):
            fs.rm_file(_key(url))


def etag(path: Path, part: int = MULTIPART) -> str:
    """The ETag S3 gives a file uploaded by boto3's `upload_file` with its default transfer settings
    (what Streaming's uploader uses): MD5 of the bytes below `part`, else MD5 of the parts' MD5s
    followed by `-N`. Lets a resumed upload see which objects already hold these bytes."""
    digests = []
    with path.open("rb") as handle:
        while block := handle.read(part):
            digests.append(hashlib.md5(block, usedforsecurity=False).digest())
    if path.stat().st_size < part:
        return digests[0].hex() if digests else hashlib.md5(b"", usedforsecurity=False).hexdigest()
    return f"{hashlib.md5(b''.join(digests), usedforsecurity=False).hexdigest()}-{len(digests)}"


def md5(path: Path) -> str:
    """The MD5 of a file's bytes, hex."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, lambda: hashlib.md5(usedforsecurity=False)).hexdigest()


def same_bytes(local: Path, remote: Entry) -> bool:
    """Whether a remote object already holds a local file's bytes: same size, and the same MD5 (GCS)
    or the same ETag (S3; a GCS object with no MD5, a composed one, never counts as the same)."""
    if remote.size != local.stat().st_size:
        return False
    if remote.md5:
        return remote.md5 == md5(local)
    return not remote.etag or remote.etag == etag(local)


def url_digest(url: str, length: int = 16) -> str:
    """A short, stable folder name for a URL (local mirrors and caches of remote folders)."""
    return json_digest(url.rstrip("/"), length)
