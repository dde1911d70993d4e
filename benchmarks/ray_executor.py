"""`mixc compile --executor ray` against the local executor, and the Ray executor on 1 vs 2 CPUs.

A fresh workspace gets two text sources of deterministic English-like jsonl (benchmarks/bench_corpus.py,
`--mb` MB each) and a spec with tiktoken's cl100k tokenizer (no tokenizer to train: the per-item
work, tokenizing every document in `--workers` workers, is most of a compile), `pack { seq_len =
2048 }` and zstd shards. Every row runs `mixc compile spec.mix --workers 2 --no-progress` as a
subprocess, as a user does, into a cold cache of its own (so every stage runs), and its shards are
checked identical to the baseline's (mix.lock's sha256 list):

- local:        `--executor local` (the default): stages one after the other, tokenize in 2
                spawned processes. The baseline.
- ray, 2 CPUs:  `--executor ray --address ...` on a Ray cluster this script starts on 127.0.0.1 with
                `--num-cpus 2`: independent stages at once, tokenize in 2 Ray actors per source.
- ray, 1 CPU:   the same on a cluster with `--num-cpus 1` (one actor runs at a time).

`x local` is the row's wall time over the baseline's (below 1: faster); `x 1 CPU` is the Ray rows'
throughput against Ray on 1 CPU. The same two ratios are given for the tokenize stage alone (the
slower source's, as its progress line reports it), the per-item part of the work. A row's time
includes starting its Python process, connecting to Ray and Ray starting its workers (the cluster
itself is started before the clock); best of `--repeat` runs.
It always exits 0: a benchmark, not a test.

    .venv/bin/python benchmarks/ray_executor.py [--mb 64] [--repeat 2] [--keep DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_corpus import write_jsonl_corpus

from mixc.planfile import Lock

PYTHON_BIN = Path(sys.executable).parent
SPEC = """\
source left : text {
  files = "data/left/*.jsonl"
}
source right : text {
  files = "data/right/*.jsonl"
}
tokenizer text : tiktoken { }
pack { seq_len = 2048 }
mixture {
  50% left
  50% right
}
budget { tokens = 1M }
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """`ray start --head --block` on 127.0.0.1 with `cpus` CPUs; stopped (its process group) on exit."""

    def __init__(self, cpus: int):
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
        self.proc = subprocess.Popen([str(PYTHON_BIN / "ray"), "start", "--head", "--block", "--node-ip-address",
                                      "127.0.0.1", "--port", str(self.port), "--num-cpus", str(cpus), "--num-gpus",
                                      "0", "--disable-usage-stats", "--include-dashboard", "false"],
                                     env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"ray start did not come up on {self.address}") from None
                time.sleep(0.5)
        time.sleep(2)  # the raylet registers a moment after the GCS answers

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc) -> None:
        self.proc.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=20)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


def compile_once(root: Path, name: str, args: list[str]) -> tuple[float, float, list[tuple[str, str]]]:
    """(wall seconds, the slowest tokenize stage's seconds, mix.lock's shard hashes) of one cold compile."""
    cache, out = root / f"cache-{name}", root / f"out-{name}"
    shutil.rmtree(cache, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    start = time.perf_counter()
    done = subprocess.run([str(PYTHON_BIN / "mixc"), "compile", "spec.mix", "--workers", "2", "--no-progress",
                           "--cache-dir", str(cache), "--out", str(out), *args],
                          cwd=root, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"{name}: mixc compile failed ({done.returncode}):\n{done.stdout}\n{done.stderr[-3000:]}")
    tokenize = max(float(m) for m in re.findall(r"tokenize:\w+: built in ([\d.]+) s", done.stderr))
    return seconds, tokenize, [(s.path, s.sha256) for s in Lock.read(out / "mix.lock").shards]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=64.0, help="MB of text per source")
    parser.add_argument("--repeat", type=int, default=2, help="runs per row; the best counts")
    parser.add_argument("--keep", type=Path, default=None, help="workspace folder to keep")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="mixc-ray-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text("")
    (root / "spec.mix").write_text(SPEC)
    docs = 0
    for seed, side in enumerate(("left", "right")):
        docs += write_jsonl_corpus(root / "data" / side, int(args.mb * 1e6), int(args.mb * 1e6 / 4), seed=seed)[1]
    print(f"text: 2 sources x {args.mb:g} MB ({docs:,} docs), tiktoken cl100k, --workers 2; {os.cpu_count()} cores; "
          f"best of {args.repeat}", flush=True)

    rows: dict[str, tuple[float, float]] = {}
    baseline_shards = None

    def measure(name: str, extra: list[str]) -> None:
        nonlocal baseline_shards
        best, tokenize, shards = min(compile_once(root, name.replace(" ", "").replace(",", "-"), extra)
                                     for _ in range(args.repeat))
        if baseline_shards is None:
            baseline_shards = shards
        same = "same shards" if shards == baseline_shards else "SHARDS DIFFER"
        rows[name] = best, tokenize
        print(f"  {name:<14} {best:8.2f} s   {same}", flush=True)

    try:
        measure("local", [])
        for cpus in (2, 1):
            with Cluster(cpus) as cluster:
                measure(f"ray, {cpus} CPU" + ("s" if cpus > 1 else ""), ["--executor", "ray", "--address",
                                                                          cluster.address])
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)

    base, one = rows["local"], rows["ray, 1 CPU"]
    ratios = f"{'x local':>8} {'x 1 CPU':>8}"
    print(f"\n{'row':<14} {'seconds':>8} {ratios} {'tokenize s':>11} {ratios}")
    for name, (seconds, tokenize) in rows.items():
        ray = name.startswith("ray")
        print(f"{name:<14} {seconds:8.2f} {seconds / base[0]:7.2f}x "
              + (f"{one[0] / seconds:7.2f}x" if ray else "       -")
              + f" {tokenize:11.2f} {tokenize / base[1]:7.2f}x "
              + (f"{one[1] / tokenize:7.2f}x" if ray else "       -"))
    print("baseline: local; x local = time / local's time; x 1 CPU = Ray-on-1-CPU time / row time (throughput); "
          "tokenize s: the slower source's tokenize stage")


if __name__ == "__main__":
    main()
