"""A compile killed with SIGKILL at any point leaves nothing that looks complete, and a rerun
finishes the work without redoing finished stages, producing the same bytes as an uninterrupted run."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mixc.planfile import Lock
from tests.mixc.build.test_compile import shard_hashes, spec_text
from tests.mixc.workspace import workspace

MIXC = str(Path(sys.executable).with_name("mixc"))


def compile_cmd(ws, cache: Path) -> list[str]:
    return [MIXC, "compile", "spec.mix", "--out", "out", "--cache-dir", str(cache), "--no-progress"]


def kill_when(cmd: list[str], cwd: Path, cache: Path, prefix: str, timeout: float = 120) -> None:
    """Starts a compile and SIGKILLs it as soon as a `prefix` stage is being built."""
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if any(p.name.startswith(prefix) for p in (cache / "tmp").glob("*")):
                os.kill(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.005)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"the compile ended ({proc.returncode}) before reaching {prefix}"


def complete_artifacts(cache: Path) -> set[str]:
    return {f"{p.parent.name}/{p.name}" for p in cache.glob("*/*") if p.parent.name not in ("tmp", "locks")}


@pytest.mark.parametrize("stage", ["tokenize-", "shards-"])
def test_sigkill_then_rerun_gives_the_uninterrupted_bytes(tmp_path, stage):
    clean = workspace(tmp_path / "clean")
    clean.spec(spec_text())
    subprocess.run(compile_cmd(clean, tmp_path / "clean-cache"), cwd=clean.root, check=True, capture_output=True)

    ws = workspace(tmp_path / "killed")
    ws.spec(spec_text())
    cache = tmp_path / "cache"
    kill_when(compile_cmd(ws, cache), ws.root, cache, stage)
    done_before = complete_artifacts(cache)
    for artifact in done_before:  # everything that looks complete is complete
        assert (cache / artifact / "stats.json").exists(), artifact
    assert not (ws.root / "out" / "plan.json").exists()

    rerun = subprocess.run(compile_cmd(ws, cache), cwd=ws.root, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"{len(done_before)} from the cache" in rerun.stdout
    assert not list((cache / "tmp").glob("*")), "the rerun cleans up the killed build"
    assert shard_hashes(ws.root / "out") == shard_hashes(clean.root / "out")
    assert Lock.read(ws.root / "out" / "mix.lock") == Lock.read(clean.root / "out" / "mix.lock")
