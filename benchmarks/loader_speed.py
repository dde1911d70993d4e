"""Is the training loader ever the bottleneck? Runtime batches/s against a bare StreamingDataset on the
same shards, and against what the trainer consumes.

Three streams of random packed sequences (the plan.json contract's columns) are written with
`MDSWriter` into a temporary directory, with a plan that draws each stream in full. Timed, best of N
passes over one epoch each, with `time.perf_counter`:

- bare StreamingDataset: `StreamingDataset(streams, batch_size=B, shuffle=True)` with Streaming's
  default look-ahead, samples read one by one and grouped B at a time, nothing converted. Baseline.
- runtime loader:        `runtime.data.build_dataset` + `build_loader` (look-ahead, collate into int64
  token / uint8 mask tensors): what `mixc train` feeds Composer.
- trainer consumption:   forward + backward + AdamW step of the `tiny` preset on an in-memory batch of
  the same shape (CPU unless a GPU is present): batches/s the trainer can take at most.

Targets: the runtime loader at least as fast as the bare dataset (ratio >= 1.0), and faster than the
trainer consumes (ratio > 1). The script always exits 0; it is a benchmark, not a test.

    .venv/bin/python benchmarks/loader_speed.py [--seq-len 2048] [--batch 8] [--samples 1000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from streaming import MDSWriter, Stream, StreamingDataset

from mixc.planfile import ModelPlan, OptimizerPlan, SchedulePlan, StreamPlan, TrainerPlan, TrainingPlan, VocabLayout
from runtime.composer_model import masked_next_token_loss
from runtime.data import build_dataset, build_loader, release
from runtime.model import PRESETS, SpeechLM

STREAMS = ("web", "quest", "krist")
VOCAB = 32_768


def write_shards(root: Path, seq_len: int, samples: int) -> None:
    rng = np.random.default_rng(0)
    columns = {"tokens": f"ndarray:uint16:{seq_len}", "loss_mask": f"ndarray:uint8:{seq_len}",
               "boundaries": "ndarray:int32", "lineage": "ndarray:int64"}
    for k, name in enumerate(STREAMS):
        with MDSWriter(out=str(root / name), columns=columns) as writer:
            for i in range(samples):
                writer.write({"tokens": rng.integers(0, VOCAB - 1, seq_len, dtype=np.uint16),
                              "loss_mask": np.ones(seq_len, np.uint8),
                              "boundaries": np.array([0, seq_len // 2], np.int32),
                              "lineage": np.array([k * samples + i], np.int64)})


def make_plan(root: Path, seq_len: int, samples: int, batch: int) -> TrainingPlan:
    epoch = samples * len(STREAMS)
    streams = tuple(StreamPlan(name=n, path=n, share=1 / 3, samples=samples, choose=samples, repeat=1.0,
                               proportion=1 / 3, tokens=samples * seq_len) for n in STREAMS)
    vocab = VocabLayout(text_size=VOCAB - 1, eos=0, pad=VOCAB - 1, audio_offset=VOCAB - 1, audio_size=0,
                        markers={}, size=VOCAB, dtype="uint16", tokenizer="tokenizer.json", tokenizer_kind="hf")
    trainer = TrainerPlan(global_batch=batch, micro_batch=None, steps=epoch // batch, grad_clip=1.0,
                          precision="auto", parallelism="auto", sharding="full_shard", checkpoint_every=1000,
                          checkpoint_keep=1, log_every=10)
    return TrainingPlan(spec="bench.mix", ir_hash="bench", seed=0, seq_len=seq_len, epoch_samples=epoch,
                streams=streams, vocab=vocab, loss="all", model=ModelPlan(preset="tiny"),
                optimizer=OptimizerPlan(lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1),
                schedule=SchedulePlan(name="constant", warmup_steps=0, min_lr_ratio=1.0), trainer=trainer)


def bare_batches_per_sec(root: Path, batch: int) -> float:
    dataset = StreamingDataset(streams=[Stream(local=str(root / n)) for n in STREAMS], batch_size=batch,
                               shuffle=True)
    try:
        start = time.perf_counter()
        samples = sum(1 for _ in dataset)
        return samples / batch / (time.perf_counter() - start)
    finally:
        release(dataset)


def runtime_batches_per_sec(plan: TrainingPlan, root: Path, batch: int) -> float:
    dataset = build_dataset(plan, root, batch)
    try:
        start = time.perf_counter()
        batches = sum(1 for _ in build_loader(dataset, batch))
        return batches / (time.perf_counter() - start)
    finally:
        release(dataset)


def trainer_batches_per_sec(seq_len: int, batch: int, steps: int = 2) -> float:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = SpeechLM(replace(PRESETS["tiny"], vocab_size=VOCAB)).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    tokens = torch.randint(0, VOCAB - 1, (batch, seq_len), device=device)
    mask = torch.ones_like(tokens, dtype=torch.uint8)

    def step() -> None:
        optimizer.zero_grad()
        masked_next_token_loss(model(tokens), tokens, mask, VOCAB - 1).backward()
        optimizer.step()

    step()  # warm-up: allocator, kernels
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seq-len", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--samples", type=int, default=1000, help="sequences per stream")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_shards(root, args.seq_len, args.samples)
        plan = make_plan(root, args.seq_len, args.samples, args.batch)
        bare = max(bare_batches_per_sec(root, args.batch) for _ in range(args.repeat))
        ours = max(runtime_batches_per_sec(plan, root, args.batch) for _ in range(args.repeat))
    consumed = trainer_batches_per_sec(args.seq_len, args.batch)
    print(f"{len(STREAMS)} streams x {args.samples:,} sequences of {args.seq_len:,} tokens, batch {args.batch}, "
          f"best of {args.repeat}")
    print(f"{'':34}{'batches/s':>10}{'x bare':>9}")
    for label, rate in [("bare StreamingDataset", bare), ("runtime loader", ours),
                        (f"trainer consumption (tiny, {'gpu' if torch.cuda.is_available() else 'cpu'})", consumed)]:
        print(f"{label:34}{rate:10.2f}{rate / bare:8.2f}x")
    print(f"runtime / bare = {ours / bare:.2f}x (target >= 1.0): {'PASS' if ours >= bare else 'FAIL'}")
    print(f"runtime / trainer consumption = {ours / consumed:.1f}x (target > 1): "
          f"{'PASS' if ours > consumed else 'FAIL'}")


if __name__ == "__main__":
    main()
