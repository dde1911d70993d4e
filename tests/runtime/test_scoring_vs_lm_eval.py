"""runtime/scoring.py against lm-evaluation-harness (lm-eval 0.4.13, the dev group) on the same model and items.

lm-eval runs a real multiple_choice task here: a task YAML over a local jsonl file (the ARC layout: context
"Question: Q\\nAnswer:", each choice scored as the continuation " choice"), loaded by its TaskManager and run
by `simple_evaluate` on `HFLM` over the tiny Llama of tests/llm_server.py, so that lm-eval tokenises, scores
and computes acc and acc_norm itself. mixc scores the same items with `continuation_logprobs` and
`multiple_choice` on the token ids it would write (the context, and each choice with its leading space,
encoded on their own); the test checks that those ids are the ones lm-eval scored (lm-eval encodes context +
continuation whole and splits it after the context's tokens), then the log-likelihoods (to 1e-4), the greedy
flags, and acc / acc_norm per item and overall.

acc_norm: lm-eval divides each log-likelihood by `len(choice)`, the choice as `doc_to_choice` gives it, without
the target delimiter (the leading space) that is scored; `multiple_choice` takes those lengths from its caller.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from runtime.scoring import ChoiceResult, Scored, continuation_logprobs, hf_logits, multiple_choice
from tests.llm_server import tiny_model

__all__ = ["tiny_model"]  # the pytest fixture, used by name below

LM_EVAL_VERSION = "0.4.13"
TASK = "mixc_scoring_check"
TOLERANCE = 1e-4  # nats, absolute, per continuation

# (question, choices, answer index): choices of different lengths, so that acc_norm can differ from acc
ITEMS: tuple[tuple[str, tuple[str, str, str, str], int], ...] = (
    ("What is the capital of France?", ("Paris", "Rome", "Berlin", "Madrid"), 0),
    ("How many legs does a spider have?", ("six", "eight", "ten", "four"), 1),
    ("Which planet is closest to the sun?", ("Venus", "Mars", "Mercury", "Jupiter"), 2),
    ("What do bees make?", ("milk", "silk", "bread", "honey"), 3),
    ("What color is a clear sky at noon?", ("blue", "green", "bright orange", "purple"), 0),
    ("Which animal is the largest?", ("mouse", "blue whale", "cat", "sparrow"), 1),
    ("What is frozen water called?", ("steam", "sand", "ice", "glass"), 2),
    ("How many days are in a week?", ("five", "ten", "twelve", "seven"), 3),
    ("Which river flows through Egypt?", ("the Nile", "the Thames", "the Amazon", "the Danube"), 0),
    ("What gas do plants take in?", ("oxygen", "carbon dioxide", "helium", "neon"), 1),
    ("Which instrument has black and white keys?", ("drum", "flute", "piano", "violin"), 2),
    ("What do trains run on?", ("rivers", "clouds", "sand", "rails"), 3),
    ("Which season comes after winter?", ("spring", "autumn", "summer", "the dry season"), 0),
    ("What falls from clouds?", ("stones", "rain", "leaves", "feathers"), 1),
    ("What shows the stars at night?", ("the sun", "a map", "the dark sky", "a river"), 2),
    ("Which tool shows where places are?", ("a hammer", "a spoon", "a kettle", "a map"), 3),
    ("What is baked from flour?", ("bread", "ice", "salt", "glass"), 0),
    ("Which of these can sail across the sea?", ("a train", "a ship", "a bicycle", "a horse"), 1),
    ("What is the opposite of loud?", ("bright", "long", "quiet", "warm"), 2),
    ("Which of these is a mountain?", ("the Nile", "the Sahara", "the Pacific", "Everest"), 3),
    ("How many hours are in a day?", ("twenty-four", "twelve", "sixty", "one hundred"), 0),
    ("What do you call music played by many instruments together?", ("a song", "an orchestra", "a map", "a bee"), 1),
    ("Which is the slowest?", ("a cheetah", "a falcon", "a snail", "a hare"), 2),
    ("What is the boiling point of water at sea level in Celsius?", ("fifty", "ninety", "two hundred", "one hundred"),
     3),
)

TASK_YAML = """\
task: {task}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
  cache_dir: {cache}
output_type: multiple_choice
test_split: test
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_choice: choices
doc_to_target: answer
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
"""


@dataclass(frozen=True)
class LmEvalRun:
    samples: list[dict[str, Any]]  # per item, in the jsonl's order: arguments, resps, acc, acc_norm
    results: dict[str, Any]  # the task's aggregated metrics ("acc,none", "acc_norm,none")
    token_ids: dict[tuple[str, str], tuple[list[int], list[int]]]  # (context, continuation) -> what was scored


@pytest.fixture(scope="module")
def offline() -> Iterator[None]:
    """No hub access: the environment variables, and the flags of the hub libraries if already imported."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("HF_DATASETS_OFFLINE", "1")
        import datasets.config
        import huggingface_hub.constants

        mp.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
        mp.setattr(datasets.config, "HF_HUB_OFFLINE", True)
        mp.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
        yield


@pytest.fixture(scope="module")
def lm_eval_run(offline: None, tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> LmEvalRun:
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    assert lm_eval.__version__ == LM_EVAL_VERSION

    token_ids: dict[tuple[str, str], tuple[list[int], list[int]]] = {}

    class RecordingHFLM(HFLM):
        """HFLM, keeping the token ids of every loglikelihood request it scores."""

        def _loglikelihood_tokens(self, requests, **kwargs):
            for strings, context_enc, continuation_enc in requests:
                token_ids[strings] = (list(context_enc), list(continuation_enc))
            return super()._loglikelihood_tokens(requests, **kwargs)

    root = tmp_path_factory.mktemp("lm-eval")
    data = root / "items.jsonl"
    data.write_text("".join(json.dumps({"question": q, "choices": list(c), "answer": a}) + "\n"
                            for q, c, a in ITEMS), encoding="utf-8")
    tasks = root / "tasks"
    tasks.mkdir()
    (tasks / f"{TASK}.yaml").write_text(TASK_YAML.format(task=TASK, data=data, cache=root / "datasets"),
                                        encoding="utf-8")
    lm = RecordingHFLM(pretrained=str(tiny_model), device="cpu", batch_size=16)
    out = lm_eval.simple_evaluate(model=lm, tasks=[TASK], task_manager=TaskManager(include_path=str(tasks),
                                                                                   include_defaults=False),
                                  bootstrap_iters=0, log_samples=True)
    assert out is not None
    samples = sorted(out["samples"][TASK], key=lambda s: s["doc_id"])
    assert [s["doc_id"] for s in samples] == list(range(len(ITEMS)))
    return LmEvalRun(samples, out["results"][TASK], token_ids)


@dataclass(frozen=True)
class MixcItem:
    context: list[int]
    continuations: list[list[int]]
    scored: list[Scored]
    result: ChoiceResult


@pytest.fixture(scope="module")
def mixc_scores(offline: None, tiny_model: Path) -> list[MixcItem]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()
    out = []
    for question, choices, answer in ITEMS:
        context = tokenizer.encode(f"Question: {question}\nAnswer:", add_special_tokens=False)
        continuations = [tokenizer.encode(" " + c, add_special_tokens=False) for c in choices]
        scored = continuation_logprobs(hf_logits(model), context, continuations)
        # lm-eval's acc_norm lengths: the choice's characters, without the scored leading space
        result = multiple_choice(scored, [len(c) for c in choices], answer)
        out.append(MixcItem(context, continuations, scored, result))
    return out


def test_lm_eval_scored_the_items_as_mixc_writes_them(lm_eval_run: LmEvalRun, mixc_scores: list[MixcItem]) -> None:
    assert len(lm_eval_run.token_ids) == 4 * len(ITEMS)
    for (question, choices, answer), sample, mine in zip(ITEMS, lm_eval_run.samples, mixc_scores):
        context = f"Question: {question}\nAnswer:"
        assert [tuple(a) for a in sample["arguments"]] == [(context, " " + c) for c in choices]
        assert sample["target"] == answer
        for choice, continuation in zip(choices, mine.continuations):
            assert lm_eval_run.token_ids[(context, " " + choice)] == (mine.context, continuation), (question, choice)


def test_log_likelihoods_agree(lm_eval_run: LmEvalRun, mixc_scores: list[MixcItem]) -> None:
    worst = 0.0
    for sample, mine in zip(lm_eval_run.samples, mixc_scores):
        theirs = [tuple(r[0]) for r in sample["resps"]]
        assert len(theirs) == len(mine.scored) == 4
        for (loglik, greedy), scored in zip(theirs, mine.scored):
            assert scored.loglik == pytest.approx(loglik, abs=TOLERANCE, rel=0)
            assert scored.greedy == greedy
            worst = max(worst, abs(scored.loglik - loglik))
        assert list(mine.result.logliks) == [s.loglik for s in mine.scored]
    print(f"max |loglik(mixc) - loglik(lm-eval)| = {worst:.3g} nats over {4 * len(ITEMS)} continuations")


def test_acc_and_acc_norm_agree(lm_eval_run: LmEvalRun, mixc_scores: list[MixcItem]) -> None:
    for (question, _, _), sample, mine in zip(ITEMS, lm_eval_run.samples, mixc_scores):
        assert (mine.result.acc, mine.result.acc_norm) == (sample["acc"], sample["acc_norm"]), question
    n = len(ITEMS)
    acc = sum(m.result.acc for m in mixc_scores) / n
    acc_norm = sum(m.result.acc_norm for m in mixc_scores) / n
    assert acc == pytest.approx(lm_eval_run.results["acc,none"], abs=1e-12)
    assert acc_norm == pytest.approx(lm_eval_run.results["acc_norm,none"], abs=1e-12)
    # the items exercise the normalisation: on some of them acc_norm picks another choice than acc
    picks = [(argmax(m.result.logliks), argmax([ll / len(c) for ll, c in zip(m.result.logliks, choices)]))
             for m, (_, choices, _) in zip(mixc_scores, ITEMS)]
    assert any(raw != normed for raw, normed in picks)


def argmax(values: Sequence[float]) -> int:
    return max(range(len(values)), key=lambda i: (values[i], -i))
