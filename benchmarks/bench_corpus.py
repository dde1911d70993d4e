"""Shared helpers for the stage benchmarks: a deterministic synthetic text corpus, a throwaway
workspace with a one-source spec, and small timing/fsync utilities.

The text is English-like rather than English: a 60,000-word lexicon (common function words first,
then made-up words built from syllables, about 2% numbers) drawn with a Zipf-Mandelbrot law, with
capitalised sentence starts, commas, full stops and paragraph breaks. A 32K byte-level BPE trained
on it gives about 4-5 bytes per token, close to what it gives on real prose, and (unlike repeated
real text) its documents are all distinct, so dedup drops nothing and BPE word caches do not
flatter the tokenizer.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from operator import itemgetter
from pathlib import Path

import numpy as np

FUNCTION_WORDS = ["the", "of", "and", "to", "a", "in", "is", "that", "for", "it", "as", "was", "with", "be", "by", "on",
                  "not", "he", "this", "are", "or", "his", "from", "at", "which", "but", "have", "an", "they", "you",
                  "were", "her", "she", "there", "been", "one", "all", "we", "their", "has", "would", "when", "if",
                  "so", "no", "will", "more", "can", "who", "its", "out", "into", "about", "than", "them", "only",
                  "other", "time", "new", "some", "could", "these", "two", "may", "first", "then", "do", "any", "like",
                  "my", "now", "over", "such", "our", "man", "me", "even", "most", "made", "after", "also", "did",
                  "many", "before", "must", "through", "back", "years", "where", "much", "your", "way", "well", "down",
                  "should", "because", "each", "just", "those", "people", "how", "too", "little", "state", "good",
                  "very", "make", "world", "still", "own", "see", "men", "work", "long", "get", "here", "between",
                  "both", "life", "being", "under", "never", "day", "same", "another", "know", "while", "last", "might",
                  "us", "great", "old", "year", "off", "come", "since", "against", "go", "came", "right", "used",
                  "take", "three"]
ONSETS = ["b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z", "bl", "br", "ch",
          "cl", "cr", "dr", "fl", "fr", "gr", "pl", "pr", "sh", "sl", "sp", "st", "str", "th", "tr"]
NUCLEI = ["a", "e", "i", "o", "u", "ai", "ea", "ee", "io", "ou", "oo", "ie"]
CODAS = [""] * 6 + ["n", "r", "s", "t", "l", "m", "nd", "nt", "st", "rs", "ng", "ck"]
LEXICON = 60_000


def lexicon(seed: int = 12345) -> list[str]:
    rng = np.random.default_rng(seed)
    words, seen = list(FUNCTION_WORDS), set(FUNCTION_WORDS)
    while len(words) < LEXICON:
        if rng.random() < 0.02:
            word = str(int(rng.integers(0, 10 ** int(rng.integers(1, 5)))))
        else:
            syllables = int(rng.choice(3, p=[0.45, 0.4, 0.15])) + 1
            word = "".join(ONSETS[rng.integers(len(ONSETS))] + NUCLEI[rng.integers(len(NUCLEI))]
                           + CODAS[rng.integers(len(CODAS))] for _ in range(syllables))
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


class TextGen:
    """Documents of Zipf-distributed words; `doc(rng)` returns one, about 2.5 KB on average."""

    def __init__(self, seed: int = 12345):
        words = lexicon(seed)
        ranks = np.arange(1, len(words) + 1, dtype=np.float64)
        weights = 1.0 / (ranks + 2.7) ** 1.05
        self.cdf = np.cumsum(weights / weights.sum())
        n = len(words)
        # variant v of word i is table[v * n + i]; every entry carries the separator that follows it
        self.table = ([w + " " for w in words] + [w.capitalize() + " " for w in words]
                      + [w + ", " for w in words] + [w + ". " for w in words] + [w + ".\n\n" for w in words])
        self.n = n

    def doc(self, rng: np.random.Generator) -> str:
        count = int(np.clip(rng.lognormal(np.log(350), 0.9), 8, 20_000))
        idx = np.searchsorted(self.cdf, rng.random(count))
        idx = np.minimum(idx, self.n - 1)
        variant = np.zeros(count, np.int64)
        ends = np.cumsum(rng.integers(6, 28, size=count // 6 + 2))
        ends = ends[ends < count]
        variant[ends] = 3  # full stop
        variant[ends[rng.random(len(ends)) < 0.15]] = 4  # paragraph break
        starts = np.concatenate([[0], ends + 1])
        variant[starts[starts < count]] = 1  # capitalised (a word both ending and starting keeps its start)
        comma = (rng.random(count) < 0.06) & (variant == 0)
        variant[comma] = 2
        variant[-1] = 3
        picks = itemgetter(*(variant * self.n + idx).tolist())(self.table)
        return "".join(picks).rstrip()


def write_jsonl_corpus(folder: Path, total_bytes: int, file_bytes: int, seed: int = 0) -> tuple[int, int]:
    """Files `part-NNNN.jsonl` of about `file_bytes` each until about `total_bytes` of text (not
    counting JSON overhead) are written; deterministic in (seed, sizes). Returns (files, docs)."""
    folder.mkdir(parents=True, exist_ok=True)
    gen = TextGen()
    written, files, docs = 0, 0, 0
    while written < total_bytes:
        rng = np.random.default_rng([seed, files])
        in_file = 0
        with open(folder / f"part-{files:04d}.jsonl", "w", encoding="utf-8") as handle:
            lines = []
            while in_file < file_bytes and written + in_file < total_bytes:
                text = gen.doc(rng)
                in_file += len(text)
                lines.append(json.dumps({"text": text, "id": docs}))
                docs += 1
                if len(lines) >= 1024:
                    handle.write("\n".join(lines) + "\n")
                    lines = []
            if lines:
                handle.write("\n".join(lines) + "\n")
        written += in_file
        files += 1
    return files, docs


SPEC = """\
seed = 1
source bench : text {{
  files = "data/*.jsonl"
}}
tokenizer text : bpe {{
  vocab  = {vocab}
  sample = {sample}
}}
pack {{
  seq_len = {seq_len}
}}
mixture {{
  100% bench
}}
budget {{
  steps = 1
}}
train {{
  batch = 1
}}
"""


def write_spec(root: Path, vocab: str = "32K", sample: str = "100MB", seq_len: int = 2048) -> Path:
    """A workspace root (pyproject.toml marker) with `spec.mix`: one text source `bench` over data/*.jsonl."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text("")
    path = root / "spec.mix"
    path.write_text(SPEC.format(vocab=vocab, sample=sample, seq_len=seq_len))
    return path


def load_plan(spec_path: Path):
    """(spec IR, stage graph, workspace root) of a spec; exits when the spec does not lower."""
    from mixc.lang.lower import load
    from mixc.stages import graph
    low = load(spec_path)
    if not low.ok:
        raise SystemExit(f"benchmark spec does not lower: {[d.message for d in low.diagnostics]}")
    return low.ir, graph(low.ir), low.root


def run_stage(spec, node, inputs: dict[str, Path], out: Path, root: Path, workers: int = 1):
    """The stage `node` (of the spec's graph) run on `inputs` (input stage id -> artifact folder) into
    the existing folder `out`, as the executor runs it: its declared values only, its fingerprint
    computed first. Returns its Stats."""
    from mixc.build.execute import declared
    from mixc.stages import REGISTRY
    from mixc.stages.base import Context
    stage = REGISTRY[node.kind]()
    ctx = Context(node, declared(spec, node), inputs, out, root, workers=workers)
    ctx.fingerprint = stage.fingerprint(ctx, spec)
    return stage(ctx)


def fsync_tree(folder: Path) -> None:
    """Every file under `folder` (or `folder` itself when a file) onto the disk, as the cache's commit does."""
    paths = [folder] if folder.is_file() else sorted(p for p in folder.rglob("*") if p.is_file())
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def tree_bytes(folder: Path) -> int:
    if folder.is_file():
        return folder.stat().st_size
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def disk_write(path: Path, size: int, block: int = 8 << 20) -> float:
    """Seconds to write `size` bytes of incompressible data with large buffered writes, then fsync."""
    buf = np.random.default_rng(0).integers(0, 256, block, dtype=np.uint8).tobytes()
    start = time.perf_counter()
    with open(path, "wb", buffering=0) as handle:
        left = size
        while left > 0:
            left -= handle.write(buf[:min(block, left)])
        os.fsync(handle.fileno())
    seconds = time.perf_counter() - start
    path.unlink()
    return seconds


def best_of(repeat: int, fn: Callable[[], object], reset: Callable[[], object] | None = None) -> float:
    """The fastest of `repeat` timed calls of fn, in seconds; `reset` runs untimed before each."""
    best = float("inf")
    for _ in range(repeat):
        if reset is not None:
            reset()
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def parse_count(text: str) -> int:
    """'64M' -> 64_000_000, '1.5G' -> 1_500_000_000, '1000' -> 1000 (decimal units)."""
    text = text.strip().upper()
    scale = {"K": 10 ** 3, "M": 10 ** 6, "G": 10 ** 9}.get(text[-1:], 1)
    return int(float(text[:-1] if scale > 1 else text) * scale)


def emit(report: dict, as_json: bool, print_table) -> int:
    """Every benchmark's last step: the report as JSON or as its table; benchmarks always exit 0."""
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)
    return 0
