"""The docs are part of the feature: every error message is shown in the language reference."""

import pytest

from tests.conftest import GOLDEN, REPO

LANGUAGE = (REPO / "docs" / "language.md").read_text()


@pytest.mark.parametrize("out", sorted((GOLDEN / "errors").glob("*.out")), ids=lambda p: p.stem)
def test_every_error_message_is_in_the_language_reference(out):
    assert out.read_text() in LANGUAGE, "rebuild docs/language.md: uv run python docs/src/build_language.py"


def test_the_reference_shows_the_grammar_verbatim():
    assert (REPO / "mixc" / "lang" / "grammar.lark").read_text() in LANGUAGE
