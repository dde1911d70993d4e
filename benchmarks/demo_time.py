"""Wall time of the README's main job, end to end and by stage, in a fresh workspace and cache.

Runs the three `mixc` commands of the main job exactly as the README does (`mixc demo-data`,
`mixc compile specs/demo.mix --out build/demo`, `mixc train build/demo/plan.json`) through the
console script, in a new folder with a copy of specs/demo.mix and an empty cache, and prints each
command's wall time, the compile's time per stage (from each stage's stats in the cache), the final
training loss and evaluation, and the total against the 10-minute target (the set-up,
`scripts/setup.sh`, is not timed: it depends on the network and on what is installed). Exits 0; it is a benchmark.

    .venv/bin/python benchmarks/demo_time.py [--json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_corpus import emit

REPO = Path(__file__).resolve().parent.parent
TARGET_S = 10 * 60
COMMANDS = (("demo-data", ["demo-data"]),
            ("compile", ["compile", "specs/demo.mix", "--out", "build/demo", "--cache-dir", "cache"]),
            ("train", ["train", "build/demo/plan.json", "--run-dir", "runs/demo"]))


def measure() -> dict:
    from mixc.build.cache import Cache
    from mixc.planfile import Lock

    mixc = str(Path(sys.executable).with_name("mixc"))
    root = Path(tempfile.mkdtemp(prefix="mixc-demo-time-"))
    try:
        (root / "specs").mkdir()
        (root / "pyproject.toml").write_text("")
        shutil.copy(REPO / "specs" / "demo.mix", root / "specs" / "demo.mix")
        commands = {}
        for name, args in COMMANDS:
            start = time.perf_counter()
            done = subprocess.run([mixc, *args], cwd=root, capture_output=True, text=True)
            commands[name] = time.perf_counter() - start
            if done.returncode:
                raise SystemExit(f"mixc {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
        lock = Lock.read(root / "build" / "demo" / "mix.lock")
        cache = Cache(root / "cache", create=False)
        stages = {}
        for sid, key in lock.stage_keys.items():
            stats = cache.read_stats(sid.split(":")[0], key)
            stages[sid] = {"wall_s": stats["seconds"], "cpu_s": stats.get("cpu_seconds", 0.0)}
        rows = [json.loads(line) for line in (root / "runs" / "demo" / "metrics.jsonl").read_text().splitlines()]
        evaluated = json.loads((root / "runs" / "demo" / "eval.json").read_text())["sets"]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    losses = [r["loss"] for r in rows if r.get("loss") is not None]
    return {"commands": commands, "total_s": sum(commands.values()), "stages": stages,
            "final_loss": losses[-1] if losses else None,
            "eval": {name: s["summary"] for name, s in evaluated.items()}}


def print_table(r: dict) -> None:
    print("README main job (after scripts/setup.sh), fresh workspace and cache")
    for name, seconds in r["commands"].items():
        print(f"  mixc {name:<10}{seconds:>8.1f} s")
    print(f"  {'total':<15}{r['total_s']:>8.1f} s = {r['total_s'] / 60:.1f} min "
          f"(target < {TARGET_S // 60} min: {'PASS' if r['total_s'] < TARGET_S else 'FAIL'})")
    print("compile by stage (the stage's own wall time; CPU time includes worker processes):")
    for sid, x in sorted(r["stages"].items(), key=lambda kv: -kv[1]["wall_s"]):
        print(f"  {sid:<30}{x['wall_s']:>8.1f} s{x['cpu_s']:>8.1f} CPU s")
    other = r["commands"]["compile"] - sum(x["wall_s"] for x in r["stages"].values())
    print(f"  {'(start-up, outputs, report)':<30}{other:>8.1f} s")
    if r["final_loss"] is not None:
        print(f"final training loss: {r['final_loss']:.3f}")
    for name, summary in r["eval"].items():
        print(f"eval {name}: " + ", ".join(f"{k} {v:.3f}" for k, v in summary.items() if k != "items"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true")
    return emit(measure(), parser.parse_args().json, print_table)


if __name__ == "__main__":
    sys.exit(main())
