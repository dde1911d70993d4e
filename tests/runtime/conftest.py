"""A small compiled plan written the way `mixc compile` writes one: MDS shards per stream with the
plan.json contract's columns, a TrainingPlan, and a Lock with the files' real sha256.

`make_plan(root, streams)` is the reusable factory; `plan_path` is one ready plan (3 streams: one drawn
in full, one repeated 1.5x, one down-sampled, 80 sequences per epoch = 20 steps of 4).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from streaming import MDSWriter

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
)

SEQ_LEN = 64
VOCAB = VocabLayout(text_size=200, eos=199, pad=299, audio_offset=204, audio_size=95,
                    markers={"<audio>": 200, "</audio>": 201, "<text>": 202, "</text>": 203}, size=300,
                    dtype="uint16", tokenizer="tokenizer.json", tokenizer_kind="hf")
DOC_ID_BASE = 1_000_000  # lineage ids of stream k are k * DOC_ID_BASE + n: the stream is readable from them
COLUMNS = {"tokens": f"ndarray:uint16:{SEQ_LEN}", "loss_mask": f"ndarray:uint8:{SEQ_LEN}",
           "boundaries": "ndarray:int32", "lineage": "ndarray:int64"}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "distributed: launches several processes through Composer's launcher")


@pytest.fixture(scope="session", autouse=True)
def one_intra_op_thread() -> None:
    """The models here are tiny: OpenMP's thread team costs more than it gives, and on a shared
    2-core machine its spinning threads slow every small op by orders of magnitude."""
    torch.set_num_threads(1)


@dataclass(frozen=True)
class StreamSpec:
    name: str
    samples: int
    choose: int


def write_stream(folder: Path, stream_id: int, samples: int, rng: np.random.Generator) -> int:
    """`samples` packed sequences of 2-3 random documents; the last one padded (remainder = pad).
    Returns the real (non-pad) token count."""
    real = 0
    with MDSWriter(out=str(folder), columns=COLUMNS, size_limit=4096) as writer:
        for i in range(samples):
            tokens = rng.integers(0, VOCAB.pad, SEQ_LEN).astype(np.uint16)
            starts = np.sort(rng.choice(np.arange(8, SEQ_LEN - 8), size=rng.integers(1, 3), replace=False))
            boundaries = np.concatenate([[0], starts]).astype(np.int32)
            tokens[boundaries[1:] - 1] = VOCAB.eos
            loss_mask = (rng.random(SEQ_LEN) < 0.8).astype(np.uint8)
            length = SEQ_LEN - 20 if i == samples - 1 else SEQ_LEN
            tokens[length:], loss_mask[length:] = VOCAB.pad, 0
            real += length
            lineage = stream_id * DOC_ID_BASE + 10 * i + np.arange(len(boundaries), dtype=np.int64)
            writer.write({"tokens": tokens, "loss_mask": loss_mask, "boundaries": boundaries, "lineage": lineage})
    return real


def lock_entries(plan_dir: Path, folder: Path) -> list[ShardLock]:
    return [ShardLock(path=f.relative_to(plan_dir).as_posix(), sha256=hashlib.sha256(f.read_bytes()).hexdigest(),
                      bytes=f.stat().st_size) for f in sorted(folder.iterdir())]


def write_eval_set(root: Path, items: int, rng: np.random.Generator) -> EvalSetPlan:
    """eval/qa.jsonl: `items` framed sqa items of random ids (spoken: codes between the audio
    markers, then <text>; written: text ids between the text markers, then <text>)."""
    lines = []
    for i in range(items):
        codes = (rng.integers(0, VOCAB.audio_size, int(rng.integers(4, 12))) + VOCAB.audio_offset).tolist()
        question = rng.integers(0, 190, int(rng.integers(3, 8))).tolist()
        choices = [rng.integers(0, 190, int(rng.integers(1, 4))).tolist() for _ in range(4)]
        lines.append(json.dumps({"id": f"q{i}", "topic": None, "where": f"qa.jsonl:{i + 1}", "question": f"q{i}",
                                 "choices": [f"c{j}" for j in range(4)], "answer": int(rng.integers(4)),
                                 "choice_chars": [2 * len(c) for c in choices], "choice_tokens": choices,
                                 "written": [202, *question, 203, 202], "spoken": [200, *codes, 201, 202]}))
    (root / "eval").mkdir(parents=True, exist_ok=True)
    path = root / "eval" / "qa.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return EvalSetPlan(name="qa", kind="sqa", path="eval/qa.jsonl", items=items,
                       sha256=hashlib.sha256(path.read_bytes()).hexdigest(), voice="espeak:en-us+f3")


def make_plan(root: Path, streams: Sequence[StreamSpec], *, global_batch: int = 4, seed: int = 7,
              eval_items: int = 0, eval_every: int = 5, **trainer: object) -> Path:
    """Write shards, plan.json and mix.lock under `root`; `trainer` overrides TrainerPlan fields;
    `eval_items` > 0 adds an sqa eval set of that many random items, scored every `eval_every`."""
    rng = np.random.default_rng(seed)
    epoch = sum(s.choose for s in streams)
    stream_plans, shards, tokens = [], [], {}
    for k, spec in enumerate(streams):
        folder = root / "streams" / spec.name
        tokens[spec.name] = write_stream(folder, k, spec.samples, rng)
        shards += lock_entries(root, folder)
        stream_plans.append(StreamPlan(name=spec.name, path=f"streams/{spec.name}", share=spec.choose / epoch,
                                       samples=spec.samples, choose=spec.choose, repeat=spec.choose / spec.samples,
                                       proportion=spec.choose / epoch, tokens=tokens[spec.name]))
    settings = dict(global_batch=global_batch, micro_batch=None, steps=epoch // global_batch, grad_clip=1.0,
                    precision="auto", parallelism="auto", sharding="full_shard", checkpoint_every=5,
                    checkpoint_keep=2, log_every=5) | trainer
    evals = EvalPlan()
    if eval_items:
        evals = EvalPlan(every=eval_every, text_size=VOCAB.text_size, sets=(write_eval_set(root, eval_items, rng),))
        shards += lock_entries(root, root / "eval")
    plan = TrainingPlan(spec="test.mix", ir_hash="ir-test", seed=seed, seq_len=SEQ_LEN, epoch_samples=epoch,
                streams=tuple(stream_plans), vocab=VOCAB, loss="all", model=ModelPlan(preset="tiny"),
                optimizer=OptimizerPlan(lr=3e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1),
                schedule=SchedulePlan(name="cosine", warmup_steps=2, min_lr_ratio=0.1),
                trainer=TrainerPlan(**settings), eval=evals)
    plan.dump(root / "plan.json")
    Lock(ir_hash=plan.ir_hash, seed=seed, sources={}, tokenizer="0" * 64, models={}, stage_keys={},
         tokens=tokens, shards=tuple(shards)).dump(root / "mix.lock")
    return root / "plan.json"


MIXED = (StreamSpec("web", 40, 40), StreamSpec("quest", 20, 30), StreamSpec("krist", 30, 10))
NO_REPEATS = (StreamSpec("web", 40, 40), StreamSpec("quest", 30, 24), StreamSpec("krist", 20, 16))


@pytest.fixture(scope="session")
def plan_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shared, read-only: tests that tamper with shards build their own with `make_plan`."""
    return make_plan(tmp_path_factory.mktemp("plan"), MIXED)


@pytest.fixture
def plan_factory(tmp_path: Path) -> Callable[..., Path]:
    return lambda streams=MIXED, **kw: make_plan(tmp_path / "compiled", streams, **kw)
