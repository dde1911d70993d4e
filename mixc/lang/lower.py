"""Merged AST items -> IR: checks names, kinds and units, fills defaults, records every span.

Lowering never stops at the first problem: it records a diagnostic, skips the offending item and
goes on, so one run reports every error it can find.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Final, Literal, TypeVar, get_args, get_origin

from pydantic import BaseModel, ValidationError

from mixc import ir, storage
from mixc.errors import SPEC, MixcError
from mixc.ir import IrPath
from mixc.lang import schema, units
from mixc.lang.diagnostics import Diagnostic, Severity, Sources, Span, error
from mixc.lang.extends import SpecLoader
from mixc.lang.grid import split_point
from mixc.lang.syntax import Block, BodyItem, Call, Field, ListValue, MixEntry, Name, Quantity, String, Value, head_span

MIXABLE = ("audio", "text", "krist", "quest")


@dataclass(frozen=True)
class RefUse:
    path: IrPath
    name: str
    kinds: tuple[str, ...]
    span: Span


@dataclass(frozen=True)
class FileUse:
    path: IrPath
    pattern: str  # workspace-relative, or absolute
    written: str  # as the spec wrote it
    glob: bool
    span: Span


_IrSpec = ir.Spec  # in the body of Lowered, `ir` names its field, not the module


@dataclass
class Lowered:
    """The result of lowering: the IR (None if errors prevented it) and everything checks need."""

    ir: ir.Spec | None
    spans: dict[IrPath, Span]
    diagnostics: list[Diagnostic]
    texts: Sources
    files: tuple[str, ...]  # the spec files read, entry first
    root: Path
    refs: list[RefUse] = field(default_factory=list)
    file_uses: list[FileUse] = field(default_factory=list)
    failed_names: set[str] = field(default_factory=set)
    failed_paths: set[IrPath] = field(default_factory=set)
    grid_points: tuple[str, ...] = ()  # the names of the entry file's grid points (`FILE@POINT`)

    @property
    def spec(self) -> _IrSpec:
        """The IR, for code that runs only on a spec that lowered (checks, planning, compiling)."""
        if self.ir is None:
            raise RuntimeError(f"{self.files[0] if self.files else 'the spec'} did not lower to IR: "
                               "its diagnostics must be reported before anything reads the IR")
        return self.ir

    @property
    def ok(self) -> bool:
        """True when the IR is complete: no error anywhere (a partial IR is only for checking)."""
        return self.ir is not None and not any(d.severity is Severity.ERROR for d in self.diagnostics)

    def failed_under(self, prefix: IrPath) -> bool:
        """Whether lowering gave up on something at or below `prefix` (so checks there would mislead)."""
        return any(p[:len(prefix)] == prefix for p in self.failed_paths)

    def span(self, path: IrPath) -> Span | None:
        """The span of an IR path, or of its nearest ancestor that has one."""
        while path:
            if path in self.spans:
                return self.spans[path]
            path = path[:-1]
        return None


class _Failed(Enum):
    """A nested block that already reported its errors: its parent fails too, without a new one."""

    FAILED = "failed"


FAILED: Final = _Failed.FAILED
ModelT = TypeVar("ModelT", bound=BaseModel)


class _Bad(MixcError):
    """One value that cannot be lowered: reported as a diagnostic, and lowering goes on."""

    exit_code = SPEC

    def __init__(self, message: str, span: Span, hint: str | None = None, code: str = "type"):
        super().__init__(message, hint)
        self.span, self.code = span, code


def did_you_mean(name: str, candidates: list[str], noun: str = "") -> str | None:
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    if close:
        return f"did you mean '{close[0]}'?"
    if candidates and len(candidates) <= 12:
        return f"known {noun or 'names'}: {', '.join(sorted(candidates))}"
    return None


# ------------------------------------------------------------------------------ value lowering


class _Lowerer:
    def __init__(self, loader: SpecLoader):
        self.root = loader.root
        self.diags = loader.diags
        self.spans: dict[IrPath, Span] = {}
        self.refs: list[RefUse] = []
        self.file_uses: list[FileUse] = []
        self.failed_names: set[str] = set()
        self.failed_paths: set[IrPath] = set()  # blocks that fell back to defaults after errors

    def report(self, bad: _Bad) -> None:
        self.diags.append(error(bad.code, bad.message, bad.span, bad.hint))

    # blocks ---------------------------------------------------------------------------------

    def block(self, items: Sequence[BodyItem], model: type[ModelT], path: IrPath, what: str, span: Span | None,
              preset: dict | None = None) -> ModelT | _Failed:
        values: dict[str, Any] = dict(preset or {})
        table = schema.slots(model)
        for item in items:
            try:
                self.item(item, table, values, path, what)
            except _Bad as bad:
                self.report(bad)
                self.failed_paths.add(path)
        self._recover(model, values, path)
        if any(v is FAILED for v in values.values()):
            return FAILED
        built = self.construct(model, values, path, what, span)
        return FAILED if built is None else built

    def _recover(self, model: type[BaseModel], values: dict, path: IrPath) -> None:
        """Keep checking past errors: a failed block falls back to its default (its errors are
        already reported); a failed named item is left out and remembered, so references to it
        are not reported again."""
        for key, value in list(values.items()):
            if isinstance(value, dict):
                for name, item in list(value.items()):
                    if item is FAILED:
                        self.failed_names.add(name)
                        del value[name]
            elif value is FAILED and not model.model_fields[key].is_required():
                values[key] = model.model_fields[key].default
                self.failed_paths.add(path + (key,))

    def item(self, item: BodyItem, table: dict[str, schema.Slot], values: dict, path: IrPath, what: str) -> None:
        if isinstance(item, MixEntry):
            raise _Bad(f"a mixture entry ('{item.share.raw} {item.name.value}') outside `mixture`", item.span,
                       "shares go inside `mixture { ... }`", "name.misplaced")
        name = item.name.value
        slot = table.get(name)
        if slot is None:
            kind = "field" if isinstance(item, Field) else "block"
            raise _Bad(f"unknown {kind} '{name}' in {what}", item.name.span,
                       did_you_mean(name, list(table), "fields and blocks"), "name.unknown")
        if isinstance(item, Field):
            if slot.kind != "value":
                named = f" or `{name} NAME : KIND {{ ... }}`" if slot.kind == "named" else ""
                raise _Bad(f"'{name}' is a block, not a field", item.name.span, f"write `{name} {{ ... }}`" + named,
                           "type.block-expected")
            self.spans[path + (slot.field,)] = item.value.span
            values[slot.field] = self.value(item.value, slot.annotation, path + (slot.field,), name)
            return
        assert isinstance(item, Block)
        if slot.kind == "value":
            raise _Bad(f"'{name}' is a field, not a block", item.name.span, f"write `{name} = <value>`",
                       "type.field-expected")
        if slot.kind == "mixture":
            values[slot.field] = self.mixture(item, path + (slot.field,))
        elif slot.kind == "named":
            self.named(item, slot, values, path)
        else:
            values[slot.field] = self.variant_block(item, slot, path + (slot.field,), name)

    def variant_block(self, item: Block, slot: schema.Slot, path: IrPath, what: str) -> BaseModel | _Failed:
        if item.kind is not None:
            raise _Bad(f"'{item.name.value}' takes no ': kind'", item.kind.span,
                       f"write `{item.name.value} {{ ... }}`" if not slot.variant else
                       f"write `{item.name.value} {item.kind.value} {{ ... }}`", "name.unexpected-kind")
        self.spans[path] = item.header
        if slot.variant is None:
            if item.label is not None:
                raise _Bad(f"'{item.name.value}' takes no label", item.label.span,
                           f"write `{item.name.value} {{ ... }}`", "name.unexpected-label")
            return self.block(item.items, slot.models[0], path, what, item.span)
        label = item.label.value if item.label else None
        model = slot.model_for(label) if label else self._default_variant(slot)
        if model is None:
            choices = slot.variant_names()
            raise _Bad(f"unknown {item.name.value} kind '{label}'", item.label.span if item.label else item.name.span,
                       did_you_mean(label or "", choices, "kinds") or f"one of: {', '.join(choices)}",
                       "name.unknown-variant")
        return self.block(item.items, model, path, f"{what} {model.model_fields[slot.variant].default}", item.span)

    @staticmethod
    def _default_variant(slot: schema.Slot) -> type[BaseModel] | None:
        """A variant block written without a label uses the union's first member (the default)."""
        return slot.models[0]

    def named(self, item: Block, slot: schema.Slot, values: dict, path: IrPath) -> None:
        word = slot.keyword
        if item.label is None:
            raise _Bad(f"'{word}' needs a name", item.name.span, f"write `{word} NAME : KIND {{ ... }}`",
                       "name.missing")
        label = item.label.value
        if not schema.named_target_is_dict(slot):  # fixed labels, e.g. `tokenizer text : bpe`
            holder = slot.models[0]
            inner = schema.slots(holder).get(label)
            if inner is None:
                raise _Bad(f"unknown {word} '{label}'", item.label.span,
                           did_you_mean(label, list(schema.slots(holder)), f"{word}s"), "name.unknown")
            sub_path = path + (slot.field, label)
            model, _ = self._pick_kind(item, label, inner, f"{word} {label}")
            self.spans[sub_path] = item.header
            built = self.block(item.items, model, sub_path, f"{word} {label}", item.span)
            current = values.get(slot.field) or {}
            values[slot.field] = {**current, label: built}
            return
        sub_path = path + (slot.field, label)
        self.spans[sub_path] = item.header
        if slot.variant is None:
            model = slot.models[0]
            preset = {}
            if item.kind is not None and "kind" in model.model_fields:
                allowed = schema.literal_values(model.model_fields["kind"].annotation) or ()
                if item.kind.value not in allowed:
                    raise _Bad(f"unknown {word} kind '{item.kind.value}'", item.kind.span,
                               did_you_mean(item.kind.value, list(allowed), "kinds"), "name.unknown-variant")
                preset["kind"] = item.kind.value
                self.spans[sub_path + ("kind",)] = item.kind.span
            built = self.block(item.items, model, sub_path, f"{word} '{label}'", item.span, preset)
        else:
            model, kind = self._pick_kind(item, label, slot, f"{word} '{label}'")
            built = self.block(item.items, model, sub_path, f"{word} '{label}' ({kind})", item.span)
        values.setdefault(slot.field, {})[label] = built

    def _pick_kind(self, item: Block, label: str, slot: schema.Slot, what: str) -> tuple[type[BaseModel], str]:
        """The model for the kind a named block gives (`source web : audio`), and that kind."""
        choices = slot.variant_names()
        if item.kind is None:
            example = choices[0] if choices else "KIND"
            raise _Bad(f"{what} needs a kind", item.header,
                       f"write `{item.name.value} {label} : {example} {{ ... }}`; kinds: {', '.join(choices)}",
                       "name.missing-kind")
        model = slot.model_for(item.kind.value)
        if model is None:
            raise _Bad(f"unknown kind '{item.kind.value}' for {what}", item.kind.span,
                       did_you_mean(item.kind.value, choices, "kinds"), "name.unknown-variant")
        return model, item.kind.value

    def construct(self, model: type[ModelT], values: dict, path: IrPath, what: str, span: Span | None) -> ModelT | None:
        missing = [n for n, info in model.model_fields.items() if info.is_required() and values.get(n) is None]
        if missing:
            self.diags.append(error("name.missing-field", f"{what} needs '{missing[0]}'", span,
                                    f"add `{missing[0]} = ...` inside the block"))
            return None
        if any(v is None and model.model_fields[k].is_required() for k, v in values.items()):
            return None
        try:
            return model(**{k: v for k, v in values.items() if v is not None or _nullable(model, k)})
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = tuple(str(x) for x in first["loc"])
            where = self.spans.get(path + loc[:1], span)
            self.diags.append(error("type.invalid", f"{what}: {first['msg']}", where))
            return None

    # mixture --------------------------------------------------------------------------------

    def mixture(self, block: Block, path: IrPath) -> ir.MixGroup | _Failed:
        extra = block.label or block.kind
        if extra is not None:
            raise _Bad("'mixture' takes no name or kind", extra.span,
                       "write `mixture { 60% text  40% speech { ... } }`", "name.unexpected-label")
        self.spans[path] = block.header
        members = self.entries(block.items, path)
        return ir.MixGroup(name="mixture", share=1.0, members=members) if members is not None else FAILED

    def entries(self, items: tuple[BodyItem, ...], path: IrPath) -> tuple[ir.MixLeaf | ir.MixGroup, ...] | None:
        out: list[ir.MixLeaf | ir.MixGroup] = []
        ok = True
        for item in items:
            if not isinstance(item, MixEntry):
                self.report(_Bad("a mixture holds entries like `60% name`", head_span(item),
                                 "write a share then a source, generator or group name: `40% speech { ... }`",
                                 "mixture.entry-expected"))
                ok = False
                continue
            name = item.name.value
            sub = path + (name,)
            self.spans[sub] = item.name.span
            self.spans[sub + ("share",)] = item.share.span
            try:
                share = self._decimal(item.share, ir.Unit.PERCENT, "share")
            except _Bad as bad:
                self.report(bad)
                ok = False
                continue
            if item.items is None:
                self.refs.append(RefUse(sub, name, MIXABLE, item.name.span))
                out.append(ir.MixLeaf(name=name, share=float(share)))
            else:
                members = self.entries(item.items, sub)
                if members is None:
                    ok = False
                    continue
                out.append(ir.MixGroup(name=name, share=float(share), members=members))
        return tuple(sorted(out, key=lambda m: m.name)) if ok else None

    # values ---------------------------------------------------------------------------------

    def value(self, value: Value, ann: Any, path: IrPath, what: str) -> Any:
        base, markers = schema.split(ann)
        args = schema.union_args(base)
        if args is not None:
            return self._union(value, args, markers, path, what)
        unit = schema.marker(markers, ir.Unit)
        if schema.marker(markers, ir.Files) is not None:
            return self._files(value, path, glob=True)
        if schema.marker(markers, ir.FilePath) is not None:
            return self._files(value, path, glob=False)[0]
        ref = schema.marker(markers, ir.Ref)
        if ref is not None:
            name = self._name(value, what)
            self.refs.append(RefUse(path, name, ref.kinds, value.span))
            return name
        origin = get_origin(base)
        if origin is Literal:
            return self._literal(value, get_args(base), what)
        if origin is tuple:
            return self._tuple(value, get_args(base), path, what)
        if schema.is_model(base) or schema.models_of(base):
            return self._call_variant(value, schema.models_of(base), path, what)
        if unit is not None:
            return self._unit(value, unit, base, what)
        if base is bool:
            if isinstance(value, Name) and value.value in ("true", "false"):
                return value.value == "true"
            raise _Bad(f"'{what}' takes true or false, found {_show(value)}", value.span, None, "type.bool")
        if base is int:
            return self._unit(value, ir.Unit.NUMBER, int, what)
        if base is float:
            return self._unit(value, ir.Unit.NUMBER, float, what)
        if base is str:
            if isinstance(value, (String, Name)):
                return value.value
            if isinstance(value, Quantity):
                return value.raw
            raise _Bad(f"'{what}' takes a string, found {_show(value)}", value.span, 'write "..."', "type.string")
        raise _Bad(f"cannot lower '{what}'", value.span, None, "type.unsupported")

    def _union(self, value: Value, args: tuple, markers: list, path: IrPath, what: str) -> Any:
        options = [a for a in args if a is not type(None)]
        if type(None) in args and isinstance(value, Name) and value.value == "none":
            return None
        if all(schema.is_model(schema.split(a)[0]) for a in options):
            return self._call_variant(value, [schema.split(a)[0] for a in options], path, what)
        failures: list[_Bad] = []
        for option in options:
            try:
                return self.value(value, option, path, what)
            except _Bad as bad:
                failures.append(bad)
        families = [schema.marker(schema.split(o)[1], ir.Unit) for o in options]
        if len(failures) > 1 and all(families):
            names = " or ".join(dict.fromkeys(units.FAMILY_NAMES[f] for f in families))
            found = units.describe(value.raw) if isinstance(value, Quantity) else _show(value)
            examples = "; ".join(f"{units.FAMILY_NAMES[f]}: {units.EXAMPLES[f]}" for f in dict.fromkeys(families))
            raise _Bad(f"'{what}' takes {names}, found {found}", value.span, examples, "type.unit")
        raise failures[0]

    def _decimal(self, value: Value, unit: ir.Unit, what: str) -> Decimal:
        if not isinstance(value, Quantity):
            raise _Bad(f"'{what}' takes {units.FAMILY_NAMES[unit]} ({units.EXAMPLES[unit]}), found {_show(value)}",
                       value.span, None, "type.unit")
        try:
            return units.convert(value.raw, unit)
        except units.UnitError as exc:
            raise _Bad(f"'{what}': {exc}", value.span, exc.hint, "type.unit") from None

    def _unit(self, value: Value, unit: ir.Unit, base: Any, what: str) -> Any:
        number = self._decimal(value, unit, what)
        if base is int:
            try:
                return units.as_int(number, value.raw)  # type: ignore[union-attr]
            except units.UnitError as exc:
                raise _Bad(f"'{what}': {exc}", value.span, exc.hint, "type.integer") from None
        return float(number)

    def _name(self, value: Value, what: str) -> str:
        if isinstance(value, (Name, String)):
            return value.value
        raise _Bad(f"'{what}' takes a name, found {_show(value)}", value.span, None, "type.name")

    def _literal(self, value: Value, allowed: tuple, what: str) -> Any:
        text = value.raw if isinstance(value, Quantity) else value.value if isinstance(value, (Name, String)) else None
        for option in allowed:  # Literal[1] is written `1`: compare as written
            if text is not None and text == str(option):
                return option
        if text is None:
            raise _Bad(f"'{what}' takes one of {', '.join(map(str, allowed))}; found {_show(value)}", value.span,
                       None, "type.choice")
        noun = "backend" if what == "backend" else "value"
        code = "backend.unknown" if what == "backend" else "type.choice"
        hint = did_you_mean(text, [str(a) for a in allowed])
        known = f"; known: {', '.join(map(str, allowed))}"
        raise _Bad(f"unknown {noun} '{text}' for '{what}'{known}", value.span,
                   hint if hint and hint.startswith("did") else None, code)

    def _tuple(self, value: Value, args: tuple, path: IrPath, what: str) -> tuple:
        items = value.items if isinstance(value, ListValue) else (value,)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(self.value(v, args[0], path, what) for v in items)
        if len(items) != len(args):
            raise _Bad(f"'{what}' takes a list of {len(args)} values, found {len(items)}", value.span,
                       None, "type.arity")
        return tuple(self.value(v, a, path, what) for v, a in zip(items, args))

    def _files(self, value: Value, path: IrPath, glob: bool) -> tuple[str, ...]:
        items = value.items if isinstance(value, ListValue) and glob else (value,)
        out = []
        for v in items:
            if not isinstance(v, String):
                raise _Bad(f"paths are strings, found {_show(v)}", v.span, 'write "path/to/files/*.flac"', "type.path")
            if not v.value:
                raise _Bad("empty path", v.span, None, "type.path")
            if storage.is_remote(v.value) and (not glob or path[0] == "eval"):
                raise _Bad(f"'{path[-1]}' takes local paths here, found the URL {v.value}", v.span,
                           "object storage (s3://, gs://) is read for the `files` of sources; copy this locally",
                           "type.path")
            resolved = v.value if storage.is_remote(v.value) else self._resolve(v.value, v.span.file)
            self.file_uses.append(FileUse(path, resolved, v.value, glob, v.span))
            out.append(resolved)
        return tuple(out)

    def _resolve(self, text: str, declared_in: str) -> str:
        """Paths are relative to the spec that wrote them; stored relative to the workspace root."""
        expanded = os.path.expanduser(text)
        if os.path.isabs(expanded):
            return os.path.normpath(expanded)
        absolute = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(declared_in)), expanded))
        return Path(os.path.relpath(absolute, self.root)).as_posix()

    def _call_variant(self, value: Value, models: list[type[BaseModel]], path: IrPath, what: str) -> BaseModel:
        by_name = {schema.tag(m, schema.variant_field(m)): m for m in models}
        if isinstance(value, Call):
            head = value.name
        elif isinstance(value, Name):
            head = value
        else:
            raise _Bad(f"'{what}' takes one of {', '.join(by_name)}, found {_show(value)}", value.span, None,
                       "type.choice")
        model = by_name.get(head.value)
        if model is None:
            hint = did_you_mean(head.value, list(by_name))
            raise _Bad(f"unknown {what} '{head.value}'; known: {', '.join(by_name)}", head.span,
                       hint if hint and hint.startswith("did") else None, "type.choice")
        if isinstance(value, Name):
            return self.construct_or_raise(model, {}, path, f"{what} {head.value}", value.span)
        params = [n for n in model.model_fields if n != schema.discriminator(model)]
        values: dict[str, Any] = {}
        for i, arg in enumerate(value.args):
            if arg.name is None:
                if i >= len(params):
                    raise _Bad(f"{head.value}() takes at most {len(params)} arguments", arg.span, None, "type.arity")
                key = params[i]
            else:
                key = arg.name.value
                if key not in params:
                    raise _Bad(f"unknown argument '{key}' for {head.value}()", arg.name.span,
                               did_you_mean(key, params, "arguments"), "name.unknown")
            self.spans[path + (key,)] = arg.value.span
            values[key] = self.value(arg.value, _annotation(model, key), path + (key,), key)
        return self.construct_or_raise(model, values, path, f"{what} {head.value}", value.span)

    def construct_or_raise(self, model: type[ModelT], values: dict, path: IrPath, what: str, span: Span) -> ModelT:
        built = self.construct(model, values, path, what, span)
        if built is None:
            raise _Bad(f"invalid {what}", span, None, "type.invalid")
        return built


def _annotation(model: type[BaseModel], name: str) -> Any:
    info = model.model_fields[name]
    return Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation


def _nullable(model: type[BaseModel], name: str) -> bool:
    return not model.model_fields[name].is_required()


def _show(value: Value) -> str:
    if isinstance(value, Quantity):
        return units.describe(value.raw)
    if isinstance(value, String):
        return f'the string "{value.value}"'
    if isinstance(value, Name):
        return f"the name '{value.value}'"
    if isinstance(value, ListValue):
        return "a list"
    return f"a call to {value.name.value}()"


# --------------------------------------------------------------------------------- entry point


def lower_items(items: list[BodyItem], loader: SpecLoader) -> tuple[ir.Spec | None, _Lowerer]:
    lowerer = _Lowerer(loader)
    top = Span(loader.files[0], 1, 1, 1, 2) if loader.files else None
    spec = lowerer.block(items, ir.Spec, (), "the spec", top)
    return (None if spec is FAILED else spec), lowerer


def load(path: str | Path) -> Lowered:
    """Read a spec and everything it extends, and lower it to IR; `FILE@POINT` is a point of the
    file's grid (`mixc.lang.grid`). Never raises for bad input."""
    display, point = split_point(str(path))
    loader = SpecLoader(Path(display))
    items = loader.load(display, (), None)
    found = loader.points() if items is not None else []
    if items is not None and point is not None:
        items = loader.at_point(items, point, found)
    if items is None:
        return Lowered(None, {}, loader.diags, loader.texts, tuple(loader.files), loader.root)
    spec, lowerer = lower_items(items, loader)
    return Lowered(spec, lowerer.spans, loader.diags, loader.texts, tuple(loader.files),
                   loader.root, lowerer.refs, lowerer.file_uses, lowerer.failed_names,
                   lowerer.failed_paths, tuple(p.name for p in found))
