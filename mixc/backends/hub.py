"""The local Hugging Face hub cache, read only: mixc never downloads weights while compiling, but a
model a user fetched with `hf download ORG/NAME` is found where huggingface_hub put it."""

from __future__ import annotations

import os
from pathlib import Path


def hf_cache() -> Path:
    """The Hugging Face hub cache, as huggingface_hub finds it (HF_HUB_CACHE, HF_HOME, ~/.cache),
    read at call time so that a changed environment is seen."""
    from huggingface_hub import constants

    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    return Path(constants.HF_HUB_CACHE)


def cached_file(repo: str, filename: str) -> Path | None:
    """A file of a hub repository from the local cache only (its `main` snapshot); never downloads."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo, filename, cache_dir=hf_cache())
    return Path(found) if isinstance(found, str) else None


def cached_snapshot(repo: str, revision: str | None) -> Path | None:
    """The folder of a hub repository's snapshot (`revision`, else `main`) in the local cache, or
    None when the cache does not hold it; never downloads."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        found = snapshot_download(repo, revision=revision, cache_dir=hf_cache(), local_files_only=True)
    except (LocalEntryNotFoundError, HFValidationError, FileNotFoundError):
        return None
    return Path(found)
