"""Two machines, simulated on this one: Composer's launcher on two "nodes" (one process each,
`--world_size 2 --node_rank K --master_addr 127.0.0.1`), checkpoints in object storage (a moto S3
server), and a relaunch that resumes from the bucket.

A node is a process in its own mount namespace (`unshare -m`) with its own tmpfs over /dev/shm and
over its local folder (run folder, TMPDIR), at the same path on both: what two hosts look like to
Composer and Streaming, which both assume per-host shared memory and per-host disks. The local
folders vanish when the nodes exit, so the relaunch can only resume from the bucket.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.runtime.conftest import NO_REPEATS
from tests.s3 import Bucket, free_port

REPO = Path(__file__).resolve().parents[2]
COMPOSER = Path(sys.executable).with_name("composer")
NODE = 'mount -t tmpfs tmpfs /dev/shm && mount -t tmpfs tmpfs "$LOCAL" && mkdir "$LOCAL/tmp" && exec "$@"'


def can_unshare() -> bool:
    probe = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", "mount -t tmpfs tmpfs /mnt"],
                           capture_output=True)
    return probe.returncode == 0


pytestmark = [pytest.mark.distributed,
              pytest.mark.skipif(not can_unshare(), reason="simulating a second host needs a private mount "
                                 "namespace (unshare -m: root or CAP_SYS_ADMIN)")]


def launch_nodes(plan: Path, local: Path, out: Path, checkpoints: str, *extra: str) -> list[str]:
    """Both nodes of one launch; each node's launcher output. Rank k records into out/rank<k>.json."""
    out.mkdir()
    port = free_port()
    nodes = []
    for rank in (0, 1):
        env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
        env.update(LOCAL=str(local), TMPDIR=str(local / "tmp"))
        command = [str(COMPOSER), "-n", "1", "--world_size", "2", "--node_rank", str(rank),
                   "--master_addr", "127.0.0.1", "--master_port", str(port),
                   "-m", "tests.runtime.dist_worker", str(plan), str(local / "run"), str(out), *extra,
                   "--checkpoints", checkpoints]
        nodes.append(subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c", NODE, "node",
                                       *command], cwd=REPO, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    logs = [node.communicate(timeout=300)[0] for node in nodes]
    assert [n.returncode for n in nodes] == [0, 0], "\n".join(log[-3000:] for log in logs)
    return logs


def test_two_nodes_train_and_resume_from_object_storage(plan_factory: Callable[..., Path], tmp_path: Path,
                                                        s3: Bucket) -> None:
    plan = plan_factory(NO_REPEATS)  # 80 distinct sequences per epoch: 20 steps of 4
    local = tmp_path / "node-local"
    local.mkdir()
    checkpoints = f"{s3.url}/runs/two-nodes"
    first = launch_nodes(plan, local, tmp_path / "first", checkpoints, "10ba")
    assert not any(local.iterdir())  # each node's disk went away with it
    second = launch_nodes(plan, local, tmp_path / "second", checkpoints)

    assert "2 x cpu, fp32, ddp" in first[0] and "done at step 10" in first[0]
    assert "resuming from step 10" in second[0] and "done at step 20" in second[0]
    assert {"ep0-ba10-rank0.pt", "ep0-ba20-rank0.pt", "latest-rank0.pt.symlink"} <= set(s3.keys("runs/two-nodes"))
    ranks = [[json.loads((tmp_path / launch / f"rank{r}.json").read_text())["batches"]
              for launch in ("first", "second")] for r in (0, 1)]
    assert [[len(b) for b in r] for r in ranks] == [[10, 10], [10, 10]]
    seen = [{h for part in r for batch in part for h in batch} for r in ranks]
    # each node read its own half, and the resumed launch went on where the first stopped: the
    # epoch's 80 sequences, each exactly once
    assert len(seen[0]) == len(seen[1]) == 40 and not seen[0] & seen[1]
