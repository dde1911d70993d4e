"""Run one stage directly on hand-made inputs."""

from __future__ import annotations

from pathlib import Path

from mixc.build.execute import declared
from mixc.lang.lower import load
from mixc.stages import REGISTRY, graph
from mixc.stages.base import Context, Stats
from mixc.stages.store import ItemStore


def spec_of(root: Path, text: str):
    (root / "pyproject.toml").write_text("")
    (root / "s.mix").write_text(text)
    low = load(root / "s.mix")
    assert low.ok, [d.message for d in low.diagnostics]
    return low.ir


def run_stage(root: Path, spec, sid: str, inputs: dict[str, Path], name: str | None = None,
              items: ItemStore | None = None) -> tuple[Path, Stats]:
    """The stage `sid` of the spec's graph, run on `inputs` (stage id -> artifact folder) as the
    executor runs it: its declared values only, its fingerprint computed first."""
    node = graph(spec)[sid]
    out = root / (name or sid.replace(":", "_"))
    out.mkdir()
    stage = REGISTRY[node.kind]()
    ctx = Context(node, declared(spec, node), inputs, out, root, items=items)
    ctx.fingerprint = stage.fingerprint(ctx, spec)
    return out, stage(ctx)
