import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from mixc.errors import DataError
from mixc.planfile import TrainingPlan
from runtime.data import build_dataset, build_loader, collate, release
from tests.runtime.conftest import DOC_ID_BASE, SEQ_LEN


def epoch_of(plan: TrainingPlan, plan_dir: Path) -> list[dict[str, np.ndarray]]:
    dataset = build_dataset(plan, plan_dir, device_batch_size=4)
    try:
        return [dict(sample) for sample in dataset]
    finally:
        release(dataset)


def test_an_epoch_draws_each_stream_exactly_choose_times(plan_path: Path) -> None:
    plan = TrainingPlan.read(plan_path)
    samples = epoch_of(plan, plan_path.parent)
    drawn = Counter(int(s["lineage"][0]) // DOC_ID_BASE for s in samples)
    assert [drawn[k] for k in range(len(plan.streams))] == [s.choose for s in plan.streams] == [40, 30, 10]
    assert len(samples) == plan.epoch_samples


def test_order_is_fixed_by_the_seed(plan_path: Path) -> None:
    plan = TrainingPlan.read(plan_path)
    first = [s["lineage"].tolist() for s in epoch_of(plan, plan_path.parent)]
    again = [s["lineage"].tolist() for s in epoch_of(plan, plan_path.parent)]
    reseeded = [s["lineage"].tolist() for s in epoch_of(plan.model_copy(update={"seed": 8}), plan_path.parent)]
    assert first == again
    assert first != reseeded


def test_release_frees_the_shared_memory(plan_path: Path) -> None:
    before = set(os.listdir("/dev/shm"))
    epoch_of(TrainingPlan.read(plan_path), plan_path.parent)
    assert set(os.listdir("/dev/shm")) <= before


def test_collate_copies_read_only_samples_into_tensors() -> None:
    tokens = np.arange(SEQ_LEN, dtype=np.uint16)
    tokens.flags.writeable = False
    mask = np.ones(SEQ_LEN, dtype=np.uint8)
    mask.flags.writeable = False
    batch = collate([{"tokens": tokens, "loss_mask": mask}] * 2)
    assert batch["tokens"].dtype == torch.int64 and batch["tokens"].shape == (2, SEQ_LEN)
    assert batch["loss_mask"].dtype == torch.uint8
    batch["tokens"][0, 0] = 7  # the batch owns its memory
    assert tokens[0] == 0


def test_loader_yields_device_batches(plan_path: Path) -> None:
    plan = TrainingPlan.read(plan_path)
    dataset = build_dataset(plan, plan_path.parent, device_batch_size=4)
    try:
        batches = list(build_loader(dataset, 4))
    finally:
        release(dataset)
    assert len(batches) == plan.epoch_samples // 4
    assert {tuple(b["tokens"].shape) for b in batches} == {(4, SEQ_LEN)}
    # the padded last sequence of a stream is fully masked after its real tokens
    assert any((b["tokens"] == plan.vocab.pad).any() for b in batches)
    for b in batches:
        assert not b["loss_mask"][b["tokens"] == plan.vocab.pad].any()


def test_plan_whose_streams_do_not_add_up_is_refused(plan_path: Path) -> None:
    plan = TrainingPlan.read(plan_path)
    with pytest.raises(DataError, match="epoch_samples"):
        build_dataset(plan.model_copy(update={"epoch_samples": 81}), plan_path.parent, 4)


def test_compressed_shards_are_unpacked_once_whoever_asks_at_the_same_time(tmp_path: Path) -> None:
    """Two jobs reading one plan at once: one decompresses under the lock, the other finds the shards."""
    import multiprocessing

    from streaming import MDSWriter
    from streaming.base.compression import decompress

    from mixc.planfile import StreamPlan
    from runtime.data import unpack_shards

    folder = tmp_path / "streams" / "s"
    with MDSWriter(out=str(folder), columns={"x": "ndarray:int64"}, compression="zstd", size_limit=2048) as writer:
        for i in range(200):
            writer.write({"x": np.arange(i, i + 16)})
    stream = StreamPlan(name="s", path="streams/s", samples=200, tokens=0, share=1.0, choose=200, repeat=1.0,
                        proportion=1.0)
    plan = TrainingPlan.model_construct(streams=(stream,))
    jobs = [multiprocessing.get_context("spawn").Process(target=unpack_shards, args=(plan, tmp_path)) for _ in range(2)]
    for job in jobs:
        job.start()
    for job in jobs:
        job.join()
    assert all(job.exitcode == 0 for job in jobs)
    zipped = sorted(folder.glob("*.mds.zstd"))
    assert len(zipped) > 1 and not list(folder.glob("*.tmp"))
    for z in zipped:
        assert z.with_suffix("").read_bytes() == decompress("zstd", z.read_bytes())
