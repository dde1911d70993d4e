"""How fast does the tokenize stage encode text, per core, measured against the `tokenizers` library's
own `Tokenizer.encode_batch` on the same texts, and how does it scale from 1 to 2 workers?

Setup (untimed): `--mb` MB of generated English-like jsonl text (benchmarks/bench_corpus.py) is read
by the real `read` stage into docs.parquet, and the real `train_bpe` stage trains a byte-level BPE
of `--vocab` ids on it (sample: the spec default, 100 MB, or the whole corpus when smaller).

Then, best of N runs each, every row in a fresh subprocess so that its thread settings hold:

- encode_batch, RAYON_NUM_THREADS=1: `Tokenizer.encode_batch(texts, add_special_tokens=False)` over
  the texts already in memory, in batches of the stage's `batch_docs` (256), on one thread. This is
  the per-core baseline.
- encode_batch, default threads: the same with Rayon's default pool (one thread per core), the
  library's best wall-clock rate on this machine.
- tokenize stage, W workers: the real `TokenizeStage` (docs.parquet -> tokens.u32/offsets/doc_ids) with
  `workers` = W, as `mixc compile --workers W` runs it: with default threads (each process's
  encode_batch also uses Rayon) and with RAYON_NUM_THREADS=1 (one thread per worker process).

CPU seconds are user + system time of the process and its workers, so `MB/cpu-s` is throughput per
core busy; `x per core` divides it by the per-core baseline's (target >= 0.8x) and `x wall` divides
wall-clock MB/s by the default-threads encode_batch's. Every row's token ids are checked to be the
same as the baseline's. The script always exits 0; it is a benchmark, not a test.

    .venv/bin/python benchmarks/tokenize_speed.py [--mb 32] [--vocab 32K] [--repeat N] [--json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_corpus import emit

TARGET = 0.8
BATCH_DOCS = 256  # TokenizeStage.batch_docs, asserted below


def _cpu() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _timed(repeat: int, fn, reset=None) -> tuple[float, float]:
    """(wall, cpu) seconds of the fastest of `repeat` calls."""
    best = (float("inf"), 0.0)
    for _ in range(repeat):
        if reset is not None:
            reset()
        cpu, start = _cpu(), time.perf_counter()
        fn()
        wall = time.perf_counter() - start
        if wall < best[0]:
            best = (wall, _cpu() - cpu)
    return best


def read_texts(folder: Path) -> list[str]:
    """Every document's text of a `read` artifact, in order."""
    from mixc.stages.text import Documents
    return [t for batch in Documents.batches(folder, ("text",)) for t in batch.column(0).to_pylist()]


def child_encode(work: Path, repeat: int) -> dict:
    import numpy as np
    from tokenizers import Tokenizer

    from mixc.stages.tokenizer import tokenizer_file
    texts = read_texts(work / "read")
    tok = Tokenizer.from_file(str(tokenizer_file(work / "bpe")))

    def encode() -> None:
        for i in range(0, len(texts), BATCH_DOCS):
            tok.encode_batch(texts[i:i + BATCH_DOCS], add_special_tokens=False)

    wall, cpu = _timed(repeat, encode)
    digest = hashlib.sha256()
    for i in range(0, len(texts), BATCH_DOCS):
        for e in tok.encode_batch(texts[i:i + BATCH_DOCS], add_special_tokens=False):
            digest.update(np.asarray(e.ids, np.uint32).tobytes())
    return {"wall": wall, "cpu": cpu, "digest": digest.hexdigest()}


def child_stage(work: Path, repeat: int, workers: int) -> dict:
    import numpy as np
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_corpus import load_plan, run_stage

    from mixc.stages import TokenizeStage
    from mixc.stages.tokens import TokenStream
    assert TokenizeStage.batch_docs == BATCH_DOCS
    spec, dag, root = load_plan(work / "ws" / "spec.mix")
    stage = dag["tokenize:bench"]
    out = work / f"tokenize-{os.getpid()}"
    inputs = {sid: work / ("read" if sid.startswith("read") else "bpe") for sid in stage.inputs}

    def fresh() -> None:
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()

    wall, cpu = _timed(repeat, lambda: run_stage(spec, stage, inputs, out, root, workers), fresh)
    digest = hashlib.sha256(np.asarray(TokenStream.open(out).tokens).tobytes()).hexdigest()
    shutil.rmtree(out, ignore_errors=True)
    return {"wall": wall, "cpu": cpu, "digest": digest}


ROWS = (  # name, mode, workers, RAYON_NUM_THREADS (None: default)
    ("encode_batch, 1 thread", "encode", 0, "1"),
    ("encode_batch, default", "encode", 0, None),
    ("stage, 1 worker, 1 thread", "stage", 1, "1"),
    ("stage, 1 worker", "stage", 1, None),
    ("stage, 2 workers, 1 thread", "stage", 2, "1"),
    ("stage, 2 workers", "stage", 2, None),
)


def run_child(work: Path, repeat: int, mode: str, workers: int, threads: str | None) -> dict:
    env = dict(os.environ)
    env.pop("RAYON_NUM_THREADS", None)
    env.pop("TOKENIZERS_PARALLELISM", None)
    if threads is not None:
        env["RAYON_NUM_THREADS"] = threads
    cmd = [sys.executable, __file__, "--child", mode, "--work", str(work), "--repeat", str(repeat),
           "--workers", str(workers)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"child {mode} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def setup(work: Path, mb: float, vocab: str) -> dict:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_corpus import load_plan, run_stage, write_jsonl_corpus, write_spec

    from mixc.stages.tokenizer import VocabFile
    spec_path = write_spec(work / "ws", vocab=vocab)
    files, _ = write_jsonl_corpus(work / "ws" / "data", int(mb * 1e6), 16_000_000)
    spec, dag, root = load_plan(spec_path)
    (work / "read").mkdir()
    (work / "bpe").mkdir()
    read = run_stage(spec, dag["read:bench"], {}, work / "read", root)
    bpe_stage = dag["train_bpe:text"]
    start = time.perf_counter()
    run_stage(spec, bpe_stage, {bpe_stage.inputs[0]: work / "read"}, work / "bpe", root, workers=2)
    train = time.perf_counter() - start
    texts = read_texts(work / "read")
    return {"files": files, "docs": read.items_out, "bytes": sum(len(t.encode()) for t in texts),
            "vocab": VocabFile.read(work / "bpe").size, "train_seconds": train,
            "sample_bytes": spec.tokenizers.text.sample}


def measure(mb: float, vocab: str, repeat: int, keep: Path | None) -> dict:
    work = Path(tempfile.mkdtemp(prefix="mixc-tok-", dir=keep))
    try:
        info = setup(work, mb, vocab)
        rows = {name: run_child(work, repeat, mode, workers, threads) for name, mode, workers, threads in ROWS}
    finally:
        if keep is None:
            shutil.rmtree(work, ignore_errors=True)
    size = info["bytes"]
    core = rows["encode_batch, 1 thread"]
    core_rate = size / core["cpu"]
    wall_rate = size / rows["encode_batch, default"]["wall"]
    results = {}
    for name, r in rows.items():
        results[name] = {"seconds": r["wall"], "cpu_seconds": r["cpu"], "mb_per_s": size / r["wall"] / 1e6,
                         "mb_per_cpu_s": size / r["cpu"] / 1e6, "x_per_core": size / r["cpu"] / core_rate,
                         "x_wall": size / r["wall"] / wall_rate, "same_ids": r["digest"] == core["digest"]}
    per_core = results["stage, 1 worker, 1 thread"]["x_per_core"]
    return {**info, "repeat": repeat, "cores": os.cpu_count(), "results": results,
            "speedup_1_to_2_workers": rows["stage, 1 worker"]["wall"] / rows["stage, 2 workers"]["wall"],
            "speedup_1_to_2_workers_1_thread":
                rows["stage, 1 worker, 1 thread"]["wall"] / rows["stage, 2 workers, 1 thread"]["wall"],
            "stage_per_core": per_core, "target": TARGET, "pass": per_core >= TARGET}


def print_table(r: dict) -> None:
    print(f"text: {r['bytes'] / 1e6:,.1f} MB in {r['docs']:,} docs ({r['files']} files); BPE {r['vocab']:,} ids "
          f"trained in {r['train_seconds']:.1f}s; {r['cores']} cores; best of {r['repeat']} runs")
    print(f"{'':<28}{'seconds':>9}{'MB/s':>8}{'cpu s':>8}{'MB/cpu-s':>10}{'x per core':>12}{'x wall':>8}")
    for name, x in r["results"].items():
        flag = "" if x["same_ids"] else "  (ids differ!)"
        print(f"{name:<28}{x['seconds']:>9.2f}{x['mb_per_s']:>8.2f}{x['cpu_seconds']:>8.2f}{x['mb_per_cpu_s']:>10.2f}"
              f"{x['x_per_core']:>11.2f}x{x['x_wall']:>7.2f}x{flag}")
    print("per-core baseline: encode_batch, 1 thread (RAYON_NUM_THREADS=1); x wall is against encode_batch, default")
    print(f"stage 1 -> 2 workers: {r['speedup_1_to_2_workers']:.2f}x with default threads, "
          f"{r['speedup_1_to_2_workers_1_thread']:.2f}x with 1 thread per worker")
    verdict = "PASS" if r["pass"] else "FAIL"
    print(f"stage (1 worker, 1 thread) per core / encode_batch per core = {r['stage_per_core']:.2f}x "
          f"(target >= {r['target']:g}x): {verdict}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=32, help="MB of text to generate and encode (default 32)")
    ap.add_argument("--vocab", default="32K", help="BPE vocabulary size (default 32K)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per measurement; the best is kept (default 3)")
    ap.add_argument("--keep", type=Path, default=None, help="work in (and keep) a folder under DIR")
    ap.add_argument("--json", action="store_true", help="print the numbers as JSON")
    ap.add_argument("--child", choices=("encode", "stage"), help=argparse.SUPPRESS)
    ap.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child == "encode":
        print(json.dumps(child_encode(args.work, args.repeat)))
        return 0
    if args.child == "stage":
        print(json.dumps(child_stage(args.work, args.repeat, args.workers)))
        return 0
    report = measure(args.mb, args.vocab, max(1, args.repeat), args.keep)
    return emit(report, args.json, print_table)


if __name__ == "__main__":
    sys.exit(main())
