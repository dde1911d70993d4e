"""The LLM backends on a tiny Llama trained on the spot (tests/llm_server.py): the transformers engine
in this process, the openai engine against a real OpenAI-compatible HTTP server on 127.0.0.1 (with
faults switched on), and the vllm backend's worker protocol run end to end by a real worker process
with its transformers engine (vllm itself needs a GPU and its own environment)."""

from __future__ import annotations

import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

import pytest

from mixc import ir
from mixc.backends.llm import (
    BACKOFF_MAX_S,
    VLLM_PYTHON_ENV,
    VLLM_VERSION,
    ExtractiveLlm,
    OpenAILlm,
    Reply,
    Request,
    Sampling,
    TransformersLlm,
    WorkerLlm,
    backoff_s,
    identity,
    load,
    locate,
    sampling,
    vllm_python,
)
from mixc.errors import MissingWeights, SetupError, WorkerError
from tests.llm_server import SERVED_NAME, SERVER_VERSION, Faults, TinyOpenAIServer, tiny_model, tiny_server

__all__ = ["tiny_model", "tiny_server"]  # pytest fixtures, used by name below

TOPICS = ("rivers", "bees", "maps", "music", "stars", "bread", "ships")
MAX_TOKENS = 40  # the tiny model's replies are 2-16 tokens: they end with </s> well before this


def ask(topic: str, seed: int, n: int = 0, extra: str = "") -> Request:
    prompt = f"tell me about {topic}.{extra}"
    return Request(f"{n:04x}{seed:04x}", "answer", {"question": prompt, "page": ""},
                   ({"role": "user", "content": prompt},), seed)


def mixed_requests(n: int, seed: int = 0) -> list[Request]:
    """Prompts of different lengths, so that batches are padded."""
    return [ask(TOPICS[i % len(TOPICS)], seed + i, i, " please." * (i % 3)) for i in range(n)]


def llm(backend: str, **settings) -> ir.Llm:
    return ir.Llm(backend=backend, **{"temperature": 1.0, "max_tokens": MAX_TOKENS, **settings})


def texts(replies) -> dict[str, str]:
    return {r.id: r.text for r in replies}


@pytest.fixture(scope="module")
def engine(tiny_model):
    engine = load(llm("transformers", model=str(tiny_model), batch=4), tiny_model.parent)
    yield engine
    engine.close()


# ----------------------------------------------------------------------------- interface


def test_sampling_is_what_shapes_a_reply():
    assert sampling(ir.Llm(temperature=0.3, top_p=0.9, max_tokens=64)) == \
        {"temperature": 0.3, "top_p": 0.9, "max_tokens": 64}


def test_identity_names_the_model_by_its_files(tiny_model, tmp_path):
    copy = shutil.copytree(tiny_model, tmp_path / "copy")
    (copy / "README.md").write_text("notes do not change what the model says\n")
    first = identity(llm("transformers", model=str(tiny_model)), tmp_path)
    assert first["backend"] == "transformers" and first["version"] and first["torch"]
    assert identity(llm("transformers", model="copy"), tmp_path) == first  # relative to the root, same files
    (copy / "generation_config.json").write_text('{"eos_token_id": 1}\n')
    changed = identity(llm("transformers", model="copy"), tmp_path)
    assert changed["model"] != first["model"]
    assert identity(llm("vllm", model="copy"), tmp_path)["model"] == changed["model"]


def test_backoff_is_bounded_exponential_and_deterministic():
    waits = [backoff_s("ab12", attempt) for attempt in range(12)]
    assert waits == [backoff_s("ab12", attempt) for attempt in range(12)]
    assert all(0.5 * min(BACKOFF_MAX_S, 0.25 * 2 ** a) <= w <= min(BACKOFF_MAX_S, 0.25 * 2 ** a)
               for a, w in enumerate(waits))
    assert waits[4] > waits[0] and max(waits) <= BACKOFF_MAX_S
    assert backoff_s("ab12", 3) != backoff_s("cd34", 3)  # jitter spreads concurrent retries


def test_extractive_engine_answers_from_the_fields():
    extractive = pytest.importorskip("mixc.backends.extractive",
                                     reason="mixc/backends/extractive.py (another task) is not in this tree yet")
    request = Request("00ff", "filter", {"question": "What do bees make?", "page": "Bees make honey."},
                      ({"role": "user", "content": "Is this answerable? What do bees make?"},), 1)
    [reply] = list(ExtractiveLlm().complete([request]))
    assert reply == Reply("00ff", extractive.respond("filter", request.fields), "stop", 7,
                          len(reply.text.split()))
    assert identity(ir.Llm(), Path(".")) == {"backend": "extractive", "version": extractive.EXTRACTIVE_VERSION}


# ----------------------------------------------------------------------------- transformers


def test_same_seed_same_reply_and_seeds_matter(engine):
    requests = [ask("rivers", seed) for seed in range(8)]
    first = texts(engine.complete(requests))
    assert texts(engine.complete(requests)) == first
    assert len(set(first.values())) > 1, "different seeds never changed the sampled text"
    assert all(first.values())


def test_a_reply_does_not_depend_on_its_batch(engine):
    requests = mixed_requests(10, seed=40)
    together = texts(engine.complete(requests))  # batches of 4, left-padded, sorted by length
    alone = {r.id: texts(engine.complete([r]))[r.id] for r in requests}
    assert together == alone
    reversed_order = texts(engine.complete(requests[::-1]))  # other neighbours in each batch
    assert reversed_order == together


def test_replies_end_with_stop_or_length(engine, tiny_model):
    replies = list(engine.complete(mixed_requests(6)))
    assert {r.finish for r in replies} == {"stop"}
    assert all(0 < r.tokens_out < MAX_TOKENS and r.tokens_in > 5 and "</s>" not in r.text for r in replies)
    cut = list(engine.generate(mixed_requests(6), Sampling(1.0, 1.0, 3)))
    assert {(r.finish, r.tokens_out) for r in cut} == {("length", 3)}
    full = texts(replies)
    assert all(full[r.id].startswith(r.text) for r in cut)  # the same draws, cut short


def test_greedy_ignores_the_seed(engine):
    greedy = [engine.generate([ask("maps", seed)], Sampling(0.0, 1.0, MAX_TOKENS))[0].text for seed in range(4)]
    assert len(set(greedy)) == 1 and greedy[0]


def test_missing_model_is_reported_before_loading(tmp_path):
    with pytest.raises(MissingWeights, match="no such directory") as absent:
        locate(llm("transformers", model="models/absent"), tmp_path)
    assert str(tmp_path / "models" / "absent") in absent.value.message and "never downloads" in absent.value.hint
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text("{}")
    with pytest.raises(MissingWeights, match="lacks a tokenizer .*, weights"):
        load(llm("transformers", model="half"), tmp_path)
    locate(llm("extractive"), tmp_path)  # needs nothing


def test_a_hub_id_is_found_in_the_local_hugging_face_cache(tiny_model, tmp_path, monkeypatch):
    """`model = "ORG/NAME"` after `hf download ORG/NAME`: the cached snapshot of `revision` (else
    main), found offline; a local folder of that name wins."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    repo = tmp_path / "hub" / "models--acme--tiny"
    for ref, commit in (("main", "a" * 40), ("v1", "b" * 40)):
        shutil.copytree(tiny_model, repo / "snapshots" / commit)
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / ref).write_text(commit)
    (repo / "snapshots" / ("b" * 40) / "generation_config.json").write_text('{"eos_token_id": 1}\n')
    main = identity(llm("transformers", model="acme/tiny"), tmp_path)
    assert main["model"] == identity(llm("transformers", model=str(tiny_model)), tmp_path)["model"]
    assert identity(llm("transformers", model="acme/tiny", revision="v1"), tmp_path)["model"] != main["model"]
    with pytest.raises(MissingWeights, match="nor in the local Hugging Face cache"):
        locate(llm("transformers", model="acme/absent"), tmp_path)
    shutil.copytree(tiny_model, tmp_path / "acme" / "tiny")
    (tmp_path / "acme" / "tiny" / "generation_config.json").write_text('{"eos_token_id": 2}\n')
    assert identity(llm("transformers", model="acme/tiny"), tmp_path)["model"] != main["model"]


# ----------------------------------------------------------------------------- openai


@pytest.fixture
def server(tiny_server: TinyOpenAIServer) -> TinyOpenAIServer:
    tiny_server.reset()
    return tiny_server


def client(server: TinyOpenAIServer, **settings) -> OpenAILlm:
    return OpenAILlm(llm("openai", model=SERVED_NAME, base_url=server.base_url, **settings))


def test_openai_replies_are_the_models_seeded_replies(server, tiny_model):
    requests = mixed_requests(5, seed=7)
    replies = sorted(client(server, batch=3).complete(requests), key=lambda r: r.id)
    local = TransformersLlm(llm("transformers", model=str(tiny_model), batch=1), tiny_model)
    assert replies == sorted(local.generate(requests, Sampling(1.0, 1.0, MAX_TOKENS)), key=lambda r: r.id)
    assert sorted(client(server, batch=2).complete(requests), key=lambda r: r.id) == replies
    body = server.traffic.bodies[0]
    assert body["cache_prompt"] is False and body["model"] == SERVED_NAME and body["max_tokens"] == MAX_TOKENS
    assert sorted(b["seed"] for b in server.traffic.bodies[:5]) == [r.seed for r in requests]


@pytest.mark.parametrize("batch", [2, 4])
def test_openai_keeps_batch_requests_in_flight(server, batch):
    server.reset(Faults(hold_s=0.15))
    replies = list(client(server, batch=batch).complete(mixed_requests(8)))
    assert len(replies) == 8 and server.traffic.requests == 8
    assert server.traffic.most_in_flight == batch


def test_openai_retries_5xx_and_dropped_connections(server):
    server.reset(Faults(fail_first=2, fail_status=503))
    [reply] = client(server, retries=2, batch=1).complete([ask("bees", 3)])
    assert reply.text and server.traffic.requests == 3
    server.reset(Faults(drop_first=1))
    [reply] = client(server, retries=1, batch=1).complete([ask("bees", 3)])
    assert reply.text and server.traffic.requests == 2
    server.reset(Faults(fail_first=5, fail_status=500))
    with pytest.raises(SetupError, match="failed request .* 3 time") as err:
        list(client(server, retries=2, batch=1).complete([ask("bees", 3)]))
    assert "retries" in err.value.hint and server.traffic.requests == 3


def test_openai_does_not_retry_4xx(server, monkeypatch):
    engine = OpenAILlm(llm("openai", model="no-such-model", base_url=server.base_url, retries=3))
    with pytest.raises(SetupError, match="404") as err:
        list(engine.complete([ask("bees", 1)]))
    assert "/models" in err.value.hint and server.traffic.requests == 1
    server.reset(Faults(api_key="sesame"))
    monkeypatch.setenv("TINY_KEY", "wrong")
    with pytest.raises(SetupError, match="401") as err:
        list(client(server, api_key_env="TINY_KEY", retries=3).complete([ask("bees", 1)]))
    assert "TINY_KEY" in err.value.hint and server.traffic.requests == 1
    monkeypatch.setenv("TINY_KEY", "sesame")
    assert [r.finish for r in client(server, api_key_env="TINY_KEY").complete([ask("bees", 1)])] == ["stop"]


def test_openai_times_out_and_retries_the_timeout(server):
    server.reset(Faults(stall_s=2.0))
    started = time.monotonic()
    with pytest.raises(SetupError, match="APITimeoutError"):
        list(client(server, timeout=0.3, retries=1, batch=1).complete([ask("ships", 2)]))
    assert time.monotonic() - started < 1.5 and server.traffic.requests == 2


def test_openai_passes_length_and_usage_through(server):
    replies = list(client(server, max_tokens=2).complete(mixed_requests(3)))
    assert {(r.finish, r.tokens_out) for r in replies} == {("length", 2)} and all(r.tokens_in > 5 for r in replies)


def test_openai_identity_is_the_served_name_and_server_version(server):
    cfg = llm("openai", model=SERVED_NAME, revision="r1", base_url=server.base_url)
    assert identity(cfg, Path(".")) == {"backend": "openai", "version": SERVER_VERSION, "model": SERVED_NAME,
                                        "revision": "r1"}
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    with pytest.raises(SetupError, match="cannot reach"):
        identity(llm("openai", model=SERVED_NAME, base_url=f"http://127.0.0.1:{closed}/v1"), Path("."))


# ----------------------------------------------------------------------------- vllm worker protocol


def test_worker_protocol_end_to_end(tiny_model, monkeypatch, engine):
    """The vllm backend's file protocol, run by a real worker process (this venv's python, its
    transformers engine): greedy replies equal the in-process engine's, token for token."""
    monkeypatch.setenv(VLLM_PYTHON_ENV, sys.executable)
    cfg = llm("vllm", model=str(tiny_model), temperature=0.0, batch=2)
    assert isinstance(load(cfg, tiny_model.parent), WorkerLlm)
    requests = mixed_requests(5)
    worker = WorkerLlm(cfg, tiny_model, vllm_python(), engine="transformers")
    replies = sorted(worker.complete(requests), key=lambda r: r.id)
    expected = sorted(engine.generate(requests, Sampling(0.0, 1.0, MAX_TOKENS)), key=lambda r: r.id)
    assert replies == expected and {r.finish for r in replies} == {"stop"}


def workers_on(folder: Path) -> list[int]:
    """The processes whose command line names `folder` (the worker gets its request folder there)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if str(folder).encode() in cmdline.read_bytes():
                found.append(int(cmdline.parent.name))
        except OSError:  # the process ended while we looked
            pass
    return found


def test_vllm_identity_names_the_vllm_that_will_run(tiny_model, tmp_path, monkeypatch):
    """The pinned vllm in mixc's own environment; the one MIXC_VLLM_PYTHON's python has, asked;
    a python without vllm is a worker error, not a made-up version."""
    cfg = llm("vllm", model=str(tiny_model))
    monkeypatch.delenv(VLLM_PYTHON_ENV, raising=False)
    assert identity(cfg, tmp_path)["version"] == VLLM_VERSION
    fake = tmp_path / "python"  # a python that reports vllm 9.9.9 (a stand-in for a real vllm environment)
    fake.write_text(f"#!/bin/sh\nexec {sys.executable} -c 'print(\"9.9.9\")'\n")
    fake.chmod(0o755)
    monkeypatch.setenv(VLLM_PYTHON_ENV, str(fake))
    assert identity(cfg, tmp_path)["version"] == "9.9.9"
    monkeypatch.setenv(VLLM_PYTHON_ENV, sys.executable)
    with pytest.raises(WorkerError, match="has no vllm installed"):
        identity(cfg, tmp_path)


def test_worker_replies_stream_and_the_worker_ends_with_the_caller(tiny_model, tmp_path, monkeypatch):
    """The first reply arrives while the worker still works through the rest; closing the reply
    iterator early ends the worker and removes its folders."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the worker's folders go
    cfg = llm("vllm", model=str(tiny_model), temperature=0.0, batch=1)
    replies = WorkerLlm(cfg, tiny_model, sys.executable, engine="transformers").complete(mixed_requests(60))
    first = next(replies)
    [folder] = tmp_path.glob("mixc-llm-worker-*")
    assert first.finish == "stop" and not (folder / "result" / "done.json").exists()
    assert workers_on(folder)
    replies.close()
    assert not folder.exists() and not workers_on(folder)


def test_worker_reports_missing_weights_and_crashes(tmp_path):
    cfg = llm("vllm", model=str(tmp_path / "absent"))
    with pytest.raises(MissingWeights, match="absent: no such directory") as err:
        list(WorkerLlm(cfg, tmp_path / "absent", sys.executable, engine="transformers").complete([ask("maps", 1)]))
    assert "hf download" in err.value.hint
    with pytest.raises(WorkerError, match="exit status 2(.|\n)*invalid choice"):
        list(WorkerLlm(cfg, tmp_path / "absent", sys.executable, engine="no-such-engine").complete([ask("maps", 1)]))
