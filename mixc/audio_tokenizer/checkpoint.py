"""A tokenizer checkpoint is a folder: `config.json` (kind, preset, levels, frame rate, mel settings
and statistics, alphabet, package versions) and `tokenizer.pt` (a torch state dict).

Reading validates both files and names the folder and the missing or broken file on failure.
"""

from __future__ import annotations

import json
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch

from mixc.errors import DataError

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "tokenizer.pt"
CHECKPOINT_HINT = ("an audio tokenizer checkpoint is a folder that a `train_audio_tokenizer` stage (or "
                   "`Tokenizer.save`) wrote; point `tokenizer audio : checkpoint { path = ... }` at one")
FORMAT = 1  # bump when config.json or the state dict layout changes incompatibly
VERSIONED_PACKAGES = ("torch", "torchaudio", "vector-quantize-pytorch", "scikit-learn", "numpy")


class CheckpointError(DataError):
    """A tokenizer folder that is missing, incomplete or unreadable."""

    def __init__(self, message: str, hint: str | None = CHECKPOINT_HINT):
        super().__init__(message, hint)


def _versions() -> dict[str, str]:
    found = {}
    for name in VERSIONED_PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "absent"
    return found


def write_checkpoint(folder: Path, config: dict, state: dict[str, torch.Tensor]) -> None:
    """Writes `config` (plus format and package versions) and `state` into `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    full = {"format": FORMAT, **config, "versions": _versions()}
    torch.save({k: v.detach().cpu().contiguous() for k, v in state.items()}, folder / WEIGHTS_FILE)
    (folder / CONFIG_FILE).write_text(json.dumps(full, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def read_checkpoint(folder: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """(config, state dict) from `folder`; raises CheckpointError naming what is wrong."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"audio tokenizer checkpoint {folder} is not a folder "
                              f"(expected one holding {CONFIG_FILE} and {WEIGHTS_FILE})")
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (folder / name).is_file():
            raise CheckpointError(f"audio tokenizer checkpoint {folder} has no {name}")
    try:
        config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"audio tokenizer checkpoint {folder / CONFIG_FILE} is not valid JSON: {exc}") from exc
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise CheckpointError(f"audio tokenizer checkpoint {folder / CONFIG_FILE} has format "
                              f"{config.get('format') if isinstance(config, dict) else None!r}; expected {FORMAT}")
    try:
        state = torch.load(folder / WEIGHTS_FILE, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several unrelated types for a corrupt file
        raise CheckpointError(f"audio tokenizer checkpoint {folder / WEIGHTS_FILE} is unreadable: {exc}") from exc
    return config, state


def require(config: dict, folder: Path, *keys: str) -> None:
    """Raises CheckpointError if config.json lacks any of `keys`."""
    missing = [k for k in keys if k not in config]
    if missing:
        raise CheckpointError(f"audio tokenizer checkpoint {Path(folder) / CONFIG_FILE} lacks {', '.join(missing)}")
