"""Running an experiment: compile every point into one shared cache, train every (point, seed) with
`mixc train` in parallel up to the devices available, and keep what is done. The folder it fills
is laid out in `mixc.experiments.layout`; the MLflow store is DIR/mlflow.db unless a tracking URI
was given.

A rerun of the same command resumes: compiled points whose plan matches are not recompiled (and
would be cache hits anyway), finished runs (done.json) are never rerun, and an interrupted run
continues from its last checkpoint (Composer's autoresume in `mixc train`). Seeds are the spec's
seed + 0, 1, ... N-1: the data is compiled once, each seed is another initialisation and data order.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mixc.build.cache import Cache
from mixc.build.compile import compile_spec
from mixc.build.execute import OnStage
from mixc.errors import MixcError
from mixc.experiments.layout import DATA_FACTS, DONE, LOG, MANIFEST, point_folder, run_folder
from mixc.experiments.points import Point, PointsError
from mixc.lang.diagnostics import SpecError
from mixc.planfile import TrainingPlan

Say = Callable[[str], None]
FACTS = {"chunk": ("chunks", "chunk_seconds_mean"), "tts": ("chunks", "chunk_seconds_mean"),
         "interleave": ("documents", "chunks_per_document", "switches_per_document")}


def write_data_facts(folder: Path, runs: dict) -> None:
    """data.json: what each speech stream of the point is made of (chunk lengths, chunks and modality
    switches per document), from the compile's stage stats: the mechanisms an ablation changes."""
    facts = {sid: {k: run.stats.counts[k] for k in FACTS[run.node.kind] if k in run.stats.counts}
             for sid, run in sorted(runs.items()) if run.node.kind in FACTS}
    (folder / DATA_FACTS).write_text(json.dumps(facts, indent=1, sort_keys=True) + "\n")


class ExperimentError(MixcError):
    """The output folder holds another experiment, or runs failed."""


@dataclass(frozen=True)
class Run:
    point: str
    seed: int
    folder: Path

    @property
    def done(self) -> bool:
        return (self.folder / DONE).is_file()


@dataclass(frozen=True)
class MlflowStore:
    uri: str  # an MLflow tracking URI
    experiment: str

    def prepare(self) -> None:
        """Creates the store and the experiment once, here: runs starting together would each try to
        create a new sqlite store's tables (and race)."""
        import mlflow

        client = mlflow.MlflowClient(self.uri)
        if client.get_experiment_by_name(self.experiment) is None:
            client.create_experiment(self.experiment)


class Experiment:
    def __init__(self, out: Path, points: list[Point], seeds: int, tracking: MlflowStore):
        self.out, self.points, self.tracking = out, points, tracking
        base_seed = points[0].low.spec.seed
        self.seeds = [base_seed + k for k in range(seeds)]

    def point_dir(self, name: str) -> Path:
        return point_folder(self.out, name)

    def runs(self) -> list[Run]:
        return [Run(p.name, s, run_folder(self.out, p.name, s)) for p in self.points for s in self.seeds]

    def pending(self) -> dict[str, int]:
        """Runs not finished, per point."""
        counts = {p.name: 0 for p in self.points}
        for run in self.runs():
            counts[run.point] += not run.done
        return counts

    def claim(self) -> None:
        """Writes ablate.json; refuses a folder where a point of the same name is another spec."""
        path = self.out / MANIFEST
        if path.is_file():
            before = {p["name"]: p["ir_hash"] for p in json.loads(path.read_text())["points"]}
            for point in self.points:
                if before.get(point.name, point.ir_hash) != point.ir_hash:
                    raise ExperimentError(
                        f"point '{point.name}' is another spec than the one {self.out} ran (IR "
                        f"{before[point.name]}, now {point.ir_hash})",
                        f"use another --out, or remove {self.point_dir(point.name)} to rerun that point")
        self.out.mkdir(parents=True, exist_ok=True)
        document = {"base": self.points[0].name, "seeds": self.seeds,
                    "tracking": {"uri": self.tracking.uri, "experiment": self.tracking.experiment},
                    "points": [{"name": p.name, "spec": p.ref, "ir_hash": p.ir_hash, "change": p.summary(),
                                "params": p.params()} for p in self.points]}
        path.write_text(json.dumps(document, indent=1) + "\n")
        self.tracking.prepare()

    # compile ----------------------------------------------------------------------------------

    def compile(self, cache: Cache, workers: int, say: Say, on_stage: OnStage | None = None) -> dict[str, Path]:
        """Each point's plan.json, compiled into the shared cache unless it already is; PointsError
        with the located errors of a point that does not compile."""
        plans = {}
        for point in self.points:
            out = self.point_dir(point.name) / "compiled"
            plan = out / "plan.json"
            done = plan.is_file() and (out / "mix.lock").is_file() and TrainingPlan.read(plan).ir_hash == point.ir_hash
            if done and (self.point_dir(point.name) / DATA_FACTS).is_file():
                say(f"compile {point.name}: done before")
            else:
                try:
                    result = compile_spec(point.low, point.ref, out, cache, workers, on_stage=on_stage)
                except SpecError as exc:
                    raise PointsError(f"point '{point.name}' does not compile", None, exc.diagnostics,
                                      point.low.texts) from None
                write_data_facts(self.point_dir(point.name), result.runs)
                built = sum(not r.hit for r in result.runs.values())
                say(f"compile {point.name}: {built} stages built, {len(result.runs) - built} from the cache "
                    f"({result.seconds:.1f} s)")
            plans[point.name] = plan
        return plans

    # train ------------------------------------------------------------------------------------

    def command(self, run: Run, plan: Path, max_duration: str | None) -> list[str]:
        point = next(p for p in self.points if p.name == run.point)
        params = run.folder / "params.json"
        params.write_text(json.dumps({"point": run.point, "seed": str(run.seed), "spec": point.ref,
                                      **point.params()}, indent=1) + "\n")
        cmd = [sys.executable, "-m", "mixc", "train", str(plan), "--run-dir", str(run.folder), "--seed",
               str(run.seed), "--mlflow", self.tracking.uri, "--mlflow-experiment", self.tracking.experiment,
               "--mlflow-run", f"{run.point}/seed-{run.seed}", "--mlflow-params", str(params)]
        return cmd + (["--max-duration", max_duration] if max_duration else [])

    def train(self, plans: dict[str, Path], parallel: int, gpus: int, max_duration: str | None, say: Say) -> None:
        """Every unfinished run, `parallel` at a time: with `gpus`, run k sees GPU k mod gpus only;
        on CPU the runs split the cores. Raises ExperimentError naming the runs that failed, once the
        others have finished."""
        todo = [r for r in self.runs() if not r.done]
        running: list[tuple[Run, subprocess.Popen, float, int]] = []
        failed: list[str] = []
        free = list(range(parallel))
        while todo or running:
            while todo and free:
                run, slot = todo.pop(0), free.pop(0)
                running.append((run, self._start(run, plans[run.point], slot, parallel, gpus, max_duration),
                                time.perf_counter(), slot))
                say(f"train {run.point} seed {run.seed}: started ({run.folder / LOG})")
            time.sleep(0.2)
            for item in [i for i in running if i[1].poll() is not None]:
                running.remove(item)
                run, proc, start, slot = item
                free.append(slot)
                seconds = time.perf_counter() - start
                if proc.returncode == 0:
                    self._finish(run, seconds)
                    say(f"train {run.point} seed {run.seed}: done in {seconds:.0f} s")
                    continue
                tail = (run.folder / LOG).read_text(errors="replace").strip().splitlines()[-2:]
                failed.append(f"{run.point} seed {run.seed} (exit {proc.returncode}): " + " | ".join(tail))
                say(f"train {run.point} seed {run.seed}: FAILED (exit {proc.returncode}), see {run.folder / LOG}")
        if failed:
            raise ExperimentError(f"{len(failed)} run{'s' * (len(failed) != 1)} failed: " + "; ".join(failed),
                                  "fix the cause and rerun the same command: finished runs are kept, failed ones "
                                  "resume from their last checkpoint")

    def _start(self, run: Run, plan: Path, slot: int, parallel: int, gpus: int,
               max_duration: str | None) -> subprocess.Popen:
        run.folder.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = str(slot % gpus)
        else:  # the runs split the cores
            env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // parallel)))
        with open(run.folder / LOG, "a") as log:
            return subprocess.Popen(self.command(run, plan, max_duration), stdout=log, stderr=subprocess.STDOUT,
                                    env=env)

    @staticmethod
    def _finish(run: Run, seconds: float) -> None:
        result = json.loads((run.folder / "eval.json").read_text()) if (run.folder / "eval.json").is_file() else {}
        (run.folder / DONE).write_text(json.dumps({"point": run.point, "seed": run.seed, "seconds": round(seconds, 1),
                                                   "step": result.get("step")}) + "\n")
