"""Refuse shards that are not the bytes `mix.lock` pins.

A plan is only reproducible with the data it was compiled with: a shard edited, truncated, swapped
for another compile's or half-copied would silently change what the model sees. `train` checks
everything before it builds a model.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from mixc.errors import DataError
from mixc.planfile import RECOMPILE, Lock, ShardLock, TrainingPlan, sha256_file


class ShardMismatch(DataError):
    """A compiled file is missing or differs from what mix.lock pins, or the lock is not the plan's."""

    def __init__(self, message: str, hint: str = RECOMPILE):
        super().__init__(message, hint)


def verify_plan(plan: TrainingPlan, lock: Lock) -> None:
    """The lock must come from the same compile as the plan, and pin every stream's index."""
    if (lock.ir_hash, lock.seed) != (plan.ir_hash, plan.seed):
        raise ShardMismatch(f"mix.lock is from another compile (ir_hash {lock.ir_hash}, seed {lock.seed}) "
                            f"than plan.json (ir_hash {plan.ir_hash}, seed {plan.seed})")
    locked = {s.path for s in lock.shards}
    for stream in plan.streams:
        index = Path(stream.path, "index.json").as_posix()
        if index not in locked:
            raise ShardMismatch(f"stream {stream.name}: {index} is not pinned by mix.lock")


def check_size(path: Path, pin: ShardLock, source: str = "") -> None:
    """ShardMismatch unless the file has the pinned size (a stat: catches truncated and most replaced
    files before any byte is hashed). `source`: where the file came from, for the message."""
    size = path.stat().st_size
    if size != pin.bytes:
        raise ShardMismatch(f"shard {pin.path}{source and f' from {source}'} is {size} bytes, mix.lock pins "
                            f"{pin.bytes}: expected sha256 {pin.sha256}, actual {sha256_file(path)}")


def check_hash(pin: ShardLock, actual: str, source: str = "") -> None:
    """ShardMismatch unless `actual`, a file's sha256, is the pinned one."""
    if actual != pin.sha256:
        raise ShardMismatch(f"shard {pin.path}{source and f' from {source}'} does not match mix.lock: expected "
                            f"sha256 {pin.sha256}, actual {actual}")


def check_file(path: Path, pin: ShardLock, source: str = "") -> None:
    """ShardMismatch unless the file is the bytes `pin` names: its size, then its sha256."""
    check_size(path, pin, source)
    check_hash(pin, sha256_file(path), source)


def verify_shards(plan_dir: Path, lock: Lock, *, part: int = 0, parts: int = 1) -> None:
    """Raise ShardMismatch unless every file in `lock.shards` exists with its pinned size and sha256.

    Fast path first: existence and sizes of all files (a stat each) catch missing, truncated and
    most replaced files before any byte is hashed. Then hashes, in threads. `part`/`parts` split the
    hashing between the processes of one machine (each hashes every parts-th file), so eight ranks
    do not each read the whole dataset.
    """
    for shard in lock.shards:
        path = plan_dir / shard.path
        if not path.is_file():
            raise ShardMismatch(f"shard {shard.path} is missing (mix.lock pins sha256 {shard.sha256}, "
                                f"{shard.bytes} bytes)")
        check_size(path, shard)
    mine = lock.shards[part::parts]
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        for shard, actual in zip(mine, pool.map(lambda s: sha256_file(plan_dir / s.path), mine)):
            check_hash(shard, actual)
