"""`mixc compile --out s3://bucket/prefix` (or gs://): the output folder, built locally, then uploaded.

The compile writes the folder as it always does, into a local staging folder of the cache
(`<cache>/out/<digest of the URL>/`), then `publish` mirrors it to the URL through Streaming's
uploader (`CloudUploader`, the one its `MDSWriter` uploads shards with; `S3_ENDPOINT_URL` names an
S3-compatible server):

1. the remote `plan.json` goes first: from then on the remote folder is incomplete, as locally;
2. every other file whose object is missing or differs (size, and the S3 ETag: the MD5 boto3
   computes, per 8 MiB part for large files) is uploaded; objects already holding the same bytes are
   kept, so a rerun after an interrupted upload sends only what is missing;
3. objects of the folders the compile owns (`streams/`, `tokenizer/`, `eval/`, `topics/`) that the
   new output lacks are deleted (a stream the spec no longer has);
4. `plan.json` last: a remote folder with a plan.json holds everything that plan names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mixc import storage
from mixc.build.cache import Cache

PLAN = "plan.json"
OWNED = ("streams/", "tokenizer/", "eval/", "topics/")


@dataclass
class Published:
    """What one publish did, by path below the folder."""
    url: str
    uploaded: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


def staging(cache: Cache, url: str) -> Path:
    """The local folder a compile for `url` writes before it is uploaded (same URL, same folder)."""
    return cache.root / "out" / storage.url_digest(url)


def _uploader(local: Path, url: str):
    from streaming.base.storage.upload import CloudUploader

    with storage.errors(url):
        return CloudUploader.get(out=(str(local), url.rstrip("/")), keep_local=True, exist_ok=True)


def publish(local: Path, url: str, on_file: Callable[[str], None] | None = None) -> Published:
    """Mirror the compiled folder `local` to `url`, plan.json last; resumable (see the module doc).
    `on_file` is called with each path once it is uploaded."""
    storage.check_bucket(url)
    done = Published(url)
    remote = storage.listing(url)
    uploader = _uploader(local, url)
    if PLAN in remote:
        storage.remove(storage.join(url, PLAN))
    files = sorted(p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file())
    if PLAN not in files:
        raise storage.MissingObject(f"{local / PLAN} is missing: the compile did not finish", "rerun the compile")
    for rel in files:
        if rel == PLAN:
            continue
        if rel in remote and storage.same_bytes(local / rel, remote[rel]):
            done.kept.append(rel)
        else:
            _send(uploader, url, rel, done, on_file)
    for rel in sorted(set(remote) - set(files)):
        if rel.startswith(OWNED):
            storage.remove(storage.join(url, rel))
            done.removed.append(rel)
    _send(uploader, url, PLAN, done, on_file)
    return done


def _send(uploader, url: str, rel: str, done: Published, on_file: Callable[[str], None] | None) -> None:
    with storage.errors(storage.join(url, rel)):
        uploader.upload_file(rel)
    done.uploaded.append(rel)
    if on_file:
        on_file(rel)
