"""Quantities with units: `250ms`, `1.67T`, `60%`, `12.5Hz`, `64MiB`.

A quantity is parsed into (number, unit suffix); each field of the IR declares the family it takes.
Decimal arithmetic keeps `1.67T` and `33.3%` exact until the final conversion.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from mixc import ir
from mixc.errors import SPEC, MixcError

_SCALES: dict[ir.Unit, dict[str, Decimal]] = {
    ir.Unit.DURATION: {"ms": Decimal("0.001"), "s": Decimal(1), "min": Decimal(60), "h": Decimal(3600)},
    ir.Unit.COUNT: {"": Decimal(1), "K": Decimal(10) ** 3, "M": Decimal(10) ** 6, "B": Decimal(10) ** 9,
                 "T": Decimal(10) ** 12},
    ir.Unit.PERCENT: {"%": Decimal("0.01")},
    ir.Unit.FREQUENCY: {"Hz": Decimal(1), "kHz": Decimal(1000)},
    ir.Unit.BYTES: {"": Decimal(1), "KB": Decimal(10) ** 3, "MB": Decimal(10) ** 6, "GB": Decimal(10) ** 9,
                 "TB": Decimal(10) ** 12, "KiB": Decimal(2) ** 10, "MiB": Decimal(2) ** 20,
                 "GiB": Decimal(2) ** 30, "TiB": Decimal(2) ** 40},
    ir.Unit.NUMBER: {"": Decimal(1), "%": Decimal("0.01")},
}

FAMILY_NAMES = {
    ir.Unit.DURATION: "a duration",
    ir.Unit.COUNT: "a count",
    ir.Unit.PERCENT: "a percentage",
    ir.Unit.FREQUENCY: "a frequency",
    ir.Unit.BYTES: "a size in bytes",
    ir.Unit.NUMBER: "a plain number",
}

EXAMPLES = {
    ir.Unit.DURATION: "250ms, 1.5s, 2min, 1h",
    ir.Unit.COUNT: "512, 32K, 1.5B, 1.67T",
    ir.Unit.PERCENT: "60%",
    ir.Unit.FREQUENCY: "12.5Hz",
    ir.Unit.BYTES: "64MiB, 1GB",
    ir.Unit.NUMBER: "0.5",
}

_QUANTITY = re.compile(r"^(-?[0-9][0-9_]*(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)([A-Za-z%]*)$")

_LOOKALIKES = {"sec": "s", "secs": "s", "second": "s", "seconds": "s", "m": "min", "mins": "min",
               "minutes": "min", "hr": "h", "hrs": "h", "hours": "h", "msec": "ms", "k": "K",
               "bn": "B", "b": "B", "t": "T", "hz": "Hz", "khz": "kHz", "mb": "MB", "gb": "GB",
               "kb": "KB", "pct": "%"}


class UnitError(MixcError):
    """A quantity that is not a number, or has a unit of another family; lowering locates it."""

    exit_code = SPEC


@dataclass(frozen=True)
class Parsed:
    number: Decimal
    suffix: str


def unit_word(word: str) -> str | None:
    """The unit suffix a word written apart from its number stands for ("seconds" -> "s", "MiB" ->
    "MiB"), or None when it is no unit."""
    if any(word in scales for unit, scales in _SCALES.items() if unit is not ir.Unit.NUMBER) and word:
        return word
    return _LOOKALIKES.get(word) or _LOOKALIKES.get(word.lower())


def parse_quantity(raw: str) -> Parsed:
    m = _QUANTITY.match(raw)
    if not m:
        raise UnitError(f"'{raw}' is not a number")
    try:
        return Parsed(Decimal(m.group(1).replace("_", "")), m.group(2))
    except InvalidOperation:
        raise UnitError(f"'{raw}' is not a number") from None


def family_of(suffix: str) -> ir.Unit | None:
    """The family a unit suffix belongs to (a bare number counts as a plain number)."""
    if suffix == "":
        return ir.Unit.NUMBER
    for unit in (ir.Unit.DURATION, ir.Unit.PERCENT, ir.Unit.FREQUENCY, ir.Unit.BYTES, ir.Unit.COUNT):
        if suffix in _SCALES[unit]:
            return unit
    return None


def describe(raw: str) -> str:
    try:
        fam = family_of(parse_quantity(raw).suffix)
    except UnitError:
        return f"'{raw}'"
    return f"{FAMILY_NAMES[fam]} '{raw}'" if fam else f"'{raw}'"


def convert(raw: str, unit: ir.Unit) -> Decimal:
    """The value of `raw` in the base unit of `unit` (seconds, items, fraction, Hz, bytes)."""
    parsed = parse_quantity(raw)
    scales = _SCALES[unit]
    if parsed.suffix in scales:
        return parsed.number * scales[parsed.suffix]
    expected = f"expected {FAMILY_NAMES[unit]} ({EXAMPLES[unit]})"
    if parsed.suffix == "":
        unit_hint = {ir.Unit.DURATION: f"add a unit: {raw}s or {raw}ms", ir.Unit.PERCENT: f"write {raw}%",
                     ir.Unit.FREQUENCY: f"write {raw}Hz"}.get(unit)
        raise UnitError(f"{expected}, found a bare number '{raw}'", unit_hint)
    fixed = _LOOKALIKES.get(parsed.suffix) or _LOOKALIKES.get(parsed.suffix.lower())
    if fixed and fixed in scales:
        raise UnitError(f"unknown unit '{parsed.suffix}' in '{raw}'", f"write {_fmt(parsed.number)}{fixed}")
    found = family_of(parsed.suffix)
    if found is None:
        known = ", ".join(k for k in scales if k)
        raise UnitError(f"unknown unit '{parsed.suffix}' in '{raw}'; {expected}",
                        f"units for {FAMILY_NAMES[unit]}: {known}" if known else None)
    raise UnitError(f"{expected}, found {FAMILY_NAMES[found]} '{raw}'",
                    f"this field takes {FAMILY_NAMES[unit]}, like {EXAMPLES[unit]}")


def _fmt(number: Decimal) -> str:
    return format(number.normalize(), "f") if number == number.to_integral() else str(number)


def as_int(value: Decimal, raw: str) -> int:
    if value != value.to_integral_value():
        raise UnitError(f"'{raw}' is not a whole number", "counts are whole numbers")
    return int(value)


# ------------------------------------------------------------------------- canonical printing


def format_duration(seconds: float) -> str:
    ms = Decimal(str(seconds)) * 1000
    if ms < 1000 and ms == ms.to_integral_value():
        return f"{int(ms)}ms"
    s = Decimal(str(seconds))
    if s >= 3600 and s % 3600 == 0:
        return f"{int(s // 3600)}h"
    if s >= 60 and s % 60 == 0:
        return f"{int(s // 60)}min"
    return f"{_fmt(s)}s"


def format_count(n: int) -> str:
    for suffix, scale in (("T", 10 ** 12), ("B", 10 ** 9), ("M", 10 ** 6), ("K", 10 ** 3)):
        if n >= scale and (Decimal(n) / scale) == (Decimal(n) / scale).quantize(Decimal("0.01")):
            return f"{_fmt(Decimal(n) / scale)}{suffix}"
    return str(n)


def format_percent(fraction: float) -> str:
    return f"{_fmt(Decimal(str(fraction)) * 100)}%"


def format_bytes(n: int) -> str:
    for suffix, scale in (("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10),
                          ("GB", 10 ** 9), ("MB", 10 ** 6), ("KB", 10 ** 3)):
        if n >= scale and n % scale == 0:
            return f"{n // scale}{suffix}"
    return str(n)


def format_hertz(hz: float) -> str:
    return f"{_fmt(Decimal(str(hz)))}Hz"


def format_number(x: float | int) -> str:
    if isinstance(x, int):
        return str(x)
    d = Decimal(repr(x))
    return _fmt(d) if abs(d) >= Decimal("0.001") or d == 0 else repr(x)
