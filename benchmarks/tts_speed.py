"""How fast mixc's TTS backends speak, against each engine's own bare call on the same text.

Real-time factor per core: seconds of audio made per CPU second (user + system, of this process and
of its finished children: flite runs as a child), one thread. For each backend, all in this one run:

- `mixc`: `mixc.backends.tts.load(voice, Tts(), root).speak(text)`, which adds what makes the output a
  pure function of the text (espeak: a fresh library load per call; piper: a fresh onnxruntime session
  seeded per call), resampling to 16 kHz and, for piper, sentence pauses;
- `bare`: the engine alone, kept loaded: flite as a subprocess (its WAV decoded, not resampled),
  libespeak-ng initialised once with its voice set once (22.05 kHz samples), piper's
  `PiperVoice.synthesize` on one persistent one-thread session (22.05 kHz).

Texts are the first --sentences clean Factbook sentences (the demo's), spoken as chunks of 1, 2 and 4
sentences (1x/2x/4x): the same words, in fewer and longer calls, so per-call costs show. Each cell is
the best of --repeat passes; ratio = mixc / bare (1.0 = no overhead).

    .venv/bin/python benchmarks/tts_speed.py [--sentences 8] [--repeat 3] [--backends flite,espeak,piper]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import resource
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mixc.backends import tts
from mixc.demo.audio import factbook_sentences
from mixc.ir import Tts, Voice

VOICES = {"flite": "awb", "espeak": "en-us", "piper": "joe"}
CHUNK_SIZES = (1, 2, 4)


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and its waited-for children."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


Speak = Callable[[str], tuple[np.ndarray, int]]  # text -> (samples, rate)


def bare_flite(voice: str) -> Speak:
    def speak(text: str) -> tuple[np.ndarray, int]:
        wav = subprocess.run(["flite", "-voice", voice, "-t", text, "-o", "/dev/stdout"], capture_output=True,
                             check=True).stdout
        return tts.read_wav(wav)

    return speak


class BareEspeak:
    """libespeak-ng from espeakng-loader, initialised once, its voice set once."""

    def __init__(self, voice: str):
        import espeakng_loader

        self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        tts._declare(self.lib)
        self.rate = self.lib.espeak_Initialize(tts.AUDIO_OUTPUT_SYNCHRONOUS, 0,
                                               espeakng_loader.get_data_path().encode(), tts.INITIALIZE_DONT_EXIT)
        self.chunks: list[np.ndarray] = []
        self.callback = tts.SYNTH_CALLBACK(self._collect)
        self.lib.espeak_SetSynthCallback(self.callback)
        self.lib.espeak_SetVoiceByName(tts.espeak_library().resolve(voice).encode())

    def _collect(self, wav, count: int, events) -> int:
        if count > 0:
            self.chunks.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
        return 0

    def __call__(self, text: str) -> tuple[np.ndarray, int]:
        data = text.encode()
        self.chunks = []
        self.lib.espeak_Synth(data, len(data) + 1, 0, 0, 0, tts.CHARS_UTF8, None, None)
        self.lib.espeak_Synchronize()
        return np.concatenate(self.chunks).astype(np.float32) / 32768.0, self.rate


def bare_piper(voice: str) -> Speak:
    """PiperVoice.synthesize on one persistent session (one thread, onnxruntime's default optimisations)."""
    import onnxruntime
    from piper import PiperVoice
    from piper.config import PiperConfig

    files = tts.piper_files(voice, Path("."))
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = onnxruntime.InferenceSession(str(files.model), sess_options=options, providers=["CPUExecutionProvider"])
    piper = PiperVoice(session=session, config=PiperConfig.from_dict(json.loads(files.config.read_text())))

    def speak(text: str) -> tuple[np.ndarray, int]:
        return np.concatenate([c.audio_float_array for c in piper.synthesize(text)]), piper.config.sample_rate

    return speak


BARE: dict[str, Callable[[str], Speak]] = {"flite": bare_flite, "espeak": BareEspeak, "piper": bare_piper}


def mixc_speak(backend: str) -> Speak:
    synth = tts.load(Voice(backend, VOICES[backend]), Tts(), Path("."), threads=1)
    return lambda text: (synth.speak(text), tts.SAMPLE_RATE)


def rate(speak: Speak, chunks: list[str], repeat: int) -> float:
    """Best seconds of audio per CPU second over `repeat` passes over the chunks."""
    speak(chunks[0])  # warm-up: lazy imports, first-call allocations
    best = 0.0
    for _ in range(repeat):
        start, seconds = cpu_seconds(), 0.0
        for text in chunks:
            samples, sr = speak(text)
            seconds += len(samples) / sr
        best = max(best, seconds / (cpu_seconds() - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sentences", type=int, default=8, help="Factbook sentences spoken (a multiple of 4)")
    parser.add_argument("--repeat", type=int, default=3, help="passes per cell; the best counts")
    parser.add_argument("--backends", default="flite,espeak,piper")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sentences = list(factbook_sentences()[:args.sentences])
    print(f"{len(sentences)} sentences, {sum(len(s.split()) for s in sentences)} words; audio s per CPU s, "
          f"one thread, best of {args.repeat}")
    print(f"{'backend':8s} {'chunk':>5s} {'mixc':>9s} {'bare':>9s} {'ratio':>6s}")
    for backend in args.backends.split(","):
        ours, bare = mixc_speak(backend), BARE[backend](VOICES[backend])
        for size in CHUNK_SIZES:
            chunks = [" ".join(sentences[i:i + size]) for i in range(0, len(sentences), size)]
            mine, theirs = rate(ours, chunks, args.repeat), rate(bare, chunks, args.repeat)
            print(f"{backend:8s} {size:>4d}x {mine:9.1f} {theirs:9.1f} {mine / theirs:6.2f}", flush=True)


if __name__ == "__main__":
    main()
