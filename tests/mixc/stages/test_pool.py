"""The stages' process pool: a task's own error reaches the stage as itself; a worker that dies
ends the stage with an error saying so, never a hang."""

import os
import time

import pytest

from mixc.errors import WorkerError
from mixc.stages.base import StageError, process_pool

_state: dict = {}


def _setup(value: int) -> None:
    _state["value"] = value


def _work(n: int) -> int:
    if n == 3:
        raise StageError("item 3 is bad", "fix item 3", ".files")
    if n == 5:
        os._exit(9)  # as the OOM killer ends a process
    return n * _state["value"]


def test_results_and_task_errors_come_back_as_themselves():
    with process_pool(2, _setup, (10,)) as pool:
        assert list(pool.map(_work, [1, 2])) == [10, 20]
    with pytest.raises(StageError) as err, process_pool(2, _setup, (10,)) as pool:
        list(pool.map(_work, [1, 3]))
    assert (err.value.message, err.value.hint, err.value.field) == ("item 3 is bad", "fix item 3", ".files")


def test_a_worker_that_dies_is_an_error_not_a_hang():
    start = time.monotonic()
    with pytest.raises(WorkerError, match="worker process died") as err, process_pool(2, _setup, (1,)) as pool:
        list(pool.map(_work, [1, 5, 2]))
    assert "fewer --workers" in err.value.hint and time.monotonic() - start < 60
