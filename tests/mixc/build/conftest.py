"""A real Ray cluster on 127.0.0.1 for the Ray executor's tests: started once per session (2 CPUs),
this test process connected to it, and stopped at the end (the `ray start --block` process and the
processes it started, by their process group)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO

RAY = str(Path(sys.executable).with_name("ray"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[str]:
    """The address (HOST:PORT) of a 2-CPU Ray cluster; workers import mixc and tests from this repo."""
    port = _free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONPATH": str(REPO),
           "RAY_USAGE_STATS_ENABLED": "0"}
    head = subprocess.Popen([RAY, "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port", str(port),
                             "--num-cpus", "2", "--num-gpus", "0", "--disable-usage-stats",
                             "--include-dashboard", "false"],
                            env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while not _listening(port):
            if head.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"ray start --head did not come up on {address}")
            time.sleep(0.5)
        import ray
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        ray.init(address=address, logging_level="ERROR", log_to_driver=False)
        yield address
    finally:
        import ray
        ray.shutdown()
        head.send_signal(signal.SIGINT)  # `ray start --block` stops what it started, as on Ctrl-C
        with contextlib.suppress(subprocess.TimeoutExpired):
            head.wait(timeout=20)
        with contextlib.suppress(ProcessLookupError):  # what is left of the processes it started (its group)
            os.killpg(head.pid, signal.SIGKILL)
        head.wait()
