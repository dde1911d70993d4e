"""Content digests of files: what keys the cache by content rather than by path."""

from __future__ import annotations

import hashlib
from pathlib import Path

BLOCK = 1 << 22


def file_digest(path: Path) -> str:
    """blake2b-128 of a file's bytes, read in 4 MiB blocks."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        while block := handle.read(BLOCK):
            digest.update(block)
    return digest.hexdigest()
