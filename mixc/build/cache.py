"""The stage cache: one folder per (stage kind, key), made complete by a single atomic rename.

A stage builds into `tmp/<kind>-<key>.<pid>` and, when every file is written and fsynced, renames the
folder to `<kind>/<key>`. A folder under `<kind>/` is therefore complete by construction: a compile
killed at any point leaves only a `tmp/` folder, which the next build of that key deletes. A per-key
file lock (flock) keeps two compiles from building the same artifact; the second waits, then reuses it.

Shared over object storage (`--cache-dir s3://bucket/cache` or gs://, or `$MIXC_CACHE` set to a URL): the
cache stays a local folder (locks, scratch folders and atomic renames need a real file system:
`.mixc/cache` in the workspace), and the URL is an artifact store shared by every machine. A key
missing locally is pulled from `<url>/<kind>/<key>/` when its completion marker `<kind>/<key>.done`
is there (the marker lists the files; it is uploaded last); a stage built here is pushed after its
commit, marker last. Stages are deterministic, so two machines racing to push one key write the
same bytes. Per-recording items and the digest memo stay local.

Items: stages that map recordings one by one (the audio stages) also memoise each recording's result
in `items/` (`mixc.stages.store.ItemStore`), and `digests.sqlite` remembers the content digest of
every input file (`mixc.build.digest.DigestMemo`).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mixc import storage
from mixc.build.digest import DigestMemo
from mixc.stages.store import ItemStore

CACHE_ENV = "MIXC_CACHE"
DEFAULT_FOLDER = Path(".mixc") / "cache"


def default_root(workspace: Path) -> Path:
    """`$MIXC_CACHE` when set (to a folder), else `.mixc/cache` in the spec's workspace."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env and not storage.is_remote(env) else workspace / DEFAULT_FOLDER


def open_cache(cache_dir: str | Path | None, workspace: Path, create: bool = True) -> Cache:
    """The cache a command uses: `cache_dir` (a folder or an s3:// / gs:// URL), else `$MIXC_CACHE`
    (likewise), else `.mixc/cache` in the workspace. A URL is shared over object storage, with the
    workspace's `.mixc/cache` as the local working cache. `create` False: look, never build or pull."""
    chosen = str(cache_dir) if cache_dir is not None else os.environ.get(CACHE_ENV)
    if chosen and storage.is_remote(chosen):
        if create:
            storage.check_bucket(chosen)
        return Cache(workspace / DEFAULT_FOLDER, create, remote=chosen.rstrip("/"))
    return Cache(Path(cache_dir) if cache_dir is not None else default_root(workspace), create)


def _fsync_tree(folder: Path) -> None:
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


DONE = ".done"  # the remote completion marker of <kind>/<key>/: JSON {"files": {path: bytes}}


class Cache:
    def __init__(self, root: Path, create: bool = True, remote: str | None = None):
        self.root = root
        self.remote = remote  # an object-storage URL shared with other machines (see the module doc)
        self.pull = create  # a read-only look (`mixc plan`) never downloads an artifact
        if create:
            for sub in ("tmp", "locks"):
                (root / sub).mkdir(parents=True, exist_ok=True)
        self.items = ItemStore(root / "items")
        self.digests = DigestMemo(root / "digests.sqlite")

    def path(self, kind: str, key: str) -> Path:
        return self.root / kind / key

    def has(self, kind: str, key: str) -> bool:
        """Whether the artifact is here; with a remote store, one found there is pulled first."""
        if self.path(kind, key).is_dir():
            return True
        if self.remote is None:
            return False
        if not self.pull:
            return storage.exists(self._marker(kind, key))
        return self._pull(kind, key)

    def _marker(self, kind: str, key: str) -> str:
        assert self.remote is not None
        return storage.join(self.remote, kind, f"{key}{DONE}")

    def _pull(self, kind: str, key: str) -> bool:
        """Download a complete remote artifact into place (atomically, like a build); False if the
        store has none."""
        assert self.remote is not None
        marker = self._marker(kind, key)
        if not storage.exists(marker):
            return False
        files = json.loads(storage.read_bytes(marker))["files"]
        folder = self.root / "tmp" / f"{kind}-{key}.pull.{os.getpid()}"
        shutil.rmtree(folder, ignore_errors=True)
        for rel in sorted(files):
            storage.download(storage.join(self.remote, kind, key, rel), folder / rel)
        folder.mkdir(parents=True, exist_ok=True)  # an artifact without files
        final = self.path(kind, key)
        final.parent.mkdir(parents=True, exist_ok=True)
        _fsync_tree(folder)
        try:
            os.rename(folder, final)
        except OSError:  # another compile put it in place meanwhile: the same bytes
            shutil.rmtree(folder, ignore_errors=True)
        return True

    def push(self, kind: str, key: str) -> None:
        """Upload a committed artifact to the remote store, its marker last (no-op without one, or
        when the store already has it)."""
        if self.remote is None or storage.exists(self._marker(kind, key)):
            return
        final = self.path(kind, key)
        files = {p.relative_to(final).as_posix(): p.stat().st_size for p in sorted(final.rglob("*")) if p.is_file()}
        for rel in files:
            storage.upload(final / rel, storage.join(self.remote, kind, key, rel))
        marker = self.root / "tmp" / f"{kind}-{key}{DONE}.{os.getpid()}"
        marker.write_text(json.dumps({"files": files}, sort_keys=True) + "\n")
        try:
            storage.upload(marker, self._marker(kind, key))
        finally:
            marker.unlink(missing_ok=True)

    @contextmanager
    def lock(self, kind: str, key: str) -> Iterator[None]:
        with open(self.root / "locks" / f"{kind}-{key}.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def scratch(self, kind: str, key: str) -> Path:
        """A fresh build folder; leftovers of killed builds of this key are removed (we hold its lock)."""
        for stale in (self.root / "tmp").glob(f"{kind}-{key}.*"):
            shutil.rmtree(stale, ignore_errors=True)
        folder = self.root / "tmp" / f"{kind}-{key}.{os.getpid()}"
        folder.mkdir(parents=True)
        return folder

    def commit(self, kind: str, key: str, scratch: Path) -> Path:
        final = self.path(kind, key)
        final.parent.mkdir(parents=True, exist_ok=True)
        _fsync_tree(scratch)
        os.rename(scratch, final)
        self.push(kind, key)
        return final

    def read_stats(self, kind: str, key: str) -> dict:
        path = self.path(kind, key) / "stats.json"
        return json.loads(path.read_text()) if path.exists() else {}
