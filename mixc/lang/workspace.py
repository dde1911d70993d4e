"""The workspace: the folder a spec's paths are relative to, and the files its globs name.

A spec's workspace root is the nearest folder above it holding `.git`, `pyproject.toml` or
`mixc.toml`; the IR stores every path relative to it, so keys never depend on where a checkout lives.
"""

from __future__ import annotations

import glob as globlib
import os
from pathlib import Path

ROOT_MARKERS = (".git", "pyproject.toml", "mixc.toml")


def workspace_root(spec_path: Path) -> Path:
    """The nearest ancestor holding .git, pyproject.toml or mixc.toml; else the spec's folder."""
    start = spec_path.resolve().parent
    for folder in (start, *start.parents):
        if any((folder / m).exists() for m in ROOT_MARKERS):
            return folder
    return start


def expand(root: Path, patterns: tuple[str, ...]) -> list[Path]:
    """Every file a tuple of workspace-relative globs names, sorted and deduplicated."""
    found: set[str] = set()
    for pattern in patterns:
        full = pattern if os.path.isabs(pattern) else str(root / pattern)
        if globlib.has_magic(full):
            found.update(p for p in globlib.glob(full, recursive=True) if os.path.isfile(p))
        elif os.path.isdir(full):
            found.update(str(p) for p in Path(full).rglob("*") if p.is_file())
        elif os.path.isfile(full):
            found.add(full)
    return [Path(p) for p in sorted(found)]
