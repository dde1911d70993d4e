"""The README's main job, through the console script: demo data -> compile -> train, shortened
(4 conversations instead of 24, 40 tokenizer steps instead of 300, 30 training steps instead of 300)."""

import json
import subprocess
import sys
from pathlib import Path

from mixc.planfile import Lock, TrainingPlan
from tests.conftest import REPO

MIXC = str(Path(sys.executable).with_name("mixc"))


def mixc(*args: str, cwd: Path) -> str:
    out = subprocess.run([MIXC, *args], cwd=cwd, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


SHORT = """extends "demo.mix"

tokenizer audio : fsq {
  steps = 40
}
"""


def test_demo_compiles_and_trains_on_cpu(tmp_path):
    workspace = tmp_path / "demo"
    (workspace / "specs").mkdir(parents=True)
    (workspace / "pyproject.toml").write_text("")
    (workspace / "specs" / "demo.mix").write_text((REPO / "specs" / "demo.mix").read_text())
    (workspace / "specs" / "short.mix").write_text(SHORT)
    made = mixc("demo-data", "--conversations", "4", cwd=workspace)
    assert "4 conversations" in made
    compiled = mixc("compile", "specs/short.mix", "--out", "build/demo", "--cache-dir", str(tmp_path / "cache"),
                    cwd=workspace)
    assert "factbook" in compiled and "conversations" in compiled and "build/demo/plan.json" in compiled
    out = workspace / "build" / "demo"
    plan = TrainingPlan.read(out / "plan.json")
    Lock.read(out / "mix.lock")
    assert {s.name for s in plan.streams} == {"factbook", "conversations", "krist", "quest"}
    assert all(s.samples > 0 for s in plan.streams) and plan.trainer.steps == 300
    assert plan.vocab.audio_size == 1000 and set(plan.vocab.markers) == {"<audio>", "</audio>", "<text>", "</text>"}
    report = (out / "report.md").read_text()
    for section in ("## Web audio", "## Synthetic speech", "## Audio tokenizer", "## Interleaving", "## Eval sets",
                    "### Contamination", "## Topics: coverage"):
        assert section in report
    assert (out / "topics" / "coverage.png").stat().st_size > 0

    trained = mixc("train", "build/demo/plan.json", "--run-dir", "runs/demo", "--max-duration", "30ba",
                   cwd=workspace)
    assert "done at step 30" in trained
    assert "| factbook_qa | sqa | 60 |" in trained  # the eval table, at the end of training
    for stream in ("factbook", "conversations", "krist", "quest"):  # held-out perplexity of every stream
        assert f"| heldout/{stream} | lm |" in trained
    assert plan.eval.sets[0].voice == "espeak:en-us+f3" and plan.eval.every == 100
    result = json.loads((workspace / "runs" / "demo" / "eval.json").read_text())["sets"]["factbook_qa"]
    assert result["summary"]["chance"] == 0.25 and 0 <= result["summary"]["acc"] <= 1
    assert {"loss.png", "eval.png", "report.md"} <= {p.name for p in (workspace / "runs" / "demo").iterdir()}
    evaluated = mixc("eval", "runs/demo", cwd=workspace)
    assert f"acc {result['summary']['acc']:.4f}" in evaluated  # mixc eval: the numbers training logged
    metrics = [json.loads(line) for line in (workspace / "runs" / "demo" / "metrics.jsonl").read_text().splitlines()]
    losses = [m["loss"] for m in metrics if m.get("loss") is not None]
    assert len(losses) >= 3 and losses[-1] < losses[0], losses
    assert list((workspace / "runs" / "demo" / "checkpoints").glob("*.pt"))
