import numpy as np
import pytest
import torch

from mixc.audio_tokenizer.alphabet import ALPHABET, ids_to_text, normalize_text, text_to_ids
from mixc.audio_tokenizer.features import (
    FRAME_RATE,
    FRAMES_PER_TOKEN,
    N_MELS,
    SAMPLE_RATE,
    check_frame_rate,
    length_batches,
    log_mel,
    num_codes,
)


def test_frame_rate_is_12_5_hz():
    assert FRAME_RATE == 12.5
    check_frame_rate(12.5)
    with pytest.raises(ValueError, match="12.5"):
        check_frame_rate(25.0)


@pytest.mark.parametrize("samples, codes", [(0, 0), (1, 1), (1280, 1), (1281, 2), (16_000, 13), (32_000, 25)])
def test_num_codes_is_ceil_of_samples_over_1280(samples, codes):
    assert num_codes(samples) == codes


@pytest.mark.parametrize("seconds", [0.08, 0.96, 2.0, 2.4, 4.0])  # whole multiples of 80 ms
def test_log_mel_has_8_frames_per_token(seconds):
    wav = np.random.default_rng(0).normal(0, 0.1, int(seconds * SAMPLE_RATE)).astype(np.float32)
    mel = log_mel(wav)
    assert mel.shape == (FRAMES_PER_TOKEN * round(seconds * FRAME_RATE), N_MELS)
    assert torch.isfinite(mel).all()


def test_log_mel_rejects_non_mono():
    with pytest.raises(ValueError, match="1-D"):
        log_mel(np.zeros((2, 1600), np.float32))


def test_length_batches_respects_budget_and_covers_all():
    lengths = [800, 80, 400, 800, 8, 1600]
    batches = length_batches(lengths, 1600)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert all(len(b) == 1 or lengths[b[0]] * len(b) <= 1600 for b in batches)


def test_alphabet_normalises_transcripts():
    assert normalize_text("Côte d’Ivoire's GDP—rose 3.5%, (approx.)") == "cote d'ivoire's gdp rose 3 5 approx"
    assert normalize_text("Well-known   U.S. ports") == "well known u s ports"
    ids = text_to_ids("ab ba")
    assert all(1 <= i <= len(ALPHABET) for i in ids)
    assert ids_to_text([0, ids[0], ids[0], 0, ids[1], 0, 0, ids[2]]) == "ab "
