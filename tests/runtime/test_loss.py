from dataclasses import replace

import torch
import torch.nn.functional as F

from runtime.composer_model import SpeechLMComposer, batch_token_counts, masked_next_token_loss
from runtime.model import PRESETS, SpeechLM

V, PAD = 50, 49


def example() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    logits = torch.randn(2, 8, V)
    tokens = torch.randint(0, PAD, (2, 8))
    mask = torch.ones(2, 8, dtype=torch.uint8)
    mask[0, 3] = mask[1, 6] = 0
    return logits, tokens, mask


def test_loss_is_the_mean_cross_entropy_over_target_positions() -> None:
    logits, tokens, mask = example()
    keep = mask[:, 1:].bool()
    expected = F.cross_entropy(logits[:, :-1][keep], tokens[:, 1:][keep])
    assert torch.allclose(masked_next_token_loss(logits, tokens, mask, PAD), expected)


def test_masked_targets_do_not_count() -> None:
    logits, tokens, mask = example()
    base = masked_next_token_loss(logits, tokens, mask, PAD)
    masked, unmasked = tokens.clone(), tokens.clone()
    masked[0, 3] = (tokens[0, 3] + 1) % PAD      # loss_mask 0 there
    unmasked[0, 4] = (tokens[0, 4] + 1) % PAD    # loss_mask 1 there
    assert torch.equal(masked_next_token_loss(logits, masked, mask, PAD), base)
    assert not torch.equal(masked_next_token_loss(logits, unmasked, mask, PAD), base)


def test_pad_is_never_a_target() -> None:
    logits, tokens, mask = example()
    padded = tokens.clone()
    padded[:, 5:] = PAD  # mask still says 1 there
    cut = mask.clone()
    cut[:, 5:] = 0
    assert torch.equal(masked_next_token_loss(logits, padded, mask, PAD),
                       masked_next_token_loss(logits, padded, cut, PAD))
    assert batch_token_counts({"tokens": padded, "loss_mask": mask}, PAD) == {"total": 16, "loss_generating": 7}


def test_model_loss_ignores_a_masked_final_token() -> None:
    """End to end: the last token is no model input, so when it is masked nothing depends on it."""
    torch.manual_seed(0)
    model = SpeechLMComposer(SpeechLM(replace(PRESETS["tiny"], vocab_size=V)), pad_id=PAD)
    _, tokens, mask = example()
    mask[:, -1] = 0
    batch = {"tokens": tokens, "loss_mask": mask}
    changed = {"tokens": tokens.clone(), "loss_mask": mask}
    changed["tokens"][:, -1] = (tokens[:, -1] + 7) % PAD
    assert torch.equal(model.loss(model(batch), batch), model.loss(model(changed), changed))


def test_eval_metrics_measure_the_masked_cross_entropy() -> None:
    logits, tokens, mask = example()
    model = SpeechLMComposer(SpeechLM(replace(PRESETS["tiny"], vocab_size=V)), pad_id=PAD)
    batch = {"tokens": tokens, "loss_mask": mask}
    metrics = model.get_metrics(is_train=False)
    for metric in metrics.values():
        model.update_metric(batch, logits, metric)
    loss = masked_next_token_loss(logits, tokens, mask, PAD)
    assert torch.allclose(metrics["LanguageCrossEntropy"].compute(), loss)
    assert torch.allclose(metrics["LanguagePerplexity"].compute(), loss.exp())
    assert model.get_metrics(is_train=True) == {}
