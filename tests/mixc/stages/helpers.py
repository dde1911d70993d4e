"""Run one stage directly on hand-made inputs."""

from __future__ import annotations

from pathlib import Path

from mixc.build.cache import Items
from mixc.lang.lower import load
from mixc.plan.dag import stages
from mixc.stages import REGISTRY
from mixc.stages.base import Context, Stats


def spec_of(root: Path, text: str):
    (root / "pyproject.toml").write_text("")
    (root / "s.mix").write_text(text)
    low = load(root / "s.mix")
    assert low.ok, [d.message for d in low.diagnostics]
    return low.ir


def run_stage(root: Path, spec, sid: str, inputs: dict[str, Path], name: str | None = None,
              items: Items | None = None) -> tuple[Path, Stats]:
    stage = stages(spec)[sid]
    out = root / (name or sid.replace(":", "_"))
    out.mkdir()
    ctx = Context(spec, stage, inputs, out, root, items=items)
    return out, REGISTRY[stage.kind]()(ctx)
