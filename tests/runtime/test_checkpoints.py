"""Checkpoints in object storage: the URL's parts, and a one-process run that resumes from the bucket
after its run folder is gone (the multi-node test does the same across two simulated hosts), and a
run killed while saving, which resumes from its last whole checkpoint."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from mixc.errors import UsageError
from runtime.checkpoints import remote_prefix, settle
from runtime.train import train
from tests.s3 import Bucket


@pytest.mark.parametrize(("url", "parts"), [("s3://bucket/runs/a/", ("s3://bucket", "runs/a")),
                                            ("gs://b", ("gs://b", "")), ("s3://b/x", ("s3://b", "x"))])
def test_a_checkpoint_url_is_a_bucket_and_a_prefix(url: str, parts: tuple[str, str]) -> None:
    assert remote_prefix(url) == parts


@pytest.mark.parametrize("url", ["/local/folder", "http://host/x", "s3:///no-bucket"])
def test_a_checkpoint_url_must_name_a_bucket(url: str) -> None:
    with pytest.raises(UsageError) as caught:
        remote_prefix(url)
    assert "not an object-storage URL" in caught.value.message and "s3://BUCKET/PREFIX" in (caught.value.hint or "")


def test_a_run_resumes_from_object_storage_when_its_folder_is_gone(plan_path: Path, tmp_path: Path,
                                                                   store: Bucket,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    url = f"{store.url}/ckpt"
    first = train(plan_path, run_dir=tmp_path / "run", max_duration="10ba", device="cpu", checkpoints=url)
    assert first.step == 10 and {"ep0-ba10-rank0.pt", "latest-rank0.pt.symlink"} <= set(store.keys("ckpt"))
    shutil.rmtree(tmp_path / "run")  # a new machine: nothing local
    resumed = train(plan_path, run_dir=tmp_path / "run", max_duration="12ba", device="cpu", checkpoints=url)
    assert resumed.step == 12 and "resuming from step 10" in capsys.readouterr().out  # not twelve from scratch
    assert "ep0-ba12-rank0.pt" in store.keys("ckpt")


def test_a_run_killed_while_saving_resumes_from_its_last_whole_checkpoint(plan_path: Path, tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    saved = tmp_path / "run" / "checkpoints"
    train(plan_path, run_dir=tmp_path / "run", max_duration="10ba", device="cpu")
    # killed between writing ba10 and re-pointing `latest` (still at ba5), then again mid-way through ba15
    (saved / "latest-rank0.pt").unlink()
    (saved / "latest-rank0.pt").symlink_to("ep0-ba5-rank0.pt")
    whole = (saved / "ep0-ba10-rank0.pt").read_bytes()
    (saved / "ep0-ba15-rank0.pt").write_bytes(whole[: len(whole) // 2])
    resumed = train(plan_path, run_dir=tmp_path / "run", max_duration="12ba", device="cpu")
    out = capsys.readouterr().out
    assert resumed.step == 12 and "resuming from step 10" in out and "cut off mid-write" in out
    assert (saved / "interrupted" / "ep0-ba15-rank0.pt").read_bytes() == whole[: len(whole) // 2]  # kept, not lost


def test_settling_a_folder_with_no_pointer_adopts_the_newest_whole_checkpoint(tmp_path: Path) -> None:
    torch.save({"step": 5}, tmp_path / "ep0-ba5-rank0.pt")
    (tmp_path / "ep0-ba10-rank0.pt").write_bytes(b"PK\x03\x04 cut")
    said = settle(tmp_path, rank=0)
    assert (tmp_path / "latest-rank0.pt").resolve() == (tmp_path / "ep0-ba5-rank0.pt").resolve()
    assert (tmp_path / "interrupted" / "ep0-ba10-rank0.pt").is_file() and len(said) == 2
    assert settle(tmp_path, rank=0) == []  # settled: nothing more to do
    assert settle(tmp_path, rank=1) == [] and not (tmp_path / "latest-rank1.pt").exists()  # another rank's files
