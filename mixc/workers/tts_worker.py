"""TTS worker: the kokoro neural voice (82M parameters) in an environment of its own, driven through pipes.

kokoro pins its own torch and G2P stack (misaki, spaCy), so mixc runs this script with another python
(see `mixc.backends.tts`):

    PYTHON tts_worker.py --model DIR --voice NAME [--device cpu|cuda] [--threads N]

It imports only the standard library, numpy and its engine, so that environment needs no mixc. Unlike
the stage workers, which exchange folders once per stage, it stays up for many calls: the synthesizer
speaks one chunk per call, and loading the model for every chunk would cost more than speaking it.
Nothing is downloaded: every file is checked before kokoro is imported, and the compiler sets
HF_HUB_OFFLINE as well.

Protocol, version 1. stdout carries only the protocol (the worker's own prints and those of the
libraries it loads go to stderr); every message is one JSON line, audio follows its line as raw bytes.

start      the worker checks its files and loads the model, then writes one line:
           {"protocol": 1, "engine": "kokoro==X", "sample_rate": 24000}, or
           {"error": "missing_weights" | "missing_g2p_model", "message": str} and exits with status 3.
request    one line on stdin: {"text": str, "seed": int}. The seed is set before the model runs
           (kokoro's vocoder draws random phases and noise), so the same request gives the same audio.
reply      {"samples": n} and then n float32 little-endian samples at sample_rate, mono: kokoro's
           pieces of the text joined with `pause` seconds of silence; n = 0 when nothing was spoken.
           On a failure: {"error": "failed", "message": str} and exit status 1.
end        stdin closed: exit status 0.

Folder DIR: config.json, one *.pth state dict (kokoro-v1_0.pth), voices/NAME.pt. The voice name's first
letter chooses kokoro's G2P: a = American English, b = British English (misaki with spaCy's
en_core_web_sm, which must be installed in this environment: misaki would download it), others =
kokoro's espeak-ng G2P for that language.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from importlib.metadata import version
from pathlib import Path
from typing import BinaryIO

import numpy as np

PROTOCOL = 1
EXIT_MISSING_WEIGHTS = 3
EXIT_FAILED = 1
SAMPLE_RATE = 24_000
REPO_ID = "hexgrad/Kokoro-82M"  # only names the model family to kokoro: every file is given locally
SPACY_MODEL = "en_core_web_sm"
ENGLISH_CODES = "ab"
PAUSE_S = 0.2  # kokoro yields one piece per ~510 phonemes, cut at punctuation


class KokoroFilesAbsent(Exception):
    """A file this worker needs is not on this machine; reported through the start line and exit status 3."""

    kind = "missing_weights"


class G2pModelAbsent(KokoroFilesAbsent):
    """spaCy's English model, which misaki needs, is not installed in this environment."""

    kind = "missing_g2p_model"


def weight_files(model: Path, voice: str) -> tuple[Path, Path, Path]:
    """(config.json, the .pth weights, voices/<voice>.pt) of `model`, or KokoroFilesAbsent naming each missing one."""
    config, voice_file = model / "config.json", model / "voices" / f"{voice}.pt"
    weights = sorted(model.glob("*.pth"))
    missing = [str(p) for p in (config, voice_file) if not p.is_file()]
    if not weights:
        missing.append(f"{model}/*.pth (kokoro-v1_0.pth)")
    if missing:
        raise KokoroFilesAbsent(f"kokoro voice '{voice}': missing {', '.join(missing)}")
    return config, weights[0], voice_file


def check_g2p(voice: str) -> None:
    """misaki's English G2P downloads spaCy's en_core_web_sm when it is absent: refuse that here."""
    if voice[:1] in ENGLISH_CODES:
        import spacy.util

        if not spacy.util.is_package(SPACY_MODEL):
            raise G2pModelAbsent(f"kokoro voice '{voice}': spaCy's {SPACY_MODEL} (misaki's English G2P) is not "
                                f"installed in {sys.prefix}")


class Kokoro:
    """A kokoro pipeline for one voice, from local files only."""

    def __init__(self, model: Path, voice: str, device: str, threads: int):
        config, weights, self.voice_file = weight_files(model, voice)
        check_g2p(voice)
        import torch
        from kokoro import KModel, KPipeline

        torch.set_num_threads(threads)
        self.torch = torch
        self.model = KModel(repo_id=REPO_ID, config=str(config), model=str(weights)).to(device).eval()
        self.pipeline = KPipeline(lang_code=voice[0], repo_id=REPO_ID, model=self.model)
        self.engine = f"kokoro=={version('kokoro')}"

    def speak(self, text: str, seed: int) -> np.ndarray:
        self.torch.manual_seed(seed)
        pause = np.zeros(round(PAUSE_S * SAMPLE_RATE), np.float32)
        parts: list[np.ndarray] = []
        for result in self.pipeline(text, voice=str(self.voice_file)):
            if result.audio is not None:
                audio = result.audio.detach().cpu().numpy().astype(np.float32)
                parts += [pause, audio] if parts else [audio]
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)


def send(out: BinaryIO, message: dict, audio: np.ndarray | None = None) -> None:
    out.write((json.dumps(message) + "\n").encode())
    if audio is not None:
        out.write(audio.astype("<f4").tobytes())
    out.flush()


def serve(engine: Kokoro, requests: BinaryIO, out: BinaryIO) -> None:
    send(out, {"protocol": PROTOCOL, "engine": engine.engine, "sample_rate": SAMPLE_RATE})
    for line in requests:
        request = json.loads(line)
        audio = engine.speak(request["text"], int(request["seed"]))
        send(out, {"samples": len(audio)}, audio)


def protocol_stdout() -> BinaryIO:
    """The real stdout, kept for the protocol; file descriptor 1 then points to stderr, so that any print
    (kokoro warns on stdout) cannot corrupt the stream."""
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--voice", required=True)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    out = protocol_stdout()
    try:
        engine = Kokoro(args.model, args.voice, args.device, args.threads)
        serve(engine, sys.stdin.buffer, out)
    except KokoroFilesAbsent as err:
        send(out, {"error": err.kind, "message": str(err)})
        return EXIT_MISSING_WEIGHTS
    except Exception as err:  # reported to the compiler, which shows it with the worker's stderr
        traceback.print_exc()
        send(out, {"error": "failed", "message": f"{type(err).__name__}: {err}"})
        return EXIT_FAILED
    return 0


if __name__ == "__main__":
    sys.exit(main())
