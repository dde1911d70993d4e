"""Cost before compute: which stages of an experiment's points are in the cache already, which the
points share (built once), which are each point's own, and the CPU and training hours expected.

A stage is identified by its content key (`StageNode.key`), so two points share a stage exactly when
they would build the same artifact. Hours are estimates, said as such: a stage to build costs the
mean CPU time the cache recorded for earlier builds of its kind (stages of a kind never built are
counted, not guessed); a training run costs its tokens over the throughput earlier runs of this
experiment logged (none yet: unknown until the first run logs its speed).
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from mixc.build.cache import Cache
from mixc.build.execute import Executor
from mixc.experiments.runner import Experiment
from mixc.plan import budget
from mixc.plan.dag import StageGraph
from mixc.stages import graph


@dataclass
class Cost:
    points: list[str]
    stages: dict[str, str] = field(default_factory=dict)  # key -> a stage id that has it
    users: dict[str, list[str]] = field(default_factory=dict)  # key -> the points that need it
    cached: set[str] = field(default_factory=set)
    cpu_seconds: dict[str, float] = field(default_factory=dict)  # key -> estimate, for stages to build
    train_tokens: dict[str, int] = field(default_factory=dict)  # point -> tokens one run trains on
    runs: dict[str, int] = field(default_factory=dict)  # point -> runs still to train
    tokens_per_sec: float | None = None

    @property
    def shared(self) -> set[str]:
        return {k for k, users in self.users.items() if len(users) > 1 and k not in self.cached}

    def unique(self, point: str) -> set[str]:
        return {k for k, users in self.users.items() if users == [point] and k not in self.cached}

    @property
    def to_build(self) -> set[str]:
        return set(self.users) - self.cached

    def train_hours(self) -> float | None:
        if self.tokens_per_sec is None:
            return None
        return sum(self.train_tokens[p] * n for p, n in self.runs.items()) / self.tokens_per_sec / 3600


def _kind_seconds(cache: Cache, kind: str) -> float | None:
    """The mean CPU seconds of the cache's recorded builds of a stage kind."""
    seen = []
    for stats in sorted((cache.root / kind).glob("*/stats.json")) if (cache.root / kind).is_dir() else []:
        data = json.loads(stats.read_text())
        seen.append(float(data.get("cpu_seconds") or data.get("seconds") or 0.0))
    return statistics.fmean(seen) if seen else None


def logged_speed(runs: list[Path]) -> float | None:
    """The median tokens/s logged by the experiment's runs so far (their metrics.jsonl)."""
    speeds = [row["tokens_per_sec"] for path in (r / "metrics.jsonl" for r in runs) if path.is_file()
              for row in map(json.loads, path.read_text().splitlines()) if row.get("tokens_per_sec")]
    return statistics.median(speeds) if speeds else None


def estimate(experiment: Experiment, cache: Cache) -> Cost:
    """The experiment's cost: its stages, and the runs each point still has to train."""
    cost = Cost([p.name for p in experiment.points], runs=experiment.pending(),
                tokens_per_sec=logged_speed([r.folder for r in experiment.runs()]))
    for point in experiment.points:
        spec = point.low.spec
        stages: StageGraph = graph(spec)
        cached = Executor(spec, point.low.root, cache).preview(stages)
        for sid, node in stages.items():
            cost.stages.setdefault(node.key, sid)
            cost.users.setdefault(node.key, []).append(point.name)
            if cached[sid]:
                cost.cached.add(node.key)
        steps = budget.total_steps(spec) or 0
        cost.train_tokens[point.name] = steps * spec.train.batch * spec.pack.seq_len
    by_kind: dict[str, float | None] = {}
    for key in cost.to_build:
        kind = cost.stages[key].split(":", 1)[0]
        if kind not in by_kind:
            by_kind[kind] = _kind_seconds(cache, kind)
        if by_kind[kind] is not None:
            cost.cpu_seconds[key] = by_kind[kind] or 0.0
    return cost


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h" if seconds >= 360 else f"{seconds / 60:.1f} min"


def render(cost: Cost, device: str) -> str:
    """What `mixc ablate` prints before it runs anything."""
    total = len(cost.users)
    lines = [f"{len(cost.points)} points, {total} distinct stages: {len(cost.cached)} in the cache, "
             f"{len(cost.shared)} to build once and share, {len(cost.to_build) - len(cost.shared)} each point's own",
             "", f"{'point':<28} {'stages':>6} {'cached':>6} {'shared':>6} {'own':>4} {'runs':>4}  tokens/run"]
    for name in cost.points:
        mine = [k for k, users in cost.users.items() if name in users]
        lines.append(f"{name:<28} {len(mine):>6} {sum(k in cost.cached for k in mine):>6} "
                     f"{sum(k in cost.shared for k in mine):>6} {len(cost.unique(name)):>4} "
                     f"{cost.runs.get(name, 0):>4}  {cost.train_tokens[name]:,}")
    unknown = len(cost.to_build) - len(cost.cpu_seconds)
    compile_line = f"compile: {len(cost.to_build)} stages to build"
    if cost.cpu_seconds:
        compile_line += (f", about {_hours(sum(cost.cpu_seconds.values()))} CPU (from the cache's earlier builds "
                         "of their kinds)")
    if unknown:
        compile_line += f"; {unknown} of kinds this cache never built, not estimated"
    hours = cost.train_hours()
    runs = sum(cost.runs.values())
    train_line = (f"train: {runs} run{'s' * (runs != 1)}, about {_hours(hours * 3600)} {device.upper()} "
                  f"at {cost.tokens_per_sec:,.0f} tokens/s" if hours is not None else
                  f"train: {runs} run{'s' * (runs != 1)}; time unknown until the first run logs its tokens/s")
    return "\n".join(lines + ["", compile_line, train_line]) + "\n"
