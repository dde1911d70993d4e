"""How fast and how good is the audio tokenizer: the `tiny` FSQ model against the k-means baseline.

Setup: factbook sentences voiced by Debian flite (4 voices, 16 kHz), split into training and
held-out clips. Then, all in this one process and run:

- training: `train_fsq(levels, "tiny", --steps)` and `train_kmeans(--codebook)` on the training
  clips with `--train-threads` torch threads; wall and CPU seconds (user + system of the process);
- quality on the held-out clips: normalised-log-mel L1 of the reconstruction (FSQ decoder; k-means
  centroid) against predicting the mean, CTC nats/character and greedy CER (FSQ), code usage;
- encode throughput with 1 and 2 torch threads: seconds of audio per wall second and per CPU
  second (= per core busy), best of --repeat passes over the held-out clips.

CPU seconds make the per-core figures meaningful on a shared machine, where wall time is not.

    .venv/bin/python benchmarks/audio_tokenizer_speed.py [--train-clips 48] [--held-out 12] [--steps 600]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from mixc.audio_tokenizer import AudioTokenizer, Clip, evaluate, train_fsq, train_kmeans
from mixc.demo.audio import read_sentences

LEVELS = (8, 5, 5, 5)
ENCODE_THREADS = (1, 2)
QUALITY_KEYS = ("recon_l1", "recon_mean_baseline", "recon_vs_mean", "ctc", "cer", "usage_perplexity",
                "usage_share", "tokens_per_second")


def timed(fn: Callable[[], object]) -> tuple[object, float, float]:
    """(result, wall seconds, CPU seconds of this process) of fn()."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def encode_rates(tok: AudioTokenizer, clips: list[Clip], threads: int, repeat: int) -> tuple[float, float]:
    """Best (audio s per wall s, audio s per CPU s) of `repeat` encodes of `clips` on `threads` threads."""
    torch.set_num_threads(threads)
    wavs = [c.wav for c in clips]
    seconds = sum(c.seconds for c in clips)
    tok.encode(wavs[:1])  # warm-up: first-call allocations and kernels
    runs = [timed(lambda: tok.encode(wavs))[1:] for _ in range(repeat)]
    return seconds / min(w for w, _ in runs), seconds / min(c for _, c in runs)


def show(name: str, metrics: dict[str, float]) -> None:
    print(f"  {name:8s} " + "  ".join(f"{k}={metrics[k]:.3f}" for k in QUALITY_KEYS if k in metrics))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-clips", type=int, default=48, help="flite clips to train on (~5.7 s each)")
    parser.add_argument("--held-out", type=int, default=12, help="flite clips to evaluate and encode")
    parser.add_argument("--steps", type=int, default=600, help="FSQ training steps (the spec default is 600)")
    parser.add_argument("--codebook", type=int, default=1000, help="k-means clusters (1000 = FSQ [8,5,5,5])")
    parser.add_argument("--train-threads", type=int, default=1, help="torch threads while training")
    parser.add_argument("--repeat", type=int, default=3, help="encode passes per measurement (best kept)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    clips = [Clip(wav, text) for wav, text in read_sentences(args.train_clips + args.held_out)]
    train, held = clips[: args.train_clips], clips[args.train_clips:]
    print(f"audio: {len(train)} training clips, {sum(c.seconds for c in train):.0f} s; "
          f"{len(held)} held-out clips, {sum(c.seconds for c in held):.0f} s")

    torch.set_num_threads(args.train_threads)
    (fsq, fsq_train), fsq_wall, fsq_cpu = timed(
        lambda: train_fsq(LEVELS, "tiny", args.steps, train, args.seed, device="cpu"))
    (km, _), km_wall, km_cpu = timed(lambda: train_kmeans(args.codebook, train, args.seed))
    print(f"training ({args.train_threads} thread(s)):")
    print(f"  fsq tiny {args.steps} steps: {fsq_wall:.1f} s wall, {fsq_cpu:.1f} s CPU "
          f"({fsq_train['step_seconds'] * 1000:.0f} ms/step wall), {fsq_train['parameters'] / 1e3:.0f}k params "
          f"({fsq_train['encoder_parameters'] / 1e3:.0f}k encode), last-quarter train recon "
          f"{fsq_train['train_recon_l1']:.3f}, ctc {fsq_train.get('train_ctc', float('nan')):.3f}")
    print(f"  kmeans {args.codebook}: {km_wall:.1f} s wall, {km_cpu:.1f} s CPU")

    fsq_quality, km_quality = evaluate(fsq, held), evaluate(km, held)
    print("held-out quality (normalised log-mel L1; mean baseline predicts the training mean):")
    show("fsq", fsq_quality)
    show("kmeans", km_quality)

    print("encode throughput (s of audio per s):")
    rates = {}
    for threads in ENCODE_THREADS:
        for name, tok in (("fsq", fsq), ("kmeans", km)):
            wall_rate, cpu_rate = encode_rates(tok, held, threads, args.repeat)
            rates[name, threads] = cpu_rate
            print(f"  {name:8s} threads={threads}: {wall_rate:8.0f} per wall s, {wall_rate / threads:8.0f} per wall s "
                  f"per thread, {cpu_rate:8.0f} per CPU s")

    print("ratios:")
    print(f"  fsq recon / mean baseline     {fsq_quality['recon_vs_mean']:.3f}")
    print(f"  kmeans recon / mean baseline  {km_quality['recon_vs_mean']:.3f}")
    print(f"  fsq recon / kmeans recon      {fsq_quality['recon_l1'] / km_quality['recon_l1']:.3f}")
    for threads in ENCODE_THREADS:
        ratio = rates["fsq", threads] / rates["kmeans", threads]
        print(f"  fsq / kmeans encode per CPU s, {threads} thread(s): {ratio:.3f}")
    print(f"  fsq training CPU s per second of training audio: {fsq_cpu / sum(c.seconds for c in train):.3f}")


if __name__ == "__main__":
    main()
