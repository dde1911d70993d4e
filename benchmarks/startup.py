"""How long does `uv run mixc check` take to start, and what did byte-compiling on every run cost?

Timed as a user runs it, in one run, median of N (wall clock, a fresh process each time), on
`specs/demo.mix`:

- python:          `.venv/bin/python -c pass`, the interpreter alone (the baseline);
- mixc check:      `.venv/bin/mixc check specs/demo.mix` (the command itself: imports, lowering,
                   checks, the compile's preflight);
- uv run (now):    `uv run mixc check specs/demo.mix` with the project's settings: uv checks the
                   environment is in sync, finds nothing to do, and runs the command;
- uv run (before): the same with UV_COMPILE_BYTECODE=1, which is what `compile-bytecode = true` in
                   [tool.uv] did: byte-compile the whole environment (38K files) on every run,
                   printing "Bytecode compiled N files".

Ratios are against the interpreter alone. The script always exits 0; it is a benchmark, not a test.

    .venv/bin/python benchmarks/startup.py [--repeat 7] [--json]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench_corpus import emit

REPO = Path(__file__).resolve().parent.parent
VENV = REPO / ".venv" / "bin"
CHECK = ["check", "specs/demo.mix"]


def uv() -> list[str]:
    return [found] if (found := shutil.which("uv")) else [sys.executable, "-m", "uv"]


def timed(command: list[str], env: dict[str, str], repeat: int) -> tuple[float, str]:
    """Median wall seconds of `repeat` runs (after one warm-up run), and the last run's stderr."""
    runs, err = [], ""
    for i in range(repeat + 1):
        start = time.perf_counter()
        done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
        if i:
            runs.append(time.perf_counter() - start)
        err = done.stderr
    return statistics.median(runs), err


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("UV_")}
    cases = {
        "python": ([str(VENV / "python"), "-c", "pass"], env),
        "mixc check": ([str(VENV / "mixc"), *CHECK], env),
        "uv run (now)": ([*uv(), "run", "mixc", *CHECK], env),
        "uv run (before)": ([*uv(), "run", "mixc", *CHECK], {**env, "UV_COMPILE_BYTECODE": "1"}),
    }
    rows = {}
    for name, (command, case_env) in cases.items():
        seconds, err = timed(command, case_env, args.repeat)
        rows[name] = {"seconds": seconds, "compiles": "Bytecode compiled" in err}
    base = rows["python"]["seconds"]
    for row in rows.values():
        row["vs_python"] = round(row["seconds"] / base, 1)
    before_over_now = rows["uv run (before)"]["seconds"] / rows["uv run (now)"]["seconds"]
    for row in rows.values():
        row["seconds"] = round(row["seconds"], 3)
    report = {"repeat": args.repeat, "rows": rows, "before_over_now": round(before_over_now, 1)}

    def table(r: dict) -> None:
        print(f"startup, median of {r['repeat']} runs (baseline: the interpreter alone)")
        print(f"{'command':<18}{'seconds':>9}{'x python':>10}  prints 'Bytecode compiled'")
        for name, row in r["rows"].items():
            print(f"{name:<18}{row['seconds']:>9.3f}{row['vs_python']:>10.1f}  {'yes' if row['compiles'] else 'no'}")
        print(f"uv run before / now: {r['before_over_now']:.1f}x")

    return emit(report, args.json, table)


if __name__ == "__main__":
    sys.exit(main())
