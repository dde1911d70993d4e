"""What the openai LLM engine costs on top of the server it calls: requests per second through
`mixc.backends.llm.OpenAILlm.complete` (bounded thread pool, retry wrapper, reply parsing) against
the server's own rate, measured by sending the same prompts straight with the `openai` client from a
thread pool of the same size, in the same run.

The server is the tests' OpenAI-compatible server (tests/llm_server.py) over the tiny Llama built on
the spot, on 127.0.0.1: it generates one request at a time, so its rate is what the model allows and
any engine overhead shows as a ratio below 1. Every request has the same shape (one short user
message, the same sampling) and its own seed; both clients send the same requests, so the server
does the same work for both (the script checks the replies are identical). Each size runs at 1x, 2x
and 4x `--n` requests: the ratio should stay flat. Engine and direct runs alternate, best of
`--repeat`.

    .venv/bin/python benchmarks/openai_throughput.py [--n 48] [--batch 4] [--max-tokens 16] [--repeat 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai

from mixc import ir
from mixc.backends.llm import OpenAILlm, Request
from tests.llm_server import SERVED_NAME, TOPICS, TinyOpenAIServer, build_tiny_model

SCALES = (1, 2, 4)


def make_requests(n: int) -> list[Request]:
    return [Request(f"{i:08x}", "answer", {}, ({"role": "user", "content": f"tell me about {TOPICS[i % 10]}."},), i)
            for i in range(n)]


def through_engine(cfg: ir.Llm, requests: list[Request]) -> tuple[float, dict[str, str]]:
    engine = OpenAILlm(cfg)
    started = time.perf_counter()
    replies = {r.id: r.text for r in engine.complete(requests)}
    elapsed = time.perf_counter() - started
    engine.close()
    return elapsed, replies


def direct(cfg: ir.Llm, requests: list[Request]) -> tuple[float, dict[str, str]]:
    client = openai.OpenAI(base_url=cfg.base_url, api_key="EMPTY", max_retries=0, timeout=cfg.timeout)

    def one(request: Request) -> tuple[str, str]:
        response = client.chat.completions.create(
            model=SERVED_NAME, messages=list(request.messages), temperature=cfg.temperature,  # type: ignore[arg-type]
            top_p=cfg.top_p, max_tokens=cfg.max_tokens, seed=request.seed, extra_body={"cache_prompt": False})
        return request.id, response.choices[0].message.content or ""

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=cfg.batch) as pool:
        replies = dict(pool.map(one, requests))
    elapsed = time.perf_counter() - started
    client.close()
    return elapsed, replies


def measure(cfg: ir.Llm, n: int, repeat: int) -> dict:
    requests = make_requests(n)
    engine_s, direct_s, same = float("inf"), float("inf"), True
    for _ in range(repeat):
        t_engine, by_engine = through_engine(cfg, requests)
        t_direct, by_direct = direct(cfg, requests)
        engine_s, direct_s = min(engine_s, t_engine), min(direct_s, t_direct)
        same = same and by_engine == by_direct
    return {"requests": n, "engine_rps": n / engine_s, "server_rps": n / direct_s,
            "ratio": direct_s / engine_s, "same_replies": same}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=48)
    parser.add_argument("--batch", type=int, default=4, help="requests in flight")
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mixc-openai-bench-") as tmp:
        model = build_tiny_model(Path(tmp))
        with TinyOpenAIServer(model) as server:
            cfg = ir.Llm(backend="openai", model=SERVED_NAME, base_url=server.base_url, batch=args.batch,
                         temperature=1.0, max_tokens=args.max_tokens)
            measure(cfg, args.batch * 2, 1)  # warm up: connections, the model's first forward passes
            rows = [measure(cfg, args.n * scale, args.repeat) for scale in SCALES]
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    print(f"batch {args.batch} in flight, max_tokens {args.max_tokens}, best of {args.repeat}")
    print(f"{'requests':>8}  {'engine req/s':>12}  {'server req/s':>12}  {'ratio':>6}  same replies")
    for row in rows:
        print(f"{row['requests']:>8}  {row['engine_rps']:>12.1f}  {row['server_rps']:>12.1f}  {row['ratio']:>6.3f}  "
              f"{row['same_replies']}")


if __name__ == "__main__":
    main()
