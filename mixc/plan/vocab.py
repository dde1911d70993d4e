"""The joint vocabulary: text ids first, then audio codes, then modality markers.

Text ids come from the text tokenizer (plus EOS/PAD when it has none); audio code `c` is id
`audio_offset + c`; markers follow. The layout is a function of the spec and the tokenizer's size,
so every stage that writes token ids agrees on it, and plan.json records it for the runtime.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mixc.plan import budget
from mixc.ir import AudioSource, FsqTokenizer, KmeansTokenizer, Spec

MARKER_SETS = {
    "audio_and_text": ("<audio>", "</audio>", "<text>", "</text>"),
    "audio": ("<audio>", "</audio>"),
    "none": (),
}


@dataclass(frozen=True)
class TextVocab:
    """What the text tokenizer stage reports about itself."""
    kind: str  # hf | tiktoken | sentencepiece
    size: int  # ids 0..size-1, EOS and PAD included
    eos: int
    pad: int


@dataclass(frozen=True)
class Layout:
    text: TextVocab
    audio_offset: int
    audio_size: int
    markers: dict[str, int]

    @property
    def size(self) -> int:
        return self.audio_offset + self.audio_size + len(self.markers)

    @property
    def dtype(self) -> str:
        return narrowest_dtype(self.size)


def narrowest_dtype(size: int) -> str:
    for name, bits in (("uint8", 8), ("uint16", 16), ("uint32", 32)):
        if size <= 1 << bits:
            return name
    raise ValueError(f"a vocabulary of {size} ids does not fit 32 bits")


def has_speech(spec: Spec) -> bool:
    leaves = budget.leaf_shares(spec.mixture)
    return any(isinstance(spec.sources.get(n), AudioSource) or n in spec.generators for n in leaves)


def audio_codes(spec: Spec) -> int:
    tok = spec.tokenizers.audio
    if isinstance(tok, FsqTokenizer):
        return math.prod(tok.levels)
    if isinstance(tok, KmeansTokenizer):
        return tok.codebook
    raise ValueError("the audio tokenizer's codebook size is known only after loading its checkpoint")


def layout(spec: Spec, text: TextVocab, audio_size: int | None = None) -> Layout:
    """The joint layout; a mix without speech has no audio codes and no markers."""
    if not has_speech(spec):
        return Layout(text, text.size, 0, {})
    codes = audio_codes(spec) if audio_size is None else audio_size
    first_marker = text.size + codes
    names = MARKER_SETS[spec.interleave.markers]
    return Layout(text, text.size, codes, {m: first_marker + i for i, m in enumerate(names)})
