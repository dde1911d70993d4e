"""`mixc compile --executor ray`: the stage graph run as Ray tasks, per-item work as Ray actors.

The driver walks the graph as the local executor does and keeps its cache semantics exactly: it keys
each stage (same run keys), takes cache hits itself, and submits every stage whose inputs are done
as a Ray task, at most `in_flight` at a time (default: the cluster's CPUs). The task builds the stage
with the local executor's own code (`Executor._build`: the per-key lock, a scratch folder, the atomic
commit), so the cache root must be a folder every Ray worker sees (one machine, or a shared file
system), or every node's local cache pulls and pushes through a shared `s3://` cache
(`mixc.build.cache`: a task pulls its inputs first; the audio stages' per-recording items are not
shared that way, so those need the shared file system). Progress callbacks fire in the driver:
"building" when a stage is submitted, its run when it is back.

Per-item work (the process pools of the audio stages, tokenize and page extraction) runs in Ray
actors instead of local processes (`actor_pool`): each runs the pool's initializer once, `map` keeps
the items' order, at most two items are in flight per actor, and items go only to actors already
started, so stages that share a small cluster never wait on each other's actors.

Resources: the spec's `resources { KIND { cpus gpus memory } }` go where the stage's model runs: the
stage's task (LLM stages), or each of its per-item actors (VAD, diarization, ASR, TTS; their items
then always run in actors, even with one worker). They are settings: no key sees them.

Failures: a stage's `MixcError` comes back as a value and becomes `StageFailed` in the driver, as
locally; it is never retried. A worker that dies (killed, out of memory, its node lost) is retried
by Ray (`RETRIES` times: stage tasks are safe to rerun, the cache lock and scratch folder see to it;
item actors are restarted and their items resent), and so are `TRANSIENT` errors; after that the
stage fails with a `WorkerError`.

Worker environments: backends that pin their own torch (whisperx, vllm, kokoro) keep running their
worker script in an environment of their own (`mixc.backends.envs`); the stages that use one get a
Ray `runtime_env` whose `env_vars` carry where that environment is (`MIXC_ENVS`, and the backend's
`MIXC_*_PYTHON` when set), so every node uses, or builds once, the same one. Every task also gets
the driver's `MIXC_*`, `HF_*`, `S3_ENDPOINT_URL`, `AWS_*`, `STORAGE_EMULATOR_HOST`,
`GOOGLE_APPLICATION_CREDENTIALS` and `GOOGLE_CLOUD_PROJECT` variables (a Ray worker's environment
is its node's, not the driver's; object storage's credentials included, so they also appear in Ray's
job metadata: set them on the nodes instead, and not in the driver, where that matters).
"""

from __future__ import annotations

import functools
import logging
import os
import socket
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mixc import ir
from mixc.backends.envs import ENVS_ENV, envs_root
from mixc.build.cache import Cache
from mixc.build.execute import Executor, StageFailed, StageRun, error_field
from mixc.errors import MixcError, SetupError, WorkerError
from mixc.plan.dag import StageGraph, StageNode
from mixc.stages import REGISTRY
from mixc.stages.base import Pool
from mixc.stages.items import ItemStage

RETRIES = 2  # reruns of a stage task or an item whose worker died
TRANSIENT: tuple[type[Exception], ...] = (ConnectionError, TimeoutError)  # raised, retried; a MixcError never is
PER_ACTOR = 2  # items in flight per actor: one running, one queued behind it
# driver environment variables every task gets: mixc's, Hugging Face's, object storage's
FORWARDED = ("MIXC_", "HF_", "S3_ENDPOINT_URL", "AWS_", "STORAGE_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS",
             "GOOGLE_CLOUD_PROJECT")
CONNECT_TIMEOUT = 5.0  # seconds to reach --address before giving up


def forwarded_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith(FORWARDED)}


# --------------------------------------------------------------------------- what a stage asks for


def resources(spec: ir.Spec, kind: str) -> ir.StageResources | None:
    """The spec's resource request for a stage kind; None for a kind it cannot set."""
    return getattr(spec.resources, kind) if kind in ir.Resources.model_fields else None


def resource_options(res: ir.StageResources | None) -> dict[str, Any]:
    if res is None:
        return {"num_cpus": 1}
    return {"num_cpus": res.cpus, "num_gpus": res.gpus, **({"memory": res.memory} if res.memory else {})}


def worker_env(spec: ir.Spec, node: StageNode) -> tuple[str, str] | None:
    """(backend, its python's environment variable) when the stage runs a backend in an environment
    of its own."""
    subject = spec.sources.get(node.subject) or spec.generators.get(node.subject)
    if node.kind == "asr" and isinstance(subject, ir.AudioSource) and subject.asr.backend == "whisperx":
        from mixc.backends.asr import WHISPERX_PYTHON_ENV
        return "whisperx", WHISPERX_PYTHON_ENV
    if node.kind in ("rewrite", "answer") and isinstance(subject, (ir.KristGenerator, ir.QuestGenerator)) \
            and subject.llm.backend == "vllm":
        from mixc.backends.llm import VLLM_PYTHON_ENV
        return "vllm", VLLM_PYTHON_ENV
    if node.kind == "tts" and isinstance(subject, (ir.KristGenerator, ir.QuestGenerator)) \
            and any(v.backend == "kokoro" for v in subject.tts.pool()):
        from mixc.backends.tts import KOKORO_PYTHON_ENV
        return "kokoro", KOKORO_PYTHON_ENV
    return None


def runtime_env(spec: ir.Spec, node: StageNode) -> dict[str, Any]:
    """The Ray runtime_env of a stage's task and actors (see the module docstring)."""
    env = forwarded_env()
    if found := worker_env(spec, node):
        env[ENVS_ENV] = str(envs_root())
        if given := os.environ.get(found[1]):
            env[found[1]] = given
    return {"env_vars": env}


def is_item_stage(kind: str) -> bool:
    return issubclass(REGISTRY[kind], ItemStage)


def task_options(spec: ir.Spec, node: StageNode) -> dict[str, Any]:
    """The Ray options of a stage's task: an item stage's task only hands items to its actors (its
    CPU is lent back while it waits); any other runs its model itself, with the stage's resources."""
    res = None if is_item_stage(node.kind) else resources(spec, node.kind)
    return {**resource_options(res), "max_retries": RETRIES, "retry_exceptions": list(TRANSIENT),
            "runtime_env": runtime_env(spec, node)}


def actor_options(spec: ir.Spec, node: StageNode) -> dict[str, Any]:
    return {**resource_options(resources(spec, node.kind)), "max_restarts": RETRIES, "max_task_retries": RETRIES,
            "runtime_env": runtime_env(spec, node)}


# ------------------------------------------------------------------------------ per-item actors


class _PoolWorker:
    def __init__(self, initializer: Callable[..., None], initargs: tuple):
        initializer(*initargs)

    def ready(self) -> bool:
        return True

    def run(self, fn: Callable[[Any], Any], item: Any) -> Any:
        return fn(item)


@functools.cache
def _actor_class() -> Any:
    import ray
    return ray.remote(_PoolWorker)


def _get(ref: Any) -> Any:
    """A result, with a task's exception raised as itself (hint, field and all), never a Ray
    traceback; a worker dead past its retries becomes a WorkerError."""
    import ray
    from ray.exceptions import RayActorError, RayTaskError
    try:
        return ray.get(ref)
    except RayTaskError as err:
        cause = getattr(err, "cause", None)
        raise (cause if isinstance(cause, Exception) else err) from None
    except RayActorError as err:
        raise WorkerError(f"a Ray worker died before finishing its work, {RETRIES + 1} times "
                          f"({type(err).__name__}: killed, out of memory, or its node was lost)",
                          "give its stage more memory (`resources { KIND { memory = ... } }`) or rerun with fewer "
                          "--workers; everything finished so far is kept in the cache") from None


class ActorMap:
    """`map(fn, items)` over Ray actors, like a process pool's: results in the items' order."""

    def __init__(self, actors: list[Any]):
        import ray
        self.live: list[Any] = []
        self.starting = {a.ready.remote(): a for a in actors}
        self._ray = ray

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[Any]:
        return self._ordered(fn, list(items))

    def _ordered(self, fn: Callable[[Any], Any], items: list[Any]) -> Iterator[Any]:
        busy: dict[Any, tuple[int, Any]] = {}  # result ref -> (item index, actor)
        load = {id(a): 0 for a in self.live}
        done: dict[int, Any] = {}
        sent = out = 0
        while out < len(items):
            for actor in self.live:
                while load[id(actor)] < PER_ACTOR and sent < len(items):
                    busy[actor.run.remote(fn, items[sent])] = (sent, actor)
                    load[id(actor)] += 1
                    sent += 1
            ready, _ = self._ray.wait([*busy, *self.starting], num_returns=1)
            for ref in ready:
                if ref in self.starting:
                    actor = self.starting.pop(ref)
                    _get(ref)  # raises when the actor could not start
                    self.live.append(actor)
                    load[id(actor)] = 0
                else:
                    index, actor = busy.pop(ref)
                    load[id(actor)] -= 1
                    done[index] = _get(ref)
            while out in done:
                yield done.pop(out)
                out += 1


@contextmanager
def actor_pool(workers: int, initializer: Callable[..., None], initargs: tuple,
               options: dict[str, Any] | None = None) -> Iterator[ActorMap]:
    """`workers` Ray actors, each set up once by `initializer`, with the Ray `options` given (a
    stage's resources and runtime_env); killed when the block ends."""
    import ray
    cls = _actor_class().options(**(options or {}))
    actors = [cls.remote(initializer, initargs) for _ in range(workers)]
    try:
        yield ActorMap(actors)
    finally:
        for actor in actors:
            ray.kill(actor)


@dataclass(frozen=True)
class ActorPools:
    """A stage's per-item workers under Ray: actors with its options; items always go to them when
    the spec set the stage's resources."""
    spec: ir.Spec

    def __call__(self, node: StageNode) -> tuple[Pool, bool]:
        res = resources(self.spec, node.kind)
        pool = functools.partial(_pool, options=actor_options(self.spec, node))
        return pool, res is not None and res != ir.StageResources()


def _pool(workers: int, initializer: Callable[..., None], initargs: tuple,
          options: dict[str, Any]) -> Any:
    return actor_pool(workers, initializer, initargs, options)


# --------------------------------------------------------------------------------- stage tasks


def build_stage(spec: ir.Spec, root: Path, cache: tuple[Path, str | None], workers: int, node: StageNode,
                inputs: dict[str, StageRun], position: tuple[int, int], fingerprint: dict) -> StageRun | MixcError:
    """One stage, built (or found) in a Ray worker with the local executor's code, in the cache at
    (local root, shared URL), with the fingerprint the driver computed when it keyed the stage (its
    input files are not digested twice); an error the user can fix comes back as a value (so Ray
    never retries it)."""
    executor = Executor(spec, root, Cache(cache[0], remote=cache[1]), workers, pools=ActorPools(spec))
    for run in inputs.values():  # on another machine than the driver, pulled from a shared store
        executor.cache.has(run.node.kind, run.key)
    try:
        return executor._build(node, inputs, position, fingerprint)
    except MixcError as exc:
        return exc


@functools.cache
def _stage_task() -> Any:
    import ray
    return ray.remote(build_stage)


def _reachable(address: str) -> None:
    """Fail fast on an address nothing listens at (ray.init would wait minutes)."""
    if address in ("auto", "local") or "://" in address and not address.startswith("ray://"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    hint = ("start a cluster (`ray start --head --port 6379`) and pass its head's HOST:PORT, or leave out --address "
            "to start one on this machine")
    if not host or not port.isdigit():
        raise SetupError(f"--address {address!r} is not HOST:PORT", hint)
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT).close()
    except OSError as err:
        raise SetupError(f"cannot reach the Ray cluster at {address}: {err.strerror or err}", hint) from None


def connect(address: str | None) -> Any:
    """Ray, connected to the cluster at `address` (None: $RAY_ADDRESS, else a new one on this machine,
    never the last one `ray start` ran here: that one may be gone, and Ray would wait minutes on it)."""
    import ray
    if ray.is_initialized():
        return ray
    address = address or os.environ.get("RAY_ADDRESS") or "local"
    _reachable(address)
    try:
        ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False,
                 runtime_env={"env_vars": forwarded_env()})
    except (ConnectionError, RuntimeError) as err:
        raise SetupError(f"cannot connect to Ray at {address}: {err}",
                         "check the address (`ray status` on the head node shows it)") from None
    return ray


@dataclass
class RayExecutor(Executor):
    """The stage graph as Ray tasks (see the module docstring); `run` returns what the local
    executor's would, in the graph's order."""
    address: str | None = None
    in_flight: int | None = None  # stages in flight at most; None: the cluster's CPUs

    def run(self, graph: StageGraph) -> dict[str, StageRun]:
        ray = connect(self.address)
        limit = self.in_flight or max(1, int(ray.cluster_resources().get("CPU", 1)))
        root, cache = self.root.resolve(), (self.cache.root.resolve(), self.cache.remote)
        spec_ref = ray.put(self.spec)
        numbers = {sid: n for n, sid in enumerate(graph, 1)}
        todo = dict(graph.items())
        runs: dict[str, StageRun] = {}
        running: dict[Any, str] = {}  # task ref -> stage id
        try:
            while todo or running:
                for sid, node in list(todo.items()):
                    if len(running) >= limit:
                        break
                    if any(i not in runs for i in node.inputs):
                        continue
                    del todo[sid]
                    position = (numbers[sid], len(graph))
                    hit, fingerprint = self._cached(node, runs)
                    if hit is not None:
                        runs[sid] = hit
                        if self.on_stage:
                            self.on_stage(node, hit, *position)
                        continue
                    if self.on_stage:
                        self.on_stage(node, None, *position)
                    inputs = {i: runs[i] for i in node.inputs}
                    ref = _stage_task().options(**task_options(self.spec, node)).remote(
                        spec_ref, root, cache, self.workers, node, inputs, position, fingerprint)
                    running[ref] = sid
                if not running:
                    continue
                ready, _ = ray.wait(list(running), num_returns=1)
                for ref in ready:
                    sid = running.pop(ref)
                    runs[sid] = self._result(graph[sid], ref)
                    if self.on_stage:
                        self.on_stage(graph[sid], runs[sid], numbers[sid], len(graph))
        finally:
            for ref in running:  # a stage failed or the driver was interrupted: stop the others
                ray.cancel(ref)
        return {sid: runs[sid] for sid in graph}

    def _cached(self, node: StageNode, runs: dict[str, StageRun]) -> tuple[StageRun | None, dict]:
        """The stage's cache hit (None: it must be built) and its fingerprint."""
        try:
            _, ctx, key = self._keyed(node, runs)
        except MixcError as exc:
            raise StageFailed(node, exc, error_field(self.spec, node, exc)) from None
        return self._hit(node, key, ctx.fingerprint) if self.cache.has(node.kind, key) else None, ctx.fingerprint

    def _result(self, node: StageNode, ref: Any) -> StageRun:
        try:
            result = _get(ref)
        except MixcError as exc:  # a dead item worker (WorkerError), or raised outside the stage's own code
            raise StageFailed(node, exc, error_field(self.spec, node, exc)) from None
        except Exception as exc:
            from ray.exceptions import RayError
            if isinstance(exc, RayError):  # the task's worker died past its retries, or its node was lost
                error = WorkerError(f"the Ray worker building {node.id} died, {RETRIES + 1} times "
                                    f"({type(exc).__name__})",
                                    "give the stage more memory (`resources { KIND { memory = ... } }`) or rerun with "
                                    "fewer --workers; everything finished so far is kept in the cache")
                raise StageFailed(node, error, error_field(self.spec, node, error)) from None
            raise
        if isinstance(result, MixcError):
            raise StageFailed(node, result, error_field(self.spec, node, result))
        return result
