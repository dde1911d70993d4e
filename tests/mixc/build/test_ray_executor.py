"""`mixc compile --executor ray` on a real local Ray cluster (the `ray_cluster` fixture): the same
shards and run keys as a local compile, cache hits, errors as themselves, retries of dead workers,
resources and runtime envs as Ray receives them, and the command line."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mixc import ir
from mixc.backends.envs import envs_root
from mixc.build.cache import Cache
from mixc.build.compile import compile_spec
from mixc.build.execute import Executor
from mixc.build.ray_executor import (
    RETRIES,
    ActorPools,
    RayExecutor,
    actor_options,
    actor_pool,
    runtime_env,
    task_options,
)
from mixc.lang.diagnostics import SpecError
from mixc.lang.lower import load
from mixc.planfile import Lock
from mixc.stages import graph
from mixc.stages.base import StageError
from tests.mixc.workspace import TWO_SOURCES, workspace

MIXC = str(Path(sys.executable).with_name("mixc"))
SPEC = TWO_SOURCES.format(vocab=400, news=70, books=30)
SPEECH = TWO_SOURCES.format(vocab=400, news=70, books="20% web\n  10") + """
source web : audio {
  files = "data/news/*.jsonl"
  asr { backend = whisperx  model = "large-v3" }
}
"""
RESOURCES = """
resources {
  asr { cpus = 2  gpus = 1  memory = 16GB }
  rewrite { gpus = 0.5 }
}
"""


def ray_executor(address: str, **kw) -> functools.partial:
    return functools.partial(RayExecutor, address=address, **kw)


def shards(out: Path) -> list[tuple[str, str]]:
    return [(s.path, s.sha256) for s in Lock.read(out / "mix.lock").shards]


@pytest.fixture(scope="module")
def local_compile(tmp_path_factory):
    ws = workspace(tmp_path_factory.mktemp("local"))
    spec = ws.spec(SPEC)
    return ws, compile_spec(load(spec), spec.name, ws.root / "out", ws.cache, 2)


def test_ray_compile_writes_the_bytes_of_a_local_compile(ray_cluster, local_compile, tmp_path):
    ws = workspace(tmp_path / "ws", cache=tmp_path / "ray-cache")
    spec = ws.spec(SPEC)
    calls: list[tuple[str, str]] = []
    result = compile_spec(load(spec), spec.name, tmp_path / "out", ws.cache, 2,
                          on_stage=lambda node, run, n, total: calls.append(
                              (node.id, "building" if run is None else "hit" if run.hit else "built")),
                          executor=ray_executor(ray_cluster))
    local = local_compile[1]
    assert shards(result.out) == shards(local.out) and len(shards(result.out)) > 2
    assert Lock.read(result.out / "mix.lock").stage_keys == Lock.read(local.out / "mix.lock").stage_keys
    assert list(result.runs) == list(local.runs)  # the graph's order
    # the driver's progress: every stage announced, then reported built
    assert sorted(calls) == sorted([(sid, "building") for sid in local.runs] + [(sid, "built") for sid in local.runs])
    for sid in local.runs:
        assert calls.index((sid, "building")) < calls.index((sid, "built"))

    again = compile_spec(load(spec), spec.name, tmp_path / "out2", ws.cache, 2, executor=ray_executor(ray_cluster))
    assert all(r.hit for r in again.runs.values())
    assert Executor(load(spec).spec, ws.root, ws.cache).preview(graph(load(spec).spec)) == {s: True for s in local.runs}


def test_a_stage_error_comes_back_located_and_is_not_retried(ray_cluster, tmp_path):
    ws = workspace(tmp_path / "ws")
    (ws.root / "qa.jsonl").write_text('{"nothing": "useful"}\n')
    spec = ws.spec(SPEC + 'eval {\n  set qa {\n    kind = mc\n    files = "qa.jsonl"\n  }\n}\n')
    low = load(spec)
    with pytest.raises(SpecError) as err:
        compile_spec(low, spec.name, tmp_path / "out", ws.cache, 1, executor=ray_executor(ray_cluster))
    [diag] = err.value.diagnostics
    assert diag.message == "eval set 'qa' has no usable question"
    assert diag.hint and "report.md" in diag.hint
    assert diag.span is not None and diag.span.line == low.span(("eval", "sets", "qa", "files")).line
    assert not any((ws.cache.root / "eval_items").glob("*"))


def _setup(base: int) -> None:
    global _BASE
    _BASE = base


def _add(item: tuple) -> int:
    delay, value = item
    import time
    time.sleep(delay)
    if value < 0:
        raise StageError("negative", "make it positive", ".field")
    return _BASE + value


def _die_once(marker: str) -> int:
    path = Path(marker)
    if not path.exists():
        path.write_text("died once")
        os._exit(1)
    return os.getpid()


def _count_and_fail(marker: str) -> None:
    with open(marker, "a") as f:
        f.write("x")
    raise StageError("a user error", "fix the spec", ".x")


def test_actor_pool_keeps_order_and_raises_errors_as_themselves(ray_cluster):
    items = [(0.05 * (i % 3), i) for i in range(12)]
    with actor_pool(2, _setup, (100,)) as pool:
        assert list(pool.map(_add, items)) == [100 + i for i in range(12)]
        assert list(pool.map(_add, [])) == []
    with pytest.raises(StageError) as err, actor_pool(2, _setup, (0,)) as pool:
        list(pool.map(_add, [(0, 1), (0, -1), (0, 2)]))
    assert type(err.value) is StageError and (err.value.hint, err.value.field) == ("make it positive", ".field")


def test_a_dead_item_worker_is_restarted_and_its_item_retried(ray_cluster, tmp_path):
    spec = load(workspace(tmp_path / "ws").spec(SPEC)).spec
    node = graph(spec)["tokenize:news"]
    with actor_pool(1, _setup, (0,), actor_options(spec, node)) as pool:
        assert len(list(pool.map(_die_once, [str(tmp_path / "marker")]))) == 1
    assert (tmp_path / "marker").exists()


def test_a_dead_stage_task_is_retried_and_a_user_error_is_not(ray_cluster, tmp_path):
    import ray
    spec = load(workspace(tmp_path / "ws").spec(SPEC)).spec
    options = task_options(spec, graph(spec)["pack:news"])
    assert options["max_retries"] == RETRIES >= 1
    assert ray.get(ray.remote(_die_once).options(**options).remote(str(tmp_path / "marker"))) > 0
    with pytest.raises(StageError):
        ray.get(ray.remote(_count_and_fail).options(**options).remote(str(tmp_path / "count")))
    assert (tmp_path / "count").read_text() == "x"  # ran once


def _env(names: tuple[str, ...]) -> dict[str, str | None]:
    return {n: os.environ.get(n) for n in names}


def test_resources_and_worker_envs_are_what_ray_receives(ray_cluster, tmp_path, monkeypatch):
    import ray
    monkeypatch.setenv("MIXC_WHISPERX_PYTHON", "/opt/whisperx/bin/python")
    monkeypatch.setenv("MIXC_ENVS", str(tmp_path / "envs"))
    spec = load(workspace(tmp_path / "ws").spec(SPEECH + RESOURCES)).spec
    stages = graph(spec)
    asr, tokenize = stages["asr:web"], stages["tokenize:news"]
    # ASR's items run in actors holding its resources, with the whisperx environment's whereabouts
    assert {k: actor_options(spec, asr)[k] for k in ("num_cpus", "num_gpus", "memory")} == \
        {"num_cpus": 2, "num_gpus": 1, "memory": 16_000_000_000}
    env = runtime_env(spec, asr)["env_vars"]
    assert env["MIXC_WHISPERX_PYTHON"] == "/opt/whisperx/bin/python" and env["MIXC_ENVS"] == str(tmp_path / "envs")
    assert task_options(spec, asr)["num_cpus"] == 1 and "num_gpus" not in task_options(spec, asr)
    assert ActorPools(spec)(asr)[1] is True and ActorPools(spec)(tokenize)[1] is False
    monkeypatch.delenv("MIXC_ENVS")  # the default folder, told to the whisperx stage only
    assert runtime_env(spec, asr)["env_vars"]["MIXC_ENVS"] == str(envs_root())
    assert "MIXC_ENVS" not in runtime_env(spec, tokenize)["env_vars"]
    monkeypatch.setenv("MIXC_ENVS", str(tmp_path / "envs"))
    # a real runtime_env on the cluster: the task sees it
    names = ("MIXC_WHISPERX_PYTHON", "MIXC_ENVS")
    seen = ray.get(ray.remote(_env).options(runtime_env=runtime_env(spec, asr)).remote(names))
    assert seen == {"MIXC_WHISPERX_PYTHON": "/opt/whisperx/bin/python", "MIXC_ENVS": str(tmp_path / "envs")}


def test_resources_are_settings_no_key_sees(tmp_path):
    ws = workspace(tmp_path / "ws")
    plain, tuned = load(ws.spec(SPEECH)).spec, load(ws.spec(SPEECH + RESOURCES, "tuned.mix")).spec
    assert tuned.resources.asr == ir.StageResources(cpus=2, gpus=1, memory=16_000_000_000)
    assert {s: n.key for s, n in graph(plain).items()} == {s: n.key for s, n in graph(tuned).items()}
    text, text_tuned = load(ws.spec(SPEC, "a.mix")), load(ws.spec(SPEC + RESOURCES, "b.mix"))
    compile_spec(text, "a.mix", tmp_path / "out", ws.cache)
    assert all(Executor(text_tuned.spec, ws.root, ws.cache).preview(graph(text_tuned.spec)).values())


def mixc(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MIXC_DEBUG"} | {"RAY_AUTH_MODE": "disabled"}
    return subprocess.run([MIXC, *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=180)


def test_cli_compiles_on_a_ray_cluster(ray_cluster, local_compile, tmp_path):
    ws = workspace(tmp_path / "ws")
    ws.spec(SPEC)
    out = mixc("compile", "spec.mix", "--executor", "ray", "--address", ray_cluster, "--workers", "2",
               "--cache-dir", str(tmp_path / "cache"), "--out", "out", "--no-progress", cwd=ws.root)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "10 stages built, 0 from the cache" in out.stdout
    assert "tokenize:news" in out.stderr and "Traceback" not in out.stderr
    assert shards(ws.root / "out") == shards(local_compile[1].out)


def test_cli_names_an_unreachable_address(tmp_path):
    ws = workspace(tmp_path / "ws")
    ws.spec(SPEC)
    out = mixc("compile", "spec.mix", "--executor", "ray", "--address", "127.0.0.1:1", "--no-progress",
               cwd=ws.root)
    assert out.returncode == 5, out.stdout + out.stderr
    assert "cannot reach the Ray cluster at 127.0.0.1:1" in out.stderr
    assert "hint: start a cluster (`ray start --head" in out.stderr and "Traceback" not in out.stderr
    # the local executor is the default: --address alone is a usage error
    assert mixc("compile", "spec.mix", "--address", "127.0.0.1:1", cwd=ws.root).returncode == 2


AUDIO_SPEC = """
source web : audio {
  files = "data/web/*.flac"
}
mixture {
  100% web
}
budget { steps = 1 }
resources {
  vad { cpus = 1  memory = 300MB }
}
"""


def test_a_model_stage_with_resources_runs_its_items_in_actors_with_the_same_results(ray_cluster, tmp_path):
    from mixc.build.cache import Cache
    from mixc.demo.audio import write_corpus
    from mixc.stages.items import RecordingManifest
    (tmp_path / "pyproject.toml").write_text("")
    write_corpus(tmp_path / "data" / "web", 2, seed=4, speakers=(2,), n_turns=3)
    (tmp_path / "s.mix").write_text(AUDIO_SPEC)
    low = load(tmp_path / "s.mix")
    assert ActorPools(low.ir)(graph(low.ir)["vad:web"])[1] is True  # items go to actors, even one worker
    stages = {k: v for k, v in graph(low.ir).items() if k in ("ingest:web", "vad:web")}
    results = []
    for name, executor in (("local", Executor), ("ray", ray_executor(ray_cluster))):
        cache = Cache(tmp_path / f"cache-{name}")
        run = executor(low.ir, low.root, cache, 1).run(stages)["vad:web"]
        manifest = RecordingManifest.read(run.path)
        items = [manifest.item_path(cache.items, row).read_bytes() for row in manifest.rows]
        results.append((run.key, manifest.rows, items))
    assert results[0] == results[1] and len(results[0][1]) == 2


def test_ray_workers_push_to_a_shared_cache_a_wiped_machine_pulls_from(ray_cluster, tmp_path, store):
    """`--cache-dir s3://...` (gs://) with Ray: the tasks push what they build (the driver's S3 or
    GCS settings travel with them), and a machine with an empty local cache compiles from the bucket
    alone."""
    ws = workspace(tmp_path / "ws")
    ws.cache = Cache(tmp_path / "local", remote=f"{store.url}/cache")
    spec = ws.spec(SPEC)
    built = compile_spec(load(spec), spec.name, tmp_path / "out", ws.cache, 2, executor=ray_executor(ray_cluster))
    assert all(f"{r.node.kind}/{r.key}.done" in store.keys("cache") for r in built.runs.values())
    shutil.rmtree(tmp_path / "local")
    pulled = compile_spec(load(spec), spec.name, tmp_path / "out2",
                          Cache(tmp_path / "local", remote=f"{store.url}/cache"))
    assert all(r.hit for r in pulled.runs.values()) and shards(pulled.out) == shards(built.out)
