"""Two CPU processes through Composer's launcher (gloo), against one process on the same plan.

The two-process run is stopped at step 10 and relaunched with the same command, so the test also
covers a multi-process (and, for FSDP2, sharded-checkpoint) resume.
"""

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from runtime.train import train
from tests.runtime.conftest import NO_REPEATS
from tests.runtime.helpers import BatchRecorder

REPO = Path(__file__).resolve().parents[2]
COMPOSER = Path(sys.executable).with_name("composer")


def launch(plan: Path, run_dir: Path, out: Path, *extra: str) -> tuple[str, list[dict]]:
    """`composer -n 2` on the test worker; its stdout and what each rank recorded."""
    out.mkdir()
    launched = subprocess.run(
        [str(COMPOSER), "-n", "2", "-m", "tests.runtime.dist_worker", str(plan), str(run_dir), str(out), *extra],
        cwd=REPO, env={k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"},
        capture_output=True, text=True, timeout=300)
    assert launched.returncode == 0, launched.stdout[-3000:] + launched.stderr[-3000:]
    return launched.stdout, [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]


@pytest.mark.distributed
@pytest.mark.parametrize("parallelism", ["ddp", "fsdp"])
def test_two_processes_split_each_batch_of_a_one_process_run(
        plan_factory: Callable[..., Path], tmp_path: Path, parallelism: str) -> None:
    plan = plan_factory(NO_REPEATS, parallelism=parallelism)  # no sequence twice in the epoch
    first_out, first = launch(plan, tmp_path / "two", tmp_path / "first", "10ba")
    second_out, second = launch(plan, tmp_path / "two", tmp_path / "second")
    assert f"2 x cpu, fp32, {'fsdp2' if parallelism == 'fsdp' else 'ddp'}" in first_out
    assert "resuming from step 10" in second_out and "done at step 20" in second_out
    ranks = [a["batches"] + b["batches"] for a, b in zip(first, second)]

    single = BatchRecorder()
    result = train(plan, run_dir=tmp_path / "one", device="cpu", callbacks=[single])

    assert [len(r) for r in ranks] == [20, 20] and len(single.batches) == 20
    seen = [{h for batch in r for h in batch} for r in ranks]
    assert len(seen[0]) == len(seen[1]) == 40 and not seen[0] & seen[1]  # disjoint halves
    for step, (a, b, whole) in enumerate(zip(*ranks, single.batches)):
        assert sorted(a + b) == sorted(whole), f"step {step + 1}"
    # same batches, token-weighted loss: the two-process run is the one-process run, up to rounding
    assert second[0]["loss"] == pytest.approx(result.loss, rel=1e-5)
