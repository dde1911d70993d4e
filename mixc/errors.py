"""One root for every error mixc reports to its user: a message, a hint, and the CLI's exit status.

The CLI prints any `MixcError` as `mixc: error: MESSAGE` and `  hint: HINT`, then exits with its
`exit_code`; a spec error prints its located diagnostics instead. Any other exception reaching the
CLI is a bug in mixc, and only those print "internal error".

Exit statuses (docs/errors.md lists every error under each):

    0    success
    1    the spec has errors: located diagnostics (`path:line:col: error: ...`)
    2    usage: a command-line option or a launch setting is wrong
    3    internal error: a bug in mixc (the one status that means one)
    4    data: a file mixc reads or keeps is not what it must be (shards vs mix.lock, plan.json,
         a checkpoint, a run folder holding another run)
    5    set-up: this machine lacks something the spec needs (model weights, a tool, a worker
         environment)
    130  interrupted (Ctrl-C)
"""

from __future__ import annotations

from typing import ClassVar

SPEC, USAGE, INTERNAL, DATA, SETUP, INTERRUPTED = 1, 2, 3, 4, 5, 130


class MixcError(Exception):
    """An error the user can act on: what went wrong, and a hint saying what to do about it."""

    exit_code: ClassVar[int] = DATA

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message, self.hint = message, hint

    def __reduce__(self):  # keeps the hint when raised in a worker process
        return type(self), (self.message, self.hint)


class UsageError(MixcError):
    """A command-line option or launch setting cannot work (e.g. a batch that does not split over
    the processes launched)."""

    exit_code = USAGE


class DataError(MixcError):
    """A file mixc reads or keeps is not what it must be; the hint says how to get a good one."""

    exit_code = DATA


class SetupError(MixcError):
    """This machine lacks something the run needs: weights, a tool, a worker environment."""

    exit_code = SETUP


class MissingWeights(SetupError):
    """A backend's model is not on this machine. The message names the model and where mixc looked;
    the hint says how to provide it. The compiler reports it at the spec field that chose the model."""


class WorkerError(SetupError):
    """A stage's worker process died, or a backend's worker (in an environment of its own) could not
    start, crashed or broke the protocol; the message says what it last reported."""
