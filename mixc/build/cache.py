"""The stage cache: one folder per (stage kind, key), made complete by a single atomic rename.

A stage builds into `tmp/<kind>-<key>.<pid>` and, when every file is written and fsynced, renames the
folder to `<kind>/<key>`. A folder under `<kind>/` is therefore complete by construction: a compile
killed at any point leaves only a `tmp/` folder, which the next build of that key deletes. A per-key
file lock (flock) keeps two compiles from building the same artifact; the second waits, then reuses it.

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

from mixc.build.digest import DigestMemo
from mixc.stages.store import ItemStore

CACHE_ENV = "MIXC_CACHE"
DEFAULT_FOLDER = Path(".mixc") / "cache"


def default_root(workspace: Path) -> Path:
    """`$MIXC_CACHE` when set, else `.mixc/cache` in the spec's workspace."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else workspace / DEFAULT_FOLDER


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


class Cache:
    def __init__(self, root: Path, create: bool = True):
        self.root = root
        if create:
            for sub in ("tmp", "locks"):
                (root / sub).mkdir(parents=True, exist_ok=True)
        self.items = ItemStore(root / "items")
        self.digests = DigestMemo(root / "digests.sqlite")

    def path(self, kind: str, key: str) -> Path:
        return self.root / kind / key

    def has(self, kind: str, key: str) -> bool:
        return self.path(kind, key).is_dir()

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
        return final

    def read_stats(self, kind: str, key: str) -> dict:
        path = self.path(kind, key) / "stats.json"
        return json.loads(path.read_text()) if path.exists() else {}
