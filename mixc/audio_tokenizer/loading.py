"""`load_tokenizer`: a checkpoint folder back to the tokenizer that saved it, chosen by its kind."""

from __future__ import annotations

from pathlib import Path

from mixc.audio_tokenizer.base import AudioTokenizer
from mixc.audio_tokenizer.checkpoint import CONFIG_FILE, CheckpointError, read_checkpoint
from mixc.audio_tokenizer.features import FRAME_RATE
from mixc.audio_tokenizer.kmeans import KMeansTokenizer
from mixc.audio_tokenizer.model import FSQTokenizer

KINDS: dict[str, type[FSQTokenizer] | type[KMeansTokenizer]] = {"fsq": FSQTokenizer, "kmeans": KMeansTokenizer}


def load_tokenizer(folder: Path) -> AudioTokenizer:
    """The tokenizer saved in `folder`; CheckpointError names the folder and what is missing."""
    config, state = read_checkpoint(Path(folder))
    kind = config.get("kind")
    if kind not in KINDS:
        raise CheckpointError(f"audio tokenizer checkpoint {Path(folder) / CONFIG_FILE} has kind {kind!r}; "
                              f"expected one of {sorted(KINDS)}")
    if config.get("frame_rate") != FRAME_RATE:
        raise CheckpointError(f"audio tokenizer checkpoint {Path(folder) / CONFIG_FILE} has frame_rate "
                              f"{config.get('frame_rate')!r}; this version supports only {FRAME_RATE}")
    return KINDS[kind].from_checkpoint(config, state, Path(folder))
