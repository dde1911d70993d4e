"""Checkpoints in object storage: the URL's parts, and a one-process run that resumes from the bucket
after its run folder is gone (the multi-node test does the same across two simulated hosts)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mixc.errors import UsageError
from runtime.checkpoints import remote_prefix
from runtime.train import train
from tests.s3 import S3Bucket


@pytest.mark.parametrize(("url", "parts"), [("s3://bucket/runs/a/", ("s3://bucket", "runs/a")),
                                            ("gs://b", ("gs://b", "")), ("s3://b/x", ("s3://b", "x"))])
def test_a_checkpoint_url_is_a_bucket_and_a_prefix(url: str, parts: tuple[str, str]) -> None:
    assert remote_prefix(url) == parts


@pytest.mark.parametrize("url", ["/local/folder", "http://host/x", "s3:///no-bucket"])
def test_a_checkpoint_url_must_name_a_bucket(url: str) -> None:
    with pytest.raises(UsageError) as caught:
        remote_prefix(url)
    assert "not an object-storage URL" in caught.value.message and "s3://BUCKET/PREFIX" in (caught.value.hint or "")


def test_a_run_resumes_from_object_storage_when_its_folder_is_gone(plan_path: Path, tmp_path: Path, s3: S3Bucket,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    url = f"{s3.url}/ckpt"
    first = train(plan_path, run_dir=tmp_path / "run", max_duration="10ba", device="cpu", checkpoints=url)
    assert first.step == 10 and {"ep0-ba10-rank0.pt", "latest-rank0.pt.symlink"} <= set(s3.keys("ckpt"))
    shutil.rmtree(tmp_path / "run")  # a new machine: nothing local
    resumed = train(plan_path, run_dir=tmp_path / "run", max_duration="12ba", device="cpu", checkpoints=url)
    assert resumed.step == 12 and "resuming from step 10" in capsys.readouterr().out  # not twelve from scratch
    assert "ep0-ba12-rank0.pt" in s3.keys("ckpt")
