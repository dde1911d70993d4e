"""The compiled streams as one deterministic, resumable StreamingDataset.

One `streaming.Stream` per `plan.streams` entry, each drawing exactly `choose` sequences per epoch (the
compiler already turned shares and repeats into those counts), shuffled with the plan's seed. The
shards are local folders next to plan.json, read in place: no remote, no cache copy; a plan read
from object storage streams its shards into a local mirror instead (`runtime.remote`). Compressed shards (.mds.zstd) are
decompressed into the same folder before the first read (`unpack_shards`); mix.lock pins the archives.

Streaming must know the real per-device batch size: it lays out each batch from one partition, and
its prepare thread runs `predownload` samples ahead; Streaming's default look-ahead (8 batches) makes
the iterator poll every few milliseconds and stall on small samples (benchmarks/loader_speed.py: the
runtime loader reads the same shards about 2x faster than a default StreamingDataset).
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import time
from collections.abc import Iterator, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from composer.utils import dist
from streaming import Stream, StreamingDataLoader, StreamingDataset
from streaming.base.shared import SharedMemory

from mixc.errors import DataError
from mixc.planfile import RECOMPILE, TrainingPlan

MIN_PREDOWNLOAD = 4096  # samples; local shards cost nothing to "download", so look far ahead


def build_streams(plan: TrainingPlan, plan_dir: Path, remote: str | None = None) -> list[Stream]:
    """One local Stream per compiled stream, with its exact per-epoch draw; for a plan read from
    object storage (`remote`: its plan.json's URL, `plan_dir` its local mirror), streams that
    download each shard into the mirror and check it against mix.lock (`runtime.remote`)."""
    if remote:
        from runtime.remote import remote_streams
        return remote_streams(plan, plan_dir, remote)
    return [Stream(local=str((plan_dir / s.path).resolve()), choose=s.choose) for s in plan.streams]


def unpack_shards(plan: TrainingPlan, plan_dir: Path) -> None:
    """Decompresses every compressed shard of the plan once, before any loader reads. Streaming would
    do it lazily into the same folder through a fixed temporary name, which two jobs reading the same
    streams at once (two seeds of one plan) would both write; here one job does it under a lock and
    the others find the shards ready."""
    from streaming.base.compression import decompress

    with open(plan_dir / ".unpack.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for stream in plan.streams:
            folder = plan_dir / stream.path
            for shard in json.loads((folder / "index.json").read_text())["shards"]:
                raw, packed = folder / shard["raw_data"]["basename"], shard.get("zip_data")
                if packed and not raw.exists():
                    tmp = raw.with_name(f"{raw.name}.{os.getpid()}.tmp")
                    tmp.write_bytes(decompress(shard["compression"], (folder / packed["basename"]).read_bytes()))
                    os.replace(tmp, raw)


def build_dataset(plan: TrainingPlan, plan_dir: Path, device_batch_size: int, *,
                  predownload: int | None = None, remote: str | None = None) -> StreamingDataset:
    """The plan's mixture: `plan.epoch_samples` sequences per epoch, shuffled by `plan.seed`.

    The order is a function of the seed, the epoch and the node count (num_canonical_nodes defaults
    to it), not of the processes per node or the loader workers: reruns, resumed runs and runs with
    more processes on a machine see the same global batches in the same order. Jobs on one machine
    may read the same streams at once (their shards are unpacked first: `unpack_shards`). With
    `remote` (the plan's URL), the shards stream from object storage into `plan_dir`, the plan's
    local mirror, where Streaming decompresses them.
    """
    drawn = sum(s.choose for s in plan.streams)
    if drawn != plan.epoch_samples:
        raise DataError(f"plan.json's streams draw {drawn} sequences per epoch but its epoch_samples is "
                        f"{plan.epoch_samples}", f"the plan was edited or is damaged; {RECOMPILE}")
    if remote is None:
        unpack_shards(plan, plan_dir)
    attempts = 3 if dist.get_world_size() == 1 else 1  # a retry would desynchronise the ranks' barriers
    kind: Any = StreamingDataset
    if remote is not None:
        from runtime.remote import RemoteDataset
        kind = partial(RemoteDataset, mirror=plan_dir)
    for attempt in range(attempts):
        try:
            return kind(streams=build_streams(plan, plan_dir, remote), batch_size=device_batch_size,
                                    shuffle=True, shuffle_seed=plan.seed,
                                    predownload=predownload or max(MIN_PREDOWNLOAD, 8 * device_batch_size))
        except FileExistsError:  # two jobs registered the same shared-memory name at once: Streaming's race
            if attempt + 1 == attempts:
                break
            time.sleep(0.2 + random.random())
    raise DataError("Streaming could not register this job's shared memory (other jobs kept taking its names)",
                    "start the jobs a few seconds apart")


def documents(boundaries: np.ndarray | None, seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Per position of a packed sequence: the index of the document it belongs to, and its position
    within that document (restarting at 0 at each start), both int64 [seq_len]. `boundaries` are
    the document starts (0 first); none, or missing, is one document. Padding after the last real
    token stays in the last document: it is never a target."""
    doc_ids: np.ndarray = np.zeros(seq_len, dtype=np.int64)
    starts = np.zeros(1, dtype=np.int64)
    if boundaries is not None and len(boundaries):
        starts = np.unique(np.concatenate([[0], np.asarray(boundaries, dtype=np.int64)]))
        if starts[-1] >= seq_len or starts[0] < 0:
            raise DataError(f"a sequence's document boundaries {starts.tolist()} fall outside its {seq_len} tokens",
                            f"the shards are damaged; {RECOMPILE}")
        doc_ids[starts[1:]] = 1
        doc_ids = np.cumsum(doc_ids)
    return doc_ids, np.arange(seq_len, dtype=np.int64) - starts[doc_ids]


def collate(samples: Sequence[Mapping[str, np.ndarray]]) -> dict[str, torch.Tensor]:
    """Stack samples into fresh tensors: tokens as int64 (what embedding lookups take), loss_mask as
    uint8, and from each sample's `boundaries`, `doc_ids` and `positions` (int64 [B, T], `documents`)
    for document attention. Streaming returns read-only views of its memory-mapped shards; np.stack
    copies them, so the batch owns its memory and torch never aliases a read-only buffer."""
    tokens = np.stack([s["tokens"] for s in samples]).astype(np.int64, copy=False)
    loss_mask = np.stack([s["loss_mask"] for s in samples])
    docs = [documents(s.get("boundaries"), tokens.shape[1]) for s in samples]
    return {"tokens": torch.from_numpy(tokens), "loss_mask": torch.from_numpy(loss_mask),
            "doc_ids": torch.from_numpy(np.stack([d for d, _ in docs])),
            "positions": torch.from_numpy(np.stack([p for _, p in docs]))}


def build_loader(dataset: StreamingDataset, device_batch_size: int, num_workers: int = 0) -> StreamingDataLoader:
    """A loader whose position Composer checkpoints (through the dataset's state_dict) and restores.

    drop_last: a ragged final batch would change the per-step batch size the plan budgets for.
    """
    return StreamingDataLoader(dataset, batch_size=device_batch_size, collate_fn=collate,
                               num_workers=num_workers, drop_last=True,
                               persistent_workers=num_workers > 0, pin_memory=torch.cuda.is_available())


def _shared_memory_of(obj: object, depth: int = 3) -> Iterator[SharedMemory]:
    """The Streaming shared-memory segments an object holds, directly or through Streaming's
    SharedScalar / SharedArray / SharedBarrier wrappers (at most `depth` attributes down)."""
    if isinstance(obj, SharedMemory):
        yield obj
    elif depth and hasattr(obj, "__dict__"):
        for value in vars(obj).values():
            yield from _shared_memory_of(value, depth - 1)


def release(dataset: StreamingDataset) -> None:
    """Stop the dataset's look-ahead threads and unlink the shared memory it created.

    Streaming frees both only at interpreter exit, so a process that trains several times (tests, a
    notebook, a sweep) would keep every earlier run's threads polling and segments mapped. Not
    `streaming.base.util.clean_stale_shared_memory()`: that unlinks every Streaming segment on the
    machine, including those of other jobs still training. Threads first, so none touches memory
    that is being unmapped.
    """
    iterator = getattr(dataset, "_iterator", None)  # set once iteration has started
    if iterator is not None:
        iterator.exit()
    for shm in _shared_memory_of(dataset):
        shm.cleanup()
