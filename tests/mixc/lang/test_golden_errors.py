"""Every error message, rendered exactly as `mixc check` prints it, against a golden file.

Each `tests/golden/errors/NAME.mix` with a `NAME.out` beside it is a case; `.mix` files without one
are helpers (bases for `extends`). Regenerate with MIXC_UPDATE_GOLDEN=1 and review the diff.
"""

import os

import pytest

from mixc.build.preflight import check_spec
from mixc.lang.diagnostics import render_all
from tests.conftest import GOLDEN, UPDATE

ERRORS = GOLDEN / "errors"
HELPERS = {"base_ok.mix", "extends_cycle_b.mix", "grid_base.mix"}
CASES = sorted(p.name for p in ERRORS.glob("*.mix") if p.name not in HELPERS)


def render(name: str) -> str:
    cwd = os.getcwd()
    os.chdir(ERRORS)
    try:
        low, diags = check_spec(name)
        return render_all(diags, low.texts) + "\n"
    finally:
        os.chdir(cwd)


@pytest.mark.parametrize("name", CASES)
def test_error_message(name: str) -> None:
    expected_file = ERRORS / name.replace(".mix", ".out")
    got = render(name)
    if UPDATE:
        expected_file.write_text(got)
    assert expected_file.exists(), f"no golden output for {name}; run with MIXC_UPDATE_GOLDEN=1"
    assert got == expected_file.read_text()


def test_every_case_reports_something() -> None:
    for name in CASES:
        text = (ERRORS / name.replace(".mix", ".out")).read_text()
        assert "error:" in text or "warning:" in text, name
