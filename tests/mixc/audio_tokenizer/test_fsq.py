import numpy as np
import pytest
import torch

from mixc.audio_tokenizer import PRESETS, Clip, evaluate, load_tokenizer, num_codes, train_fsq
from mixc.audio_tokenizer.features import N_MELS, SAMPLE_RATE
from mixc.audio_tokenizer.model import CTC_UPSAMPLE, FSQModel
from tests.mixc.audio_tokenizer.conftest import LEVELS

DETERMINISM_STEPS = 6


def test_codes_in_range_and_exactly_12_5_hz(trained, held_out):
    tok, _ = trained
    assert tok.frame_rate == 12.5 and tok.codebook_size == 1000
    codes = tok.encode([c.wav for c in held_out])
    for clip, c in zip(held_out, codes):
        assert c.dtype == np.int32 and c.ndim == 1
        assert len(c) == num_codes(len(clip.wav))
        assert c.min() >= 0 and c.max() < tok.codebook_size


@pytest.mark.parametrize("seconds", [0.08, 0.96, 2.0, 3.2])  # whole multiples of 80 ms
def test_whole_seconds_give_12_5_codes_per_second(trained, held_out, seconds):
    tok, _ = trained
    wav = held_out[0].wav[: int(seconds * SAMPLE_RATE)]
    assert len(tok.encode([wav])[0]) == round(12.5 * seconds)


def test_empty_clip_gives_no_codes(trained):
    tok, _ = trained
    assert [len(c) for c in tok.encode([np.zeros(0, np.float32), np.zeros(1, np.float32)])] == [0, 1]


def test_batching_does_not_change_codes(trained, held_out):
    tok, _ = trained
    wavs = [c.wav for c in held_out]
    together = tok.encode(wavs)
    alone = [tok.encode([w])[0] for w in wavs]
    agree = np.mean(np.concatenate(together) == np.concatenate(alone))
    assert agree >= 0.99  # masked convs and attention: equal up to float rounding at FSQ bin edges


def test_training_metrics(trained):
    _, metrics = trained
    assert all(isinstance(v, float) for v in metrics.values())
    assert metrics["steps"] == 40 and metrics["train_seconds"] > 0
    assert 12.5 <= metrics["tokens_per_second"] < 12.5 * 1.05  # padding to whole tokens adds < 80 ms a clip
    assert 1 <= metrics["usage_perplexity"] <= 1000 and 0 < metrics["usage_share"] <= 1
    assert np.isfinite(metrics["train_ctc"]) and np.isfinite(metrics["train_recon_l1"])
    assert metrics["parameters"] > metrics["encoder_parameters"] > 0


def test_reconstruction_beats_predicting_the_mean_on_held_out_clips(trained, held_out):
    tok, _ = trained
    metrics = evaluate(tok, held_out)
    assert metrics["recon_l1"] < 0.85 * metrics["recon_mean_baseline"], metrics
    assert metrics["ctc"] > 0 and metrics["cer"] >= 0
    assert metrics["usage_perplexity"] > 2, metrics


def test_same_seed_same_weights_and_codes(train_clips, held_out):
    runs = [train_fsq(LEVELS, "tiny", DETERMINISM_STEPS, train_clips, seed=seed, device="cpu")[0]
            for seed in (7, 7, 8)]
    wavs = [c.wav for c in held_out]
    first, again, other = (r.model.state_dict() for r in runs)
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)
    assert all(np.array_equal(a, b) for a, b in zip(runs[0].encode(wavs), runs[1].encode(wavs)))


def test_training_leaves_the_global_rng_and_flags_alone(train_clips):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train_fsq(LEVELS, "tiny", 1, train_clips[:2], seed=0, device="cpu")
    assert torch.equal(torch.rand(3), expected)
    assert not torch.are_deterministic_algorithms_enabled()


def test_progress_and_clips_without_transcripts(train_clips):
    calls = []
    silent = [Clip(c.wav) for c in train_clips[:2]]
    _, metrics = train_fsq(LEVELS, "tiny", 4, silent, seed=0, device="cpu",
                           progress=lambda step, steps, losses: calls.append((step, steps, sorted(losses))))
    assert calls == [(s, 4, ["ctc", "loss", "recon_l1"]) for s in range(1, 5)]
    assert "train_ctc" not in metrics and "ctc" not in metrics and metrics["recon_l1"] > 0


def test_save_load_round_trip(trained, held_out, tmp_path):
    tok, _ = trained
    tok.save(tmp_path / "tok")
    loaded = load_tokenizer(tmp_path / "tok")
    assert loaded.kind == "fsq" and loaded.codebook_size == tok.codebook_size and loaded.levels == LEVELS
    wavs = [c.wav for c in held_out]
    assert all(np.array_equal(a, b) for a, b in zip(tok.encode(wavs), loaded.encode(wavs)))


def test_bad_arguments_are_rejected(train_clips):
    with pytest.raises(ValueError, match="12.5"):
        train_fsq(LEVELS, "tiny", 1, train_clips, seed=0, frame_rate=25.0)
    with pytest.raises(ValueError, match="preset"):
        train_fsq(LEVELS, "huge", 1, train_clips, seed=0)
    with pytest.raises(ValueError, match="levels"):
        train_fsq((2, 5), "tiny", 1, train_clips, seed=0)


@pytest.mark.parametrize("preset, low, high", [("tiny", 1e5, 2e6), ("base", 20e6, 50e6)])
def test_preset_forward_shapes_on_cpu(preset, low, high):
    model = FSQModel(PRESETS[preset], LEVELS).eval()
    assert low <= sum(p.numel() for p in model.parameters()) <= high
    frames = 200  # 2 s: 25 tokens
    mel, mask = torch.randn(2, frames, N_MELS), torch.ones(2, frames, dtype=torch.bool)
    mask[1, 120:] = False
    with torch.inference_mode():
        out = model(mel, mask)
    assert out.recon.shape == (2, frames, N_MELS)
    assert out.codes.shape == (2, frames // 8) and out.token_mask[1].sum() == 15
    assert out.ctc_log_probs.shape[:2] == (2, frames // 8 * CTC_UPSAMPLE)
    assert (out.recon[1, 120:] == 0).all()
