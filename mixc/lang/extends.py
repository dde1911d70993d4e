"""Spec loading and composition: read a spec and the chain it `extends`, report duplicates and
misplaced `extends`, and merge each extending spec's items over its base's (fields replace, blocks
merge by name, variant blocks of another kind replace). Lowering (`lower.py`) takes the merged items.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel

from mixc import ir
from mixc.lang import grid, schema
from mixc.lang.diagnostics import Diagnostic, Sources, Span, SpecError, error
from mixc.lang.syntax import Block, BodyItem, Extends, Field, Item, MixEntry, decode, head_span, parse
from mixc.lang.workspace import workspace_root


class SpecLoader:
    def __init__(self, entry: Path):
        self.root = workspace_root(entry)
        self.texts = Sources()
        self.diags: list[Diagnostic] = []
        self.files: list[str] = []
        self.grid: Block | None = None  # the entry file's `grid` block

    def load(self, display: str, stack: tuple[Path, ...], via: Span | None) -> list[BodyItem] | None:
        path = Path(display)
        real = path.resolve()
        if real in stack:
            chain = " -> ".join([p.name for p in stack[stack.index(real):]] + [real.name])
            self.diags.append(error("extends.cycle", f"extends cycle: {chain}", via,
                                    "a spec cannot extend itself, directly or through others"))
            return None
        try:
            data = path.read_bytes()
        except OSError as exc:
            what = "spec not found" if isinstance(exc, FileNotFoundError) else f"cannot read spec ({exc.strerror})"
            self.diags.append(error("extends.missing" if via else "spec.missing", f"{what}: {display}", via,
                                    "paths in `extends` are relative to the spec that names them" if via else None))
            return None
        try:
            spec = parse(decode(display, data), display)
        except SpecError as exc:
            self.texts.add(display, data.decode("utf-8", "replace"))
            self.diags.extend(exc.diagnostics)
            return None
        self.texts.add(display, spec.text)
        self.files.append(display)
        own, grids = grid.take_grid([i for i in spec.items if not isinstance(i, Extends)])
        self._keep_grid(grids, via)
        parents = [i for i in spec.items if isinstance(i, Extends)]
        self.diags.extend(_placement(spec.items))
        self.diags.extend(duplicates(own, ir.Spec))
        if not parents:
            return own
        parent = parents[0]
        base_display = os.path.normpath(os.path.join(os.path.dirname(display), parent.path.value))
        base = self.load(base_display, stack + (real,), parent.path.span)
        if base is None:
            return None
        return merge(base, own, ir.Spec)

    def _keep_grid(self, grids: list[Block], via: Span | None) -> None:
        for extra in grids[1:]:
            self.diags.append(error("name.duplicate", "duplicate block 'grid'", extra.header,
                                    "a file declares one grid; give it more axes", (("first defined here",
                                                                                     grids[0].header),)))
        if grids and via is not None:
            self.diags.append(error("grid.placement", "a grid belongs to the file that is run, not to a spec it "
                                    "extends", grids[0].header, "move the grid into the file that extends this one"))
        elif grids:
            self.grid = grids[0]

    def points(self) -> list[grid.GridPoint]:
        """The entry file's grid points (none without a grid); the grid's shape errors join the
        diagnostics."""
        if self.grid is None:
            return []
        grid_axes, diags = grid.axes(self.grid)
        self.diags.extend(diags)
        return grid.points(grid_axes) if not diags else []

    def at_point(self, items: list[BodyItem], name: str, found: list[grid.GridPoint]) -> list[BodyItem] | None:
        """The spec at one of the grid's points (`found`): its overrides merged over `items`, axis by axis."""
        point = next((p for p in found if p.name == name), None)
        if point is None:
            if self.grid is not None and not found:
                return None  # the grid's own errors say why
            known = [p.name for p in found]
            self.diags.append(error("grid.point", f"no grid point '{name}' in {self.files[0]}",
                                    self.grid.header if self.grid else None,
                                    f"its points: {', '.join(known)}" if known else "this file declares no grid"))
            return None
        for overrides in point.overrides:
            self.diags.extend(duplicates(list(overrides), ir.Spec))
            items = merge(items, list(overrides), ir.Spec)
        return items


def _placement(items: tuple[Item, ...]) -> list[Diagnostic]:
    out = []
    seen_other = False
    extends = 0
    for item in items:
        if isinstance(item, Extends):
            extends += 1
            if seen_other:
                out.append(error("extends.placement", "'extends' must come before everything else in a spec",
                                 item.span, "move it to the top of the file"))
            elif extends > 1:
                out.append(error("extends.multiple", "a spec extends at most one other spec", item.span,
                                 "chain them instead: let the base itself extend the other"))
        else:
            seen_other = True
    return out


# ----------------------------------------------------------------------- duplicates and merging


def _key(item: Item, model: type[BaseModel] | None) -> tuple:
    if isinstance(item, Field):
        return ("field", item.name.value)
    if isinstance(item, MixEntry):
        return ("entry", item.name.value)
    if isinstance(item, Block):
        slot = schema.slots(model).get(item.name.value) if model else None
        if slot is not None and slot.kind == "named":
            return ("block", item.name.value, item.label.value if item.label else None)
        return ("block", item.name.value)
    return ("other", id(item))


def _block_model(item: Block, model: type[BaseModel] | None) -> type[BaseModel] | None:
    slot = schema.slots(model).get(item.name.value) if model else None
    if slot is None:
        return None
    if slot.kind == "named":
        if not schema.named_target_is_dict(slot):  # a fixed set of labels, like `tokenizer text`
            inner = schema.slots(slot.models[0]).get(item.label.value if item.label else "")
            return inner.model_for(item.kind.value if item.kind else None) if inner else None
        return slot.model_for(item.kind.value if item.kind else None)
    if slot.kind == "block":
        label = item.label.value if item.label else None
        return slot.model_for(label) if slot.variant else slot.models[0]
    return None


def duplicates(items: Sequence[Item], model: type[BaseModel] | None) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    seen: dict[tuple, Item] = {}
    for item in items:
        key = _key(item, model)
        if key in seen:
            first = seen[key]
            what = _describe_item(item)
            out.append(error("name.duplicate", f"duplicate {what}", head_span(item),
                             "remove one of them (to change a base spec's value, use `extends`)",
                             (("first defined here", head_span(first)),)))
        else:
            seen[key] = item
        if isinstance(item, Block):
            out.extend(duplicates(item.items, _block_model(item, model)))
        if isinstance(item, MixEntry) and item.items:
            out.extend(duplicates(item.items, None))
    return out


def _describe_item(item: Item) -> str:
    if isinstance(item, Field):
        return f"field '{item.name.value}'"
    if isinstance(item, MixEntry):
        return f"mixture entry '{item.name.value}'"
    if isinstance(item, Block):
        return f"{item.name.value} '{item.label.value}'" if item.label else f"block '{item.name.value}'"
    return "item"


def merge(base: list[BodyItem], child: list[BodyItem], model: type[BaseModel] | None) -> list[BodyItem]:
    """Overlay an extending spec's items on its base's: fields replace, blocks merge by name."""
    out = list(base)
    for item in child:
        key = _key(item, model)
        at = next((i for i, old in enumerate(out) if _key(old, model) == key), None)
        if at is None:
            out.append(item)
            continue
        old = out[at]
        if isinstance(old, Block) and isinstance(item, Block) and _mergeable(old, item, model):
            sub = _block_model(old, model)
            out[at] = Block(item.name, item.label or old.label, item.kind or old.kind,
                            tuple(merge(list(old.items), list(item.items), sub)), item.span)
        else:
            out[at] = item
    return out


def _mergeable(old: Block, new: Block, model: type[BaseModel] | None) -> bool:
    slot = schema.slots(model).get(old.name.value) if model else None
    if slot is None or slot.kind == "mixture":
        return False
    if slot.kind == "block" and slot.variant and new.label and \
            (old.label is None or old.label.value != new.label.value):
        return False
    return not (new.kind and old.kind and new.kind.value != old.kind.value)
