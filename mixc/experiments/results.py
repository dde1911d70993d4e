"""The answer of an experiment: one row per point and metric, its mean and 95% interval over seeds,
and its paired difference to the base (same seed, same compiled data order) with its interval.

Metrics are what each run's eval.json summarises (`SET/FIGURE`: `factbook_qa/acc`, `heldout/web/ppl`)
and the last training loss logged (`train/loss`). Intervals are Student t intervals: mean ±
t(0.975, n-1) · sd / sqrt(n), over seeds for a point, over the per-seed differences for a point
against the base; with one seed there is no interval (NaN). Written by `write`:

- `results.parquet`: point, metric, n, mean, sd, low, high, diff, diff_low, diff_high, pairs, change;
- `results.md`: the headline metrics, one table each (points as rows), and the plots;
- `results.png` (headline metrics per point with their intervals) and `loss.png` (each point's loss
  curve, the mean over its seeds).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from mixc.experiments.layout import DATA_FACTS, DONE, MANIFEST, point_folder, run_folder

HEADLINE = ("acc", "text_acc", "gap_spoken_written", "ppl", "text_ppl", "loss")
SKIP = {"items", "chance", "tokens", "text_tokens"}


@dataclass(frozen=True)
class Estimate:
    n: int
    mean: float
    sd: float
    low: float
    high: float


def interval(values: list[float]) -> Estimate:
    """The mean and its 95% Student t interval (NaN bounds for fewer than two values)."""
    from scipy import stats

    n = len(values)
    mean = math.fsum(values) / n if n else math.nan
    if n < 2:
        return Estimate(n, mean, math.nan, math.nan, math.nan)
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
    return Estimate(n, mean, sd, mean - half, mean + half)


def run_metrics(run: Path) -> dict[str, float]:
    """A finished run's figures: every eval summary figure (`SET/FIGURE`) and `train/loss`."""
    out: dict[str, float] = {}
    evaluated = run / "eval.json"
    if evaluated.is_file():
        for name, result in json.loads(evaluated.read_text())["sets"].items():
            out.update({f"{name}/{k}": float(v) for k, v in result["summary"].items() if k not in SKIP})
    metrics = run / "metrics.jsonl"
    if metrics.is_file():
        rows = map(json.loads, metrics.read_text().splitlines())
        losses = [row["loss"] for row in rows if row.get("loss") is not None]
        if losses:
            out["train/loss"] = float(losses[-1])
    return out


def collect(out: Path) -> tuple[dict, pl.DataFrame]:
    """ablate.json and the long table (point, seed, metric, value) of every finished run."""
    manifest = json.loads((out / MANIFEST).read_text())
    rows = []
    for point in manifest["points"]:
        for seed in manifest["seeds"]:
            run = run_folder(out, point["name"], seed)
            if (run / DONE).is_file():
                rows += [{"point": point["name"], "seed": seed, "metric": k, "value": v}
                         for k, v in run_metrics(run).items()]
    schema = {"point": pl.String, "seed": pl.Int64, "metric": pl.String, "value": pl.Float64}
    return manifest, pl.DataFrame(rows, schema=schema)


def summarise(manifest: dict, runs: pl.DataFrame) -> pl.DataFrame:
    """One row per (point, metric): the interval over seeds and the paired difference to the base."""
    base = manifest["base"]
    values: dict[tuple[str, str], dict[int, float]] = {}
    for r in runs.iter_rows(named=True):
        values.setdefault((r["point"], r["metric"]), {})[r["seed"]] = r["value"]
    change = {p["name"]: p["change"] for p in manifest["points"]}
    rows = []
    for point in [p["name"] for p in manifest["points"]]:
        for metric in sorted({m for p, m in values if p == point}):
            mine = values[(point, metric)]
            own = interval(list(mine.values()))
            theirs = values.get((base, metric), {})
            pairs = sorted(set(mine) & set(theirs))
            delta = interval([mine[s] - theirs[s] for s in pairs]) if point != base and pairs else None
            rows.append({"point": point, "metric": metric, "n": own.n, "mean": own.mean, "sd": own.sd,
                         "low": own.low, "high": own.high, "diff": delta.mean if delta else None,
                         "diff_low": delta.low if delta else None, "diff_high": delta.high if delta else None,
                         "pairs": len(pairs) if point != base else 0, "change": change[point]})
    return pl.DataFrame(rows, schema={"point": pl.String, "metric": pl.String, "n": pl.Int64, "mean": pl.Float64,
                                      "sd": pl.Float64, "low": pl.Float64, "high": pl.Float64,
                                      "diff": pl.Float64, "diff_low": pl.Float64, "diff_high": pl.Float64,
                                      "pairs": pl.Int64, "change": pl.String})


def headline(table: pl.DataFrame) -> list[str]:
    """The metrics worth a table: each set's headline figures and the training loss, in that order."""
    metrics = table["metric"].unique().to_list()
    return [m for figure in HEADLINE for m in sorted(metrics) if m.rsplit("/", 1)[-1] == figure]


def _fmt(value: float | None, pct: bool) -> str:
    if value is None or math.isnan(value):
        return "-"
    return f"{100 * value:.1f}" if pct else f"{value:.3f}"


def _range(low: float | None, high: float | None, pct: bool) -> str:
    return "-" if low is None or math.isnan(low) else f"[{_fmt(low, pct)}, {_fmt(high, pct)}]"


def _tables(table: pl.DataFrame) -> Iterator[str]:
    for metric in headline(table):
        pct = metric.rsplit("/", 1)[-1] in ("acc", "text_acc", "acc_norm", "text_acc_norm")
        unit = " (%)" if pct else ""
        yield f"### {metric}{unit}\n"
        yield "| point | seeds | mean | 95% CI | Δ vs base | 95% CI of Δ | change |"
        yield "|---|---|---|---|---|---|---|"
        for r in table.filter(pl.col("metric") == metric).iter_rows(named=True):
            yield (f"| {r['point']} | {r['n']} | {_fmt(r['mean'], pct)} | {_range(r['low'], r['high'], pct)} | "
                   f"{_fmt(r['diff'], pct)} | {_range(r['diff_low'], r['diff_high'], pct)} | {r['change']} |")
        yield ""


def data_facts(out: Path, manifest: dict) -> list[str]:
    """A table of each point's speech streams: chunk length, chunks and modality switches per
    document (`n - 1` under deterministic sampling, about `(n - 1) / 2` under stochastic p = 0.5)."""
    rows = []
    for point in manifest["points"]:
        path = point_folder(out, point["name"]) / DATA_FACTS
        facts = json.loads(path.read_text()) if path.is_file() else {}
        for sid, counts in facts.items():
            kind, stream = sid.split(":", 1)
            if kind != "interleave":
                continue
            chunks = facts.get(f"chunk:{stream}") or facts.get(f"tts:{stream}") or {}
            n = counts.get("chunks_per_document")
            rows.append(f"| {point['name']} | {stream} | {chunks.get('chunk_seconds_mean', math.nan):.2f} | "
                        f"{n:.2f} | {counts.get('switches_per_document', math.nan):.2f} | {n - 1:.2f} |")
    if not rows:
        return []
    return ["## The data each point trained on", "", "Per speech stream, from the compile's stage stats: mean chunk "
            "length, chunks per document `n`, modality switches per document.", "",
            "| point | stream | chunk s | chunks/doc (n) | switches/doc | n - 1 |", "|---|---|---|---|---|---|",
            *rows, ""]


def markdown(manifest: dict, table: pl.DataFrame, plots: list[str], facts: list[str]) -> str:
    seeds = ", ".join(map(str, manifest["seeds"]))
    lines = ["# Results", "", f"{len(manifest['points'])} points, seeds {seeds}; base: `{manifest['base']}` "
             f"({manifest['points'][0]['spec']}). Means over seeds with 95% t intervals; Δ is the paired "
             "difference to the base over the seeds both finished.", ""]
    lines += list(_tables(table)) if len(table) else ["No run has finished yet.", ""]
    lines += facts
    lines += [f"![{p.removesuffix('.png')}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


def plot(out: Path, manifest: dict, table: pl.DataFrame) -> list[str]:
    """results.png and loss.png; the names of the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    metrics = headline(table)[:6]
    if metrics:
        fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics), 3.4), squeeze=False)
        for ax, metric in zip(axes[0], metrics):
            rows = table.filter(pl.col("metric") == metric)
            means = rows["mean"].to_list()
            errors = [[0 if math.isnan(lo) else m - lo for m, lo in zip(means, rows["low"].to_list())],
                      [0 if math.isnan(hi) else hi - m for m, hi in zip(means, rows["high"].to_list())]]
            ax.errorbar(range(len(means)), means, yerr=errors, fmt="o", capsize=4)
            ax.set_xticks(range(len(means)), rows["point"].to_list(), rotation=45, ha="right", fontsize=7)
            ax.set_title(metric, fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "results.png", dpi=100)
        plt.close(fig)
        written.append("results.png")
    curves = _loss_curves(out, manifest)
    if curves:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for name, points in curves.items():
            ax.plot(*zip(*points), label=name)
        ax.set(xlabel="step", ylabel="training loss (mean over seeds)", title="loss")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "loss.png", dpi=100)
        plt.close(fig)
        written.append("loss.png")
    return written


def _loss_curves(out: Path, manifest: dict) -> dict[str, list[tuple[int, float]]]:
    curves = {}
    for point in manifest["points"]:
        by_step: dict[int, list[float]] = {}
        for seed in manifest["seeds"]:
            metrics = run_folder(out, point["name"], seed) / "metrics.jsonl"
            for row in map(json.loads, metrics.read_text().splitlines() if metrics.is_file() else []):
                if row.get("loss") is not None:
                    by_step.setdefault(row["step"], []).append(row["loss"])
        if by_step:
            curves[point["name"]] = [(s, math.fsum(v) / len(v)) for s, v in sorted(by_step.items())]
    return curves


def write(out: Path) -> pl.DataFrame:
    """results.parquet, results.md and the plots from what the experiment's runs left; the table."""
    manifest, runs = collect(out)
    table = summarise(manifest, runs)
    table.write_parquet(out / "results.parquet", statistics=False)
    (out / "results.md").write_text(markdown(manifest, table, plot(out, manifest, table), data_facts(out, manifest)))
    return table
