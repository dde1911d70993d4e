"""The results table: means and 95% t intervals over seeds, paired differences to the base, the
markdown and plots, from run folders as `mixc train` leaves them."""

from __future__ import annotations

import json
import math

import polars as pl
import pytest

from mixc.experiments import results

ACC = {"base": [0.30, 0.34, 0.32], "coarse": [0.26, 0.31, 0.27]}


def experiment(tmp_path, finished=(0, 1, 2)):
    points = [{"name": "base", "spec": "b.mix", "ir_hash": "a", "change": "the base", "params": {}},
              {"name": "coarse", "spec": "c.mix", "ir_hash": "b", "change": "chunk=coarse",
               "params": {"chunk": "coarse"}}]
    (tmp_path / "ablate.json").write_text(json.dumps({"base": "base", "seeds": [0, 1, 2], "points": points,
                                                      "tracking": {}}))
    for name, accs in ACC.items():
        for seed, acc in enumerate(accs):
            run = tmp_path / "points" / name / f"seed-{seed}"
            run.mkdir(parents=True)
            summary = {"items": 60.0, "acc": acc, "chance": 0.25, "gap_spoken_written": 3.0 + seed}
            (run / "eval.json").write_text(json.dumps({"step": 10, "sets": {"qa": {"kind": "sqa",
                                                                                   "summary": summary}}}))
            (run / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "loss": 5.0 - s / 10 - acc}) + "\n"
                                                       for s in (5, 10)))
            if seed in finished:
                (run / "done.json").write_text("{}")
    return tmp_path


def test_interval_is_students_t():
    got = results.interval([1.0, 2.0, 3.0, 4.0])
    half = 3.182446305284263 * math.sqrt(5 / 3) / 2  # t(0.975, 3) * sd / sqrt(n)
    assert (got.n, got.mean) == (4, 2.5)
    assert (got.low, got.high) == pytest.approx((2.5 - half, 2.5 + half))
    one = results.interval([0.7])
    assert one.mean == 0.7 and math.isnan(one.low)


def test_points_get_intervals_and_paired_differences_to_the_base(tmp_path):
    table = results.write(experiment(tmp_path))
    acc = {r["point"]: r for r in table.filter(pl.col("metric") == "qa/acc").iter_rows(named=True)}
    assert acc["base"]["mean"] == pytest.approx(0.32) and acc["base"]["diff"] is None
    paired = results.interval([c - b for b, c in zip(ACC["base"], ACC["coarse"])])
    assert acc["coarse"]["diff"] == pytest.approx(-0.04) and acc["coarse"]["pairs"] == 3
    assert (acc["coarse"]["diff_low"], acc["coarse"]["diff_high"]) == pytest.approx((paired.low, paired.high))
    assert set(table["metric"]) == {"qa/acc", "qa/gap_spoken_written", "train/loss"}  # chance, items: not metrics
    text = (tmp_path / "results.md").read_text()
    assert "### qa/acc (%)" in text and "| coarse | 3 | 28.0 |" in text and "chunk=coarse" in text
    assert (tmp_path / "results.png").stat().st_size and (tmp_path / "loss.png").stat().st_size
    assert pl.read_parquet(tmp_path / "results.parquet").equals(table)


def test_only_finished_runs_count_and_pairs_need_both(tmp_path):
    table = results.write(experiment(tmp_path, finished=(0, 1)))
    coarse = table.filter((pl.col("metric") == "qa/acc") & (pl.col("point") == "coarse")).row(0, named=True)
    assert coarse["n"] == 2 and coarse["pairs"] == 2 and coarse["diff"] == pytest.approx(-0.035)


def test_the_data_each_point_trained_on_shows_switches_against_n_minus_1(tmp_path):
    experiment(tmp_path)
    facts = {"base": {"chunk:web": {"chunks": 40, "chunk_seconds_mean": 6.5},
                      "interleave:web": {"documents": 4, "chunks_per_document": 10.0, "switches_per_document": 9.0}},
             "coarse": {"chunk:web": {"chunks": 12, "chunk_seconds_mean": 21.0},
                        "interleave:web": {"documents": 4, "chunks_per_document": 3.0, "switches_per_document": 2.0}}}
    for name, data in facts.items():
        (tmp_path / "points" / name / "data.json").write_text(json.dumps(data))
    results.write(tmp_path)
    text = (tmp_path / "results.md").read_text()
    assert "| base | web | 6.50 | 10.00 | 9.00 | 9.00 |" in text
    assert "| coarse | web | 21.00 | 3.00 | 2.00 | 2.00 |" in text
