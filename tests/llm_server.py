"""Test fixtures for the LLM backends: a tiny causal LM built on the spot, and a small OpenAI-compatible
HTTP server over it (used by the tests and by benchmarks/openai_throughput.py).

The model: a byte-level BPE tokenizer trained here with `tokenizers` (500 ids, <s> </s> <pad>, a
chat template "role: content" per line then "assistant:"), wrapped as a PreTrainedTokenizerFast, and
a 2-layer Llama (hidden 32) trained for a few seconds on 50 short dialogues, so that it answers in
words and ends its replies with </s> (a random one would never stop). Both are saved with
`save_pretrained` into a folder: a real local Hugging Face model directory.

The server: `http.server` answering POST /v1/chat/completions (non-streaming), GET /v1/models and
GET /version, generating with mixc's own transformers engine, one request at a time, each seeded by
the request's `seed`. `Faults` make it misbehave on purpose: fail the first N requests with a 5xx,
drop the first N connections without an answer, stall every answer (timeouts), hold requests in
flight (so concurrency can be counted), require a key. `Traffic` is what it saw.

Why not `transformers serve` (transformers 4.57.6, tried on this model, offline): it does serve a
local model directory, but (1) it answers every chat completion as an event stream, even one asked
without `stream`, so the openai client's non-streaming call gets a string of "data: ..." events
instead of a completion; (2) it reports finish_reason "stop" even when max_tokens cut the reply, and
no usage; (3) `temperature` does not turn sampling on (the model's generation_config decides, greedy
here), so seeds change nothing, and a seed is applied with the process-global `torch.manual_seed`,
which concurrent requests race on. None of retries, timeouts or concurrency could be exercised
against it either, so the tests use this server.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from mixc import ir
from mixc.backends.llm import Request, Sampling, TransformersLlm

SERVED_NAME = "tiny-llama"
SERVER_VERSION = "tiny-openai-server-1"
TRAIN_STEPS = 80
TOPICS = ("rivers", "mountains", "trains", "bread", "music", "rain", "stars", "bees", "ships", "maps")
SAYINGS = ("{t} are old and {a}.", "people like {t} because they are {a}.", "the book says {t} are {a}.",
           "many {t} are {a} in spring.", "{t} look {a} from far away.")
ADJECTIVES = ("long", "quiet", "bright", "slow", "warm", "small")
CHAT_TEMPLATE = ("{{ bos_token }}{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}assistant:{% endif %}")


def dialogues() -> list[tuple[str, str]]:
    """(question, answer) pairs: what the tiny model learns to say."""
    return [(f"tell me about {t}.", " " + s.format(t=t, a=ADJECTIVES[(i + j) % len(ADJECTIVES)]))
            for i, t in enumerate(TOPICS) for j, s in enumerate(SAYINGS)]


def build_tiny_model(folder: Path) -> Path:
    """A tiny Llama and its tokenizer, trained here and saved into `folder` (a few seconds on a CPU)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator([f"user: {q}\nassistant:{a}" for q, a in dialogues()],
                            trainers.BpeTrainer(vocab_size=500, special_tokens=["<s>", "</s>", "<pad>"],
                                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                        model_input_names=["input_ids", "attention_mask"])
    tokenizer.chat_template = CHAT_TEMPLATE
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    texts = [str(tokenizer.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True,
                                               tokenize=False)) + a + tokenizer.eos_token for q, a in dialogues()]
    batch = tokenizer(texts, add_special_tokens=False, padding=True, return_tensors="pt")
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a model this small trains several times faster on one thread than on two
    try:
        for _ in range(TRAIN_STEPS):
            model(**batch, labels=labels).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    finally:
        torch.set_num_threads(threads)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@dataclass(frozen=True)
class Faults:
    """How the server misbehaves, on purpose."""

    fail_first: int = 0  # answer the first N requests with `fail_status`
    fail_status: int = 503
    drop_first: int = 0  # close the first N connections without any answer
    stall_s: float = 0.0  # wait this long before answering any request
    hold_s: float = 0.0  # keep each request in flight this long before generating (lets requests overlap)
    api_key: str | None = None  # the key a request must carry (Authorization: Bearer KEY); None: any


@dataclass
class Traffic:
    """What the server saw since the last reset."""

    requests: int = 0
    in_flight: int = 0
    most_in_flight: int = 0
    bodies: list[dict] = field(default_factory=list)


class TinyOpenAIServer:
    """The OpenAI-compatible test server on 127.0.0.1 (a free port), in threads of this process."""

    def __init__(self, model: Path, name: str = SERVED_NAME):
        self.name = name
        self.engine = TransformersLlm(ir.Llm(backend="transformers", model=str(model), batch=1), model)
        self.faults, self.traffic = Faults(), Traffic()
        self.counting, self.generating = threading.Lock(), threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.app = self  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def reset(self, faults: Faults | None = None) -> None:
        with self.counting:
            self.faults, self.traffic = faults or Faults(), Traffic()

    def arrive(self, body: dict) -> tuple[Traffic, int]:
        """Count a request in: the traffic it belongs to, and its number (from 1) in it."""
        with self.counting:
            t = self.traffic
            t.requests, t.in_flight = t.requests + 1, t.in_flight + 1
            t.most_in_flight = max(t.most_in_flight, t.in_flight)
            t.bodies.append(body)
            return t, t.requests

    def leave(self, traffic: Traffic) -> None:
        """Count a request out (of the traffic it came in with: a stalled one may end after a reset)."""
        with self.counting:
            traffic.in_flight -= 1

    def complete(self, body: dict, number: int) -> dict:
        """The chat completion for a request body."""
        request = Request(f"server-{number}", "", {}, tuple(body["messages"]), int(body.get("seed") or 0))
        params = Sampling(float(body.get("temperature", 1.0)), float(body.get("top_p", 1.0)),
                          int(body.get("max_tokens") or 16))
        with self.generating:
            reply = self.engine.generate([request], params)[0]
        return {"id": f"chatcmpl-{number}", "object": "chat.completion", "created": int(time.time()),
                "model": self.name,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": reply.text},
                             "finish_reason": reply.finish, "logprobs": None}],
                "usage": {"prompt_tokens": reply.tokens_in, "completion_tokens": reply.tokens_out,
                          "total_tokens": reply.tokens_in + reply.tokens_out}}

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()

    def __enter__(self) -> TinyOpenAIServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Handler(BaseHTTPRequestHandler):
    server: Any

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the tests read Traffic instead
        pass

    def _send(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str) -> None:
        self._send(status, {"error": {"message": message, "type": "test_server", "code": status}})

    def do_GET(self) -> None:
        app: TinyOpenAIServer = self.server.app
        if self.path == "/version":
            self._send(200, {"version": SERVER_VERSION})
        elif self.path == "/v1/models":
            self._send(200, {"object": "list", "data": [{"id": app.name, "object": "model", "owned_by": "tests"}]})
        else:
            self._error(404, f"no route {self.path}")

    def do_POST(self) -> None:
        app: TinyOpenAIServer = self.server.app
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        faults = app.faults
        traffic, number = app.arrive(body)
        try:
            if self.path != "/v1/chat/completions":
                self._error(404, f"no route {self.path}")
            elif number <= faults.drop_first:
                self.close_connection = True  # no status line at all: the client sees the connection drop
            elif number <= faults.fail_first:
                self._error(faults.fail_status, f"test server: failing request {number} on purpose")
            elif faults.api_key and self.headers.get("Authorization") != f"Bearer {faults.api_key}":
                self._error(401, "test server: wrong API key")
            elif body.get("model") != app.name:
                self._error(404, f"the model '{body.get('model')}' does not exist")
            else:
                time.sleep(faults.stall_s + faults.hold_s)
                self._send(200, app.complete(body, number))
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout) before the answer
            pass
        finally:
            app.leave(traffic)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local Hugging Face model directory holding the tiny Llama and its tokenizer."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llm"))


@pytest.fixture(scope="session")
def tiny_server(tiny_model: Path) -> Iterator[TinyOpenAIServer]:
    """The OpenAI-compatible server over the tiny model; reset its faults and traffic in each test."""
    with TinyOpenAIServer(tiny_model) as server:
        yield server
