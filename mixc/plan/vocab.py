"""The joint vocabulary: text ids first, then audio codes, then modality markers.

Text ids come from the text tokenizer (plus EOS/PAD when it has none); audio code `c` is id
`audio_offset + c`; markers follow. The layout is a function of the text vocabulary, the audio
codebook and the spec's marker setting, so every stage that writes token ids agrees on it, and
plan.json records it for the runtime.
"""

from __future__ import annotations

from dataclasses import dataclass

MARKER_SETS = {
    "audio_and_text": ("<audio>", "</audio>", "<text>", "</text>"),
    "audio": ("<audio>", "</audio>"),
    "none": (),
}
TOKEN_DTYPES = (("uint8", 8), ("uint16", 16), ("uint32", 32))


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
    for name, bits in TOKEN_DTYPES:
        if size <= 1 << bits:
            return name
    raise ValueError(f"a vocabulary of {size} ids does not fit 32 bits")  # the checks refuse such specs


def layout(text: TextVocab, audio_size: int | None, markers: str) -> Layout:
    """The joint layout; without audio codes (a mix without speech) there are no markers either."""
    if audio_size is None:
        return Layout(text, text.size, 0, {})
    first_marker = text.size + audio_size
    return Layout(text, text.size, audio_size, {m: first_marker + i for i, m in enumerate(MARKER_SETS[markers])})
