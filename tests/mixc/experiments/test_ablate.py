"""`mixc ablate` end to end through the console script, on a small text workspace: a grid of two
points, two seeds each, two runs at a time; the cost preview, the results, MLflow, and resuming."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from tests.mixc.workspace import TWO_SOURCES, workspace

MIXC = str(Path(sys.executable).with_name("mixc"))
GRID = TWO_SOURCES.format(vocab="400", news=70, books=30).replace("steps = 20", "steps = 6") + """
eval {
  every = 3
  heldout = 10%
  heldout_sequences = 4
}
grid {
  axis lr {
    base {}
    hot {
      train {
        optimizer {
          lr = 3e-3
        }
      }
    }
  }
}
"""


def ablate(ws, *args: str) -> str:
    out = subprocess.run([MIXC, "ablate", "grid.mix", "--out", "exp", "--cache-dir", str(ws.cache.root), *args],
                         cwd=ws.root, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    ws = workspace(tmp_path_factory.mktemp("ablate"))
    ws.spec(GRID, "grid.mix")
    return ws, ablate(ws, "--seeds", "2", "--parallel", "2")


def test_the_preview_says_what_is_shared_then_every_run_is_scored(done):
    ws, out = done
    assert "hot" in out and "train.optimizer.lr=0.003" in out  # the point and its diff against the base
    assert "2 points" in out and "in the cache" in out and "to build once and share" in out
    exp = ws.root / "exp"
    for point in ("base", "hot"):
        for seed in (5, 6):  # the spec's seed, then +1
            run = exp / "points" / point / f"seed-{seed}"
            assert (run / "done.json").is_file() and (run / "eval.json").is_file()
            assert json.loads((run / "plan.json").read_text())["seed"] == seed
    # two seeds of one point ran at once on the same shards, unpacked once beforehand
    assert not list((exp / "points" / "base" / "compiled").rglob("*.tmp"))
    # the lr edit changes no stage: both points compile to the same shards
    base, hot = (json.loads((exp / "points" / p / "compiled" / "mix.lock").read_text())["shards"]
                 for p in ("base", "hot"))
    assert base == hot


def test_results_have_intervals_and_paired_differences(done):
    ws, _ = done
    table = pl.read_parquet(ws.root / "exp" / "results.parquet")
    ppl = table.filter(pl.col("metric") == "heldout/news/ppl")
    assert ppl["n"].to_list() == [2, 2] and ppl["pairs"].to_list() == [0, 2]
    hot = ppl.filter(pl.col("point") == "hot").row(0, named=True)
    assert hot["diff_low"] <= hot["diff"] <= hot["diff_high"]
    text = (ws.root / "exp" / "results.md").read_text()
    assert "### heldout/news/ppl" in text and "| hot | 2 |" in text and "![results](results.png)" in text


def test_every_run_is_tracked_in_mlflow_with_the_diff_as_parameters(done):
    import mlflow

    ws, _ = done
    client = mlflow.MlflowClient(f"sqlite:///{ws.root / 'exp' / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("exp").experiment_id])
    assert sorted(r.info.run_name for r in runs) == ["base/seed-5", "base/seed-6", "hot/seed-5", "hot/seed-6"]
    hot = next(r for r in runs if r.info.run_name == "hot/seed-6")
    assert hot.data.params["train.optimizer.lr"] == "0.003" and hot.data.params["seed"] == "6"
    assert "eval/heldout/news/ppl" in hot.data.metrics and "loss/train/total" in hot.data.metrics


def test_a_rerun_redoes_nothing_and_report_redraws(done):
    ws, _ = done
    again = ablate(ws, "--seeds", "2")
    assert "started" not in again and "compile hot: done before" in again
    before = (ws.root / "exp" / "results.md").read_text()
    (ws.root / "exp" / "results.md").unlink()
    subprocess.run([MIXC, "ablate", "--report", "exp"], cwd=ws.root, check=True, capture_output=True)
    assert (ws.root / "exp" / "results.md").read_text() == before


def test_a_killed_experiment_resumes_where_it_stopped(done, tmp_path):
    ws, _ = done
    cmd = [MIXC, "ablate", "grid.mix", "--out", "killed", "--cache-dir", str(ws.cache.root), "--seeds", "1",
           "--max-duration", "6ba"]
    proc = subprocess.Popen(cmd, cwd=ws.root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    first = ws.root / "killed" / "points" / "base" / "seed-5"
    deadline = time.time() + 600
    while not list((first / "checkpoints").glob("*.pt")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the experiment and its training run, mid-run
    proc.wait()
    assert not (first / "done.json").exists()
    resumed = subprocess.run(cmd, cwd=ws.root, capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resuming from step" in (first / "train.log").read_text()
    assert all((ws.root / "killed" / "points" / p / "seed-5" / "done.json").is_file() for p in ("base", "hot"))
