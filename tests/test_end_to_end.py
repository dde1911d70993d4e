"""The README's main job, through the console script: demo data -> compile -> train (shortened)."""

import json
import subprocess
import sys
from pathlib import Path

from mixc.planfile import Lock, Plan
from tests.conftest import REPO

MIXC = str(Path(sys.executable).with_name("mixc"))


def mixc(*args: str, cwd: Path) -> str:
    out = subprocess.run([MIXC, *args], cwd=cwd, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_demo_compiles_and_trains_on_cpu(tmp_path):
    workspace = tmp_path / "demo"
    (workspace / "specs").mkdir(parents=True)
    (workspace / "pyproject.toml").write_text("")
    (workspace / "specs" / "demo.mix").write_text((REPO / "specs" / "demo.mix").read_text())
    mixc("demo-data", cwd=workspace)
    compiled = mixc("compile", "specs/demo.mix", "--out", "build/demo", "--cache-dir", str(tmp_path / "cache"),
                    cwd=workspace)
    assert "factbook" in compiled and "build/demo/plan.json" in compiled
    out = workspace / "build" / "demo"
    plan = Plan.read(out / "plan.json")
    Lock.read(out / "mix.lock")
    assert plan.streams[0].samples > 0 and plan.trainer.steps == 300

    trained = mixc("train", "build/demo/plan.json", "--run-dir", "runs/demo", "--max-duration", "30ba",
                   cwd=workspace)
    assert "done at step 30" in trained
    metrics = [json.loads(line) for line in (workspace / "runs" / "demo" / "metrics.jsonl").read_text().splitlines()]
    losses = [m["loss"] for m in metrics if m.get("loss") is not None]
    assert len(losses) >= 3 and losses[-1] < losses[0], losses
    assert list((workspace / "runs" / "demo" / "checkpoints").glob("*.pt"))
