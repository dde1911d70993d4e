import hashlib
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from mixc.planfile import Lock, TrainingPlan
from runtime.train import train
from runtime.verify import ShardMismatch, verify_plan, verify_shards


def first_shard(plan_path: Path) -> tuple[Path, str]:
    lock = Lock.read(plan_path.parent / "mix.lock")
    shard = next(s for s in lock.shards if s.path.endswith(".mds"))
    return plan_path.parent / shard.path, shard.sha256


def flip_a_byte(path: Path) -> str:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    return hashlib.sha256(data).hexdigest()


def test_intact_shards_pass(plan_path: Path) -> None:
    verify_shards(plan_path.parent, Lock.read(plan_path.parent / "mix.lock"))


def test_changed_byte_names_the_file_and_both_hashes(plan_factory: Callable[..., Path]) -> None:
    plan_path = plan_factory()
    shard, expected = first_shard(plan_path)
    actual = flip_a_byte(shard)
    with pytest.raises(ShardMismatch) as err:
        verify_shards(plan_path.parent, Lock.read(plan_path.parent / "mix.lock"))
    message = str(err.value)
    assert shard.relative_to(plan_path.parent).as_posix() in message
    assert f"expected sha256 {expected}" in message and f"actual {actual}" in message
    assert "recompile with `mixc compile" in err.value.hint


def test_each_part_hashes_its_own_files(plan_factory: Callable[..., Path]) -> None:
    plan_path = plan_factory()
    flip_a_byte(first_shard(plan_path)[0])
    lock = Lock.read(plan_path.parent / "mix.lock")
    failed = []
    for part in range(3):
        try:
            verify_shards(plan_path.parent, lock, part=part, parts=3)
        except ShardMismatch:
            failed.append(part)
    assert len(failed) == 1


def test_truncated_and_missing_shards(plan_factory: Callable[..., Path]) -> None:
    plan_path = plan_factory()
    lock = Lock.read(plan_path.parent / "mix.lock")
    shard, _ = first_shard(plan_path)
    shard.write_bytes(shard.read_bytes()[:-10])
    with pytest.raises(ShardMismatch, match=r"bytes, mix.lock pins \d+: expected sha256 \w+, actual \w+"):
        verify_shards(plan_path.parent, lock)
    shard.unlink()
    with pytest.raises(ShardMismatch, match=re.escape(shard.name) + " is missing"):
        verify_shards(plan_path.parent, lock)


def test_lock_of_another_compile_is_refused(plan_path: Path) -> None:
    lock = Lock.read(plan_path.parent / "mix.lock")
    with pytest.raises(ShardMismatch, match="another compile"):
        verify_plan(TrainingPlan.read(plan_path), lock.model_copy(update={"ir_hash": "other"}))
    unpinned = lock.model_copy(update={"shards": tuple(s for s in lock.shards if not s.path.endswith("index.json"))})
    with pytest.raises(ShardMismatch, match="index.json is not pinned"):
        verify_plan(TrainingPlan.read(plan_path), unpinned)


def test_train_refuses_a_tampered_shard(plan_factory: Callable[..., Path], tmp_path: Path) -> None:
    plan_path = plan_factory()
    flip_a_byte(first_shard(plan_path)[0])
    with pytest.raises(ShardMismatch, match="does not match mix.lock") as err:
        train(plan_path, run_dir=tmp_path / "run", device="cpu")
    assert "recompile with `mixc compile" in err.value.hint
    assert not (tmp_path / "run").exists()  # refused before anything was written
