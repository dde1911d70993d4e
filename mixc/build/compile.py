"""`mixc compile`: run the plan's stages, then write the training plan, the lock and the report.

Output folder: `streams/<leaf>/` (one MDS stream per mixture leaf), `tokenizer/`, `eval/<set>.jsonl`
(each scored eval set's framed questions), `plan.json`
(what to train on and how), `mix.lock` (what the data is, byte for byte), `report.md` (what was
built and what it cost). plan.json is written last and removed first, so a folder with a plan.json
always holds the streams that plan names.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mixc import ir
from mixc.build.cache import Cache
from mixc.build.execute import Executor, OnStage, StageFailed, StageRun
from mixc.build.preflight import preflight, stage_error
from mixc.build.report import compile_report
from mixc.lang.diagnostics import Diagnostic, SpecError, error
from mixc.lang.lower import Lowered
from mixc.plan import budget
from mixc.plan.dag import subject_block
from mixc.plan.vocab import Layout, layout
from mixc.planfile import (
    EvalPlan,
    EvalSetPlan,
    Lock,
    ModelPlan,
    OptimizerPlan,
    SchedulePlan,
    ShardLock,
    StreamPlan,
    TrainerPlan,
    TrainingPlan,
    VocabLayout,
    sha256_file,
)
from mixc.stages import graph
from mixc.stages.audio_tokens import AudioVocab
from mixc.stages.base import Progress, no_progress
from mixc.stages.evalsets import HELDOUT_PREFIX
from mixc.stages.shards import MDS, StreamInfo, merge_indexes
from mixc.stages.tokenizer import VocabFile, tokenizer_file


@dataclass(frozen=True)
class Result:
    out: Path
    plan: TrainingPlan
    runs: dict[str, StageRun]
    seconds: float


def allocate(shares: dict[str, float], total: int) -> dict[str, int]:
    """Integer sample counts proportional to `shares` that sum to `total` (largest remainder)."""
    raw = {n: s * total for n, s in shares.items()}
    counts = {n: math.floor(v) for n, v in raw.items()}
    order = sorted(shares, key=lambda n: (-(raw[n] - counts[n]), n))
    for name in order[: total - sum(counts.values())]:
        counts[name] += 1
    return counts


def _streams(low: Lowered, runs: dict[str, StageRun], epoch: int) -> tuple[list[StreamPlan], list[Diagnostic]]:
    spec = low.spec
    shares = budget.leaf_shares(spec.mixture)
    choose = allocate(shares, epoch)
    out, diags = [], []
    for name in sorted(shares):
        info = StreamInfo.read(runs[f"shards:{name}"].path)
        samples = info.samples
        where = low.span(subject_block(spec, name))
        if samples == 0:
            diags.append(error("compile.empty", f"'{name}' produced no {spec.pack.seq_len}-token sequences",
                               where, "check its files and field, or lower pack.seq_len (see report.md for drops)"))
            continue
        repeat = choose[name] / samples
        cap = budget.repeat_cap(spec, name)
        if cap is not None and repeat > cap:
            diags.append(error("budget.infeasible",
                               f"the budget needs {repeat:.2f} passes over '{name}' but max_repeats is {cap:g}",
                               low.span(subject_block(spec, name) + ("max_repeats",)) or where,
                               f"'{name}' compiled to {samples:,} sequences and the budget draws {choose[name]:,}; "
                               "lower the budget or its share, raise the cap, or add data"))
        out.append(StreamPlan(name=name, path=f"streams/{name}", share=shares[name], samples=samples,
                              choose=choose[name], repeat=repeat, proportion=choose[name] / epoch,
                              tokens=info.tokens))
    return out, diags


def _warmup(spec: ir.Spec, steps: int) -> int:
    warmup = spec.train.schedule.warmup  # a percentage lowers to a float share, a count to an int
    return round(warmup * steps) if isinstance(warmup, float) else int(warmup)


def _vocab(lay: Layout, tokenizer: Path) -> VocabLayout:
    kind = "tiktoken" if lay.text.kind == "tiktoken" else "hf" if lay.text.kind == "hf" else "sentencepiece"
    return VocabLayout(text_size=lay.text.size, eos=lay.text.eos, pad=lay.text.pad, audio_offset=lay.audio_offset,
                       audio_size=lay.audio_size, markers=lay.markers, size=lay.size, dtype=lay.dtype,
                       tokenizer=f"tokenizer/{tokenizer.name}", tokenizer_kind=kind)


def _plan(spec_path: str, spec: ir.Spec, streams: list[StreamPlan], vocab: VocabLayout, steps: int,
          evals: EvalPlan) -> TrainingPlan:
    t = spec.train
    return TrainingPlan(
        spec=spec_path, ir_hash=spec.content_hash(), seed=spec.seed, seq_len=spec.pack.seq_len,
        epoch_samples=sum(s.choose for s in streams), streams=tuple(streams), vocab=vocab, loss=spec.interleave.loss,
        model=ModelPlan(preset=t.model.preset, backbone=str(t.model.backbone) if t.model.backbone else None,
                        attention=t.attention),
        optimizer=OptimizerPlan(name=t.optimizer.name, lr=t.optimizer.lr, betas=t.optimizer.betas,
                                eps=t.optimizer.eps, weight_decay=t.optimizer.weight_decay),
        schedule=SchedulePlan(name=t.schedule.name, warmup_steps=_warmup(spec, steps), min_lr_ratio=t.schedule.min_lr),
        trainer=TrainerPlan(global_batch=t.batch, micro_batch=t.micro_batch, steps=steps, grad_clip=t.grad_clip,
                            precision=t.precision, parallelism=t.parallelism.strategy,
                            sharding=t.parallelism.sharding, checkpoint_every=t.checkpoint.every,
                            checkpoint_keep=t.checkpoint.keep, log_every=t.log_every,
                            activation_checkpointing=t.activation_checkpointing,
                            compile_blocks=t.compile_blocks),
        eval=evals,
    )


def _eval_sets(spec: ir.Spec, runs: dict[str, StageRun], out: Path) -> list[EvalSetPlan]:
    """Each scored eval set's framed items, copied to eval/<name>.jsonl; with `eval.heldout`, each
    stream's held-out sequences as eval/heldout/<stream>.jsonl."""
    shutil.rmtree(out / "eval", ignore_errors=True)
    sets = []
    named = [(name, runs.get(f"eval_encode:{name}") or runs.get(f"eval_text:{name}"))
             for name in sorted(spec.eval.sets)]
    held = [(HELDOUT_PREFIX + leaf, runs.get(f"eval_heldout:{leaf}"))
            for leaf in sorted(budget.leaf_shares(spec.mixture))]
    for name, run in named + held:
        if run is None:  # topics: no items to score; a leaf without a stream
            continue
        target = out / "eval" / f"{name}.jsonl"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(run.path / "items.jsonl", target)
        info = json.loads((run.path / "eval.json").read_text())
        sets.append(EvalSetPlan(name=name, kind=info["kind"], path=f"eval/{name}.jsonl", items=info["items"],
                                sha256=sha256_file(target), voice=info["voice"]))
    return sets


def _topic_charts(runs: dict[str, StageRun], out: Path) -> None:
    """Each topics set's bar chart, copied to topics/<name>.png (report.md shows it)."""
    shutil.rmtree(out / "topics", ignore_errors=True)
    for run in runs.values():
        if run.node.kind == "topics":
            (out / "topics").mkdir(exist_ok=True)
            shutil.copyfile(run.path / "topics.png", out / "topics" / f"{run.node.subject}.png")


def _file_locks(out: Path, folder: Path) -> list[ShardLock]:
    return [ShardLock(path=p.relative_to(out).as_posix(), sha256=sha256_file(p), bytes=p.stat().st_size)
            for p in sorted(folder.rglob("*")) if p.is_file()]


def _copy_outputs(out: Path, runs: dict[str, StageRun], streams: list[StreamPlan], tokenizer: Path) -> list[ShardLock]:
    for folder in ("streams", "tokenizer"):
        shutil.rmtree(out / folder, ignore_errors=True)
    (out / "tokenizer").mkdir(parents=True)
    shutil.copyfile(tokenizer, out / "tokenizer" / tokenizer.name)
    locks = []
    for stream in streams:
        target = out / stream.path
        shutil.copytree(runs[f"shards:{stream.name}"].path / MDS, target)
        locks += _file_locks(out, target)
    merged = merge_indexes(out / "streams", [Path(s.path).name for s in streams])
    locks.append(ShardLock(path=merged.relative_to(out).as_posix(), sha256=sha256_file(merged),
                           bytes=merged.stat().st_size))
    return locks


REVISION_FIELDS = ("model", "langid", "tokenizer", "checkpoint", "torch", "llm", "voices", "trafilatura", "warcio",
                   "embedder")


def _models(runs: dict[str, StageRun]) -> dict[str, str]:
    """Stage id -> the exact models (and libraries) it ran: what must match to rebuild the same bytes."""
    out = {}
    for sid, run in runs.items():
        found = {k: v for k, v in run.details.items() if k in REVISION_FIELDS}
        if found:
            out[sid] = found["model"] if list(found) == ["model"] else json.dumps(found, sort_keys=True)
    return out


def _lock(spec: ir.Spec, runs: dict[str, StageRun], streams: list[StreamPlan], shards: list[ShardLock],
          tokenizer: Path) -> Lock:
    sources = {r.node.subject: r.fingerprint for r in runs.values()
               if r.fingerprint and r.node.kind in ("read", "ingest", "extract")}
    models = _models(runs)
    return Lock(ir_hash=spec.content_hash(), seed=spec.seed, sources=sources, tokenizer=sha256_file(tokenizer),
                models=models, stage_keys={sid: r.key for sid, r in runs.items()},
                tokens={s.name: s.tokens for s in streams}, shards=tuple(shards))


def compile_spec(low: Lowered, spec_path: str, out: Path, cache: Cache, workers: int = 1,
                 progress: Progress = no_progress, on_stage: OnStage | None = None,
                 executor: Callable[..., Executor] = Executor) -> Result:
    """Build every stage (or reuse it), then write the outputs; raises SpecError with located errors.
    `executor` runs the stages: here, or `functools.partial(RayExecutor, address=...)` on Ray."""
    spec = low.spec
    start = time.perf_counter()
    steps = budget.total_steps(spec)
    if steps is None:
        raise SpecError([error("budget.missing", "the spec sets no training budget", low.span(("budget",)))])
    stages = graph(spec)
    if diags := preflight(low, stages):
        raise SpecError(diags)
    try:
        runs = executor(spec, low.root, cache, workers, progress, on_stage).run(stages)
    except StageFailed as exc:
        raise SpecError([stage_error(low, exc)]) from None
    streams, diags = _streams(low, runs, steps * spec.train.batch)
    if diags:
        raise SpecError(diags)
    tok_run = next(r for r in runs.values() if r.node.kind in ("train_bpe", "load_text_tokenizer"))
    tokenizer = tokenizer_file(tok_run.path)
    audio = next((r for r in runs.values() if r.node.kind in ("train_audio_tokenizer", "load_audio_tokenizer")), None)
    lay = layout(VocabFile.read(tok_run.path), AudioVocab.read(audio.path).codebook_size if audio else None,
                 spec.interleave.markers)
    out.mkdir(parents=True, exist_ok=True)
    (out / "plan.json").unlink(missing_ok=True)
    shards = _copy_outputs(out, runs, streams, tokenizer)
    evals = EvalPlan(every=spec.eval.every if spec.eval.sets or spec.eval.heldout else 0, text_size=lay.text.size,
                     sets=tuple(_eval_sets(spec, runs, out)))
    if evals.sets:
        shards += _file_locks(out, out / "eval")
    _topic_charts(runs, out)
    _lock(spec, runs, streams, shards, tokenizer).dump(out / "mix.lock")
    plan = _plan(spec_path, spec, streams, _vocab(lay, tokenizer), steps, evals)
    seconds = time.perf_counter() - start
    (out / "report.md").write_text(compile_report(plan, runs, seconds))
    plan.dump(out / "plan.json")
    return Result(out, plan, runs, seconds)
