"""Does `mixc compile` run in flat memory? Peak RSS of compiling generated text at two corpus sizes.

For each size (`--gb` and a quarter of it, or `--sizes`), a fresh workspace gets deterministic
English-like jsonl text (benchmarks/bench_corpus.py) in files of `--file-mb` MB each, and a spec with
one text source (dedup on), `tokenizer text : bpe { vocab = 32K  sample = 100MB }`, `pack { seq_len
= 2048 }` and default zstd shards. Then `mixc compile spec.mix --out out --workers 2 --cache-dir
cache` runs as a subprocess (a cold cache, so every stage runs) while this script polls /proc every
`--interval` seconds for the whole process tree (the compile and its tokenizer workers):

- peak RSS:   the largest sum of VmRSS over the tree at one poll (the figure held to the target).
- peak anon:  the same for RssAnon, i.e. without file-backed pages (memory-mapped artifacts, which
              the kernel can drop and re-read at will).
- max HWM:    the largest single-process peak, from wait4's ru_maxrss (what `/usr/bin/time -v`
              prints as "Maximum resident set size"); it needs no polling, so no peak is missed.

The stage running at each poll is the one whose scratch folder is in the cache's tmp/, so every
stage also gets its own peak RSS and wall time. `x smallest` compares each size's peak with the
smallest size's, measured in the same run: 1.0x is flat. The target is a peak RSS under 2 GB; the
script always exits 0, it is a benchmark, not a test.

    .venv/bin/python benchmarks/compile_memory.py [--gb 1.0] [--sizes 0.25,1.0] [--keep DIR] [--json]
    .venv/bin/python benchmarks/compile_memory.py --gb 0.1      # quick: 0.025 and 0.1 GB
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_corpus import emit, write_jsonl_corpus, write_spec

TARGET_BYTES = 2 * 1024 ** 3
STAGE_ORDER = ("read", "dedup", "train_bpe", "tokenize", "pack", "shards")


def _status(pid: int) -> dict[str, int] | None:
    """VmRSS, RssAnon, VmHWM (bytes) and PPid of a process; None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "VmHWM"):
            out[key] = int(value.split()[0]) * 1024
        elif key == "PPid":
            out[key] = int(value)
    return out


def _tree(root: int) -> dict[int, dict[str, int]]:
    """`root` and every descendant, with their memory figures."""
    procs = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            status = _status(int(entry.name))
            if status is not None and "PPid" in status:
                procs[int(entry.name)] = status
    keep, frontier = {}, [root]
    while frontier:
        pid = frontier.pop()
        if pid in procs and pid not in keep:
            keep[pid] = procs[pid]
            frontier.extend(p for p, s in procs.items() if s["PPid"] == pid)
    return keep


def _running_stage(tmp: Path) -> str:
    try:
        names = [p.name for p in tmp.iterdir()]
    except OSError:
        return "other"
    kinds = [n.split("-", 1)[0] for n in names]
    return kinds[0] if len(kinds) == 1 else "other" if not kinds else "+".join(sorted(kinds))


def compile_command() -> list[str]:
    script = Path(sys.executable).parent / "mixc"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from mixc.cli import main; sys.exit(main())"]


def run_compile(root: Path, workers: int, interval: float) -> dict:
    from mixc.planfile import TrainingPlan

    cache = root / "cache"
    cmd = compile_command() + ["compile", "spec.mix", "--out", "out", "--workers", str(workers),
                               "--cache-dir", str(cache), "--no-progress"]
    env = {k: v for k, v in os.environ.items() if k != "MIXC_CACHE"}
    with open(root / "compile.log", "w") as log:  # the compile writes to its own copy of the file
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=root, stdout=log, stderr=subprocess.STDOUT, env=env)
    peak = {"rss": 0, "anon": 0, "procs": 0, "stage": ""}
    stages: dict[str, dict] = {}
    last = 0.0
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        now = time.perf_counter() - start
        tree = _tree(proc.pid)
        rss = sum(s.get("VmRSS", 0) for s in tree.values())
        anon = sum(s.get("RssAnon", 0) for s in tree.values())
        stage = _running_stage(cache / "tmp")
        row = stages.setdefault(stage, {"seconds": 0.0, "rss": 0, "anon": 0, "procs": 0})
        row["seconds"] += now - last  # the time since the last poll, charged to the stage running now
        last = now
        row["rss"], row["anon"] = max(row["rss"], rss), max(row["anon"], anon)
        row["procs"] = max(row["procs"], len(tree))
        if rss > peak["rss"]:
            per_process = sorted(((s.get("VmRSS", 0), s.get("RssAnon", 0)) for s in tree.values()), reverse=True)
            peak.update(rss=rss, stage=stage, procs=len(tree), per_process=per_process)
        peak["anon"] = max(peak["anon"], anon)
        time.sleep(interval)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    if proc.returncode:
        tail = (root / "compile.log").read_text()[-3000:]
        raise SystemExit(f"mixc compile failed ({proc.returncode}) in {root}:\n{tail}")
    plan = TrainingPlan.read(root / "out" / "plan.json")
    return {"seconds": seconds, "peak_rss": peak["rss"], "peak_anon": peak["anon"], "peak_stage": peak["stage"],
            "peak_procs": peak["procs"], "peak_per_process": peak.get("per_process", []),
            "max_hwm": usage.ru_maxrss * 1024, "stages": stages,
            "tokens": sum(s.tokens for s in plan.streams),
            "samples": sum(s.samples for s in plan.streams)}


def measure(sizes: list[float], file_mb: float, workers: int, interval: float, keep: Path | None) -> dict:
    base = Path(tempfile.mkdtemp(prefix="mixc-mem-", dir=keep))
    runs = []
    try:
        for gb in sizes:
            root = base / f"gb{gb:g}"
            write_spec(root, vocab="32K", sample="100MB", seq_len=2048)
            spec = root / "spec.mix"
            with_dedup = spec.read_text().replace('files = "data/*.jsonl"', 'files = "data/*.jsonl"\n  dedup = true')
            spec.write_text(with_dedup)
            start = time.perf_counter()
            files, docs = write_jsonl_corpus(root / "data", int(gb * 1e9), int(file_mb * 1e6))
            generate = time.perf_counter() - start
            text = sum(p.stat().st_size for p in (root / "data").iterdir())
            result = run_compile(root, workers, interval)
            runs.append({"gb": gb, "files": files, "docs": docs, "jsonl_bytes": text, "generate_seconds": generate,
                         **result})
            if keep is None:
                shutil.rmtree(root, ignore_errors=True)
    finally:
        if keep is None:
            shutil.rmtree(base, ignore_errors=True)
    first = runs[0]["peak_rss"]
    for r in runs:
        r["x_smallest"] = r["peak_rss"] / first
    worst = max(r["peak_rss"] for r in runs)
    return {"workers": workers, "interval": interval, "file_mb": file_mb, "runs": runs, "target_bytes": TARGET_BYTES,
            "pass": worst < TARGET_BYTES}


def _gib(n: float) -> str:
    return f"{n / 1024 ** 3:.2f}"


def print_table(r: dict) -> None:
    print(f"mixc compile --workers {r['workers']}, cold cache, /proc polled every {r['interval']:g}s; "
          f"jsonl files of {r['file_mb']:g} MB")
    print(f"{'corpus':<10}{'files':>6}{'docs':>10}{'tokens':>14}{'seconds':>9}{'peak RSS':>10}{'peak anon':>11}"
          f"{'max HWM':>9}{'x smallest':>12}  peak in")
    for x in r["runs"]:
        print(f"{x['gb']:<7g}GB{x['files']:>7}{x['docs']:>10,}{x['tokens']:>14,}{x['seconds']:>9.1f}"
              f"{_gib(x['peak_rss']):>6} GiB{_gib(x['peak_anon']):>7} GiB{_gib(x['max_hwm']):>5} GiB"
              f"{x['x_smallest']:>11.2f}x  {x['peak_stage']}")
    for x in r["runs"]:
        parts = ", ".join(f"{_gib(rss)} ({_gib(anon)})" for rss, anon in x["peak_per_process"])
        print(f"at the {x['gb']:g} GB peak, per process: RSS GiB (anon GiB): {parts}")
    print("per stage: peak RSS GiB (peak anon GiB) / seconds; 'other': start-up, outputs, lock, report")
    names = [s for s in STAGE_ORDER if any(s in x["stages"] for x in r["runs"])]
    names += sorted({s for x in r["runs"] for s in x["stages"]} - set(names))
    print(f"{'stage':<11}" + "".join(f"{x['gb']:>8g} GB{'':>14}" for x in r["runs"]))
    for name in names:
        cells = []
        for x in r["runs"]:
            s = x["stages"].get(name)
            cells.append(f"{_gib(s['rss']):>10} ({_gib(s['anon'])}) / {s['seconds']:>4.0f}s" if s
                         else f"{'-':>24}")
        print(f"{name:<11}" + "".join(cells))
    worst = max(x["peak_rss"] for x in r["runs"])
    verdict = "PASS" if r["pass"] else "FAIL"
    print(f"largest peak RSS = {_gib(worst)} GiB (target < {_gib(r['target_bytes'])} GiB): {verdict}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gb", type=float, default=1.0, help="largest corpus, GB of text (default 1.0); "
                    "also measured: a quarter of it")
    ap.add_argument("--sizes", default=None, help="comma-separated corpus sizes in GB instead, e.g. 0.25,0.5")
    ap.add_argument("--file-mb", type=float, default=100, help="MB of text per jsonl file (default 100)")
    ap.add_argument("--workers", type=int, default=2, help="mixc compile --workers (default 2)")
    ap.add_argument("--interval", type=float, default=0.05, help="seconds between /proc polls (default 0.05)")
    ap.add_argument("--keep", type=Path, default=None, help="work in (and keep) a folder under DIR")
    ap.add_argument("--json", action="store_true", help="print the numbers as JSON")
    args = ap.parse_args(argv)
    sizes = [float(s) for s in args.sizes.split(",")] if args.sizes else [args.gb / 4, args.gb]
    report = measure(sizes, args.file_mb, args.workers, args.interval, args.keep)
    return emit(report, args.json, print_table)


if __name__ == "__main__":
    sys.exit(main())
