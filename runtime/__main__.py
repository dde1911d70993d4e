"""`python -m runtime PLAN`: the training entry Composer's launcher runs in every process.

    composer -n 2 -m runtime plan.json --run-dir runs/a --max-duration 20ba
"""

from __future__ import annotations

import argparse

from runtime.train import train


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m runtime", description="Train a SpeechLM on a compiled plan.")
    parser.add_argument("plan", help="plan.json written by `mixc compile` (mix.lock beside it)")
    parser.add_argument("--run-dir", help="checkpoints and metrics (default: runs/<run name> beside the plan)")
    parser.add_argument("--max-duration", help="override the plan's steps, e.g. 20ba or 1ep")
    parser.add_argument("--device", choices=("cpu", "gpu"), help="default: gpu when available")
    args = parser.parse_args(argv)
    train(args.plan, run_dir=args.run_dir, max_duration=args.max_duration, device=args.device)


if __name__ == "__main__":
    main()
