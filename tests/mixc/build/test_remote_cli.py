"""End to end through the console script, against a real S3-compatible server (moto) and a real GCS
API server (gcp-storage-emulator): `mixc compile SPEC --out s3://...` (gs://) then `mixc train
s3://.../plan.json`, with the stage cache and the checkpoints in the same bucket; and the errors a
user sees when the bucket is missing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.mixc.build.test_compile import spec_text
from tests.mixc.workspace import workspace

MIXC = str(Path(sys.executable).with_name("mixc"))


def mixc(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("MIXC_DEBUG", "MIXC_CACHE")}
    return subprocess.run([MIXC, *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=600)


def test_compile_to_a_bucket_then_train_from_it(store, tmp_path):
    ws = workspace(tmp_path / "ws")
    spec = ws.spec(spec_text())
    out = f"{store.url}/builds/two"
    compiled = mixc("compile", spec.name, "--out", out, "--cache-dir", f"{store.url}/cache", "--no-progress",
                    cwd=ws.root)
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr
    assert f"plan:   {out}/plan.json" in compiled.stdout and "uploaded to" in compiled.stderr
    keys = store.keys("builds/two")
    assert {"plan.json", "mix.lock", "report.md", "streams/index.json"} <= set(keys)
    assert any(k.endswith(".done") for k in store.keys("cache"))

    trained = mixc("train", f"{out}/plan.json", "--max-duration", "2ba", "--run-dir", "run",
                   "--data-cache", str(tmp_path / "data"), "--checkpoints", f"{store.url}/runs/two", cwd=tmp_path)
    assert trained.returncode == 0, trained.stdout + trained.stderr
    assert "done at step 2" in trained.stdout
    assert (tmp_path / "run" / "metrics.jsonl").is_file()
    assert "latest-rank0.pt.symlink" in store.keys("runs/two")  # the checkpoint, in the bucket as well


def test_a_missing_bucket_is_an_error_not_a_traceback(store, tmp_path):
    scheme = store.url.partition(":")[0]
    ws = workspace(tmp_path / "ws")
    spec = ws.spec(spec_text())
    out = mixc("compile", spec.name, "--out", f"{scheme}://no-such-bucket/x", cwd=ws.root)
    assert out.returncode == 5, out.stdout + out.stderr
    assert "mixc: error: bucket 'no-such-bucket' does not exist" in out.stderr
    assert "Traceback" not in out.stderr
    trained = mixc("train", f"{scheme}://no-such-bucket/x/plan.json", "--data-cache", str(tmp_path / "d"),
                   cwd=tmp_path)
    assert trained.returncode == 5 and "bucket 'no-such-bucket' does not exist" in trained.stderr
    missing = mixc("train", f"{store.url}/nothing/plan.json", "--data-cache", str(tmp_path / "d"), cwd=tmp_path)
    assert missing.returncode == 4 and "plan.json does not exist" in missing.stderr
