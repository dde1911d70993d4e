"""Generated conversations: real flite and piper speech, checked against the truth they claim."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mixc.audio import SAMPLE_RATE
from mixc.demo import audio as da

SEED = 7
VOICES3 = ("awb", "slt", "joe")  # two flite voices and the piper one, so every backend is exercised
N_TURNS = 5
SAMPLE = 1 / SAMPLE_RATE


@pytest.fixture(scope="module")
def conv() -> da.Conversation:
    return da.conversation(SEED, n_speakers=3, n_turns=N_TURNS, voices=VOICES3)


def _segment(wav: np.ndarray, start: float, end: float) -> np.ndarray:
    return wav[round(start * SAMPLE_RATE):round(end * SAMPLE_RATE)]


def test_speakers_and_turns(conv: da.Conversation) -> None:
    assert sorted(conv.speakers) == sorted(VOICES3)
    assert {t.speaker for t in conv.turns} == set(conv.speakers)
    assert len(conv.turns) == N_TURNS and all(t.text.endswith(".") for t in conv.turns)
    assert conv.wav.dtype == np.float32 and conv.wav.ndim == 1
    assert conv.duration == len(conv.wav) / SAMPLE_RATE


def test_timing_is_ordered_with_gaps_and_edges(conv: da.Conversation) -> None:
    turns = conv.turns
    assert da.EDGE_S[0] - SAMPLE <= turns[0].start <= da.EDGE_S[1] + SAMPLE
    assert da.EDGE_S[0] - SAMPLE <= conv.duration - turns[-1].end <= da.EDGE_S[1] + SAMPLE
    for a, b in zip(turns, turns[1:]):
        assert a.start < a.end and da.GAP_S[0] - SAMPLE <= b.start - a.end <= da.GAP_S[1] + SAMPLE


def test_truth_boundaries_are_tight(conv: da.Conversation) -> None:
    """Silence outside turns is exact zero; each turn starts and ends on a speech frame; levels match."""
    inside = np.zeros(len(conv.wav), bool)
    for turn in conv.turns:
        inside[round(turn.start * SAMPLE_RATE):round(turn.end * SAMPLE_RATE)] = True
        db = da.frame_db(_segment(conv.wav, turn.start, turn.end))
        assert db[0] > db.max() - da.TRIM_DB and db[-1] > db.max() - da.TRIM_DB
        speech_rms = np.sqrt(np.mean(10 ** (db[db > db.max() - da.TRIM_DB] / 10)))
        assert abs(20 * np.log10(speech_rms / da.TARGET_RMS)) < 1.0
    assert not conv.wav[~inside].any()


def test_same_seed_same_audio_and_bytes(conv: da.Conversation, tmp_path: Path) -> None:
    again = da.conversation(SEED, n_speakers=3, n_turns=N_TURNS, voices=VOICES3)
    assert np.array_equal(conv.wav, again.wav) and conv.turns == again.turns
    for fmt in ("flac", "ogg"):
        a = da.write_conversation(conv, tmp_path / "a", fmt)
        b = da.write_conversation(again, tmp_path / "b", fmt)
        assert a.read_bytes() == b.read_bytes()
        assert a.with_suffix(".json").read_bytes() == b.with_suffix(".json").read_bytes()


def test_other_seed_other_conversation() -> None:
    a, b = (da.conversation(seed, n_turns=2, voices=("awb", "rms")) for seed in (1, 2))
    assert [t.text for t in a.turns] != [t.text for t in b.turns]


@pytest.mark.parametrize("fmt", ["flac", "wav", "ogg", "mp3"])
def test_formats_write_and_read_back(conv: da.Conversation, tmp_path: Path, fmt: str) -> None:
    path = da.write_conversation(conv, tmp_path, fmt)
    assert path == tmp_path / f"{conv.id}.{fmt}"
    samples, rate = sf.read(path, dtype="float32")
    assert rate == SAMPLE_RATE and samples.ndim == 1
    if fmt == "mp3":  # the decoder adds its delay and padding
        assert abs(len(samples) - len(conv.wav)) < SAMPLE_RATE // 10
        return
    assert len(samples) == len(conv.wav)
    error = np.sqrt(np.mean((samples - conv.wav) ** 2)) / np.sqrt(np.mean(conv.wav ** 2))
    assert error < (1e-3 if fmt in ("flac", "wav") else 0.3)


def test_json_round_trips(conv: da.Conversation, tmp_path: Path) -> None:
    path = da.write_conversation(conv, tmp_path)
    truth = da.read_truth(path)
    assert truth == conv.truth
    assert truth.duration == conv.duration and truth.speakers == conv.speakers


def test_noise_at_requested_snr() -> None:
    clean = da.conversation(3, n_turns=3, voices=("rms", "kal16"))
    noisy = da.conversation(3, n_turns=3, voices=("rms", "kal16"), noise_snr_db=10.0)
    assert noisy.turns == clean.turns
    silence = np.ones(len(clean.wav), bool)
    for turn in clean.turns:
        silence[round(turn.start * SAMPLE_RATE):round(turn.end * SAMPLE_RATE)] = False
    speech = np.mean(clean.wav[~silence].astype(np.float64) ** 2)
    noise = np.mean(noisy.wav[silence].astype(np.float64) ** 2)
    assert 10 * np.log10(speech / noise) == pytest.approx(10.0, abs=1.5)


@pytest.mark.parametrize("n_speakers,n_turns", [(2, 8), (3, 8), (4, 8), (4, 4), (1, 3)])
def test_speaker_order_covers_everyone_and_sometimes_continues(n_speakers: int, n_turns: int) -> None:
    continued = 0
    for seed in range(100):
        order = da._speaker_order(np.random.default_rng(seed), n_speakers, n_turns)
        repeats = sum(a == b for a, b in zip(order, order[1:]))
        assert len(order) == n_turns and set(order) == set(range(n_speakers))
        assert repeats >= 1 or n_turns <= n_speakers
        continued += repeats
    if n_speakers > 1 and n_turns > n_speakers:
        assert 0.15 < continued / (100 * (n_turns - 1)) < 0.35


def test_sentences_are_clean() -> None:
    pool = da.factbook_sentences()
    assert len(pool) > 300
    assert all(da.SPEAKABLE.fullmatch(s) and da.SENTENCE_WORDS[0] <= len(s.split()) <= da.SENTENCE_WORDS[1]
               for s in pool)
    texts = da._turn_texts(np.random.default_rng(0), 50)
    sentences = [t.count(". ") + 1 for t in texts]
    assert set(sentences) <= {1, 2, 3} and 2 in sentences


@pytest.mark.parametrize("raw,clean", [
    ("The 2001 election (disputed) was won by Marc RAVALOMANANA.", "The 2001 election was won by Marc Ravalomanana."),
    ("In the 1990s \u2013 after the war \u2013 growth returned to the region.",
     "In the 1990s, after the war, growth returned to the region."),
    ("The island\u2019s \u201cgolden\u201d age lasted until the 17th century.",
     "The island's golden age lasted until the 17th century."),
    ("The USSR and NATO soon recognised BOKASSA as president.",
     "The USSR and Nato soon recognised Bokassa as president."),
    ("Area: total 622,984 sq km", None),
    ("The U.S. Government agreed to the new terms.", None),
    ("About 45% of the land is covered by forest today.", None),
    ("Short one.", None),
])
def test_clean_sentence(raw: str, clean: str | None) -> None:
    assert da.clean_sentence(raw) == clean


def test_voices_are_distinct() -> None:
    """Speaker embeddings of the five voices saying the same sentence are far apart (cosine < 0.9)."""
    import torch
    from resemblyzer import VoiceEncoder

    text = "The island was uninhabited when the first settlers arrived from the mainland."
    joe = da.PiperJoe(0)
    clips = [joe.speech(text) if voice == da.PIPER_VOICE else da.flite_speech(voice, text) for voice in da.VOICES]
    encoder = VoiceEncoder("cpu", verbose=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # torch's thread pool crawls on busy shared cores (10 s against 0.2 s)
    try:
        embeddings = np.stack([encoder.embed_utterance(da.tight_level(clip)) for clip in clips])
    finally:
        torch.set_num_threads(threads)
    cosine = embeddings @ embeddings.T
    assert cosine[~np.eye(len(da.VOICES), dtype=bool)].max() < 0.9


def test_write_corpus_cycles_speaker_counts(tmp_path: Path) -> None:
    paths = da.write_corpus(tmp_path, n=3, speakers=(2, 3), n_turns=3)
    assert [p.name for p in paths] == ["conv000.flac", "conv001.flac", "conv002.flac"]
    assert [len(da.read_truth(p).speakers) for p in paths] == [2, 3, 2]
    assert sorted(tmp_path.iterdir()) == sorted([*paths, *(p.with_suffix(".json") for p in paths)])


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unknown voices"):
        da.conversation(0, voices=("awb", "nobody"))
    with pytest.raises(ValueError, match="n_turns >= n_speakers"):
        da.conversation(0, n_speakers=3, n_turns=2)
    with pytest.raises(ValueError, match="unknown audio format"):
        da.write_conversation(da.Conversation("x", np.zeros(10, np.float32), (), ()), Path("unused"), "aac")


def test_missing_flite_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    with pytest.raises(da.TtsMissing, match="flite is not installed") as err:
        da.flite_speech("awb", "Hello there.")
    assert "apt-get install flite" in err.value.hint and err.value.exit_code == 5
