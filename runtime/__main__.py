"""`python -m runtime PLAN`: the training entry Composer's launcher runs in every process.

    composer -n 2 -m runtime plan.json --run-dir runs/a --max-duration 20ba
    composer -n 8 --world_size 16 --node_rank K --master_addr HOST --master_port 29500 \
        -m runtime s3://bucket/out/plan.json --checkpoints s3://bucket/runs/a   (on each node K)
"""

from __future__ import annotations

import argparse

from runtime.train import leave_dist, train


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m runtime", description="Train a SpeechLM on a compiled plan.")
    parser.add_argument("plan",
                        help="plan.json written by `mixc compile` (mix.lock beside it), or its s3:// / gs:// URL")
    parser.add_argument("--run-dir", help="checkpoints and metrics (default: runs/<run name> beside the plan)")
    parser.add_argument("--max-duration", help="override the plan's steps, e.g. 20ba or 1ep")
    parser.add_argument("--device", choices=("cpu", "gpu"), help="default: gpu when available")
    parser.add_argument("--data-cache", help="for a plan URL: the local folder its shards stream into (one per node)")
    parser.add_argument("--checkpoints", help="also upload checkpoints to this s3:// / gs:// URL, and resume from "
                        "it when the run folder has none (every node of a multi-node run finds them there)")
    args = parser.parse_args(argv)
    train(args.plan, run_dir=args.run_dir, max_duration=args.max_duration, device=args.device,
          data_cache=args.data_cache, checkpoints=args.checkpoints)
    leave_dist()  # not on failure: a rank that raised exits, and the launcher stops the others


if __name__ == "__main__":
    main()
