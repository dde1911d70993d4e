"""What does the Composer trainer cost? `mixc train`'s tokens/s against a bare PyTorch training loop
doing the same work, measured in the same run: on CPU with the `tiny` preset (the target: >= 0.90x),
and on a GPU with `--device gpu --preset 125m|1b --seq-len 4096|16384`, where both rows also print
MFU (training FLOPs per token x tokens/s over the card's bf16 peak, `runtime.monitor.peak_flops`).

On a GPU both rows run the plan's precision (`auto`: bf16 autocast, Composer's `amp_bf16` for the
trainer, `torch.autocast(bfloat16)` for the bare loop) and the fused AdamW; the bare loop moves each
batch to the GPU and synchronises before reading the clock.

A compiled plan is written into a temporary folder the way `mixc compile` writes one: three streams
of packed random sequences (1-4 documents each, the plan.json contract's columns) written with
`MDSWriter`, plan.json (`tiny` preset, document attention, AdamW, cosine schedule with warmup,
gradient clipping 1.0, fp32 on CPU) and a mix.lock pinning every shard's sha256. Both rows train
the plan's model for --steps optimizer steps of --batch x --seq-len tokens:

- bare loop (the baseline): `reproducibility.seed_all(plan.seed)` then `runtime.model.build_model`
  (the same initial weights), `runtime.train.build_optimizer` (the same AdamW and parameter groups),
  `runtime.train.build_scheduler` compiled into a LambdaLR (stepped where Composer steps it, so the
  learning rates are the same), batches from `runtime.data.build_dataset` + `build_loader` (the same
  StreamingDataset and loader the trainer reads, so the same batches in the same order, read inside
  the timed loop as the trainer reads them), `masked_next_token_loss`, backward,
  `clip_grad_norm_`, `optimizer.step`, `zero_grad`. Nothing else.
- mixc trainer: `runtime.train.train(plan, run_dir, max_duration="{steps}ba", device="cpu")`, the
  whole of `mixc train` (Composer Trainer, MetricsLog every `log_every` steps, CheckpointSaver every
  `checkpoint_every` steps and at the end). Timed by a callback, at Composer's BATCH_CHECKPOINT
  event of the last warm-up step and of the last step: start-up (shard hashing, model and trainer
  construction, the loader's first fill) is outside the window, the checkpoints saved inside it are
  in. The checkpoint time (BATCH_END to BATCH_CHECKPOINT of each step) is also summed, and the third
  row is the trainer's rate with it taken out.
- data loader alone: the same StreamingDataset and loader (the worker count `mixc train` uses on the
  device), batches fetched and copied to the device and nothing else: the rate the trainer could
  reach if its steps were free. Its ratio to the trainer's rate says whether the loader is the
  bottleneck (it is not while that ratio is above 1).

The first --warmup steps of each run are not timed. The final losses of the two rows are printed:
same weights, batches, optimizer and schedule, so they should agree (a check that the two rows do
the same work). Both use the same intra-op thread count (--threads, default torch's). Best of
--repeat runs of each, alternating which goes first. Target: trainer / bare >= 0.90. Always exits 0:
a benchmark, not a test.

    .venv/bin/python benchmarks/train_speed.py [--steps 40] [--warmup 3] [--seq-len 512] [--batch 8]
        [--vocab 5004] [--checkpoint-every 1000] [--threads N] [--repeat 2]
        [--device cpu|gpu] [--preset tiny|125m|1b|3b] [--attention document|causal] [--compile-blocks]
    on a GPU (the device tool's script):
    .venv/bin/python benchmarks/train_speed.py --device gpu --preset 125m --seq-len 4096 --batch 8 --steps 30
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import math
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import numpy as np
import torch
from composer import Callback
from composer.core import State, Time, Timestamp
from composer.loggers import Logger
from composer.optim import compile_composer_scheduler
from composer.utils import reproducibility
from streaming import MDSWriter

from mixc.planfile import (
    Lock,
    ModelPlan,
    OptimizerPlan,
    SchedulePlan,
    ShardLock,
    StreamPlan,
    TrainerPlan,
    TrainingPlan,
    VocabLayout,
)
from runtime.composer_model import masked_next_token_loss
from runtime.data import build_dataset, build_loader, release
from runtime.model import PRESETS, build_model, flops_per_token
from runtime.monitor import peak_flops
from runtime.train import build_optimizer, build_scheduler, loader_workers, resolve_precision, train

STREAMS = ("web", "quest", "krist")


def write_plan(root: Path, *, seq_len: int, batch: int, steps: int, vocab: int, checkpoint_every: int,
               preset: str = "tiny", attention: str = "document", compile_blocks: bool = False) -> Path:
    """Shards, plan.json and mix.lock for `steps` steps of `batch` sequences (one epoch, or a little more)."""
    rng = np.random.default_rng(0)
    per_stream = math.ceil(steps * batch / len(STREAMS))
    columns = {"tokens": f"ndarray:uint16:{seq_len}", "loss_mask": f"ndarray:uint8:{seq_len}",
               "boundaries": "ndarray:int32", "lineage": "ndarray:int64"}
    shards, streams, tokens = [], [], {}
    for k, name in enumerate(STREAMS):
        folder = root / "streams" / name
        with MDSWriter(out=str(folder), columns=columns) as writer:
            for i in range(per_stream):
                docs = int(rng.integers(1, 5))
                starts = np.sort(rng.choice(np.arange(1, seq_len), size=docs - 1, replace=False))
                boundaries = np.concatenate([[0], starts]).astype(np.int32)
                seq = rng.integers(1, vocab - 1, seq_len).astype(np.uint16)
                seq[boundaries[1:] - 1] = 0  # eos before each packed document
                writer.write({"tokens": seq, "loss_mask": np.ones(seq_len, np.uint8), "boundaries": boundaries,
                              "lineage": k * 1_000_000 + 10 * i + np.arange(docs, dtype=np.int64)})
        tokens[name] = per_stream * seq_len
        shards += [ShardLock(path=f.relative_to(root).as_posix(), sha256=hashlib.sha256(f.read_bytes()).hexdigest(),
                             bytes=f.stat().st_size) for f in sorted(folder.iterdir())]
        streams.append(StreamPlan(name=name, path=f"streams/{name}", share=1 / len(STREAMS), samples=per_stream,
                                  choose=per_stream, repeat=1.0, proportion=1 / len(STREAMS), tokens=tokens[name]))
    vocab_layout = VocabLayout(text_size=vocab - 1, eos=0, pad=vocab - 1, audio_offset=vocab - 1, audio_size=0,
                               markers={}, size=vocab, dtype="uint16", tokenizer="tokenizer.json",
                               tokenizer_kind="hf")
    trainer = TrainerPlan(global_batch=batch, micro_batch=None, steps=steps, grad_clip=1.0, precision="auto",
                          parallelism="auto", sharding="full_shard", checkpoint_every=checkpoint_every,
                          checkpoint_keep=3, log_every=10, compile_blocks=compile_blocks)
    plan = TrainingPlan(spec="bench.mix", ir_hash="bench-train-speed", seed=0, seq_len=seq_len,
                        epoch_samples=per_stream * len(STREAMS), streams=tuple(streams), vocab=vocab_layout,
                        loss="all", model=ModelPlan(preset=preset, attention=attention),
                        optimizer=OptimizerPlan(lr=3e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1),
                        schedule=SchedulePlan(name="cosine", warmup_steps=max(1, steps // 10), min_lr_ratio=0.1),
                        trainer=trainer)
    plan.dump(root / "plan.json")
    Lock(ir_hash=plan.ir_hash, seed=plan.seed, sources={}, tokenizer="0" * 64, models={}, stage_keys={},
         tokens=tokens, shards=tuple(shards)).dump(root / "mix.lock")
    return root / "plan.json"


def bare_loop(plan_path: Path, steps: int, warmup: int, device: str = "cpu") -> tuple[float, float]:
    """(seconds for steps warmup+1..steps, loss of the last step)."""
    plan = TrainingPlan.read(plan_path)
    batch = plan.trainer.global_batch
    reproducibility.seed_all(plan.seed)
    gpu = device == "gpu"
    target = torch.device("cuda" if gpu else "cpu")
    model = build_model(plan).to(target)
    model.train()
    optimizer = build_optimizer(model, plan.optimizer, fused=gpu)
    precision = resolve_precision(plan.trainer.precision, device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16 if precision == "amp_bf16" else torch.float16,
                              enabled=gpu and precision != "fp32")
    # Composer's schedulers are functions of the training state; compile one against a stand-in
    # holding what they read, advanced as Composer advances it (scheduler.step() before the
    # timestamp moves to the next batch)
    state = SimpleNamespace(timestamp=Timestamp(), max_duration=Time(steps, "ba"), dataloader_len=None,
                            optimizers=[optimizer])
    scheduler = compile_composer_scheduler(build_scheduler(plan.schedule, plan.trainer.steps), cast(State, state))
    dataset = build_dataset(plan, plan_path.parent, batch)
    try:
        batches = iter(build_loader(dataset, batch))
        start, loss = 0.0, torch.zeros(())
        for step in range(steps):
            if step == warmup:
                start = time.perf_counter()
            data = {k: v.to(target, non_blocking=True) for k, v in next(batches).items()}
            with autocast:
                logits = model(data["tokens"], doc_ids=data["doc_ids"], positions=data["positions"])
                loss = masked_next_token_loss(logits, data["tokens"], data["loss_mask"], plan.vocab.pad)
            loss.backward()
            if plan.trainer.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), plan.trainer.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            state.timestamp = state.timestamp.to_next_batch(samples=batch, tokens=data["tokens"].numel())
        if gpu:
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        return seconds, float(loss.item())
    finally:
        release(dataset)


def loader_alone(plan_path: Path, steps: int, warmup: int, device: str = "cpu") -> float:
    """Seconds the data loader alone takes to deliver batches warmup+1..steps to the device, with
    the worker count `mixc train` uses there (0 on CPU, 4 on GPU): what the trainer would wait for
    if the step itself took no time."""
    plan = TrainingPlan.read(plan_path)
    target = torch.device("cuda" if device == "gpu" else "cpu")
    dataset = build_dataset(plan, plan_path.parent, plan.trainer.global_batch)
    try:
        batches = iter(build_loader(dataset, plan.trainer.global_batch, loader_workers(device)))
        start = 0.0
        for step in range(steps):
            if step == warmup:
                start = time.perf_counter()
            for value in next(batches).values():
                value.to(target, non_blocking=True)
        if device == "gpu":
            torch.cuda.synchronize()
        return time.perf_counter() - start
    finally:
        release(dataset)


class Window(Callback):
    """Wall clock from BATCH_CHECKPOINT of step `warmup` to BATCH_CHECKPOINT of the last step, and
    the part of it spent between BATCH_END and BATCH_CHECKPOINT (checkpoint saving)."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.end, self.saving = warmup, 0.0, 0.0, 0.0
        self._batch_end = 0.0

    def batch_end(self, state: State, logger: Logger) -> None:
        self._batch_end = time.perf_counter()

    def batch_checkpoint(self, state: State, logger: Logger) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()  # the step's kernels are done, not just queued
        now, step = time.perf_counter(), int(state.timestamp.batch)
        if step == self.warmup:
            self.start = now
        elif step > self.warmup:
            self.end, self.saving = now, self.saving + now - self._batch_end


def trainer_run(plan_path: Path, run_dir: Path, steps: int, warmup: int,
                device: str = "cpu") -> tuple[float, float, float]:
    """(seconds for steps warmup+1..steps, of which checkpoint saving, loss of the last step)."""
    window = Window(warmup)
    with contextlib.redirect_stdout(io.StringIO()):  # the trainer's progress lines
        result = train(plan_path, run_dir=run_dir, max_duration=f"{steps}ba", device=device, callbacks=[window])
    return window.end - window.start, window.saving, float("nan") if result.loss is None else result.loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=40, help="optimizer steps per run, warm-up included")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps at the start of each run")
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--vocab", type=int, default=5004, help="joint vocabulary (the demo's: 5,004)")
    parser.add_argument("--checkpoint-every", type=int, default=1000,
                        help="the plan's checkpoint interval (mixc's default: 1000; the trainer also saves at the end)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    parser.add_argument("--attention", choices=("document", "causal"), default="document")
    parser.add_argument("--compile-blocks", action="store_true", help="train.compile_blocks = true (both rows)")
    args = parser.parse_args()
    if args.steps <= args.warmup or args.repeat < 1:
        parser.error("--steps must exceed --warmup, and --repeat be at least 1")
    if args.device == "gpu" and not torch.cuda.is_available():
        print("--device gpu: no CUDA device here; run it where a GPU is (the device tool)")
        return
    torch.set_num_threads(args.threads)
    timed = args.steps - args.warmup
    tokens = timed * args.batch * args.seq_len
    bare, ours, saving, loading = math.inf, math.inf, math.inf, math.inf
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        plan_path = write_plan(root / "compiled", seq_len=args.seq_len, batch=args.batch, steps=args.steps,
                               vocab=args.vocab, checkpoint_every=args.checkpoint_every, preset=args.preset,
                               attention=args.attention, compile_blocks=args.compile_blocks)
        for i in range(args.repeat):  # alternating which row goes first, so drift in load favours neither
            for row in ("bare", "trainer") if i % 2 == 0 else ("trainer", "bare"):
                if row == "bare":
                    seconds, bare_loss = bare_loop(plan_path, args.steps, args.warmup, args.device)
                    bare = min(bare, seconds)
                else:
                    seconds, saved, trainer_loss = trainer_run(plan_path, root / f"run{i}", args.steps, args.warmup,
                                                               args.device)
                    if seconds < ours:
                        ours, saving = seconds, saved
            loading = min(loading, loader_alone(plan_path, args.steps, args.warmup, args.device))
    precision = resolve_precision("auto", args.device)  # the plan's precision
    peak = peak_flops(args.device, precision)
    per_token = flops_per_token(replace(PRESETS[args.preset], vocab_size=args.vocab), args.seq_len)
    where = torch.cuda.get_device_name() if args.device == "gpu" else f"CPU, {torch.get_num_threads()} thread(s)"
    print(f"{args.preset} preset, vocab {args.vocab:,}, batch {args.batch} x {args.seq_len:,} tokens, "
          f"{args.attention} attention{', compiled blocks' if args.compile_blocks else ''}, {where}, {precision}; "
          f"{args.steps} steps, the first {args.warmup} untimed; "
          f"checkpoint every {args.checkpoint_every} steps and at the end; best of {args.repeat}")
    print(f"{'':40}{'steps':>6}{'tokens':>10}{'seconds':>9}{'tokens/s':>12}{'x bare':>9}{'MFU':>7}")
    rows = [("bare loop", bare, True), ("mixc trainer", ours, True),
            (f"mixc trainer less checkpoints ({saving:.2f} s)", ours - saving, True),
            ("data loader alone", loading, False)]  # the loader does no FLOPs: no MFU
    for label, seconds, trains in rows:
        mfu = f"{per_token * tokens / seconds / peak:6.1%}" if peak and trains else "     -"
        print(f"{label:40}{timed:6}{tokens:10,}{seconds:9.3f}{tokens / seconds:12,.0f}{bare / seconds:8.2f}x {mfu}")
    print(f"final loss: bare {bare_loss:.5f}, trainer {trainer_loss:.5f} (same weights, batches and optimizer: "
          "they should agree)")
    ratio = bare / ours
    print(f"trainer / bare = {ratio:.2f} (target >= 0.90): {'PASS' if ratio >= 0.9 else 'FAIL'}"
          f" (without checkpoint saving: {bare / (ours - saving):.2f})")
    print(f"data loader / trainer = {ours / loading:.1f}x the tokens/s the trainer consumes "
          f"({'not the bottleneck' if loading < ours else 'THE BOTTLENECK'})")


if __name__ == "__main__":
    main()
