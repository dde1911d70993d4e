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
