"""Content digests of files: what keys the cache by content rather than by path.

`DigestMemo` remembers each file's digest under its (path, size, mtime, inode) in a small sqlite
database in the cache, so a recompile over unchanged inputs reads no file twice: hashing a large
audio corpus on every compile would cost minutes. A file rewritten in place keeps neither its size
and mtime (to the nanosecond) nor, usually, its inode, so an edit is always seen again.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from functools import lru_cache
from pathlib import Path

BLOCK = 1 << 22


def file_digest(path: Path) -> str:
    """blake2b-128 of a file's bytes, read in 4 MiB blocks."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        while block := handle.read(BLOCK):
            digest.update(block)
    return digest.hexdigest()


@lru_cache(maxsize=4096)
def _remembered(path: str, size: int, mtime: int, inode: int) -> str:
    return file_digest(Path(path))


def model_file_digest(path: Path) -> str:
    """file_digest, remembered for the life of the process while the file's size, mtime and inode
    stay the same: model weights name their revision in every cache key, and are large."""
    stat = os.stat(path)
    return _remembered(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ino)


def tree_digest(folder: Path) -> str:
    """A digest of a folder's files: their relative names and contents."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(folder).as_posix()}\x00{model_file_digest(path)}\x00".encode())
    return digest.hexdigest()[:32]


class DigestMemo:
    """file_digest, remembered by (path, size, mtime_ns, inode); shared by concurrent compiles."""

    def __init__(self, db: Path):
        self.db = db
        self._conn: sqlite3.Connection | None = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self.db.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self.db, timeout=60, isolation_level=None)
            self._conn.execute("CREATE TABLE IF NOT EXISTS digests (path TEXT PRIMARY KEY, size INTEGER, "
                               "mtime INTEGER, inode INTEGER, digest TEXT)")
        return self._conn

    def __call__(self, path: Path) -> str:
        stat = os.stat(path)
        key = (str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ino)
        conn = self._connection()
        row = conn.execute("SELECT digest FROM digests WHERE path = ? AND size = ? AND mtime = ? AND inode = ?",
                           key).fetchone()
        if row:
            return row[0]
        digest = file_digest(path)
        conn.execute("INSERT OR REPLACE INTO digests VALUES (?, ?, ?, ?, ?)", (*key, digest))
        return digest

    def __getstate__(self) -> dict:  # travels to worker processes without its connection
        return {"db": self.db, "_conn": None}
