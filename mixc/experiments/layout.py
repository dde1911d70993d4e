"""An experiment's folder, named once: what the runner writes and the results and cost read.

    DIR/ablate.json                 the manifest: points (name, spec, IR hash, diff), seeds, tracking
    DIR/points/NAME/compiled/       the point's compile output
    DIR/points/NAME/data.json       what its speech streams are made of
    DIR/points/NAME/seed-S/         a run folder; done.json once it finished, train.log its output
"""

from __future__ import annotations

from pathlib import Path

MANIFEST, DONE, LOG, DATA_FACTS = "ablate.json", "done.json", "train.log", "data.json"


def point_folder(out: Path, name: str) -> Path:
    return out / "points" / name


def run_folder(out: Path, name: str, seed: int) -> Path:
    return point_folder(out, name) / f"seed-{seed}"
