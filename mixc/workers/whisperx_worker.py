"""ASR stage worker: whisperx (or faster-whisper) in an environment of its own, driven by files.

whisperx pins torch 2.8, which cannot share mixc's environment, so the compiler runs this script with
another python:

    PYTHON whisperx_worker.py REQUEST_DIR RESULT_DIR [--engine whisperx|faster_whisper]

It imports only the standard library, numpy and its engine, so that environment needs no mixc.
`--engine faster_whisper` runs the same protocol with faster-whisper (tests; environments without
whisperx). Nothing is downloaded: the compiler sets HF_HUB_OFFLINE, and absent weights end the run
with exit status 3 and a message naming each missing model.

Protocol, version 1 (times in seconds from the start of a recording):

REQUEST_DIR/request.json
    protocol      1
    model         a CTranslate2 Whisper model directory, or a model name found in the local HF cache
    revision      hub revision of a named model, or null
    language      ISO 639-1 code, or null: "en" for English-only models, else detected per turn
    batch, beam, threads, device ("cpu" | "cuda"), compute_type ("int8", "float16", ...)
    align_model   whisperx alignment model (torchaudio bundle or HF id), or null for whisperx's default
    items         [{"id": str, "audio": file name in REQUEST_DIR (16-bit PCM WAV, 16 kHz mono),
                    "turns": [[start, end, speaker], ...]}]
RESULT_DIR/results.jsonl
    one line per item, written as each finishes:
    {"id": str, "utterances": [{"start", "end", "speaker", "text", "words": [{"start", "end", "text", "prob"}],
                                "confidence", "language", "extra"}]}
    one utterance per turn with speech: start/end/speaker are the turn's, word times absolute.
RESULT_DIR/done.json
    {"protocol": 1, "items": n, "engine": "whisperx==X"}, written last and renamed into place: its
    absence means the run did not finish.
RESULT_DIR/error.json (exit status 3 only)
    {"kind": "missing_weights", "message": str}
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import wave
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Protocol

import numpy as np

PROTOCOL = 1
SAMPLE_RATE = 16_000
EXIT_MISSING_WEIGHTS = 3
MODEL_FILE = "model.bin"  # what makes a folder a CTranslate2 model
ENGLISH = "en"


class WeightsAbsent(Exception):
    """Model weights this worker needs are not on this machine. The worker runs in an environment of
    its own without mixc installed, so it reports this through error.json and its exit status; the
    compiler raises `mixc.errors.MissingWeights` from them."""


# ----------------------------------------------------------------------------- engines
# An engine maps one turn's audio (float32, 16 kHz) to its words [{start, end, text, prob}] with times
# relative to the clip, and the language it heard.


def _ct2_model(request: dict, model_class):
    """The request's CTranslate2 Whisper model, from a directory or the local HF cache only."""
    model, where = request["model"], request["model"]
    if not os.path.isdir(model):
        from huggingface_hub.constants import HF_HUB_CACHE

        where = f"the Hugging Face cache {HF_HUB_CACHE}"
    elif not os.path.isfile(os.path.join(model, MODEL_FILE)):
        raise WeightsAbsent(f"ASR model {model}: the directory has no {MODEL_FILE} (not a CTranslate2 model)")
    try:
        return model_class(model, device=request["device"], compute_type=request["compute_type"],
                           cpu_threads=request["threads"], local_files_only=True, revision=request["revision"])
    except (OSError, ValueError) as err:
        raise WeightsAbsent(f"ASR model '{model}': not found in {where} ({err.__class__.__name__}); download "
                             "the CTranslate2 model there on a machine with network access, or give a "
                             "local model directory") from err


class FasterWhisperEngine:
    def __init__(self, request: dict):
        from faster_whisper import WhisperModel

        self.name = f"faster-whisper=={version('faster-whisper')}"
        self.request = request
        self.model = _ct2_model(request, WhisperModel)

    def transcribe(self, clip: np.ndarray) -> tuple[list[dict], str]:
        segments, info = self.model.transcribe(
            clip, language=self.request["language"], beam_size=self.request["beam"], word_timestamps=True,
            vad_filter=False, condition_on_previous_text=False)
        words = [{"start": w.start, "end": w.end, "text": w.word.strip(), "prob": w.probability}
                 for s in segments for w in s.words]
        return words, info.language


class WhisperxEngine:
    """whisperx's batched pipeline (its own pyannote VAD, shipped inside whisperx) on each turn, then
    its wav2vec2 forced alignment for the word times."""

    def __init__(self, request: dict):
        import torch
        import whisperx.asr

        torch.set_num_threads(request["threads"])  # the VAD and the aligner run in torch
        self.name = f"whisperx=={version('whisperx')}"
        self.request = request
        self.device = request["device"]
        model = _ct2_model(request, whisperx.asr.WhisperModel)
        self.language = request["language"] or (None if model.model.is_multilingual else ENGLISH)
        if self.language:
            self._check_alignment_weights(self.language)
        self.pipeline = whisperx.load_model(
            request["model"], self.device, compute_type=request["compute_type"], language=self.language,
            model=model, vad_method="pyannote", asr_options={"beam_size": request["beam"]},
            threads=request["threads"])
        self.aligners: dict[str, tuple] = {}

    def _align_model_name(self, language: str) -> str:
        from whisperx.alignment import DEFAULT_ALIGN_MODELS_HF, DEFAULT_ALIGN_MODELS_TORCH

        name = self.request["align_model"] or DEFAULT_ALIGN_MODELS_TORCH.get(language) or \
            DEFAULT_ALIGN_MODELS_HF.get(language)
        if name is None:
            raise WeightsAbsent(f"whisperx has no default alignment model for language '{language}': set "
                                 "align_model to a local wav2vec2 CTC model")
        return name

    def _check_alignment_weights(self, language: str) -> None:
        """Fail before any work when the alignment model or nltk's sentence splitter is not local
        (whisperx would try to download them), naming each one and where it was looked for."""
        import nltk
        import torch
        import torchaudio
        from whisperx.utils import PUNKT_LANGUAGES

        missing = []
        name = self._align_model_name(language)
        if name in torchaudio.pipelines.__all__:
            bundle = getattr(torchaudio.pipelines, name)
            checkpoint = Path(torch.hub.get_dir()) / "checkpoints" / Path(bundle._path).name
            if not checkpoint.is_file():
                missing.append(f"alignment model {name} (torchaudio): no {checkpoint}; fetch it once with "
                               f"`python -c \"import torchaudio; torchaudio.pipelines.{name}.get_model()\"` "
                               "in the worker environment on a machine with network access, or copy the file there")
        else:
            from huggingface_hub import snapshot_download

            try:
                snapshot_download(name, local_files_only=True)
            except (OSError, ValueError):
                missing.append(f"alignment model {name} (Hugging Face): not in the local HF cache")
        punkt = f"tokenizers/punkt_tab/{PUNKT_LANGUAGES.get(language, 'english')}.pickle"
        try:
            nltk.data.load(punkt)
        except LookupError:
            missing.append(f"nltk data punkt_tab (sentence splitter used by the alignment): looked in "
                           f"{', '.join(nltk.data.path)}; fetch it with `python -m nltk.downloader punkt_tab`")
        if missing:
            raise WeightsAbsent("whisperx worker: missing weights: " + "; ".join(missing))

    def _aligner(self, language: str) -> tuple:
        if language not in self.aligners:
            import whisperx

            self._check_alignment_weights(language)
            self.aligners[language] = whisperx.load_align_model(
                language, self.device, model_name=self.request["align_model"], model_cache_only=True)
        return self.aligners[language]

    def transcribe(self, clip: np.ndarray) -> tuple[list[dict], str]:
        import whisperx

        result = self.pipeline.transcribe(clip, batch_size=self.request["batch"], language=self.language)
        language = result["language"]
        if not result["segments"]:
            return [], language
        model, metadata = self._aligner(language)
        aligned = whisperx.align(result["segments"], model, metadata, clip, self.device,
                                 return_char_alignments=False)
        words = [{"start": w.get("start"), "end": w.get("end"), "text": w["word"].strip(), "prob": w.get("score")}
                 for w in aligned["word_segments"]]
        return _fill_missing_times(words, len(clip) / SAMPLE_RATE), language


def _fill_missing_times(words: list[dict], duration: float) -> list[dict]:
    """Words the aligner could not place (digits, symbols) get the gap between their neighbours and
    probability 0."""
    filled: list[dict] = []
    for i, w in enumerate(words):
        if w["start"] is None or w["end"] is None:
            before = filled[-1]["end"] if filled else 0.0
            after = next((v["start"] for v in words[i + 1:] if v["start"] is not None), duration)
            w = {**w, "start": before, "end": max(before, after), "prob": 0.0}
        filled.append({**w, "prob": 0.0 if w["prob"] is None else w["prob"]})
    return filled


class Engine(Protocol):
    name: str  # the engine and its version, reported in done.json

    def transcribe(self, clip: np.ndarray) -> tuple[list[dict], str]: ...


ENGINES: dict[str, Callable[[dict], Engine]] = {"whisperx": WhisperxEngine, "faster_whisper": FasterWhisperEngine}


# ----------------------------------------------------------------------------- protocol


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as src:
        if (src.getnchannels(), src.getsampwidth(), src.getframerate()) != (1, 2, SAMPLE_RATE):
            raise ValueError(f"{path}: expected 16-bit mono {SAMPLE_RATE} Hz WAV")
        return np.frombuffer(src.readframes(src.getnframes()), dtype="<i2").astype(np.float32) / 32768.0


def utterance(turn: list, words: list[dict], language: str) -> dict | None:
    """A turn's utterance (word times made absolute and kept inside the turn), or None without words."""
    start, end, speaker = turn
    placed, floor = [], start
    for w in words:
        if not w["text"]:
            continue
        w_start = min(max(start + w["start"], floor), end)
        w_end = min(max(start + w["end"], w_start), end)
        placed.append({"start": w_start, "end": w_end, "text": w["text"],
                       "prob": round(float(w["prob"]), 4)})
        floor = w_start
    if not placed:
        return None
    return {"start": start, "end": end, "speaker": speaker, "text": " ".join(w["text"] for w in placed),
            "words": placed, "confidence": round(float(np.mean([w["prob"] for w in placed])), 4),
            "language": language, "extra": {}}


def run(request_dir: Path, result_dir: Path, engine_name: str) -> None:
    request = json.loads((request_dir / "request.json").read_text())
    if request.get("protocol") != PROTOCOL:
        raise ValueError(f"request protocol {request.get('protocol')}, this worker speaks {PROTOCOL}")
    result_dir.mkdir(parents=True, exist_ok=True)
    engine = ENGINES[engine_name](request)
    with open(result_dir / "results.jsonl", "w") as out:
        for item in request["items"]:
            wav = read_wav(request_dir / item["audio"])
            utterances = []
            for turn in item["turns"]:
                clip = wav[round(turn[0] * SAMPLE_RATE):round(turn[1] * SAMPLE_RATE)]
                if (u := utterance(turn, *engine.transcribe(clip))) is not None:
                    utterances.append(u)
            out.write(json.dumps({"id": item["id"], "utterances": utterances}) + "\n")
            out.flush()
    done = result_dir / "done.json.tmp"
    done.write_text(json.dumps({"protocol": PROTOCOL, "items": len(request["items"]), "engine": engine.name}))
    done.rename(result_dir / "done.json")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("request_dir", type=Path)
    parser.add_argument("result_dir", type=Path)
    parser.add_argument("--engine", choices=sorted(ENGINES), default="whisperx")
    args = parser.parse_args(argv)
    try:
        run(args.request_dir, args.result_dir, args.engine)
    except WeightsAbsent as err:
        args.result_dir.mkdir(parents=True, exist_ok=True)
        (args.result_dir / "error.json").write_text(json.dumps({"kind": "missing_weights", "message": str(err)}))
        print(err, file=sys.stderr)
        return EXIT_MISSING_WEIGHTS
    return 0


if __name__ == "__main__":
    sys.exit(main())
