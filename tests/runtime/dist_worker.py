"""One process of the multi-process tests:
`composer -n 2 -m tests.runtime.dist_worker PLAN RUN_DIR OUT_DIR [MAX_DURATION] [--checkpoints URL]`.

Trains through `runtime.train.train` like `python -m runtime` does, plus a recorder writing what this
rank trained on to OUT_DIR/rank<r>.json.
"""

import argparse
from pathlib import Path

from composer.utils import dist

from runtime.train import train
from tests.runtime.helpers import BatchRecorder

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    for name in ("plan", "run_dir", "out"):
        parser.add_argument(name)
    parser.add_argument("duration", nargs="?")
    parser.add_argument("--checkpoints")
    args = parser.parse_args()
    recorder = BatchRecorder(Path(args.out) / f"rank{dist.get_global_rank()}.json")
    train(args.plan, run_dir=args.run_dir, max_duration=args.duration, device="cpu", callbacks=[recorder],
          checkpoints=args.checkpoints)
