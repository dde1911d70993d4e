"""The CTC alphabet: transcripts as lowercase letters, digits, space and apostrophe.

Index 0 is the CTC blank. Text is lowercased, accents are stripped (ô -> o), a curly apostrophe
becomes a straight one, and every other character outside the alphabet becomes a space.
"""

from __future__ import annotations

import unicodedata

ALPHABET = " '" + "abcdefghijklmnopqrstuvwxyz" + "0123456789"
BLANK = 0
VOCAB_SIZE = len(ALPHABET) + 1  # + blank
_INDEX = {ch: i + 1 for i, ch in enumerate(ALPHABET)}


def normalize_text(text: str) -> str:
    """The transcript as the CTC head sees it: alphabet characters only, single spaces."""
    decomposed = unicodedata.normalize("NFKD", text.lower().replace("\u2019", "'"))
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join("".join(ch if ch in _INDEX else " " for ch in plain).split())


def text_to_ids(text: str) -> list[int]:
    """CTC target ids (1..len(ALPHABET)) of the normalised transcript."""
    return [_INDEX[ch] for ch in normalize_text(text)]


def ids_to_text(ids: list[int]) -> str:
    """Greedy CTC decoding of per-frame argmax ids: collapse repeats, drop blanks."""
    out, prev = [], BLANK
    for i in ids:
        if i != prev and i != BLANK:
            out.append(ALPHABET[i - 1])
        prev = i
    return "".join(out)


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance, for the character error rate of the CTC head."""
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]
