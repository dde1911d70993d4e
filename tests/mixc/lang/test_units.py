from decimal import Decimal

import pytest

from mixc.ir import Unit
from mixc.lang.units import UnitError, convert, format_count, format_duration, format_percent


@pytest.mark.parametrize("raw,unit,value", [
    ("250ms", Unit.DURATION, Decimal("0.25")), ("2min", Unit.DURATION, Decimal(120)),
    ("1h", Unit.DURATION, Decimal(3600)), ("1.67T", Unit.COUNT, Decimal("1.67e12")),
    ("32K", Unit.COUNT, Decimal(32000)), ("16_384", Unit.COUNT, Decimal(16384)),
    ("60%", Unit.PERCENT, Decimal("0.6")), ("12.5Hz", Unit.FREQUENCY, Decimal("12.5")),
    ("64MiB", Unit.BYTES, Decimal(64 * 2 ** 20)), ("3e-4", Unit.NUMBER, Decimal("0.0003")),
    ("50%", Unit.NUMBER, Decimal("0.5")),
])
def test_convert(raw: str, unit: Unit, value: Decimal) -> None:
    assert convert(raw, unit) == value


@pytest.mark.parametrize("raw,unit,needle", [
    ("30s", Unit.COUNT, "found a duration"),
    ("250", Unit.DURATION, "bare number"),
    ("20sec", Unit.DURATION, "unknown unit 'sec'"),
    ("5parsecs", Unit.DURATION, "unknown unit"),
    ("60", Unit.PERCENT, "bare number"),
])
def test_unit_errors(raw: str, unit: Unit, needle: str) -> None:
    with pytest.raises(UnitError, match=needle):
        convert(raw, unit)


@pytest.mark.parametrize("seconds", [0.03, 0.25, 1.0, 2.5, 60.0, 90.0, 3600.0, 19.2])
def test_duration_printing_round_trips(seconds: float) -> None:
    assert float(convert(format_duration(seconds), Unit.DURATION)) == seconds


@pytest.mark.parametrize("n", [512, 1024, 16384, 32000, 200_000, 1_670_000_000_000])
def test_count_printing_round_trips(n: int) -> None:
    assert convert(format_count(n), Unit.COUNT) == n


@pytest.mark.parametrize("f", [0.6, 0.4, 0.66, 0.34, 1 / 3, 0.059])
def test_percent_printing_round_trips(f: float) -> None:
    assert float(convert(format_percent(f), Unit.PERCENT)) == f
