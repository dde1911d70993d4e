"""LLM stage worker: vllm offline batch inference (or transformers) in an environment of its own.

vllm pins its own torch, which cannot share mixc's environment, so the compiler runs this script
with another python:

    PYTHON llm_worker.py REQUEST_DIR RESULT_DIR [--engine vllm|transformers]

It imports only the standard library and its engine (transformers for prompts; vllm or torch), so
that environment needs no mixc. `--engine transformers` runs the same protocol with transformers,
one request at a time (tests, or an environment without a GPU). Nothing is downloaded: the compiler
sets HF_HUB_OFFLINE, and an absent model ends the run with exit status 3.

Prompts: the tokenizer's chat template renders a request's messages when it has one (with the
generation prompt), else the user messages' text is tokenized as it is. Sampling is seeded per
request, so a reply does not depend on the other requests:
- vllm: `SamplingParams(seed=request seed)` gives each request a generator of its own. Prefix
  caching is off (`enable_prefix_caching=False`): a request whose prompt prefix was cached by
  another one is computed from that cache, whose rounding differs from a fresh prefill unless vllm
  runs batch-invariant kernels, so its sampled text would depend on what ran before it.
- transformers: `torch.manual_seed(request seed)` before generating each request on its own.

Protocol, version 1:

REQUEST_DIR/request.json
    protocol    1
    model       a local Hugging Face causal LM directory
    seed        vllm.LLM's own seed (the requests' seeds drive the sampling)
    batch       requests per generate call: results are written after each call
    threads     torch CPU threads (transformers)
    device      "cpu" | "cuda" (transformers; vllm runs where vllm runs)
    sampling    {"temperature": float (0 = greedy), "top_p": float, "max_tokens": int}
REQUEST_DIR/requests.jsonl
    one request a line: {"id": str, "messages": [{"role": str, "content": str}], "seed": int}
RESULT_DIR/results.jsonl
    one line per request, written (and flushed) as each batch ends:
    {"id": str, "text": str, "finish": "stop" | "length", "tokens_in": int, "tokens_out": int}
    "length": max_tokens was reached before the model ended its reply.
RESULT_DIR/done.json
    {"protocol": 1, "requests": n, "engine": "vllm==X"}, written last and renamed into place: its
    absence means the run did not finish.
RESULT_DIR/error.json (exit status 3 only)
    {"kind": "missing_weights", "message": str, "hint": str}
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from importlib.metadata import version
from itertools import islice
from pathlib import Path
from typing import Any, Protocol

PROTOCOL = 1
EXIT_MISSING_WEIGHTS = 3
WEIGHT_GLOBS = ("*.safetensors", "pytorch_model*.bin")
MODEL_HINT = ("put a Hugging Face causal LM directory (config.json, tokenizer files, *.safetensors) there, "
              "e.g. `hf download ORG/NAME --local-dir DIR` on a machine with network access")


class ModelAbsent(Exception):
    """The model this worker needs is not on this machine. The worker runs without mixc, so it
    reports this through error.json and its exit status; the compiler raises MissingWeights."""


def check_model(model: str) -> None:
    path = Path(model)
    if not path.is_dir():
        raise ModelAbsent(f"LLM model {model}: no such directory")
    if not (path / "config.json").is_file() or not any(any(path.glob(p)) for p in WEIGHT_GLOBS):
        raise ModelAbsent(f"LLM model {model}: the directory has no config.json or no weights "
                          f"({', '.join(WEIGHT_GLOBS)})")


def load_tokenizer(model: str) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(model, local_files_only=True)
    except (OSError, ValueError) as err:
        raise ModelAbsent(f"LLM model {model}: no usable tokenizer ({err})") from err


def prompt_ids(tokenizer: Any, messages: list[dict]) -> list[int]:
    if tokenizer.chat_template:
        return list(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True))
    return list(tokenizer("\n\n".join(m["content"] for m in messages if m["role"] == "user"))["input_ids"])


def result(row: dict, text: str, finish: str, tokens_in: int, tokens_out: int) -> dict:
    return {"id": row["id"], "text": text, "finish": finish, "tokens_in": tokens_in, "tokens_out": tokens_out}


class VllmGenerator:
    def __init__(self, request: dict):
        from vllm import LLM

        self.name = f"vllm=={version('vllm')}"
        self.sampling = request["sampling"]
        self.tokenizer = load_tokenizer(request["model"])
        self.llm = LLM(model=request["model"], tokenizer=request["model"], seed=request["seed"],
                       enable_prefix_caching=False)

    def generate(self, rows: list[dict]) -> Iterator[dict]:
        from vllm import SamplingParams

        prompts = [{"prompt_token_ids": prompt_ids(self.tokenizer, row["messages"])} for row in rows]
        params = [SamplingParams(n=1, seed=row["seed"], temperature=self.sampling["temperature"],
                                 top_p=self.sampling["top_p"], max_tokens=self.sampling["max_tokens"]) for row in rows]
        for row, output in zip(rows, self.llm.generate(prompts, params, use_tqdm=False)):
            done = output.outputs[0]
            yield result(row, done.text, "length" if done.finish_reason == "length" else "stop",
                         len(output.prompt_token_ids), len(done.token_ids))


class TransformersGenerator:
    def __init__(self, request: dict):
        import torch
        from transformers import AutoModelForCausalLM

        torch.set_num_threads(request["threads"])
        self.name = f"transformers=={version('transformers')}"
        self.sampling, self.device = request["sampling"], request["device"]
        self.tokenizer = load_tokenizer(request["model"])
        try:
            self.model = AutoModelForCausalLM.from_pretrained(request["model"], local_files_only=True).to(self.device)
        except (OSError, ValueError) as err:
            raise ModelAbsent(f"LLM model {request['model']}: transformers cannot load it ({err})") from err
        self.model.eval()
        found = self.model.generation_config.eos_token_id
        self.eos = set(found if isinstance(found, list) else [found] if found is not None else [])
        self.eos |= {self.tokenizer.eos_token_id} if self.tokenizer.eos_token_id is not None else set()

    def _config(self) -> Any:
        from transformers import GenerationConfig

        s = self.sampling
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else min(self.eos)
        drawn = {"do_sample": True, "temperature": s["temperature"], "top_p": s["top_p"], "top_k": 0}
        return GenerationConfig(max_new_tokens=s["max_tokens"], eos_token_id=sorted(self.eos), pad_token_id=pad,
                                **(drawn if s["temperature"] > 0 else {"do_sample": False}))

    def generate(self, rows: list[dict]) -> Iterator[dict]:
        import torch

        config = self._config()
        for row in rows:
            ids = prompt_ids(self.tokenizer, row["messages"])
            torch.manual_seed(row["seed"])
            with torch.inference_mode():
                output = self.model.generate(torch.tensor([ids], device=self.device), generation_config=config,
                                             attention_mask=torch.ones(1, len(ids), dtype=torch.long,
                                                                       device=self.device),
                                             use_model_defaults=False)
            generated = output[0, len(ids):].tolist()
            stop = next((i for i, token in enumerate(generated) if token in self.eos), None)
            tokens = generated if stop is None else generated[:stop]
            yield result(row, self.tokenizer.decode(tokens, skip_special_tokens=True),
                         "length" if stop is None else "stop", len(ids), len(generated) if stop is None else stop + 1)


class LlmGenerator(Protocol):
    name: str  # the engine and its version, reported in done.json

    def generate(self, rows: list[dict]) -> Iterator[dict]: ...


GENERATORS: dict[str, Callable[[dict], LlmGenerator]] = {"vllm": VllmGenerator, "transformers": TransformersGenerator}


def run(request_dir: Path, result_dir: Path, engine_name: str) -> None:
    request = json.loads((request_dir / "request.json").read_text())
    if request.get("protocol") != PROTOCOL:
        raise ValueError(f"request protocol {request.get('protocol')}, this worker speaks {PROTOCOL}")
    check_model(request["model"])
    rows = [json.loads(line) for line in (request_dir / "requests.jsonl").read_text().splitlines() if line]
    result_dir.mkdir(parents=True, exist_ok=True)
    generator = GENERATORS[engine_name](request)
    batches = iter(rows)
    with open(result_dir / "results.jsonl", "w") as out:
        while batch := list(islice(batches, request["batch"])):
            for line in generator.generate(batch):
                out.write(json.dumps(line) + "\n")
            out.flush()
    done = result_dir / "done.json.tmp"
    done.write_text(json.dumps({"protocol": PROTOCOL, "requests": len(rows), "engine": generator.name}))
    done.rename(result_dir / "done.json")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("request_dir", type=Path)
    parser.add_argument("result_dir", type=Path)
    parser.add_argument("--engine", choices=sorted(GENERATORS), default="vllm")
    args = parser.parse_args(argv)
    try:
        run(args.request_dir, args.result_dir, args.engine)
    except ModelAbsent as err:
        args.result_dir.mkdir(parents=True, exist_ok=True)
        report = {"kind": "missing_weights", "message": str(err), "hint": MODEL_HINT}
        (args.result_dir / "error.json").write_text(json.dumps(report))
        print(err, file=sys.stderr)
        return EXIT_MISSING_WEIGHTS
    return 0


if __name__ == "__main__":
    sys.exit(main())
