"""The one interface every stage implements, and the record of what a run did.

A stage reads its input artifacts (folders), writes its own artifact into `ctx.out`, and returns
counts. It never decides where things live or whether to run: the executor does (cache, locks, keys).
"""

from __future__ import annotations

import json
import resource
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar, TypeVar

from mixc.build.cache import Items
from mixc.hashing import file_digest
from mixc.ir import Spec
from mixc.plan.dag import Stage

T = TypeVar("T")
Progress = Callable[[Iterable[T], str, int | None], Iterator[T]]


def no_progress(items: Iterable[T], what: str, total: int | None = None) -> Iterator[T]:
    return iter(items)


@dataclass
class Stats:
    """Per-run counts for report.md: items in, out, dropped by reason, seconds, anything else."""
    items_in: int = 0
    items_out: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # CPU time of this process and the worker processes it waited for
    counts: dict[str, float] = field(default_factory=dict)  # whole counts, and figures (seconds, losses)
    quarantined: list[dict[str, str]] = field(default_factory=list)

    def drop(self, reason: str, n: int = 1) -> None:
        if n:
            self.dropped[reason] = self.dropped.get(reason, 0) + n

    def quarantine(self, item: str, reason: str, kind: str = "unreadable") -> None:
        """Sets an input aside with the reason it cannot be used, counted as a drop of `kind`."""
        self.quarantined.append({"item": item, "reason": reason})
        self.drop(kind)

    def write(self, folder: Path) -> None:
        (folder / "stats.json").write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")

    @classmethod
    def read(cls, folder: Path) -> "Stats":
        path = folder / "stats.json"
        return cls(**json.loads(path.read_text())) if path.exists() else cls()


class StageError(Exception):
    """A stage cannot do its work for a reason the spec's author can fix. `field` is the IR path
    (below the stage's subject, e.g. ("asr", "model")) the compiler points its error at."""

    def __init__(self, message: str, hint: str | None = None, field: tuple[str, ...] = ()):
        super().__init__(message)
        self.hint, self.field = hint, field

    def __reduce__(self):  # keeps hint and field when raised in a worker process
        return type(self), (str(self), self.hint, self.field)


@dataclass
class Context:
    spec: Spec
    stage: Stage
    inputs: dict[str, Path]  # input stage id -> its artifact folder
    out: Path  # this run's (scratch) artifact folder
    root: Path  # the workspace root: spec paths are relative to it
    workers: int = 1
    progress: Progress = no_progress
    items: Items | None = None  # per-recording memo of item-wise stages (the cache's items/)
    digest: Callable[[Path], str] = file_digest  # a file's content digest (memoised by the cache)
    fingerprint: dict | None = None  # what the stage's `fingerprint` returned (the executor's, or its own)

    def input_of(self, kind: str) -> Path:
        """The artifact of the one input stage of this kind."""
        found = [p for sid, p in self.inputs.items() if sid.split(":")[0] == kind]
        if len(found) != 1:
            raise LookupError(f"{self.stage.id} expects one '{kind}' input, has {sorted(self.inputs)}")
        return found[0]

    def inputs_of(self, *kinds: str) -> list[Path]:
        return [p for sid, p in sorted(self.inputs.items()) if sid.split(":")[0] in kinds]


def _cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class StageRun(ABC):
    """A stage kind. `fingerprint` names outside inputs (file contents) that enter the cache key.

    A stage `keyed_by_content` leaves its inputs' run keys out of its own: its fingerprint digests
    what it reads of them instead, so an upstream rebuild that yields the same content (files moved,
    a new glob over the same audio) reuses it. For stages too costly to redo for nothing."""
    kind: ClassVar[str]
    keyed_by_content: ClassVar[bool] = False

    def fingerprint(self, ctx: Context) -> dict:
        return {}

    @abstractmethod
    def run(self, ctx: Context, stats: Stats) -> None:
        """Build the artifact into ctx.out, counting into stats."""

    def __call__(self, ctx: Context) -> Stats:
        if ctx.fingerprint is None:
            ctx.fingerprint = self.fingerprint(ctx)
        stats = Stats()
        start, cpu = time.perf_counter(), _cpu_seconds()
        self.run(ctx, stats)
        stats.seconds = round(time.perf_counter() - start, 3)
        stats.cpu_seconds = round(_cpu_seconds() - cpu, 3)
        stats.write(ctx.out)
        return stats
