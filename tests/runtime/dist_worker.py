"""One process of the multi-process test:
`composer -n 2 -m tests.runtime.dist_worker PLAN RUN_DIR OUT_DIR [MAX_DURATION]`.

Trains through `runtime.train.train` like `python -m runtime` does, plus a recorder writing what this
rank trained on to OUT_DIR/rank<r>.json.
"""

import sys
from pathlib import Path

from composer.utils import dist

from runtime.train import train
from tests.runtime.helpers import BatchRecorder

if __name__ == "__main__":
    plan, run_dir, out, *duration = sys.argv[1:]
    recorder = BatchRecorder(Path(out) / f"rank{dist.get_global_rank()}.json")
    train(plan, run_dir=run_dir, max_duration=duration[0] if duration else None, device="cpu", callbacks=[recorder])
