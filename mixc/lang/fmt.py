"""Canonical printing of specs.

`format_spec` prints an AST in the one canonical layout (two-space indents, one item per line,
aligned `=` in runs of fields, at most one blank line) and keeps every comment where it was.
`print_ir` prints a lowered IR back as a complete spec with every default spelled out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel

from mixc import ir
from mixc.lang import schema, units
from mixc.lang.syntax import (
    Block,
    Comment,
    Extends,
    Field,
    Item,
    ListValue,
    MixEntry,
    Name,
    Quantity,
    String,
    Value,
)

INDENT = "  "
MAX_LINE = 100


def quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t") \
        .replace("\r", "\\r")
    return f'"{escaped}"'


def value_text(value: Value, indent: str = "") -> str:
    if isinstance(value, Quantity):
        return value.raw
    if isinstance(value, String):
        return quote(value.value)
    if isinstance(value, Name):
        return value.value
    if isinstance(value, ListValue):
        parts = [value_text(v, indent + INDENT) for v in value.items]
        flat = "[" + ", ".join(parts) + "]"
        if len(flat) + len(indent) <= MAX_LINE or not parts:
            return flat
        inner = indent + INDENT
        return "[\n" + "".join(f"{inner}{p},\n" for p in parts) + indent + "]"
    args = ", ".join((f"{a.name.value}=" if a.name else "") + value_text(a.value, indent) for a in value.args)
    return f"{value.name.value}({args})"


@dataclass
class _Comments:
    standalone: list[Comment]
    trailing: dict[tuple[int, str], Comment]  # (node id, "end" | "header") -> comment
    pos: int = 0

    def before(self, line: int) -> list[Comment]:
        out = []
        while self.pos < len(self.standalone) and self.standalone[self.pos].line < line:
            out.append(self.standalone[self.pos])
            self.pos += 1
        return out


def _all_items(items: tuple[Item, ...] | list[Item]) -> list[Item]:
    out: list[Item] = []
    for item in items:
        out.append(item)
        inner = item.items if isinstance(item, (Block, MixEntry)) and item.items else ()
        out.extend(_all_items(inner))
    return out


def _classify(text: str, items: tuple[Item, ...], comments: tuple[Comment, ...]) -> _Comments:
    lines = text.split("\n")
    everything = _all_items(items)
    standalone, trailing = [], {}
    for c in comments:
        if not lines[c.line - 1][: c.col - 1].strip():
            standalone.append(c)
            continue
        ending = [i for i in everything if i.span.end_line == c.line and i.span.end_col <= c.col]
        if ending:
            owner = max(ending, key=lambda i: (i.span.end_col, -i.span.col))
            trailing[(id(owner), "end")] = c
            continue
        opening = [i for i in everything if isinstance(i, (Block, MixEntry)) and i.span.line == c.line]
        if opening:
            trailing[(id(max(opening, key=lambda i: i.span.col)), "header")] = c
        else:
            standalone.append(c)
    return _Comments(sorted(standalone, key=lambda c: (c.line, c.col)), trailing)


class _Printer:
    def __init__(self, comments: _Comments):
        self.c = comments
        self.out: list[str] = []
        self.last_line = 0

    def emit(self, depth: int, text: str, source_line: int, first: bool) -> None:
        if not first and source_line > self.last_line + 1 and self.out and self.out[-1] != "":
            self.out.append("")
        self.out.append(INDENT * depth + text)

    def comments_before(self, line: int, depth: int, first: bool) -> bool:
        for c in self.c.before(line):
            self.emit(depth, c.text.rstrip(), c.line, first)
            first = False
            self.last_line = c.line
        return first

    def trail(self, node: Item, where: str) -> str:
        c = self.c.trailing.get((id(node), where))
        return f"  {c.text.rstrip()}" if c else ""

    def items(self, items: tuple[Item, ...] | list[Item], depth: int, first: bool = True) -> None:
        widths = _field_widths(items)
        for item in items:
            first = self.comments_before(item.span.line, depth, first)
            self.item(item, depth, first, widths.get(id(item), 0))
            first = False

    def item(self, item: Item, depth: int, first: bool, width: int) -> None:
        if isinstance(item, Extends):
            self.emit(depth, f"extends {quote(item.path.value)}" + self.trail(item, "end"), item.span.line, first)
            self.last_line = item.span.end_line
            return
        if isinstance(item, Field):
            text = f"{item.name.value.ljust(width)} = {value_text(item.value, INDENT * depth)}"
            self.emit(depth, text + self.trail(item, "end"), item.span.line, first)
            self.last_line = item.span.end_line
            return
        if isinstance(item, MixEntry):
            head = f"{item.share.raw} {item.name.value}"
            if item.items is None:
                self.emit(depth, head + self.trail(item, "end"), item.span.line, first)
                self.last_line = item.span.end_line
                return
            self.body(item, head, item.items, depth, first)
            return
        head = item.name.value + (f" {item.label.value}" if item.label else "") + \
            (f" : {item.kind.value}" if item.kind else "")
        self.body(item, head, item.items, depth, first)

    def body(self, node: Block | MixEntry, head: str, items: tuple[Item, ...], depth: int, first: bool) -> None:
        has_inner_comment = self.c.pos < len(self.c.standalone) and \
            self.c.standalone[self.c.pos].line < node.span.end_line
        if not items and not has_inner_comment:
            empty = f"{head} {{}}" + self.trail(node, "header") + self.trail(node, "end")
            self.emit(depth, empty, node.span.line, first)
            self.last_line = node.span.end_line
            return
        self.emit(depth, f"{head} {{" + self.trail(node, "header"), node.span.line, first)
        self.last_line = node.span.line
        self.items(items, depth + 1)
        self.comments_before(node.span.end_line, depth + 1, False)
        self.out.append(INDENT * depth + "}" + self.trail(node, "end"))
        self.last_line = node.span.end_line


def _field_widths(items: tuple[Item, ...] | list[Item]) -> dict[int, int]:
    """Runs of consecutive single-line fields share one `=` column."""
    widths: dict[int, int] = {}
    run: list[Field] = []

    def close() -> None:
        width = max((len(f.name.value) for f in run), default=0)
        for f in run:
            widths[id(f)] = width
        run.clear()

    prev_end = None
    for item in items:
        adjacent = prev_end is not None and item.span.line <= prev_end + 1
        if isinstance(item, Field) and (not run or adjacent) and item.span.line == item.span.end_line:
            run.append(item)
        else:
            close()
            if isinstance(item, Field) and item.span.line == item.span.end_line:
                run.append(item)
        prev_end = item.span.end_line
    close()
    return widths


def format_spec(text: str, items: tuple[Item, ...], comments: tuple[Comment, ...]) -> str:
    printer = _Printer(_classify(text, items, comments))
    printer.items(items, 0)
    printer.comments_before(10 ** 9, 0, not printer.out)
    return "\n".join(printer.out).rstrip() + "\n" if printer.out else ""


# ------------------------------------------------------------------------------- IR -> spec text


def _unit_text(value: Any, unit: ir.Unit) -> str:
    return {
        ir.Unit.DURATION: units.format_duration, ir.Unit.COUNT: units.format_count,
        ir.Unit.PERCENT: units.format_percent, ir.Unit.FREQUENCY: units.format_hertz,
        ir.Unit.BYTES: units.format_bytes, ir.Unit.NUMBER: units.format_number,
    }[unit](value)


def _scalar(value: Any, ann: Any) -> str:
    base, markers = schema.split(ann)
    if value is None:
        return "none"
    args = schema.union_args(base)
    if args is not None:
        options = [a for a in args if a is not type(None)]
        if all(schema.is_model(schema.split(a)[0]) for a in options):
            return _call(value)
        for option in options:
            text = _scalar(value, option)
            if _fits(value, option):
                return text
        return _scalar(value, options[0])
    if schema.marker(markers, ir.Files) is not None:
        return "[" + ", ".join(quote(v) for v in value) + "]"
    if schema.marker(markers, ir.FilePath) is not None:
        return quote(value)
    unit = schema.marker(markers, ir.Unit)
    if unit is not None:
        return _unit_text(value, unit)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return units.format_number(value)
    if isinstance(value, tuple):
        inner = schema.split(base)[0]
        item_anns: tuple[Any, ...] = getattr(inner, "__args__", ())
        if len(item_anns) == 2 and item_anns[1] is Ellipsis:
            item_anns = (item_anns[0],) * len(value)
        return "[" + ", ".join(_scalar(v, a) for v, a in zip(value, item_anns)) + "]"
    if isinstance(value, str):
        plain = schema.literal_values(base) is not None or schema.marker(markers, ir.Ref) is not None
        return value if plain and _bare(value) else quote(value)
    raise TypeError(f"cannot print {value!r}")


def _bare(text: str) -> bool:
    """Whether a word prints without quotes: a name, or a token the lexer reads as one (`3b`)."""
    return text.isidentifier() or bool(re.fullmatch(r"[0-9][0-9_]*[A-Za-z]+", text))


def _fits(value: Any, ann: Any) -> bool:
    base, _ = schema.split(ann)
    if base is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if base is float:
        return isinstance(value, float)
    return True


def _call(model: BaseModel) -> str:
    disc = schema.variant_field(type(model))
    name = getattr(model, disc)
    params = [(n, getattr(model, n)) for n in type(model).model_fields if n != disc]
    if not params:
        return name
    args = ", ".join(f"{n}={_scalar(v, _ann(type(model), n))}" for n, v in params)
    return f"{name}({args})"


def _ann(model: type[BaseModel], name: str) -> Any:
    info = model.model_fields[name]
    return Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation


def _model_lines(model: BaseModel, depth: int) -> list[str]:
    pad = INDENT * depth
    lines: list[str] = []
    table = schema.slots(type(model))
    fields = [(kw, s) for kw, s in table.items() if s.kind == "value" and s.field != schema.discriminator(type(model))]
    width = max((len(kw) for kw, _ in fields), default=0)
    for kw, slot in fields:
        lines.append(f"{pad}{kw.ljust(width)} = {_scalar(getattr(model, slot.field), slot.annotation)}")
    for kw, slot in table.items():
        value = getattr(model, slot.field)
        if slot.kind == "block":
            label = f" {getattr(value, slot.variant)}" if slot.variant else ""
            lines += _block_lines(f"{kw}{label}", value, depth)
        elif slot.kind == "named":
            entries = value.items() if isinstance(value, dict) else \
                [(n, getattr(value, n)) for n in type(value).model_fields]
            for name, item in entries:
                disc = schema.discriminator(type(item))
                kind = f" : {getattr(item, disc)}" if disc else ""
                lines += _block_lines(f"{kw} {name}{kind}", item, depth)
        elif slot.kind == "mixture":
            lines += [f"{pad}mixture {{", *_mixture_lines(value, depth + 1), f"{pad}}}"]
    return lines


def _block_lines(head: str, model: BaseModel, depth: int) -> list[str]:
    pad = INDENT * depth
    inner = _model_lines(model, depth + 1)
    return [f"{pad}{head} {{}}"] if not inner else [f"{pad}{head} {{", *inner, f"{pad}}}"]


def _mixture_lines(group: ir.MixGroup, depth: int) -> list[str]:
    pad = INDENT * depth
    lines = []
    for m in group.members:
        share = units.format_percent(m.share)
        if isinstance(m, ir.MixLeaf):
            lines.append(f"{pad}{share} {m.name}")
        else:
            lines += [f"{pad}{share} {m.name} {{", *_mixture_lines(m, depth + 1), f"{pad}}}"]
    return lines


def print_ir(spec: ir.Spec, header: str | None = None) -> str:
    lines = [f"# {line}" for line in (header or "").splitlines()]
    body = _model_lines(spec, 0)
    body = [line for line in body if not line.startswith("version")]
    return "\n".join(lines + body) + "\n"
