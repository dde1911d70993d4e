"""Shared fixtures: real speech (factbook sentences read by flite voices) and one small trained tokenizer.

Everything is session-scoped and small so the whole folder runs in about a minute on one core.
"""

from __future__ import annotations

import pytest
import torch

from mixc.audio_tokenizer import Clip, FSQTokenizer, KMeansTokenizer, train_fsq, train_kmeans
from mixc.demo.audio import read_sentences

TRAIN_CLIPS = 16  # ~90 s of speech
HELD_OUT_CLIPS = 4
FIXTURE_STEPS = 40
KMEANS_CODEBOOK = 32
LEVELS = (8, 5, 5, 5)


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """One torch thread: the tests share two cores, and CPU determinism is per thread count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def speech() -> list[Clip]:
    return [Clip(wav, text) for wav, text in read_sentences(TRAIN_CLIPS + HELD_OUT_CLIPS)]


@pytest.fixture(scope="session")
def train_clips(speech) -> list[Clip]:
    return speech[:TRAIN_CLIPS]


@pytest.fixture(scope="session")
def held_out(speech) -> list[Clip]:
    return speech[TRAIN_CLIPS:]


@pytest.fixture(scope="session")
def trained(train_clips) -> tuple[FSQTokenizer, dict]:
    return train_fsq(LEVELS, "tiny", FIXTURE_STEPS, train_clips, seed=0, device="cpu")


@pytest.fixture(scope="session")
def kmeans(train_clips) -> tuple[KMeansTokenizer, dict]:
    return train_kmeans(KMEANS_CODEBOOK, train_clips, seed=0)
