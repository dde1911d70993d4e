"""What the IR models say about the language: which fields and blocks a block may hold.

Both the lowering pass and the formatter's `--resolved` printer read the schema from here, so the
language and the IR can never drift apart.
"""

from __future__ import annotations

import types
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel

from mixc import ir


def split(ann: Any) -> tuple[Any, list]:
    """An annotation without its `Annotated` layers, and the markers those layers carried."""
    markers: list = []
    while get_origin(ann) is Annotated:
        args = get_args(ann)
        ann, markers = args[0], markers + list(args[1:])
    return ann, markers


def is_model(t: Any) -> bool:
    return isinstance(t, type) and issubclass(t, BaseModel)


def union_args(t: Any) -> tuple | None:
    if get_origin(t) in (Union, types.UnionType):
        return get_args(t)
    return None


def models_of(t: Any) -> list[type[BaseModel]]:
    """The model classes a block slot may hold (one, or the members of a variant union)."""
    base, _ = split(t)
    if is_model(base):
        return [base]
    args = union_args(base)
    if args and all(is_model(split(a)[0]) or a is type(None) for a in args):
        return [split(a)[0] for a in args if a is not type(None)]
    return []


def marker(markers: list, kind: type) -> Any:
    return next((m for m in markers if isinstance(m, kind)), None)


def literal_values(t: Any) -> tuple | None:
    base, _ = split(t)
    return get_args(base) if get_origin(base) is Literal else None


@dataclass(frozen=True)
class Slot:
    """One thing a block may contain: a field (`name = value`) or a nested block."""

    field: str  # the IR field name
    keyword: str  # what the spec writes
    annotation: Any
    markers: tuple
    kind: str  # value | block | named | mixture
    models: tuple[type[BaseModel], ...]
    variant: str | None  # the discriminating field of a variant block
    required: bool
    description: str | None

    def model_for(self, label: str | None) -> type[BaseModel] | None:
        """The model a block of this slot uses for a given label or kind."""
        if self.variant is None:
            return self.models[0] if self.models else None
        for model in self.models:
            if label is not None and literal_values(model.model_fields[self.variant].annotation) == (label,):
                return model
        return None

    def variant_names(self) -> list[str]:
        return [tag(m, self.variant) for m in self.models] if self.variant else []


def _named_item(ann: Any) -> Any:
    base, _ = split(ann)
    if get_origin(base) is dict:
        return get_args(base)[1]
    return base


def _slot(name: str, info) -> Slot:
    ann = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
    base, markers = split(ann)
    named = marker(markers, ir.Named)
    description = info.description
    if named is not None:
        item = _named_item(base)
        item_base, item_markers = split(item)
        variant = marker(item_markers, ir.Variant)
        return Slot(name, named.word, ann, tuple(markers), "named", tuple(models_of(item)),
                    variant.field if variant else None, False, description)
    if marker(markers, ir.Replace) is not None and base is ir.MixGroup:
        return Slot(name, name, ann, tuple(markers), "mixture", (ir.MixGroup,), None, False, description)
    models = models_of(ann)
    variant = marker(markers, ir.Variant)
    if models and not (variant and variant.field == "mode"):  # call-valued variants are values
        return Slot(name, name, ann, tuple(markers), "block", tuple(models),
                    variant.field if variant else None, info.is_required(), description)
    return Slot(name, name, ann, tuple(markers), "value", tuple(models),
                variant.field if variant else None, info.is_required(), description)


@lru_cache(maxsize=None)
def slots(model: type[BaseModel]) -> dict[str, Slot]:
    """Keyword -> slot for every field of a model, except the variant discriminator."""
    out = {}
    for name, info in model.model_fields.items():
        s = _slot(name, info)
        out[s.keyword] = s
    return out


def discriminator(model: type[BaseModel]) -> str | None:
    """The field whose single Literal value names this model inside its variant union."""
    for name in ("kind", "granularity", "mode"):
        if name in model.model_fields and len(literal_values(model.model_fields[name].annotation) or ()) == 1:
            return name
    return None


def variant_field(model: type[BaseModel]) -> str:
    """The discriminator of a model known to be a variant (a call-valued one, or a block's kind)."""
    field = discriminator(model)
    if field is None:
        raise TypeError(f"{model.__name__} is not a variant: no field holds a single Literal")
    return field


def tag(model: type[BaseModel], field: str) -> str:
    """The name a variant model goes by: the one value of its discriminating Literal field."""
    values = literal_values(model.model_fields[field].annotation)
    if not values:
        raise TypeError(f"{model.__name__}.{field} is not a Literal field")
    return values[0]


def named_target_is_dict(slot: Slot) -> bool:
    base, _ = split(slot.annotation)
    return get_origin(base) is dict


