"""Interleave + pack throughput on speech documents vs the text path (tokenize + pack) on their text.

Input, made here and deterministic: `--docs` recordings of log-normally many chunks (median 24)
of ~5 s speech each: 62 random audio codes (12.5 Hz x 5 s, codebook 1000) and a transcript of
English-like words (benchmarks/bench_corpus.py) as the `encode` artifact holds them; a 16K byte-level
BPE trained on the transcripts. Both paths run the real stages in this process, best of `--repeat`:

- text path (baseline): `tokenize` of one document per recording (its transcripts joined) and
  `pack` to 2048-token sequences: what a text-only source of the same words costs;
- speech path: `interleave` (deterministic A1 T2 A3 ..., markers around every span, loss on text
  only) and `pack` of the same recordings.

Rows report output tokens per second (what reaches the shards); `x text` is the speech path's rate
over the text path's. Speech documents are about half audio codes, which need no tokenizing, plus
markers, so the speech path should not be slower per output token. Exits 0; it is a benchmark.

    .venv/bin/python benchmarks/interleave_speed.py [--docs 4000] [--repeat 3] [--json]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import polars as pl
from bench_corpus import TextGen, best_of, emit, run_stage

CODES_PER_CHUNK, CODEBOOK = 62, 1000
SPEC = """
source web : audio {{ files = "a/*.flac" }}
source text : text {{ files = "t/*.jsonl" }}
tokenizer text : file {{ path = "tok/tokenizer.json" }}
tokenizer audio : kmeans {{ codebook = {codebook} }}
interleave {{
  sampling = deterministic
  loss     = text_only
}}
pack {{ seq_len = 2048 }}
mixture {{
  50% web
  50% text
}}
budget {{ tokens = 1000 }}
"""


def sentence(gen: TextGen, rng: np.random.Generator) -> str:
    """8-17 Zipf-drawn words of the shared lexicon, capitalised, with a full stop."""
    idx = np.minimum(np.searchsorted(gen.cdf, rng.random(int(rng.integers(8, 18)))), gen.n - 1)
    return " ".join(gen.table[i].strip() for i in idx.tolist()).capitalize() + "."


def make_inputs(root: Path, docs: int, seed: int = 0) -> dict[str, int]:
    """The encode artifact, a `read` artifact (docs.parquet) of the same words, and a BPE; returns counts."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    from mixc.stages.audio_tokens import AudioCodes
    from mixc.stages.text import DocWriter

    rng = np.random.default_rng(seed)
    gen = TextGen()
    rows, texts, parts = [], [], []  # parts: each recording's (codes, chunk offsets within it)
    for doc in range(docs):
        n = int(np.clip(rng.lognormal(np.log(24), 0.6), 2, 400))
        codes = []
        for index in range(n):
            rows.append({"chunk": len(rows), "doc": doc, "rec": f"{doc + 1:032x}", "path": f"a/{doc}.flac",
                         "index": index, "speaker": "S0", "start": 5.0 * index, "end": 5.0 * index + 5,
                         "text": sentence(gen, rng)})
            codes.append(rng.integers(0, CODEBOOK, CODES_PER_CHUNK, dtype=np.uint32))
        parts.append((np.concatenate(codes), np.arange(n + 1, dtype=np.int64) * CODES_PER_CHUNK))
        texts.append(" ".join(r["text"] for r in rows[-n:]))
    enc = root / "encode"
    enc.mkdir(parents=True)
    total = AudioCodes.write(enc, pl.DataFrame(rows), parts, {"codebook_size": CODEBOOK, "frame_rate": 12.5})
    read = root / "read"
    read.mkdir()
    docs_out = DocWriter(read)
    for row, text in enumerate(texts):
        docs_out.add("t/x.jsonl", row, text)
    docs_out.close()
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=16_000, special_tokens=["<|eos|>", "<|pad|>"],
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                       show_progress=False))
    (root / "tok").mkdir()
    tok.save(str(root / "tok" / "tokenizer.json"))
    return {"docs": docs, "chunks": len(rows), "codes": total, "text_bytes": sum(len(t) for t in texts)}


def run(root: Path, spec, dag, sid: str, inputs: dict[str, Path], out: Path):
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    return run_stage(spec, dag[sid], inputs, out, root)


def run_path(stats: dict, root: Path, spec, dag, name: str, first: str, inputs: dict[str, Path], second: str) -> None:
    """One path: its first stage, then `second` (pack) on that stage's output; both stats into `stats`."""
    stats["first"] = run(root, spec, dag, first, inputs, root / f"{name}-1")
    stats["pack"] = run(root, spec, dag, second, {first: root / f"{name}-1"}, root / f"{name}-2")


def measure(docs: int, repeat: int) -> dict:
    from mixc.lang.lower import load
    from mixc.stages import graph

    tmp = Path(tempfile.mkdtemp(prefix="mixc-interleave-"))
    try:
        counts = make_inputs(tmp, docs)
        (tmp / "pyproject.toml").write_text("")
        (tmp / "s.mix").write_text(SPEC.format(codebook=CODEBOOK))
        low = load(tmp / "s.mix")
        if not low.ok:
            raise SystemExit([d.message for d in low.diagnostics])
        spec, dag = low.ir, graph(low.ir)
        run(tmp, spec, dag, "load_text_tokenizer:text", {}, tmp / "text-tok")
        tok = {"load_text_tokenizer:text": tmp / "text-tok"}
        rows, speech = {}, {}
        paths = {"text path": ("tokenize:text", {"dedup:text": tmp / "read", **tok}, "pack:text"),
                 "speech path": ("interleave:web", {"encode:web": tmp / "encode", **tok}, "pack:web")}
        for name, (first, inputs, second) in paths.items():
            stats: dict = {}
            seconds = best_of(repeat, partial(run_path, stats, tmp, spec, dag, name, first, inputs, second))
            tokens = stats["pack"].counts["tokens"]
            rows[name] = {"seconds": seconds, "tokens": tokens, "mtok_per_s": tokens / seconds / 1e6,
                          "first_s": stats["first"].seconds, "pack_s": stats["pack"].seconds,
                          "sequences": stats["pack"].items_out}
            if name == "speech path":
                speech = stats["first"].counts  # the interleave stage's counts (its interleave.json)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    base = rows["text path"]["mtok_per_s"]
    for r in rows.values():
        r["x_text"] = r["mtok_per_s"] / base
    return {"inputs": counts, "repeat": repeat, "results": rows,
            "speech_split": {k: speech[k] for k in ("audio_tokens", "text_tokens", "switches_per_document")}}


def print_table(r: dict) -> None:
    c = r["inputs"]
    print(f"{c['docs']:,} recordings, {c['chunks']:,} chunks, {c['codes']:,} audio codes, "
          f"{c['text_bytes'] / 1e6:.1f} MB of transcripts; best of {r['repeat']}")
    print(f"{'':<13}{'seconds':>9}{'1st stage':>11}{'pack':>7}{'tokens out':>13}{'Mtok/s':>8}{'x text':>8}")
    for name, x in r["results"].items():
        print(f"{name:<13}{x['seconds']:>9.2f}{x['first_s']:>11.2f}{x['pack_s']:>7.2f}{x['tokens']:>13,}"
              f"{x['mtok_per_s']:>8.2f}{x['x_text']:>7.2f}x")
    s = r["speech_split"]
    print(f"speech path output: {s['audio_tokens']:,} audio + {s['text_tokens']:,} text tokens (plus markers, EOS), "
          f"{s['switches_per_document']:.1f} modality switches per document")
    print("first stage: tokenize (text path) / interleave (speech path); baseline: the text path")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=4000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    start = time.perf_counter()
    report = measure(args.docs, args.repeat)
    report["wall_s"] = time.perf_counter() - start
    return emit(report, args.json, print_table)


if __name__ == "__main__":
    sys.exit(main())
