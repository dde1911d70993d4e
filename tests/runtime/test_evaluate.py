"""Evaluation in the runtime: the callback during training (metrics.jsonl rows, the run's report),
`mixc eval`'s `evaluate_run` on the same checkpoint (the same numbers), and two processes through
Composer's launcher against one (the same numbers again)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from mixc.errors import DataError
from runtime.evaluate import evaluate_run, locate_run
from runtime.train import train
from tests.runtime.conftest import NO_REPEATS

COMPOSER = Path(sys.executable).with_name("composer")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """A plan with a 24-item sqa set scored every 5 batches, trained 10 batches: (plan, run dir)."""
    from tests.runtime.conftest import make_plan

    root = tmp_path_factory.mktemp("eval")
    plan = make_plan(root / "compiled", NO_REPEATS, eval_items=24)
    train(plan, run_dir=root / "run", max_duration="10ba", device="cpu")
    return plan, root / "run"


def test_training_scores_every_eval_every_batches_and_writes_the_report(trained):
    _, run = trained
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    scored = [r for r in rows if "eval/qa/acc" in r]
    assert [r["step"] for r in scored] == [5, 10]
    assert all(0 <= r["eval/qa/acc"] <= 1 and r["eval/qa/gap_spoken_written"] >= 0 for r in scored)
    assert {"eval.json", "report.md", "loss.png", "eval.png", "run.json"} <= {p.name for p in run.iterdir()}
    result = json.loads((run / "eval.json").read_text())
    assert result["step"] == 10 and len(result["sets"]["qa"]["items"]) == 24
    assert "| qa | sqa | 24 |" in (run / "report.md").read_text()


def test_mixc_eval_gives_the_numbers_training_logged(trained):
    _, run = trained
    logged = json.loads((run / "eval.json").read_text())["sets"]
    _, again = evaluate_run(run)
    assert again["qa"]["summary"] == logged["qa"]["summary"]
    assert again["qa"]["items"] == logged["qa"]["items"]


@pytest.mark.distributed
def test_two_processes_give_the_numbers_of_one(trained, tmp_path):
    plan, run = trained
    one = json.loads((run / "eval.json").read_text())["sets"]
    two_dir = tmp_path / "copy"
    two_dir.mkdir()
    for name in ("checkpoints", "run.json", "plan.json", "metrics.jsonl"):
        source = run / name
        (two_dir / name).symlink_to(source, target_is_directory=source.is_dir())
    launched = subprocess.run([str(COMPOSER), "-n", "2", "-m", "runtime.evaluate", str(two_dir), "--device", "cpu"],
                              cwd=REPO, env={k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"},
                              capture_output=True, text=True, timeout=300)
    assert launched.returncode == 0, launched.stdout[-3000:] + launched.stderr[-3000:]
    two = json.loads((two_dir / "eval.json").read_text())["sets"]
    assert two["qa"]["summary"] == one["qa"]["summary"] and two["qa"]["items"] == one["qa"]["items"]


def test_eval_errors_say_what_to_pass(trained, plan_factory: Callable[..., Path], tmp_path):
    _, run = trained
    with pytest.raises(DataError, match="holds no checkpoint"):
        locate_run(tmp_path)
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "latest-rank0.pt").symlink_to(next((run / "checkpoints").glob("ep*.pt")))
    with pytest.raises(DataError, match="does not say which plan trained it"):
        locate_run(tmp_path)
    bare = plan_factory()  # a plan without eval sets
    with pytest.raises(DataError, match="has no eval sets"):
        evaluate_run(tmp_path, bare)
