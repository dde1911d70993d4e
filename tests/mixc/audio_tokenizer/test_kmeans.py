import numpy as np
import pytest
import torch

from mixc.audio_tokenizer import evaluate, load_tokenizer, num_codes, train_kmeans
from mixc.errors import DataError
from tests.mixc.audio_tokenizer.conftest import KMEANS_CODEBOOK


def test_kmeans_codes_in_range_at_12_5_hz(kmeans, held_out):
    tok, metrics = kmeans
    assert tok.frame_rate == 12.5 and tok.codebook_size == KMEANS_CODEBOOK
    codes = tok.encode([c.wav for c in held_out] + [held_out[0].wav[:32_000]])
    assert [len(c) for c in codes] == [num_codes(len(c.wav)) for c in held_out] + [12.5 * 2]
    assert all(c.dtype == np.int32 and c.min() >= 0 and c.max() < KMEANS_CODEBOOK for c in codes)
    assert metrics["usage_share"] > 0.5 and metrics["train_seconds"] > 0


def test_kmeans_centroids_beat_the_mean(kmeans, held_out):
    metrics = evaluate(kmeans[0], held_out)
    assert metrics["recon_l1"] < metrics["recon_mean_baseline"]
    assert "ctc" not in metrics


def test_kmeans_is_deterministic_and_round_trips(kmeans, train_clips, held_out, tmp_path):
    tok, _ = kmeans
    again, _ = train_kmeans(KMEANS_CODEBOOK, train_clips, seed=0)
    assert torch.equal(tok.centroids, again.centroids)
    tok.save(tmp_path / "km")
    loaded = load_tokenizer(tmp_path / "km")
    wavs = [c.wav for c in held_out]
    assert loaded.kind == "kmeans"
    assert all(np.array_equal(a, b) for a, b in zip(tok.encode(wavs), loaded.encode(wavs)))


def test_kmeans_rejects_bad_arguments(train_clips):
    with pytest.raises(ValueError, match="12.5"):
        train_kmeans(8, train_clips, seed=0, frame_rate=50.0)
    with pytest.raises(DataError, match="at least 100000 tokens") as err:  # the data's fault: a hint says what to do
        train_kmeans(100_000, train_clips[:1], seed=0)
    assert "codebook" in err.value.hint
