"""Evaluation speed: mixc's scorer against a bare batched forward pass over the same tokens, and
the evaluation's cost during training as a share of the training steps.

Items are framed like the demo's spoken QA set (`eval/factbook_qa.jsonl`): a spoken question of
15-40 audio codes between markers, a written one of 8-14 text tokens, four choices of 1-4 tokens;
random ids in the demo's joint vocabulary (5,004), scored by the `tiny` SpeechLM preset on CPU with
one thread. Timed, best of N, with `time.perf_counter`:

- mixc: `runtime.evaluate.score_item(model, "sqa", item, ...)` for every item: the spoken and the
  written choices (one forward pass each, four rows) and the modality gap (one pass, two rows),
  log-softmax and float64 scoring included. This is what the callback and `mixc eval` run.
- bare: the same 10 rows per item, right-padded, as one forward pass per item and nothing else
  (no log-softmax, no scoring): the floor for scoring items one at a time. Baseline.
- batched: the same rows of 32 items per forward pass (320 rows): what batching across items would
  buy, which mixc gives up so that an item's numbers never depend on its neighbours.
- train step: forward + backward + AdamW on a batch of 8 x 512 tokens (the demo's batch): the
  denominator of the evaluation's share of training time at `eval.every` = 100.

Sizes 1x, 2x, 4x (60, 120, 240 items) show how the cost grows. Exits 0; it is a benchmark.

    .venv/bin/python benchmarks/eval_speed.py [--items 60] [--repeat 3]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from functools import partial

import numpy as np
import torch

from runtime.composer_model import masked_next_token_loss
from runtime.evaluate import score_item
from runtime.model import PRESETS, SpeechLM

TEXT, CODES = 4000, 1000
AUDIO_OFFSET, MARKERS = TEXT, TEXT + CODES  # <audio> </audio> <text> </text> follow the codes
VOCAB = TEXT + CODES + 4
EVERY, BATCH, SEQ = 100, 8, 512


def items(n: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    audio, close_audio, text, close_text = MARKERS, MARKERS + 1, MARKERS + 2, MARKERS + 3
    out = []
    for i in range(n):
        codes = (rng.integers(0, CODES, int(rng.integers(15, 41))) + AUDIO_OFFSET).tolist()
        question = rng.integers(0, TEXT, int(rng.integers(8, 15))).tolist()
        choices = [rng.integers(0, TEXT, int(rng.integers(1, 5))).tolist() for _ in range(4)]
        out.append({"id": str(i), "answer": int(rng.integers(4)), "choice_tokens": choices,
                    "choice_chars": [4 * len(c) for c in choices], "spoken": [audio, *codes, close_audio, text],
                    "written": [text, *question, close_text, text]})
    return out


def rows(item: dict) -> list[list[int]]:
    spoken, written, choices = item["spoken"], item["written"], item["choice_tokens"]
    gold = choices[item["answer"]]
    return [spoken + c for c in choices] + [written + c for c in choices] + [spoken + gold, written + gold]


@torch.no_grad()
def forward(model: torch.nn.Module, batch: list[list[int]]) -> None:
    width = max(len(r) for r in batch)
    model(torch.tensor([r + [0] * (width - len(r)) for r in batch]))


def score_all(model: torch.nn.Module, work: list[dict]) -> None:
    for item in work:
        score_item(model, "sqa", item, TEXT, "cpu")


def forward_each(model: torch.nn.Module, work: list[dict]) -> None:
    for item in work:
        forward(model, rows(item))


def forward_batched(model: torch.nn.Module, work: list[dict], size: int = 32) -> None:
    for i in range(0, len(work), size):
        forward(model, [r for item in work[i:i + size] for r in rows(item)])


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def train_step_seconds(model: torch.nn.Module, repeat: int) -> float:
    optim = torch.optim.AdamW(model.parameters(), lr=1e-4)
    tokens = torch.randint(0, VOCAB, (BATCH, SEQ))
    mask = torch.ones_like(tokens)

    def step() -> None:
        loss = masked_next_token_loss(model(tokens), tokens, mask, pad_id=VOCAB - 1)
        loss.backward()
        optim.step()
        optim.zero_grad()
    step()  # warm-up
    return best(step, repeat)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=60, help="items at 1x")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = SpeechLM(replace(PRESETS["tiny"], vocab_size=VOCAB)).eval()
    print(f"tiny SpeechLM, vocab {VOCAB:,}, CPU, 1 thread; best of {args.repeat}")
    print(f"{'items':>6} {'mixc s':>8} {'items/s':>8} {'bare s':>8} {'items/s':>8} {'mixc/bare':>9} "
          f"{'batched s':>9} {'items/s':>8} {'mixc/batched':>12}")
    one_pass = {}
    for scale in (1, 2, 4):
        work = items(args.items * scale)
        mixc = best(partial(score_all, model, work), args.repeat)
        bare = best(partial(forward_each, model, work), args.repeat)
        batched = best(partial(forward_batched, model, work), args.repeat)
        n = len(work)
        one_pass[n] = mixc
        print(f"{n:>6} {mixc:>8.2f} {n / mixc:>8.1f} {bare:>8.2f} {n / bare:>8.1f} {bare / mixc:>9.2f} "
              f"{batched:>9.2f} {n / batched:>8.1f} {batched / mixc:>12.2f}")
    model.train()
    step = train_step_seconds(model, args.repeat)
    first = one_pass[args.items]
    print(f"train step (batch {BATCH} x {SEQ}): {step:.3f} s; one evaluation of {args.items} items = "
          f"{first / step:.1f} steps; at eval.every = {EVERY}: {first / (EVERY * step):.1%} of training time")


if __name__ == "__main__":
    main()
