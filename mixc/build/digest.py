"""The cache's memo of file digests, so a recompile over unchanged inputs reads no file twice.

`DigestMemo` remembers each file's digest under its (path, size, mtime, inode) in a small sqlite
database in the cache: hashing a large audio corpus on every compile would cost minutes. A file
rewritten in place keeps neither its size and mtime (to the nanosecond) nor, usually, its inode, so
an edit is always seen again.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from mixc.hashing import file_digest


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
