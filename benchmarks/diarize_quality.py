"""How good and how fast is speaker diarization on conversations with known turns.

Setup: `mixc.demo.audio` conversations (flite voices awb, rms, slt, kal16 and piper's joe; 0.3-0.8 s
between turns, about one turn in five continuing the same speaker), 2, 3 and 4 speakers clean, the same
counts under pink noise at each --snr, and single-speaker recordings. Each recording goes through
silero VAD (`Vad()` defaults), then the diarizer under test with one thread; only `turns()` is timed.

Scores (`mixc.demo.scoring`): DER with a +-0.25 s collar around reference boundaries (overlap scored), and
whether the number of speakers found is right. xRT = seconds of audio per wall second of `turns()`
(per CPU second as well, which is what counts on a shared machine).

    .venv/bin/python benchmarks/diarize_quality.py [--per-count 8] [--noisy 2] [--snr 15 10] [--ones 4]
        [--backend embedding|pyannote] [--model PATH]
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass

import numpy as np

from mixc.audio import SAMPLE_RATE
from mixc.backends.diarize import load as load_diarizer
from mixc.backends.vad import load as load_vad
from mixc.demo.audio import conversation, corpus_seed
from mixc.demo.scoring import der, speaker_count_correct
from mixc.ir import Diarize, Vad

COUNTS = (2, 3, 4)
TURNS = 8


@dataclass(frozen=True)
class Case:
    speakers: int
    snr: float | None
    seed: int


@dataclass(frozen=True)
class Result:
    case: Case
    der: float
    found: int
    count_ok: bool
    seconds: float
    wall: float
    cpu: float


def cases(per_count: int, noisy: int, snrs: list[float], ones: int, seed: int) -> list[Case]:
    """Clean conversations per speaker count, `noisy` per count at each SNR, then single speakers;
    every case draws its own conversation seed."""
    plan = [(n, None) for n in COUNTS for _ in range(per_count)]
    plan += [(n, snr) for snr in snrs for n in COUNTS for _ in range(noisy)]
    plan += [(1, None)] * ones
    return [Case(n, snr, corpus_seed(seed, i)) for i, (n, snr) in enumerate(plan)]


def run(case: Case, vad, diarizer) -> Result:
    conv = conversation(case.seed, case.speakers, TURNS if case.speakers > 1 else 4, case.snr)
    regions = vad.regions(conv.wav)
    wall, cpu = time.perf_counter(), time.process_time()
    turns = diarizer.turns(conv.wav, regions)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return Result(case, der(conv.turns, turns), len({t.speaker for t in turns}),
                  speaker_count_correct(conv.turns, turns), len(conv.wav) / SAMPLE_RATE, wall, cpu)


def summary(label: str, results: list[Result]) -> str:
    if not results:
        return f"{label:<14} (none)"
    seconds = sum(r.seconds for r in results)
    return (f"{label:<14} n={len(results):<3} DER mean {np.mean([r.der for r in results]):.3f} "
            f"median {np.median([r.der for r in results]):.3f} max {max(r.der for r in results):.3f}  "
            f"count {np.mean([r.count_ok for r in results]):.0%}  "
            f"xRT {seconds / sum(r.wall for r in results):.0f} wall, {seconds / sum(r.cpu for r in results):.0f} CPU")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--per-count", type=int, default=8, help="clean conversations per speaker count (2, 3, 4)")
    parser.add_argument("--noisy", type=int, default=2, help="noisy conversations per speaker count and SNR")
    parser.add_argument("--snr", type=float, nargs="*", default=[15.0, 10.0], help="pink-noise SNRs in dB")
    parser.add_argument("--ones", type=int, default=4, help="single-speaker recordings")
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--backend", choices=("embedding", "pyannote"), default="embedding")
    parser.add_argument("--model", default=None, help="pyannote: a local pipeline folder or a cached hub id")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    vad = load_vad(Vad())
    diarizer = load_diarizer(Diarize(backend=args.backend, model=args.model), threads=1)
    results = []
    for case in cases(args.per_count, args.noisy, args.snr, args.ones, args.seed):
        result = run(case, vad, diarizer)
        results.append(result)
        print(f"{case.speakers} speakers  snr {str(case.snr):<5} seed {case.seed:<20} {result.seconds:5.1f} s  "
              f"DER {result.der:.3f}  found {result.found}  xRT {result.seconds / result.wall:.0f}", flush=True)
    print()
    for n in (1, *COUNTS):
        print(summary(f"{n} spk clean", [r for r in results if r.case.speakers == n and r.case.snr is None]))
    for snr in args.snr:
        print(summary(f"noisy {snr:g} dB", [r for r in results if r.case.snr == snr]))
    print(summary("clean 2-4 spk", [r for r in results if r.case.snr is None and r.case.speakers > 1]))
    print(summary("all", results))


if __name__ == "__main__":
    main()
