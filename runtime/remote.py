"""`mixc train s3://bucket/prefix/plan.json` (or gs://): a compiled plan read from object storage, verified.

The plan folder is mirrored into a local data cache, `<data cache>/<name>-<digest of the URL>/`
(`--data-cache`, else `$MIXC_CACHE/streams`, else `~/.cache/mixc/streams`; every node of a
multi-node job wants its own):

- up front, plan.json and mix.lock, then every file mix.lock pins that is not a shard (each
  stream's `index.json`, the merged `streams/index.json`, the eval sets) and the tokenizer are
  downloaded and checked against mix.lock; shards already in the cache from an earlier run are
  checked too (a stat, then sha256, split between the processes of the machine);
- the shards stream in while training: one Streaming `Stream(remote=URL/streams/<leaf>,
  local=<mirror>/streams/<leaf>)` per stream, whose downloads are each checked against mix.lock
  before Streaming reads them (`VerifiedStream`). A shard that differs is deleted from the cache
  and stops the run with `ShardMismatch`, the error a local plan gives.

Compressed shards stay in the cache beside their decompressed copy (`keep_zip`), so a rerun checks
the bytes mix.lock pins, and downloads nothing it already holds.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlparse

from streaming import Stream, StreamingDataset

from mixc import storage
from mixc.planfile import Lock, ShardLock, TrainingPlan, sha256_file
from runtime.verify import ShardMismatch, check_file, verify_plan

CACHE_ENV = "MIXC_CACHE"
MISMATCH = ".mismatch"  # written by a failed shard check in any process or thread; read by train()


def default_data_cache() -> Path:
    """`$MIXC_CACHE/streams` when set (and local), else `~/.cache/mixc/streams`."""
    env = os.environ.get(CACHE_ENV)
    if env and not storage.is_remote(env):
        return Path(env).expanduser() / "streams"
    return Path.home() / ".cache" / "mixc" / "streams"


def mirror_folder(plan_url: str, data_cache: Path) -> Path:
    """The local folder mirroring the remote plan folder: readable name, then a digest of its URL."""
    folder = plan_url.rsplit("/", 1)[0]
    name = PurePosixPath(urlparse(folder).path).name or urlparse(folder).netloc
    return data_cache / f"{name}-{storage.url_digest(folder, 12)}"


def _fetch_checked(url: str, local: Path, pin: ShardLock) -> None:
    """Download one pinned file unless the cache holds it, and check it; a bad copy is removed."""
    if not local.is_file():
        storage.download(url, local)
    try:
        check_file(local, pin, url)
    except ShardMismatch:
        local.unlink(missing_ok=True)
        raise


def is_shard(plan: TrainingPlan, path: str) -> bool:
    """Whether a pinned path is one of the streams' shard files (what Streaming fetches lazily)."""
    parent = PurePosixPath(path).parent.as_posix()
    return PurePosixPath(path).name != "index.json" and any(parent == s.path for s in plan.streams)


def fetch_plan(plan_url: str, data_cache: Path, *, part: int = 0, parts: int = 1) -> Path:
    """Mirror a remote plan's folder (all but the shards) into the data cache, checked against its
    mix.lock; returns the local plan.json. See the module docstring."""
    folder_url = plan_url.rsplit("/", 1)[0]
    local = mirror_folder(plan_url, data_cache)
    local.mkdir(parents=True, exist_ok=True)
    (local / MISMATCH).unlink(missing_ok=True)
    for name in ("plan.json", "mix.lock"):
        storage.download(storage.join(folder_url, name), local / name)  # always fresh: they name everything else
    plan, lock = TrainingPlan.read(local / "plan.json"), Lock.read(local / "mix.lock")
    verify_plan(plan, lock)
    for pin in lock.shards:
        if not is_shard(plan, pin.path):
            _fetch_checked(storage.join(folder_url, pin.path), local / pin.path, pin)
    tokenizer = local / plan.vocab.tokenizer  # mix.lock pins its sha256 only
    if not tokenizer.is_file() or sha256_file(tokenizer) != lock.tokenizer:
        storage.download(storage.join(folder_url, plan.vocab.tokenizer), tokenizer)
        if sha256_file(tokenizer) != lock.tokenizer:
            tokenizer.unlink()
            raise ShardMismatch(f"{plan.vocab.tokenizer} from {folder_url} does not match mix.lock's tokenizer sha256 "
                                f"{lock.tokenizer}")
    cached = [p for p in lock.shards if is_shard(plan, p.path) and (local / p.path).is_file()]
    for pin in cached[part::parts]:
        try:
            check_file(local / pin.path, pin, f"the data cache ({local})")
        except ShardMismatch as exc:
            raise ShardMismatch(exc.message, f"remove {local} (the local copy of {folder_url}) and rerun") from None
    return local / "plan.json"


def pins_of(lock: Lock, stream_path: str) -> dict[str, ShardLock]:
    """A stream's pinned files by basename."""
    return {PurePosixPath(p.path).name: p for p in lock.shards
            if PurePosixPath(p.path).parent.as_posix() == stream_path}


class VerifiedStream(Stream):
    """A Streaming `Stream` whose every download is checked against mix.lock before it is read: a
    file that differs is deleted, recorded in the mirror's `.mismatch` (so `train` reports it even
    when Streaming's download thread hit it) and raised as ShardMismatch."""

    def __init__(self, *, pins: Mapping[str, ShardLock], mirror: str, label: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.pins, self.mirror, self.label = dict(pins), mirror, label

    def _download_file(self, from_basename: str, to_basename: str | None = None) -> str:
        local = super()._download_file(from_basename, to_basename)
        pin = self.pins.get(from_basename)
        path = Path(local)
        try:
            if pin is None:
                raise ShardMismatch(f"{self.label}/{from_basename} is not pinned by mix.lock")
            check_file(path, pin, str(self.remote))
        except ShardMismatch as problem:
            path.unlink(missing_ok=True)
            (Path(self.mirror) / MISMATCH).write_text(problem.message + "\n")
            raise
        return local


class RemoteDataset(StreamingDataset):
    """A StreamingDataset over VerifiedStreams whose failed shard check ends the epoch with the
    ShardMismatch, not a hang. Streaming 0.13's download threads count themselves out of an
    iteration only when they finish normally; one that raises leaves the iterator waiting for it
    forever. Here a thread that raises is counted out too, and the iteration it cut short raises
    the mismatch it recorded."""

    def __init__(self, *, mirror: Path, **kwargs: Any):
        super().__init__(**kwargs)
        self.mirror = mirror

    def _prepare_thread(self, it: Any) -> None:
        try:
            super()._prepare_thread(it)
        except BaseException:
            it.on_exit()
            raise

    def _ready_thread(self, it: Any) -> None:
        try:
            super()._ready_thread(it)
        except BaseException:
            it.on_exit()
            raise

    def __iter__(self) -> Any:
        yield from super().__iter__()
        if (found := mismatch(self.mirror)) is not None:
            raise found


def remote_streams(plan: TrainingPlan, plan_dir: Path, plan_url: str) -> list[Stream]:
    """One VerifiedStream per compiled stream: remote under the plan's URL, local in its mirror."""
    folder_url = plan_url.rsplit("/", 1)[0]
    lock = Lock.read(plan_dir / "mix.lock")
    return [VerifiedStream(remote=storage.join(folder_url, s.path), local=str(plan_dir / s.path), choose=s.choose,
                           keep_zip=True, pins=pins_of(lock, s.path), mirror=str(plan_dir), label=s.path)
            for s in plan.streams]


def mismatch(plan_dir: Path) -> ShardMismatch | None:
    """The shard check that failed during training, if one did (in any process of this machine)."""
    marker = plan_dir / MISMATCH
    if marker.is_file():
        return ShardMismatch(marker.read_text().strip(), "the remote shards are not those mix.lock pins; recompile "
                             "with `mixc compile SPEC --out URL`")
    return None
