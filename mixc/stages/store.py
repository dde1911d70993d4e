"""The per-item memo of item-wise stages: immutable files named by content keys.

Stages that map recordings one by one (the audio stages) store each recording's result under
`<root>/<kind>/<key[:2]>/<key><suffix>`, keyed by the stage's parameters and the recording's upstream
item key, never by a path. Each item is written beside its place and renamed into it, so a stage
killed half-way keeps every finished recording, and a source that gains one file costs only that
file's work. The cache owns the root (`items/` in the cache folder).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


class ItemStore:
    """Per-recording results of item-wise stages: immutable files named by content keys."""

    def __init__(self, root: Path):
        self.root = root

    def path(self, kind: str, key: str, suffix: str) -> Path:
        return self.root / kind / key[:2] / f"{key}{suffix}"

    def has(self, kind: str, key: str, suffix: str) -> bool:
        return self.path(kind, key, suffix).is_file()

    def put(self, kind: str, key: str, suffix: str, write: Callable[[Path], object]) -> Path:
        """`write(tmp)` makes the item's file; it becomes visible only once complete (fsync + rename)."""
        final = self.path(kind, key, suffix)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
        write(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, final)
        return final
