"""`mixc train PLAN`: pretrain a SpeechLM on a compiled plan with Composer.

`train()` reads plan.json, refuses shards that differ from mix.lock, builds the model, the mixture
loader and a Composer Trainer (AdamW, warmup + decay in steps, gradient clipping, checkpoints, exact
autoresume), trains, and says where the checkpoint, the metrics and the run folder are.

Launching:
    one process (CPU or one GPU):   mixc train plan.json        or   python -m runtime plan.json
    one machine, N processes:       composer -n N -m runtime plan.json [--run-dir R] [--max-duration 20ba]
    several machines (on each):     composer -n 8 --world_size 16 --node_rank K --master_addr HOST
                                        --master_port PORT -m runtime plan.json
Composer's launcher sets RANK / WORLD_SIZE / LOCAL_RANK...; the process group uses NCCL on GPUs and
gloo on CPU. Rerunning the same command resumes: the run's name (and so its checkpoint folder) is a
hash of the plan, and Composer's autoresume loads the latest checkpoint, model, optimizer, scheduler,
RNG and loader position together, so the resumed run sees the same batches and ends with the same
weights as an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from composer import Callback, Trainer
from composer.algorithms import GradientClipping
from composer.core import DataSpec, Time
from composer.optim import (
    ComposerScheduler,
    ConstantWithWarmupScheduler,
    CosineAnnealingWithWarmupScheduler,
    LinearWithWarmupScheduler,
)
from composer.utils import FSDP2Config, dist, reproducibility
from streaming import StreamingDataset
from torch import nn
from torch.distributed.device_mesh import init_device_mesh

from mixc import storage
from mixc.errors import DataError, UsageError
from mixc.planfile import Lock, OptimizerPlan, SchedulePlan, TrainingPlan
from runtime.checkpoints import checkpointing, settle
from runtime.composer_model import SpeechLMComposer, batch_token_counts
from runtime.data import build_dataset, build_loader, release
from runtime.evaluate import EvalCallback, write_run_report
from runtime.model import build_model, flops_per_token
from runtime.monitor import MetricsLog, last_logged_loss, peak_flops
from runtime.tracking import Tracking
from runtime.verify import ShardMismatch, verify_plan, verify_shards

FSDP_AUTO_PARAMS = 1_000_000_000  # "auto" shards models this large; below, DDP's replicas fit and are faster
PRECISIONS_GPU = {"auto": "amp_bf16", "bf16": "amp_bf16", "fp16": "amp_fp16", "fp32": "fp32"}


@dataclass(frozen=True)
class TrainResult:
    """Where a finished (or already complete) run stands."""
    step: int
    loss: float | None
    checkpoint: Path | None
    run_dir: Path
    metrics: Path


class RunDirConflict(DataError):
    """The run folder holds another plan's run: autoresuming it would mix two runs' checkpoints."""


def say(message: str) -> None:
    """Progress on stdout, once per job (global rank 0)."""
    if dist.get_global_rank() == 0:
        print(f"[mixc train] {message}", flush=True)


def run_name(plan: TrainingPlan, plan_dir: Path) -> str:
    """Deterministic in the plan's content: the same plan resumes the same run, an edited one starts
    afresh. The folder name keeps it readable."""
    digest = hashlib.sha256(plan.model_dump_json(by_alias=True).encode()).hexdigest()[:12]
    return f"{re.sub(r'[^A-Za-z0-9_.-]+', '-', plan_dir.name) or 'plan'}-{digest}"


def device_batch_size(global_batch: int, world_size: int) -> int:
    """Sequences each device takes per step; the plan's global batch must split evenly."""
    if global_batch % world_size:
        raise UsageError(f"the plan's global batch ({global_batch}) does not split over {world_size} processes",
                         "launch a number of processes that divides it, or change `train { batch = ... }`")
    return global_batch // world_size


def resolve_device(device: str | None) -> str:
    """Composer device name: "gpu" when CUDA is present unless told otherwise."""
    chosen = device or ("gpu" if torch.cuda.is_available() else "cpu")
    if chosen not in ("cpu", "gpu"):
        raise UsageError(f"device must be 'cpu' or 'gpu', not {chosen!r}")
    return chosen


def share_cpu_threads(device: str) -> None:
    """CPU processes of one machine split its cores. N ranks each running a full-width OpenMP team
    oversubscribe the cores and slow every small op many times over (torchrun sets OMP_NUM_THREADS=1
    for this reason; Composer's launcher does not). An explicit OMP_NUM_THREADS wins."""
    local = dist.get_local_world_size()
    if device == "cpu" and local > 1 and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local))


def loader_workers(device: str) -> int:
    """Loader worker processes per device by default: 4 on a GPU (decoding and collating overlap the
    step), none on CPU (the step already uses every core)."""
    return 4 if device == "gpu" else 0


def leave_dist() -> None:
    """The end of a launched process: every rank waits for the others, then the process group is torn
    down. A rank that exits with the group alive can abort in gloo's background thread ("terminate
    called without an active exception", signal 6), which the launcher reports as a crash."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        dist.barrier()
        torch.distributed.destroy_process_group()


def resolve_precision(requested: str, device: str) -> str:
    """Composer precision: bf16 autocast on GPUs for "auto"/"bf16"; fp32 on CPU, where Composer has no
    mixed precision."""
    if device == "cpu":
        if requested not in ("auto", "fp32"):
            say(f"precision {requested} is GPU-only; training in fp32 on CPU")
        return "fp32"
    return PRECISIONS_GPU[requested]


def resolve_duration(max_duration: str | int | None, steps: int) -> str:
    """The plan's step budget unless overridden ("20ba", "1ep", or a number of batches)."""
    if max_duration is None:
        return f"{steps}ba"
    text = f"{max_duration}ba" if isinstance(max_duration, int) else max_duration
    try:
        Time.from_timestring(text)
    except ValueError:
        raise UsageError(f"--max-duration {text!r} is not a duration Composer reads",
                         "write a number and a unit: 20ba (batches), 2ep (epochs), 1000sp (samples), "
                         "100000tok (tokens)") from None
    return text


def parallelism_config(plan: TrainingPlan, device: str, n_params: int) -> dict[str, FSDP2Config] | None:
    """FSDP2 (`fully_shard`, block by block) when the plan asks for it, else DDP (Composer's default).

    FSDP2 rather than FSDP1: it runs on CPU and GPU alike (FSDP1 calls CUDA), so the sharded path the
    tests exercise with gloo is the one GPUs run. full_shard reshards parameters after the forward
    pass, shard_grad_op keeps them gathered until the backward pass, hybrid_shard shards within a
    machine and replicates across machines, no_shard is DDP.
    """
    trainer, world = plan.trainer, dist.get_world_size()
    mode = trainer.parallelism
    if mode == "auto":
        mode = "fsdp" if device == "gpu" and n_params >= FSDP_AUTO_PARAMS else "ddp"
    if mode == "ddp" or world == 1 or trainer.sharding == "no_shard":
        return None
    local = dist.get_local_world_size()
    mesh = None
    if trainer.sharding == "hybrid_shard" and world > local:
        mesh = init_device_mesh("cuda" if device == "gpu" else "cpu", (world // local, local),
                                mesh_dim_names=("replicate", "shard"))
    return {"fsdp": FSDP2Config(device_mesh=mesh, reshard_after_forward=trainer.sharding != "shard_grad_op")}


def build_optimizer(model: nn.Module, opt: OptimizerPlan, fused: bool = False) -> torch.optim.AdamW:
    """AdamW; weight decay only on matmul weights. Norm gains and embedding rows are not decayed:
    pulling them toward zero shrinks scales and rarely-seen tokens (new audio codes) for no benefit.
    `fused`: one kernel for the whole update (on GPUs; the default for-each update on CPU keeps
    CPU runs exactly as they were)."""
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 and id(p) not in embeddings else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": opt.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=opt.lr, betas=opt.betas, eps=opt.eps, fused=fused or None)


def build_scheduler(schedule: SchedulePlan, steps: int) -> ComposerScheduler:
    """Linear warmup, then decay to lr * min_lr_ratio at the plan's last step (in batches, so a run
    stopped early with --max-duration follows the same curve as the full run)."""
    warmup, t_max = f"{schedule.warmup_steps}ba", f"{steps}ba"
    if schedule.name == "cosine":
        return CosineAnnealingWithWarmupScheduler(t_warmup=warmup, t_max=t_max, alpha_f=schedule.min_lr_ratio)
    if schedule.name == "linear":
        return LinearWithWarmupScheduler(t_warmup=warmup, t_max=t_max, alpha_f=schedule.min_lr_ratio)
    return ConstantWithWarmupScheduler(t_warmup=warmup, t_max=t_max)


def read_checked_plan(plan_path: Path) -> TrainingPlan:
    """plan.json and the mix.lock beside it, with every pinned shard verified."""
    plan = TrainingPlan.read(plan_path)
    lock_path = plan_path.parent / "mix.lock"
    if not lock_path.is_file():
        raise ShardMismatch(f"{lock_path} is missing: the shards cannot be checked")
    lock = Lock.read(lock_path)
    verify_plan(plan, lock)
    verify_shards(plan_path.parent, lock, part=dist.get_local_rank(), parts=dist.get_local_world_size())
    return plan


def claim_run_dir(run_dir: Path, plan: TrainingPlan, plan_path: Path) -> None:
    """Keep a copy of the plan in the run folder (what trained this), and refuse a folder whose copy
    is another plan. Rank 0 alone checks and writes; if it refuses, the launcher stops the others."""
    if dist.get_global_rank() != 0:
        return
    kept = run_dir / "plan.json"
    if kept.exists() and run_name(TrainingPlan.read(kept), plan_path.parent) != run_name(plan, plan_path.parent):
        raise RunDirConflict(f"{run_dir} holds a run of another plan ({kept}); resuming it with {plan_path} "
                             "would mix two runs", "pass another --run-dir (or remove that folder to start over)")
    run_dir.mkdir(parents=True, exist_ok=True)
    plan.dump(kept)
    (run_dir / "run.json").write_text(json.dumps({"plan": str(plan_path)}) + "\n")  # where `mixc eval` finds it


def latest_checkpoint(save_folder: Path) -> Path | None:
    """The checkpoint autoresume would load (Composer's latest-rank0 symlink, resolved)."""
    link = save_folder / "latest-rank0.pt"
    return link.resolve() if link.exists() else None


def build_trainer(plan: TrainingPlan, plan_dir: Path, run_dir: Path, device: str, max_duration: str | int | None,
                  callbacks: Sequence[Callback], num_workers: int,
                  tracking: Tracking | None = None, checkpoints: str | None = None,
                  remote: str | None = None) -> tuple[Trainer, StreamingDataset]:
    """The Composer Trainer for a verified plan (autoresuming from run_dir/checkpoints, else from
    the `checkpoints` URL it also uploads to), and the dataset it reads, which the caller releases
    when done. `remote`: the URL of a plan read from object storage (`plan_dir` is its local mirror)."""
    name = run_name(plan, plan_dir)
    per_device = device_batch_size(plan.trainer.global_batch, dist.get_world_size())
    precision = resolve_precision(plan.trainer.precision, device)
    reproducibility.seed_all(plan.seed)  # same initial weights on every rank and every rerun
    net = build_model(plan)
    n_params = sum(p.numel() for p in net.parameters())
    parallel = parallelism_config(plan, device, n_params)
    strategy = "fsdp2" if parallel else "ddp" if dist.get_world_size() > 1 else "one process"
    say(f"{plan.model.backbone or plan.model.preset} ({n_params / 1e6:,.1f}M parameters) | "
        f"{dist.get_world_size()} x {device}, {precision}, {strategy} | "
        f"batch {plan.trainer.global_batch} x {plan.seq_len} tokens | run {name} in {run_dir}")
    dataset = build_dataset(plan, plan_dir, per_device, remote=remote)
    monitor = MetricsLog(run_dir / "metrics.jsonl", plan.trainer.log_every, flops_per_token(net, plan.seq_len),
                         peak_flops(device, precision))
    clipping = [GradientClipping(clipping_type="norm", clipping_threshold=plan.trainer.grad_clip)]
    evals = [EvalCallback(plan, plan_dir, run_dir / "metrics.jsonl")] if plan.eval.sets else []
    saver, uploaders = checkpointing(plan, run_dir, checkpoints)
    for change in settle(Path(saver.folder), dist.get_global_rank()):
        say(change)
    trainer = Trainer(
        model=SpeechLMComposer(net, pad_id=plan.vocab.pad),
        train_dataloader=DataSpec(build_loader(dataset, per_device, num_workers),
                                  get_num_samples_in_batch=lambda batch: batch["tokens"].shape[0],
                                  get_num_tokens_in_batch=partial(batch_token_counts, pad_id=plan.vocab.pad)),
        accumulate_train_batch_on_tokens=True,
        max_duration=resolve_duration(max_duration, plan.trainer.steps),
        optimizers=build_optimizer(net, plan.optimizer, fused=device == "gpu"),
        schedulers=build_scheduler(plan.schedule, plan.trainer.steps),
        step_schedulers_every_batch=True,
        algorithms=clipping if plan.trainer.grad_clip > 0 else [],
        callbacks=[monitor, saver, *evals, *callbacks],
        device=device,
        precision=precision,
        device_train_microbatch_size=plan.trainer.micro_batch or per_device,
        parallelism_config=parallel,
        save_folder=saver.folder,
        autoresume=True,
        run_name=name,
        seed=plan.seed,
        progress_bar=False,
        log_to_console=False,
        loggers=[*uploaders, *([tracking.logger()] if tracking else [])],
    )
    if tracking:
        trainer.logger.log_hyperparameters({"seed": plan.seed, "ir_hash": plan.ir_hash, **tracking.params})
    return trainer, dataset


def _fit(trainer: Trainer, mirror: Path | None) -> None:
    """trainer.fit(); for a remote plan, a shard that failed its check (in Streaming's download
    thread, where it surfaces as a bare RuntimeError) is reported as the ShardMismatch it is."""
    try:
        trainer.fit()
    except Exception:
        if mirror is not None:
            from runtime.remote import mismatch
            if (found := mismatch(mirror)) is not None:
                raise found from None
        raise


def train(plan_path: str | Path, run_dir: str | Path | None = None, max_duration: str | int | None = None,
          device: str | None = None, *, callbacks: Sequence[Callback] = (),
          num_workers: int | None = None, seed: int | None = None, tracking: Tracking | None = None,
          checkpoints: str | None = None, data_cache: str | Path | None = None) -> TrainResult:
    """Train (or resume training) the plan's model on the plan's shards; see the module docstring.

    run_dir: checkpoints/ and metrics.jsonl go here (default: runs/<run name> beside plan.json).
    max_duration: stop earlier or later than the plan's `trainer.steps` ("20ba", "1ep", 20).
    device: "cpu" or "gpu" (default: gpu when available). callbacks: extra Composer callbacks.
    num_workers: loader worker processes per device (default: 0 on CPU, 4 on GPU).
    seed: the training seed (initial weights, data order) instead of the plan's: another replicate of
    the same compiled data; the run folder's plan.json records it (resume with the same seed).
    tracking: log parameters and metrics to MLflow as well (`runtime.tracking`).
    checkpoints: an object-storage URL (s3://bucket/prefix, gs://...) every checkpoint is uploaded to and a
    relaunch resumes from when the run folder has none (`runtime.checkpoints`).
    plan_path may be an s3:// or gs:// URL: the plan folder is mirrored into `data_cache` (default
    `$MIXC_CACHE/streams`, else ~/.cache/mixc/streams) and its shards stream in, each checked against
    mix.lock (`runtime.remote`); run_dir then defaults to runs/<run name> in the working folder.
    Raises ShardMismatch (before anything is built or written) when the shards are not mix.lock's, and
    RunDirConflict when run_dir holds another plan's run.
    """
    remote = str(plan_path) if storage.is_remote(str(plan_path)) else None
    device = resolve_device(device)
    share_cpu_threads(device)
    if dist.get_world_size() > 1:
        dist.initialize_dist(device)  # before Streaming, which would otherwise make its own group
    if remote:
        from runtime.remote import default_data_cache, fetch_plan
        cache = Path(data_cache).expanduser().resolve() if data_cache else default_data_cache()
        plan_path = fetch_plan(remote, cache, part=dist.get_local_rank(), parts=dist.get_local_world_size())
        plan = TrainingPlan.read(plan_path)
        say(f"plan {remote}: mix.lock, indexes and eval sets checked; shards stream into {plan_path.parent}, "
            "each checked against mix.lock")
    else:
        plan_path = Path(plan_path).resolve()
        plan = read_checked_plan(plan_path)
        say(f"plan {plan_path}: shards match mix.lock")
    if seed is not None:
        plan = plan.model_copy(update={"seed": seed})
    runs = Path("runs").resolve() if remote else plan_path.parent / "runs"
    run_dir = Path(run_dir).resolve() if run_dir else runs / run_name(plan, plan_path.parent)
    claim_run_dir(run_dir, plan, plan_path)
    workers = num_workers if num_workers is not None else loader_workers(device)
    trainer, dataset = build_trainer(plan, plan_path.parent, run_dir, device, max_duration, callbacks, workers,
                                     tracking, checkpoints, remote)
    saved = run_dir / "checkpoints"
    if int(trainer.state.timestamp.batch):
        say(f"resuming from step {int(trainer.state.timestamp.batch)} ({latest_checkpoint(saved)})")
    try:
        elapsed = trainer.state.get_elapsed_duration()
        assert elapsed is not None, "build_trainer sets a max_duration"
        if elapsed < 1:  # Composer refuses to fit a finished run
            _fit(trainer, plan_path.parent if remote else None)
        else:
            say(f"the run already reached {trainer.state.max_duration}; nothing to train")
    finally:
        trainer.close()
        release(dataset)
    metrics = run_dir / "metrics.jsonl"
    scored = next((c.last for c in trainer.state.callbacks if isinstance(c, EvalCallback)), None)
    if scored and dist.get_global_rank() == 0:
        table = write_run_report(run_dir, scored, int(trainer.state.timestamp.batch), latest_checkpoint(saved),
                                 plan_path, plan.ir_hash)
        say(f"evaluation ({run_dir / 'report.md'}):\n" + "\n".join(table.splitlines()[4:4 + 2 + len(scored)]))
    loss = trainer.state.total_loss_dict.get("loss/train/total", last_logged_loss(metrics))
    result = TrainResult(step=int(trainer.state.timestamp.batch), loss=loss,
                         checkpoint=latest_checkpoint(saved), run_dir=run_dir, metrics=metrics)
    say(f"done at step {result.step}, loss {result.loss} | checkpoint {result.checkpoint} | "
        f"metrics {result.metrics} | run dir {result.run_dir}")
    return result
