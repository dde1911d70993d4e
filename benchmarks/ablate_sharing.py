"""The saving from sharing: a grid run by `mixc ablate` vs its points compiled and trained one by one,
each from an empty cache, in one run.

Workload: the demo at test scale (`mixc demo-data --conversations 4`, the audio tokenizer trained 40
steps), one training run of `--steps` batches per point, no eval sets (the sets' scoring is the same
either way). The grid is one axis of one-factor ablations over it, the first `--points` of: the base,
coarse chunks, stochastic sampling, loss on all tokens (every one rebuilds a different part of the
speech streams). Baseline (named `one by one`): for each point, `mixc compile FILE@POINT` with a
cache of its own, then `mixc train`. Measured: `mixc ablate FILE --seeds 1` with one empty cache.
Both are timed end to end through the console script; the ratio is grid / one by one.

    .venv/bin/python benchmarks/ablate_sharing.py [--points 2 3 4] [--steps 20] [--json]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_corpus import emit

REPO = Path(__file__).resolve().parent.parent
POINTS = {
    "coarse": "source conversations {\n        chunk coarse {\n          max = 60s\n        }\n      }",
    "stochastic": "interleave {\n        sampling = stochastic(p=0.5)\n      }",
    "loss_all": "interleave {\n        loss = all\n      }",
}


def grid_spec(points: int) -> str:
    chosen = ["base {}"] + [f"{name} {{\n      {body}\n    }}" for name, body in list(POINTS.items())[:points - 1]]
    return ('extends "demo.mix"\n\ntokenizer audio : fsq {\n  steps = 40\n}\n\neval {\n  every = 0\n}\n\n'
            "grid {\n  axis ablation {\n    " + "\n    ".join(chosen) + "\n  }\n}\n")


def run(mixc: str, root: Path, *args: str) -> float:
    start = time.perf_counter()
    done = subprocess.run([mixc, *args], cwd=root, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"mixc {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return time.perf_counter() - start


def demo_without_eval(text: str) -> str:
    """demo.mix without its eval sets: their compile stages and scoring would be the same either way."""
    head, _, tail = text.partition("\neval {")
    return head + tail[tail.index("\n}\n") + 3:] if tail else text


def measure(points: int, steps: int) -> dict:
    mixc = str(Path(sys.executable).with_name("mixc"))
    root = Path(tempfile.mkdtemp(prefix="mixc-ablate-bench-"))
    try:
        (root / "specs").mkdir()
        (root / "pyproject.toml").write_text("")
        (root / "specs" / "demo.mix").write_text(demo_without_eval((REPO / "specs" / "demo.mix").read_text()))
        (root / "specs" / "grid.mix").write_text(grid_spec(points))
        run(mixc, root, "demo-data", "--conversations", "4", "--no-progress")
        names = ["base"] + list(POINTS)[:points - 1]
        one_by_one = {}
        for k, name in enumerate(names):
            ref = "specs/grid.mix" if name == "base" else f"specs/grid.mix@{name}"
            seconds = run(mixc, root, "compile", ref, "--out", f"alone/{name}", "--cache-dir", f"cache-{k}")
            seconds += run(mixc, root, "train", f"alone/{name}/plan.json", "--run-dir", f"alone/{name}/run",
                           "--max-duration", f"{steps}ba")
            one_by_one[name] = seconds
        grid = run(mixc, root, "ablate", "specs/grid.mix", "--out", "grid", "--cache-dir", "cache-grid",
                   "--max-duration", f"{steps}ba", "--no-sizes")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    total = sum(one_by_one.values())
    return {"points": points, "steps": steps, "one_by_one_s": one_by_one, "one_by_one_total_s": total,
            "grid_s": grid, "ratio": grid / total}


def print_table(r: dict) -> None:
    print(f"{'points':>6} {'one by one':>11} {'grid':>8} {'ratio':>6}   (training {r['runs'][0]['steps']} batches "
          "per point; seconds)")
    for x in r["runs"]:
        print(f"{x['points']:>6} {x['one_by_one_total_s']:>11.1f} {x['grid_s']:>8.1f} {x['ratio']:>6.2f}   "
              + ", ".join(f"{k} {v:.0f}" for k, v in x["one_by_one_s"].items()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--points", type=int, nargs="+", default=[2, 4], choices=[2, 3, 4])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    return emit({"runs": [measure(n, args.steps) for n in args.points]}, args.json, print_table)


if __name__ == "__main__":
    sys.exit(main())
