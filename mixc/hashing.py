"""Content digests of files and folders: what keys the cache by content rather than by path, and
names model weights by their bytes. Used by every layer that reads files (backends, stages, the
cache), so it sits with the shared contracts. The cache remembers digests across runs
(`mixc.build.digest.DigestMemo`).
"""

from __future__ import annotations

import hashlib
import json
import os
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


def json_digest(value: object, length: int) -> str:
    """sha256 of a JSON value written with sorted keys, hex, cut to `length`: how plan keys and run
    keys name what they hash."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:length]
