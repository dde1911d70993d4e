"""Where a run's checkpoints go: always its run folder's `checkpoints/`, and with `--checkpoints URL`
object storage as well (s3://bucket/prefix, gs://...), through Composer's own uploader.

Every checkpoint is written locally and uploaded under the URL with its `latest-rank{rank}.pt`
pointer. Autoresume looks in the run folder first, then under the URL: a relaunch on machines that
never saw the run (a new node, a preempted job rescheduled elsewhere) downloads the latest
checkpoint and continues from it. On several machines that is how every node finds the checkpoint
rank 0 wrote. `S3_ENDPOINT_URL` points the S3 client at an S3-compatible store (MinIO, moto, R2),
`STORAGE_EMULATOR_HOST` the GCS client at an emulator.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from urllib.parse import urlparse

from composer.callbacks import CheckpointSaver
from composer.loggers import RemoteUploaderDownloader

from mixc.errors import UsageError
from mixc.planfile import TrainingPlan

FILENAME = "ep{epoch}-ba{batch}-rank{rank}.pt"
LATEST = "latest-rank{rank}.pt"
SCHEMES = ("s3", "gs", "oci")  # Composer's object stores for a bucket URL


def remote_prefix(url: str) -> tuple[str, str]:
    """(bucket URL, key prefix) of a checkpoint URL; UsageError unless it names a bucket of a known store."""
    parsed = urlparse(url)
    if parsed.scheme not in SCHEMES or not parsed.netloc:
        raise UsageError(f"--checkpoints {url}: not an object-storage URL",
                         f"write it as {' or '.join(s + '://BUCKET/PREFIX' for s in SCHEMES)}")
    return f"{parsed.scheme}://{parsed.netloc}", parsed.path.strip("/")


def checkpointing(plan: TrainingPlan, run_dir: Path, remote: str | None) -> tuple[CheckpointSaver, list]:
    """The saver of the run's checkpoints, and the loggers that upload (and find) them remotely."""
    bucket, prefix = remote_prefix(remote) if remote else ("", "")
    # the remote names are set even without a URL (Composer's autoresume requires them); with no
    # uploader among the loggers, nothing is uploaded
    saver = CheckpointSaver(
        folder=str(run_dir / "checkpoints"), filename=FILENAME, latest_filename=LATEST,
        remote_file_name=f"{prefix}/{FILENAME}".lstrip("/"), latest_remote_file_name=f"{prefix}/{LATEST}".lstrip("/"),
        save_interval=f"{plan.trainer.checkpoint_every}ba", num_checkpoints_to_keep=plan.trainer.checkpoint_keep)
    return saver, [RemoteUploaderDownloader(bucket_uri=bucket)] if remote else []


def settle(folder: Path, rank: int) -> list[str]:
    """Make a folder a killed run left behind safe to resume from, and say what changed.

    Composer writes a checkpoint in place, then re-points `latest-rank{rank}.pt` at it: a run killed
    in between leaves a checkpoint newer than the pointer (or no pointer at all), and autoresume then
    starts from the older step and refuses to overwrite the newer file. The newest such checkpoint,
    when whole (torch.save's zip archive ends with its directory, which a cut-off write lacks),
    becomes the latest; newer, cut-off ones move to `interrupted/`, kept for inspection, never loaded.
    """
    link = folder / LATEST.format(rank=rank)
    pointed = _step(link.resolve().name, rank) if link.exists() else -1
    newer = sorted((step, p) for p in folder.glob(f"*-rank{rank}.pt")  # files: not the link, nor folders
                   if p.is_file() and not p.is_symlink() and (step := _step(p.name, rank)) > pointed)
    said = []
    if whole := [(step, p) for step, p in newer if zipfile.is_zipfile(p)]:
        adopted_step, adopted = whole[-1]
        link.unlink(missing_ok=True)
        link.symlink_to(adopted.name)
        said.append(f"{adopted} was written but the run stopped before marking it the latest; resuming from it")
        newer = [(step, p) for step, p in newer if step > adopted_step]
    for _, cut in newer:
        (folder / "interrupted").mkdir(exist_ok=True)
        cut.rename(folder / "interrupted" / cut.name)
        said.append(f"{cut} was cut off mid-write (the run was stopped); moved to {folder / 'interrupted'}")
    return said


def _step(name: str, rank: int) -> int:
    """The batch count in a checkpoint's file name (FILENAME), -1 for any other name."""
    found = re.fullmatch(rf"ep\d+-ba(\d+)-rank{rank}\.pt", name)
    return int(found.group(1)) if found else -1
