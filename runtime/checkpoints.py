"""Where a run's checkpoints go: always its run folder's `checkpoints/`, and with `--checkpoints URL`
object storage as well (s3://bucket/prefix, gs://...), through Composer's own uploader.

Every checkpoint is written locally and uploaded under the URL with its `latest-rank{rank}.pt`
pointer. Autoresume looks in the run folder first, then under the URL: a relaunch on machines that
never saw the run (a new node, a preempted job rescheduled elsewhere) downloads the latest
checkpoint and continues from it. On several machines that is how every node finds the checkpoint
rank 0 wrote. `S3_ENDPOINT_URL` points the S3 client at an S3-compatible store (MinIO, moto, R2).
"""

from __future__ import annotations

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
