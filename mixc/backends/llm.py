"""The language models behind mixc's synthetic generators: one interface, four backends.

A caller (the Krist and Quest stages) renders its prompts into `Request`s, hands them to an engine
from `load(cfg, root)`, and stores each `Reply` as it arrives: `complete` yields replies as soon as
they are done, in any order, so a run killed half way keeps what was finished. What makes a reply
reproducible enters the caller's cache key: `identity(cfg, root)` (backend, its version, the model)
and `sampling(cfg)` (temperature, top_p, max_tokens), plus each request's own `seed`.

Backends (`ir.Llm.backend`):

- `extractive`: no model; `mixc.backends.extractive.respond(task, fields)` answers from the fields
  the prompt was rendered from. Tokens are counted as whitespace-separated words.
- `transformers`: a local Hugging Face causal LM directory, run in this process (cpu or cuda;
  loaded with local_files_only, so nothing is ever downloaded), `batch` prompts at a time (sorted by
  length, left-padded). The tokenizer's chat template renders the messages when it has one, else
  the user content is tokenized as it is. Greedy when temperature is 0. Sampling is seeded PER
  REQUEST: each request owns a `torch.Generator` seeded with its `seed` (on the CPU: the same stream
  on any device), and every token of that request is drawn from that generator alone (softmax at
  the temperature, top-p nucleus, one uniform number per token through the inverse CDF; `generate`
  runs greedy and `RowSampler` leaves the drawn token as the only one possible). So the batch a
  request falls in, and its neighbours there, never change the random numbers it sees. The logits
  themselves are computed in a batch: padding and batch shape change floating-point rounding in the
  last bits, which can flip a token only where two candidates are within that rounding of each
  other (never seen with the test model); `batch = 1` removes even that. Only temperature, top_p
  and max_tokens shape the output: the model's own generation_config (repetition penalty, top_k...)
  is not applied, since it does not enter the cache key.
- `openai`: any OpenAI-compatible server (vllm serve, SGLang, llama.cpp's server, TGI) at
  `base_url`, through the official `openai` client, `batch` requests in flight. Each request sends
  its `seed` and `cache_prompt: false`: llama.cpp's server otherwise reuses the KV cache of an
  earlier request sharing a prefix, and a reused cache changes the numerics, hence the sampled text,
  so a reply would depend on what was asked before it (other servers ignore the field). Connection
  errors, timeouts and 5xx answers are retried (`retries` times, exponential backoff capped at
  BACKOFF_MAX_S, jitter derived from the request id so a rerun waits the same); a 4xx is the
  caller's mistake (model name, key, parameters) and fails at once with a hint.
- `vllm`: offline batch inference in a worker process with an environment of its own (vllm pins its
  own torch): `mixc/workers/llm_worker.py`, whose docstring documents the file protocol. The
  environment is `$MIXC_VLLM_PYTHON` when set, else created on first use with uv under `$MIXC_ENVS`.
  Replies stream back line by line as the worker finishes each `batch`. Each `complete` call starts
  the worker once (and loads the model once): give it all of a stage's requests.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from functools import lru_cache
from importlib.metadata import version
from itertools import islice
from pathlib import Path
from typing import IO, Any, Protocol, TypeAlias

from mixc import ir
from mixc.backends.envs import worker_python
from mixc.backends.hub import cached_snapshot, hf_cache
from mixc.errors import MissingWeights, SetupError, WorkerError
from mixc.hashing import model_file_digest

VLLM_VERSION = "0.33.0"
VLLM_PYTHON_ENV = "MIXC_VLLM_PYTHON"  # an existing python that can import vllm
WORKER_SCRIPT = Path(__file__).resolve().parent.parent / "workers" / "llm_worker.py"
WORKER_PROTOCOL = 1
EXIT_MISSING_WEIGHTS = 3  # the worker's exit status when the model is absent
WORKER_POLL_S = 0.05  # how often the caller looks for new lines in the worker's results
STDERR_TAIL_LINES = 25
WORKER_HINT = (f"the vllm worker's environment is broken or incomplete: set {VLLM_PYTHON_ENV} to a python that "
               f"imports vllm=={VLLM_VERSION}, or delete the environment under $MIXC_ENVS (default "
               "~/.cache/mixc/envs) so that mixc builds it again")

EMPTY_KEY = "EMPTY"  # sent when the key's environment variable is unset: local servers ignore the key
BACKOFF_BASE_S = 0.25  # the first retry waits 0.125-0.25 s, each next one twice as long ...
BACKOFF_MAX_S = 20.0  # ... up to this
VERSION_TIMEOUT_S = 10.0  # GET /version, for identity()
WORKER_ENGINE_SEED = 0  # vllm.LLM's own seed; every request's sampling is seeded by the request

# what identifies a model directory's content: weights, configs, tokenizer files, chat template
MODEL_FILE_SUFFIXES = (".safetensors", ".bin", ".json", ".model", ".txt", ".tiktoken", ".jinja")
WEIGHT_GLOBS = ("*.safetensors", "pytorch_model*.bin")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tiktoken.model")


@dataclass(frozen=True)
class Request:
    id: str  # the caller's cache key for this request (hex)
    task: str  # "rewrite" | "filter" | "answer"
    fields: dict[str, str]  # what the prompt was rendered from ({"page": ..., "question": ...})
    messages: tuple[dict[str, str], ...]  # chat messages: [{"role": "user", "content": rendered prompt}]
    seed: int  # per request, in [0, 2**63)


@dataclass(frozen=True)
class Reply:
    id: str
    text: str
    finish: str  # "stop" | "length" (max_tokens reached before the model ended its reply)
    tokens_in: int
    tokens_out: int


@dataclass(frozen=True)
class Sampling:
    temperature: float
    top_p: float
    max_tokens: int


class LlmEngine(Protocol):
    def complete(self, requests: Sequence[Request]) -> Iterator[Reply]:
        """Each request's reply, yielded as soon as it is done (in any order)."""
        ...

    def close(self) -> None: ...


# The interface's name. The class is LlmEngine because mixc's types must have unique names and the
# whisperx worker already defines an `Engine`.
Engine: TypeAlias = LlmEngine


def sampling(cfg: ir.Llm) -> dict:
    """The sampling parameters that shape a reply (they enter each request's cache key)."""
    return asdict(_sampling(cfg))


def _sampling(cfg: ir.Llm) -> Sampling:
    return Sampling(cfg.temperature, cfg.top_p, cfg.max_tokens)


def user_content(messages: Sequence[dict[str, str]]) -> str:
    """The prompt without a chat template: the user messages' text."""
    return "\n\n".join(m["content"] for m in messages if m["role"] == "user")


# ----------------------------------------------------------------------------- model directories


def model_dir(cfg: ir.Llm, root: Path) -> Path:
    """The local model directory `cfg.model` names: a path (relative paths are from the workspace
    root), else a hub id (`ORG/NAME`) whose snapshot (`revision`, else `main`) is in the local
    Hugging Face cache."""
    if not cfg.model:
        raise MissingWeights(f"the {cfg.backend} LLM backend has no model",
                             'set `model = "DIR"` inside llm { } to a local Hugging Face causal LM directory')
    path = Path(cfg.model).expanduser()
    local = path if path.is_absolute() else root / path
    if local.exists() or not _is_hub_id(cfg.model):
        return local
    return cached_snapshot(cfg.model, cfg.revision) or local


def _is_hub_id(name: str) -> bool:
    return name.count("/") == 1 and not name.startswith((".", "/", "~"))


def _missing_parts(path: Path) -> list[str]:
    missing = []
    if not (path / "config.json").is_file():
        missing.append("config.json")
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        missing.append(f"a tokenizer ({' or '.join(TOKENIZER_FILES)})")
    if not any(any(path.glob(pattern)) for pattern in WEIGHT_GLOBS):
        missing.append(f"weights ({' or '.join(WEIGHT_GLOBS)})")
    return missing


def checked_model_dir(cfg: ir.Llm, root: Path) -> Path:
    """model_dir, with MissingWeights when it is not a complete causal LM directory."""
    path = model_dir(cfg, root)
    hint = (f"put a Hugging Face causal LM directory (config.json, tokenizer files, *.safetensors) at {path}, "
            "e.g. `hf download ORG/NAME --local-dir DIR` on a machine with network access, or point `model` at "
            "one; mixc never downloads weights")
    if not path.is_dir():
        also = f", nor in the local Hugging Face cache {hf_cache()}" if _is_hub_id(cfg.model or "") else ""
        raise MissingWeights(f"LLM model '{cfg.model}': no such directory {path}{also}",
                             hint + ("; `hf download ORG/NAME` (into the cache) works too" if also else ""))
    if missing := _missing_parts(path):
        raise MissingWeights(f"LLM model '{cfg.model}': {path} lacks {', '.join(missing)}", hint)
    return path


def model_digest(path: Path) -> str:
    """A digest of a model directory's weights, configs, tokenizer files and chat template (not its
    README or other files that do not change what the model says)."""
    digest = hashlib.sha256()
    for file in sorted(p for p in path.iterdir() if p.is_file() and p.suffix in MODEL_FILE_SUFFIXES):
        digest.update(f"{file.name}\x00{model_file_digest(file)}\x00".encode())
    return digest.hexdigest()[:32]


def locate(cfg: ir.Llm, root: Path) -> None:
    """Raise MissingWeights when the model is not on this machine (finds it; loads and hashes nothing).
    The extractive backend needs no model; an openai server holds its own."""
    if cfg.backend in ("transformers", "vllm"):
        checked_model_dir(cfg, root)


def identity(cfg: ir.Llm, root: Path) -> dict:
    """What names the model and the code that runs it, for every request's cache key and mix.lock."""
    if cfg.backend == "extractive":
        from mixc.backends.extractive import EXTRACTIVE_VERSION

        return {"backend": "extractive", "version": EXTRACTIVE_VERSION}
    if cfg.backend == "openai":
        return {"backend": "openai", "version": server_version(_base_url(cfg)), "model": cfg.model,
                "revision": cfg.revision}
    digest = model_digest(checked_model_dir(cfg, root))
    if cfg.backend == "vllm":
        return {"backend": "vllm", "version": vllm_version(), "model": digest}
    # torch draws the samples and the device changes the numerics: both shape the text
    return {"backend": "transformers", "version": version("transformers"), "torch": version("torch"),
            "device": cfg.device, "model": digest}


def _base_url(cfg: ir.Llm) -> str:
    if not cfg.base_url:
        raise SetupError("the openai LLM backend has no base_url",
                         'add `base_url = "http://127.0.0.1:8000/v1"` inside llm { }')
    return cfg.base_url.rstrip("/")


@lru_cache(maxsize=16)
def server_version(base_url: str) -> str:
    """The version an OpenAI-compatible server reports at GET /version beside its /v1 root (vllm
    does), else "unknown". A server that cannot be reached is an error: its version is not known."""
    url = base_url.removesuffix("/v1") + "/version"
    try:
        with urllib.request.urlopen(url, timeout=VERSION_TIMEOUT_S) as answer:
            reported = json.loads(answer.read()).get("version")
    except urllib.error.HTTPError:
        return "unknown"
    except (urllib.error.URLError, OSError) as err:
        raise SetupError(f"cannot reach the LLM server at {base_url} ({err})",
                         "start the server (e.g. `vllm serve MODEL`) or fix `base_url` inside llm { }") from err
    except (ValueError, AttributeError):  # not JSON, or not an object
        return "unknown"
    return str(reported) if reported is not None else "unknown"


# ----------------------------------------------------------------------------- extractive


def _words(text: str) -> int:
    return len(text.split())


class ExtractiveLlm:
    """No model: `mixc.backends.extractive.respond` on the fields the prompt was rendered from."""

    def complete(self, requests: Sequence[Request]) -> Iterator[Reply]:
        from mixc.backends.extractive import respond

        for request in requests:
            text = respond(request.task, request.fields)
            yield Reply(request.id, text, "stop", _words(user_content(request.messages)), _words(text))

    def close(self) -> None:
        pass


# ----------------------------------------------------------------------------- transformers


def draw_token(logits: Any, temperature: float, top_p: float, generator: Any) -> int:
    """One token id from a row of logits: softmax at `temperature`, the smallest set of most likely
    tokens whose mass reaches `top_p`, then one uniform number from `generator` through the inverse
    CDF of that set (ties keep the lower id first, so the draw is fully determined)."""
    import torch

    probs = torch.softmax(logits.float().cpu() / temperature, dim=-1)
    ordered, ids = torch.sort(probs, descending=True, stable=True)
    if top_p < 1.0:  # (at 1.0 rounding in the sum must not cut the tail)
        ordered = ordered * ((ordered.cumsum(0) - ordered) < top_p)
    cdf = ordered.cumsum(0)
    u = torch.rand((), generator=generator) * cdf[-1]
    return int(ids[torch.searchsorted(cdf, u, right=True).clamp(max=len(cdf) - 1)])


class RowSampler:
    """A logits processor for `generate` run greedily: it draws each row's next token with that row's
    own generator and leaves only that token possible, so greedy decoding takes it."""

    def __init__(self, generators: list, temperature: float, top_p: float):
        self.generators, self.temperature, self.top_p = generators, temperature, top_p

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        chosen = torch.full_like(scores, float("-inf"))
        for row, generator in enumerate(self.generators):
            chosen[row, draw_token(scores[row], self.temperature, self.top_p, generator)] = 0.0
        return chosen


def finished(generated: list[int], eos: set[int], max_tokens: int) -> tuple[list[int], str, int]:
    """A generated row as (the reply's tokens, finish, tokens generated): up to the first end token,
    "length" when there is none."""
    stop = next((i for i, token in enumerate(generated) if token in eos), None)
    if stop is None:
        return generated[:max_tokens], "length", min(len(generated), max_tokens)
    return generated[:stop], "stop", stop + 1


class TransformersLlm:
    """A local Hugging Face causal LM in this process, `cfg.batch` prompts at a time."""

    def __init__(self, cfg: ir.Llm, path: Path, threads: int = 1):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch.set_num_threads(threads)
        self.cfg = cfg
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            model: Any = AutoModelForCausalLM.from_pretrained(
                path, local_files_only=True, dtype=torch.float32 if cfg.device == "cpu" else "auto")
        except (OSError, ValueError) as err:
            raise MissingWeights(f"LLM model '{cfg.model}': transformers cannot load {path} ({err})",
                                 "point `model` at a complete Hugging Face causal LM directory") from err
        self.model = model.to(cfg.device).eval()
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.eos = self._end_tokens()

    def _end_tokens(self) -> set[int]:
        found = self.model.generation_config.eos_token_id
        ids = set(found if isinstance(found, list) else [found] if found is not None else [])
        return ids | ({self.tokenizer.eos_token_id} if self.tokenizer.eos_token_id is not None else set())

    def encode(self, request: Request) -> list[int]:
        """The prompt's token ids: the chat template when the tokenizer has one, else the user content."""
        if self.tokenizer.chat_template:
            return list(self.tokenizer.apply_chat_template(list(request.messages), add_generation_prompt=True,
                                                           tokenize=True))
        return list(self.tokenizer(user_content(request.messages))["input_ids"])

    def complete(self, requests: Sequence[Request]) -> Iterator[Reply]:
        """Batches of similar prompt length (less padding), each batch's replies as it ends."""
        encoded = sorted(((r, self.encode(r)) for r in requests), key=lambda pair: len(pair[1]))
        chunks = iter(encoded)
        while chunk := list(islice(chunks, self.cfg.batch)):
            yield from self._generate(chunk, _sampling(self.cfg))

    def generate(self, requests: Sequence[Request], params: Sampling) -> list[Reply]:
        """One batch with the given sampling parameters (the test server answers with this)."""
        return self._generate([(r, self.encode(r)) for r in requests], params)

    def _generate(self, encoded: list[tuple[Request, list[int]]], params: Sampling) -> list[Reply]:
        import torch
        from transformers import GenerationConfig, LogitsProcessorList

        batch = self._left_padded([ids for _, ids in encoded])
        processors = LogitsProcessorList()
        if params.temperature > 0:
            generators = [torch.Generator().manual_seed(r.seed) for r, _ in encoded]
            processors.append(RowSampler(generators, params.temperature, params.top_p))
        config = GenerationConfig(max_new_tokens=params.max_tokens, do_sample=False, num_beams=1,
                                  eos_token_id=sorted(self.eos), pad_token_id=self.tokenizer.pad_token_id)
        with torch.inference_mode():
            output = self.model.generate(**batch, generation_config=config, logits_processor=processors,
                                         use_model_defaults=False)
        prompt_len = batch["input_ids"].shape[1]
        replies = []
        for (request, ids), row in zip(encoded, output[:, prompt_len:].tolist()):
            tokens, finish, n_out = finished(row, self.eos, params.max_tokens)
            text = self.tokenizer.decode(tokens, skip_special_tokens=True)
            replies.append(Reply(request.id, text, finish, len(ids), n_out))
        return replies

    def _left_padded(self, prompts: list[list[int]]) -> dict:
        """input_ids and attention_mask, every prompt padded on the left to the longest one."""
        import torch

        width = max(len(ids) for ids in prompts)
        pad = self.tokenizer.pad_token_id
        ids = [[pad] * (width - len(p)) + p for p in prompts]
        mask = [[0] * (width - len(p)) + [1] * len(p) for p in prompts]
        return {"input_ids": torch.tensor(ids, device=self.cfg.device),
                "attention_mask": torch.tensor(mask, device=self.cfg.device)}

    def close(self) -> None:
        del self.model
        if self.cfg.device == "cuda":
            import torch

            torch.cuda.empty_cache()


# ----------------------------------------------------------------------------- openai


def backoff_s(request_id: str, attempt: int) -> float:
    """The wait before retry `attempt` + 1: exponential, capped, with jitter in [half, all] of it taken
    from the request id, so concurrent retries spread out and a rerun waits exactly the same."""
    cap = min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** attempt)
    jitter = int.from_bytes(hashlib.blake2b(f"{request_id}:{attempt}".encode(), digest_size=4).digest(), "big")
    return cap * (0.5 + 0.5 * jitter / 2 ** 32)


class OpenAILlm:
    """An OpenAI-compatible server: `cfg.batch` requests in flight, from a thread pool."""

    def __init__(self, cfg: ir.Llm):
        import openai

        self.cfg, self.base_url = cfg, _base_url(cfg)
        self.client = openai.OpenAI(base_url=self.base_url, api_key=os.environ.get(cfg.api_key_env) or EMPTY_KEY,
                                    max_retries=0, timeout=cfg.timeout)

    def complete(self, requests: Sequence[Request]) -> Iterator[Reply]:
        stop = threading.Event()  # set when the caller stops early or a request fails: no more retries
        pool = ThreadPoolExecutor(max_workers=self.cfg.batch, thread_name_prefix="mixc-llm")
        waiting = iter(requests)
        pending: set[Future[Reply]] = set()
        try:
            while True:
                pending |= {pool.submit(self._answer, r, stop)
                            for r in islice(waiting, self.cfg.batch - len(pending))}
                if not pending:
                    return
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in sorted(done, key=lambda f: f.exception() is not None):  # the replies, then an error
                    yield future.result()
        finally:
            stop.set()
            pool.shutdown(wait=False, cancel_futures=True)

    def _answer(self, request: Request, stop: threading.Event) -> Reply:
        """The request's reply, retrying connection errors, timeouts and 5xx answers."""
        import openai

        failures = []
        for attempt in range(self.cfg.retries + 1):
            try:
                return self._ask(request)
            except openai.APIStatusError as err:
                if err.status_code < 500:
                    raise self._refused(err, request) from err
                failures.append(f"{err.status_code} {err.message}")
            except openai.APIConnectionError as err:  # includes timeouts
                failures.append(f"{err.__class__.__name__}: {err}")
            if attempt == self.cfg.retries or stop.wait(backoff_s(request.id, attempt)):
                break
        raise SetupError(f"the LLM server at {self.base_url} failed request {request.id} {len(failures)} time(s), "
                         f"last: {failures[-1]}",
                         f"check that the server is up and serves '{self.cfg.model}'; raise `timeout` (now "
                         f"{self.cfg.timeout} s) for slow generation or `retries` (now {self.cfg.retries}) for a "
                         "flaky server, inside llm { }")

    def _ask(self, request: Request) -> Reply:
        messages: Any = list(request.messages)
        response = self.client.chat.completions.create(
            model=str(self.cfg.model), messages=messages, temperature=self.cfg.temperature, top_p=self.cfg.top_p,
            max_tokens=self.cfg.max_tokens, seed=request.seed, extra_body={"cache_prompt": False})
        choice = response.choices[0]
        usage = response.usage  # some servers leave it out: counted as 0
        return Reply(request.id, choice.message.content or "", "length" if choice.finish_reason == "length" else "stop",
                     usage.prompt_tokens if usage else 0, usage.completion_tokens if usage else 0)

    def _refused(self, err: Any, request: Request) -> SetupError:
        status = err.status_code
        if status in (401, 403):
            hint = (f"the server refused the key: put its key in the environment variable {self.cfg.api_key_env} "
                    f"(unset, mixc sends '{EMPTY_KEY}')")
        elif status == 404:
            hint = (f"the server does not serve a model named '{self.cfg.model}', or {self.base_url} is not its "
                    f"OpenAI API root: set `model` to a name listed by GET {self.base_url}/models")
        elif status == 429:
            hint = "the server limits the request rate: lower `batch` (requests in flight) inside llm { }"
        else:
            hint = ("the server rejected the request's parameters: check `max_tokens` against the model's context "
                    "length, and that the server accepts `seed` and the extra field `cache_prompt`")
        said = err.message if str(status) in err.message else f"{status} {err.message}"  # the client often says it
        return SetupError(f"the LLM server at {self.base_url} refused request {request.id}: {said}", hint)

    def close(self) -> None:
        self.client.close()


# ----------------------------------------------------------------------------- vllm worker


def write_request(folder: Path, cfg: ir.Llm, path: Path, requests: Sequence[Request], threads: int) -> None:
    """The worker's input: request.json (the model and its settings) and requests.jsonl (one request
    a line); the worker's docstring documents every field."""
    folder.mkdir(parents=True, exist_ok=True)
    settings = {"protocol": WORKER_PROTOCOL, "model": str(path.resolve()), "seed": WORKER_ENGINE_SEED,
                "batch": cfg.batch, "threads": threads, "device": cfg.device, "sampling": sampling(cfg)}
    (folder / "request.json").write_text(json.dumps(settings, indent=1) + "\n")
    with open(folder / "requests.jsonl", "w") as out:
        for r in requests:
            out.write(json.dumps({"id": r.id, "messages": list(r.messages), "seed": r.seed}) + "\n")


def _stderr_tail(path: Path) -> str:
    lines = path.read_text(errors="replace").splitlines() if path.exists() else []
    return "\n".join(lines[-STDERR_TAIL_LINES:]) or "(no stderr)"


def _new_lines(handle: IO[bytes], partial: bytes) -> tuple[list[str], bytes]:
    """The complete lines written since the last read, and the unfinished end kept for the next one
    (bytes: a line may be cut inside a UTF-8 character)."""
    *lines, rest = (partial + handle.read()).split(b"\n")
    return [line.decode() for line in lines], rest


class WorkerLlm:
    """An engine run by `python WORKER_SCRIPT REQUEST RESULT --engine ENGINE` in another environment.
    `engine` "vllm" is the real backend; "transformers" runs the same protocol with transformers
    (tests, or a worker environment without a GPU)."""

    def __init__(self, cfg: ir.Llm, path: Path, python: str, threads: int = 1, engine: str = "vllm"):
        self.cfg, self.path, self.python, self.threads, self.engine = cfg, path, python, threads, engine

    def complete(self, requests: Sequence[Request]) -> Iterator[Reply]:
        with tempfile.TemporaryDirectory(prefix="mixc-llm-worker-") as tmp:
            request, result, stderr = Path(tmp) / "request", Path(tmp) / "result", Path(tmp) / "stderr.log"
            write_request(request, self.cfg, self.path, requests, self.threads)
            result.mkdir()
            command = [self.python, str(WORKER_SCRIPT), str(request), str(result), "--engine", self.engine]
            env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1",
                   "DO_NOT_TRACK": "1"}
            with open(stderr, "wb") as err:
                # a session of its own: vllm starts engine processes, ended with it as one group
                worker = subprocess.Popen(command, stdout=err, stderr=subprocess.STDOUT, env=env,
                                          start_new_session=True)
            seen: set[str] = set()
            try:
                for reply in self._follow(result / "results.jsonl", worker):
                    seen.add(reply.id)
                    yield reply
            finally:
                if worker.poll() is None:
                    os.killpg(worker.pid, signal.SIGTERM)
                    worker.wait()
            self._check(worker.returncode, result, stderr, [r.id for r in requests if r.id not in seen])

    def _follow(self, results: Path, worker: subprocess.Popen) -> Iterator[Reply]:
        """Each results line as the worker writes it, until the worker exits."""
        while not results.exists() and worker.poll() is None:
            time.sleep(WORKER_POLL_S)
        if not results.exists():
            return
        partial = b""
        with open(results, "rb") as handle:
            while True:
                exited = worker.poll() is not None  # before the read: after it, nothing more is written
                lines, partial = _new_lines(handle, partial)
                for line in lines:
                    yield self._reply(line)
                if exited:
                    return
                if not lines:
                    time.sleep(WORKER_POLL_S)

    def _reply(self, line: str) -> Reply:
        try:
            return Reply(**json.loads(line))
        except (ValueError, TypeError) as err:
            raise WorkerError(f"the LLM worker wrote a results line that is not a reply: {line[:200]!r}",
                              WORKER_HINT) from err

    def _check(self, code: int, result: Path, stderr: Path, missing: list[str]) -> None:
        error = result / "error.json"
        if code == EXIT_MISSING_WEIGHTS and error.exists():
            report = json.loads(error.read_text())
            raise MissingWeights(report["message"], report.get("hint"))
        if code != 0:
            raise WorkerError(f"the LLM worker ({self.engine}, {self.python}) failed with exit status {code}; "
                              f"its stderr ends with:\n{_stderr_tail(stderr)}", WORKER_HINT)
        if not (result / "done.json").exists():
            raise WorkerError("the LLM worker exited without writing done.json (it did not finish); its stderr "
                              f"ends with:\n{_stderr_tail(stderr)}", WORKER_HINT)
        if missing:
            raise WorkerError(f"the LLM worker wrote no replies for {len(missing)} requests (first: {missing[0]})",
                              WORKER_HINT)

    def close(self) -> None:
        pass


def vllm_version() -> str:
    """The vllm that will run: the pinned one in mixc's own environment, else the one installed in
    the python that MIXC_VLLM_PYTHON names (asked once per process)."""
    python = os.environ.get(VLLM_PYTHON_ENV)
    return _installed_version(python, "vllm") if python else VLLM_VERSION


@lru_cache(maxsize=4)
def _installed_version(python: str, package: str) -> str:
    asked = subprocess.run([python, "-c", f"import importlib.metadata as m; print(m.version({package!r}))"],
                           capture_output=True, text=True, timeout=120)
    if asked.returncode != 0:
        raise WorkerError(f"{python} (from {VLLM_PYTHON_ENV}) has no {package} installed: "
                          f"{asked.stderr.strip().splitlines()[-1] if asked.stderr.strip() else asked.returncode}",
                          WORKER_HINT)
    return asked.stdout.strip()


def vllm_python() -> str:
    """The python of the vllm worker environment (see `mixc.backends.envs`)."""
    return worker_python(f"vllm-{VLLM_VERSION}", (f"vllm=={VLLM_VERSION}",), VLLM_PYTHON_ENV)


# ----------------------------------------------------------------------------- entry point


def load(cfg: ir.Llm, root: Path, threads: int = 1) -> LlmEngine:
    """The engine `cfg` names, its model found first (MissingWeights when absent)."""
    if cfg.backend == "extractive":
        return ExtractiveLlm()
    if cfg.backend == "openai":
        return OpenAILlm(cfg)
    path = checked_model_dir(cfg, root)
    if cfg.backend == "vllm":
        return WorkerLlm(cfg, path, vllm_python(), threads)
    return TransformersLlm(cfg, path, threads)
