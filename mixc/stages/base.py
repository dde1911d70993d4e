"""The one class every stage kind is, and the record of what a run did.

A stage declares what it is as class attributes (`kind`, `version`, `doc`, `reads`, and for a
model stage `weights`); the planner keys it from them and `mixc plan` documents it with them. It
implements `run`: read its input artifacts, write its own into `ctx.out`, count into `stats`. It
never decides where things live or whether to run: the executor does (cache, locks, keys).

A run sees the spec only through `ctx.read`, which hands back the IR values the stage declared and
refuses anything else, so nothing a stage reads can escape its cache key.
"""

from __future__ import annotations

import json
import os
import resource
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from mixc import ir, storage
from mixc.errors import SPEC, MixcError, WorkerError
from mixc.hashing import file_digest
from mixc.lang.workspace import expand
from mixc.plan.dag import StageNode, resolve
from mixc.stages.store import ItemStore

T = TypeVar("T")
Progress = Callable[[Iterable[T], str, int | None], Iterator[T]]
# Per-item workers: `pool(workers, initializer, initargs)` opens something with an order-keeping
# `map(fn, items)` (a process pool here; Ray actors under `mixc compile --executor ray`).
Pool = Callable[[int, Callable[..., None], tuple], AbstractContextManager[Any]]


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

    FILE: ClassVar[str] = "stats.json"

    def drop(self, reason: str, n: int = 1) -> None:
        if n:
            self.dropped[reason] = self.dropped.get(reason, 0) + n

    def quarantine(self, item: str, reason: str, kind: str = "unreadable") -> None:
        """Sets an input aside with the reason it cannot be used, counted as a drop of `kind`."""
        self.quarantined.append({"item": item, "reason": reason})
        self.drop(kind)

    def write(self, folder: Path) -> None:
        (folder / self.FILE).write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")

    @classmethod
    def read(cls, folder: Path) -> Stats:
        path = folder / cls.FILE
        return cls(**json.loads(path.read_text())) if path.exists() else cls()


class StageError(MixcError):
    """A stage cannot do its work for a reason the spec's author can fix. `field` is where in the
    spec, written like a declared read (".manifest", "tokenizers.audio.path"); the compiler points
    its error there (else at the stage's subject)."""

    exit_code = SPEC

    def __init__(self, message: str, hint: str | None = None, field: str | None = None):
        super().__init__(message, hint)
        self.field = field

    def __reduce__(self):  # keeps hint and field when raised in a worker process
        return type(self), (self.message, self.hint, self.field)


class UndeclaredRead(Exception):
    """A stage read an IR value it did not declare: a bug in that stage (its key would miss it)."""


@dataclass(frozen=True)
class Declared:
    """The IR values a stage declared, for its subject; picklable, so worker processes get it too."""
    stage: str
    values: dict[str, Any]  # declared read as written (".vad", "pack") -> its IR value

    @classmethod
    def of(cls, spec: ir.Spec, node: StageNode, reads: tuple[str, ...]) -> Declared:
        return cls(node.id, {r: ir.value_at(spec, resolve(r, spec, node.subject)) for r in reads})

    def get(self, read: str) -> Any:
        """The value of a declared read, or of a field below one ("interleave.loss" when "interleave"
        is declared)."""
        for declared, value in self.values.items():
            if read == declared:
                return value
            if read.startswith(declared + "."):
                return ir.value_at(value, tuple(read[len(declared) + 1:].split(".")))
        raise UndeclaredRead(f"stage {self.stage} reads '{read}' but declares only {sorted(self.values)}: "
                             "add it to the stage's `reads`")


@dataclass
class Context:
    node: StageNode
    config: Declared  # the only way a run sees the spec
    inputs: dict[str, Path]  # input stage id -> its artifact folder
    out: Path  # this run's (scratch) artifact folder
    root: Path  # the workspace root: spec paths are relative to it
    workers: int = 1
    progress: Progress = no_progress
    items: ItemStore | None = None  # per-recording memo of item-wise stages (the cache's items/)
    digest: Callable[[Path], str] = file_digest  # a file's content digest (memoised by the cache)
    fingerprint: dict = field(default_factory=dict)  # what the stage's `fingerprint` returned
    pool: Pool | None = None  # per-item workers; None: `process_pool` (spawned processes on this machine)
    remote_items: bool = False  # per-item work goes to `pool` even for one worker (Ray: where its resources are)

    @property
    def subject(self) -> str:
        return self.node.subject

    def read(self, declared: str) -> Any:
        return self.config.get(declared)

    def declares(self, read: str) -> bool:
        """Whether the stage declared `read` for this spec (a read some specs need and others not)."""
        return read in self.config.values

    def input_of(self, kind: str) -> Path:
        """The artifact of the one input stage of this kind."""
        found = [p for sid, p in self.inputs.items() if sid.split(":")[0] == kind]
        if len(found) != 1:
            raise LookupError(f"{self.node.id} expects one '{kind}' input, has {sorted(self.inputs)}")
        return found[0]

    def inputs_of(self, *kinds: str) -> list[Path]:
        return [p for sid, p in sorted(self.inputs.items()) if sid.split(":")[0] in kinds]

    def source_files(self, patterns: tuple[str, ...] | None = None) -> list[tuple[str, Path]]:
        """(name, local file) of every file the globs name (the stage's `.files` by default), sorted:
        local globs named by their workspace-relative path, then s3:// / gs:// globs named by their
        URL and read from a local mirror beside the cache's items (`mixc.storage.mirror`: an object is
        fetched again only when its size or ETag changes). Names and contents key a stage, never
        where the mirror lives."""
        patterns = self.read(".files") if patterns is None else patterns
        local = tuple(p for p in patterns if not storage.is_remote(p))
        remote = [p for p in patterns if storage.is_remote(p)]
        out = [(os.path.relpath(p, self.root), p) for p in expand(self.root, local)]
        return out + (storage.mirror(remote, self._mirror) if remote else [])

    @property
    def _mirror(self) -> Path:
        return self.items.root.parent / "sources" if self.items else self.root / ".mixc" / "sources"

    def source_name(self, path: Path) -> str:
        """How reports and lineage name an input file: its URL when it is a mirrored object, else its
        path relative to the workspace."""
        if path.is_relative_to(self._mirror):
            scheme, *key = path.relative_to(self._mirror).parts
            return f"{scheme}://{'/'.join(key)}"
        return os.path.relpath(path, self.root)

    def worker_pool(self, workers: int, initializer: Callable[..., None],
                    initargs: tuple) -> AbstractContextManager[Any]:
        """`workers` workers for per-item work, each set up once by `initializer`: `self.pool`'s, else
        local processes (`process_pool`). Its `map` keeps the items' order."""
        return (self.pool or process_pool)(workers, initializer, initargs)


@contextmanager
def process_pool(workers: int, initializer: Callable[..., None], initargs: tuple) -> Iterator[ProcessPoolExecutor]:
    """`workers` spawned processes, each set up once by `initializer`. An exception a task raises
    reaches the caller as itself (hint and all); a worker that dies (killed by the OS, often for lack
    of memory) ends the stage with an error instead of hanging it."""
    try:
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=initializer,
                                 initargs=initargs) as pool:
            yield pool
    except BrokenProcessPool:
        raise WorkerError("a worker process died before finishing its work (killed by the operating system, "
                          "most often for lack of memory)",
                          "rerun with fewer --workers; everything finished so far is kept in the cache") from None


def _cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class Stage(ABC):
    """A stage kind, declared by its class attributes:

    - `kind`:    the name plans, caches and reports use;
    - `version`: bump it whenever the bytes the stage writes change (tests/golden/stages.json holds
                 a digest of every stage's output on a fixture, and fails when they change alone);
    - `doc`:     one line for `mixc plan` and docs/architecture.md;
    - `reads`:   the IR values its output depends on, as "pack", "interleave.markers", or ".vad"
                 (below its subject's block); they enter its key, and they are all `ctx.read` gives;
    - `settings`: IR values that say how to run, not what comes out (a server's URL, concurrency,
                 timeouts, a device, a path whose content the fingerprint digests): `ctx.read` gives them,
                 they never enter the key, so editing one rebuilds nothing;
    - `weights`: (model stages) the declared value that names its model weights, where a missing
                 model is reported;
    - `keyed_by_content`: leave the inputs' run keys out of the key; `fingerprint` digests what the
                 stage reads of them instead, so an upstream rebuild that yields the same content
                 (files moved, a new glob over the same audio) reuses it (for costly stages);

    `fingerprint` names what the output depends on outside the spec (input file contents, model
    revisions); it enters the run key. It may look at the whole spec, since what it returns is key.
    """
    kind: ClassVar[str]
    version: ClassVar[int]
    doc: ClassVar[str]
    reads: ClassVar[tuple[str, ...]] = ()
    settings: ClassVar[tuple[str, ...]] = ()
    weights: ClassVar[str | None] = None
    keyed_by_content: ClassVar[bool] = False

    @classmethod
    def declared_reads(cls, spec: ir.Spec) -> tuple[str, ...]:
        """`reads`; a stage whose reads depend on the spec (a seed only stochastic sampling uses)
        says so here."""
        return cls.reads

    @classmethod
    def locate_weights(cls, config: Declared, root: Path) -> None:
        """Raise MissingWeights when the model `weights` names is not on this machine (cheap: finds
        files, hashes nothing); `mixc check` calls it, so check and compile agree. A hook that model
        stages override: a stage without weights has nothing to find."""
        return None

    def fingerprint(self, ctx: Context, spec: ir.Spec) -> dict:
        return {}

    @abstractmethod
    def run(self, ctx: Context, stats: Stats) -> None:
        """Build the artifact into ctx.out, counting into stats."""

    def __call__(self, ctx: Context) -> Stats:
        stats = Stats()
        start, cpu = time.perf_counter(), _cpu_seconds()
        self.run(ctx, stats)
        stats.seconds = round(time.perf_counter() - start, 3)
        stats.cpu_seconds = round(_cpu_seconds() - cpu, 3)
        stats.write(ctx.out)
        return stats
