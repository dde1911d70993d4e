"""runtime/scoring.py on a small SpeechLM: log-likelihoods against a direct computation, the
multiple-choice rule, and the modality gap's divergences."""

from __future__ import annotations

import math

import pytest
import torch

from runtime.model import ModelConfig, SpeechLM
from runtime.scoring import Scored, continuation_logprobs, gap, multiple_choice


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    net = SpeechLM(ModelConfig(d_model=32, n_layers=2, n_heads=4, n_kv_heads=4, d_ff=64, vocab_size=64))
    return net.eval()


def direct(model, context, continuation) -> float:
    ids = torch.tensor([context + continuation])
    logp = torch.log_softmax(model(ids).float(), -1)[0].double()
    return sum(float(logp[len(context) - 1 + j, t]) for j, t in enumerate(continuation))


def test_loglik_is_the_sum_over_the_continuation_and_padding_changes_nothing(model):
    context, choices = [5, 9, 11], [[3], [7, 8, 9, 10], [12, 13]]
    scored = continuation_logprobs(model, context, choices)
    for s, c in zip(scored, choices):
        assert s.loglik == pytest.approx(direct(model, context, c), abs=1e-5)
    alone = continuation_logprobs(model, context, [choices[0]])[0]
    assert alone.loglik == pytest.approx(scored[0].loglik, abs=1e-6)  # right padding of the others
    greedy = int(torch.log_softmax(model(torch.tensor([context])), -1)[0, -1].argmax())
    assert continuation_logprobs(model, context, [[greedy]])[0].greedy


def test_multiple_choice_acc_and_acc_norm():
    scored = [Scored(-2.0, False), Scored(-5.0, False), Scored(-6.0, False)]
    picked = multiple_choice(scored, [1, 4, 12], answer=2)
    assert picked.acc == 0.0 and picked.acc_norm == 1.0  # -6/12 beats -2/1 and -5/4
    tie = multiple_choice([Scored(-1.0, False), Scored(-1.0, False)], [1, 1], answer=1)
    assert tie.acc == 0.0  # the first of equal choices wins, as numpy's argmax


def test_the_gap_is_zero_for_the_same_context_and_kl_is_asymmetric(model):
    same = gap(model, [1, 2, 3], [1, 2, 3], [4, 5], text_size=32)
    assert max(abs(v) for v in vars(same).values()) < 1e-9
    other = gap(model, [40, 41, 42, 43], [1, 2, 3], [4, 5, 6], text_size=32)
    assert other.spoken_written > 0 and other.written_spoken > 0 and other.spoken_written != other.written_spoken
    assert 0 < other.js <= math.log(2) and 0 < other.text_js <= math.log(2)


def test_lm_items_score_their_windows_perplexity(model):
    import math as m

    from runtime.evaluate import score_item, summarise

    windows = [{"id": "a#0", "tokens": [5, 9, 11, 3, 7]}, {"id": "a#1", "tokens": [2, 4, 6]}]
    scores = [score_item(model, "lm", w, 32, "cpu") for w in windows]
    for s, w in zip(scores, windows):
        assert s.tokens == len(w["tokens"]) - 1
        assert s.nll == pytest.approx(-direct(model, w["tokens"][:1], w["tokens"][1:]), abs=1e-5)
    summary = summarise("lm", scores)
    assert summary["tokens"] == 6 and summary["nll"] == pytest.approx((scores[0].nll + scores[1].nll) / 6)
    assert summary["ppl"] == pytest.approx(m.exp(summary["nll"]))


def test_held_out_sequences_are_scored_where_their_loss_mask_is_and_text_apart(model):
    from runtime.evaluate import score_item, summarise

    tokens, mask = [5, 40, 41, 9, 11, 50, 0, 0], [1, 0, 0, 1, 1, 1, 0, 0]  # audio ids 40+ masked; PAD at the end
    item = {"id": "web#3", "tokens": tokens, "mask": mask}
    score = score_item(model, "lm", item, 32, "cpu")
    ids = torch.tensor([tokens])
    logp = torch.log_softmax(model(ids).float(), -1)[0].double()
    per_token = [float(logp[j - 1, tokens[j]]) for j in range(1, len(tokens))]
    scored = [j for j in range(1, len(tokens)) if mask[j]]
    assert score.tokens == 3 and score.nll == pytest.approx(-sum(per_token[j - 1] for j in scored), abs=1e-5)
    text = [j for j in scored if tokens[j] < 32]  # 9 and 11; 50 is an audio id
    assert score.text_tokens == 2 and score.text_nll == pytest.approx(-sum(per_token[j - 1] for j in text), abs=1e-5)
    summary = summarise("lm", [score])
    assert summary["text_ppl"] == pytest.approx(math.exp(score.text_nll / 2))
