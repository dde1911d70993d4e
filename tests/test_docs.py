"""The docs are part of the feature: every error message is shown in the language reference, and
every field of the synthetic generators' blocks is in docs/synthetic.md with its default."""

import json
import re
import typing

import pytest
from pydantic_core import PydanticUndefined

from mixc import ir
from tests.conftest import GOLDEN, REPO

LANGUAGE = (REPO / "docs" / "language.md").read_text()


@pytest.mark.parametrize("out", sorted((GOLDEN / "errors").glob("*.out")), ids=lambda p: p.stem)
def test_every_error_message_is_in_the_language_reference(out):
    assert out.read_text() in LANGUAGE, "rebuild docs/language.md: uv run python docs/src/build_language.py"


def test_the_reference_shows_the_grammar_verbatim():
    assert (REPO / "mixc" / "lang" / "grammar.lark").read_text() in LANGUAGE


# ------------------------------------------------------------------ docs/synthetic.md: every field

SYNTHETIC = (REPO / "docs" / "synthetic.md").read_text()
# the heading of each block's table in docs/synthetic.md -> the IR models it documents (by variant)
FIELD_TABLES: dict[str, dict[str, type[ir.Node]]] = {
    "`source NAME : html`": {"": ir.HtmlSource},
    "`generator NAME : krist`": {"": ir.KristGenerator},
    "`generator NAME : quest`": {"": ir.QuestGenerator},
    "`llm { }`": {"": ir.Llm},
    "`output { }`": {"": ir.Generated},
    "`tts { }`": {"": ir.Tts},
    "`chunk fine { }` and `chunk coarse { }`": {"fine": ir.FineChunks, "coarse": ir.CoarseChunks},
}
LABELS = ("kind", "granularity")  # written in a block's header, not as a field


def section(heading: str) -> str:
    """The text under `### heading`, up to the next heading."""
    start = SYNTHETIC.index(f"\n### {heading}\n") + len(heading) + 6
    end = SYNTHETIC.find("\n#", start)
    return SYNTHETIC[start:end if end >= 0 else None]


def rows(heading: str) -> dict[str, str]:
    """Field -> its table row; a chunk row names its variant too (`fine`: `min` -> "fine:min")."""
    found = {}
    for line in section(heading).splitlines():
        if line.startswith("| `"):
            first = re.split(r"(?<!\\)\|", line)[1]  # the first cell (an escaped \| stays in it)
            names = [span.split()[0] for span in re.findall(r"`([^`]+)`", first)]
            found[":".join(names[:2]) if names[0] in ("fine", "coarse") else names[0]] = line
    return found


def rendered_default(model: type[ir.Node], name: str) -> str | None:
    """A field's default as the table writes it; None where the table shows no literal default
    (blocks, whose defaults have their own tables)."""
    info = model.model_fields[name]
    default = info.default
    if default is PydanticUndefined:
        return "required"
    if isinstance(default, ir.Node):
        return None
    if default is None:
        return "`none`"
    if isinstance(default, bool):
        return f"`{str(default).lower()}`"
    if ir.Unit.DURATION in info.metadata:
        return f"`{default:g}s`"
    if isinstance(default, (int, float)):
        return f"`{default!r}`"
    if typing.get_origin(info.annotation) is typing.Literal:
        return f"`{default}`"
    return f"`{json.dumps(default if isinstance(default, str) else list(default))}`"


@pytest.mark.parametrize("heading", sorted(FIELD_TABLES))
def test_every_generator_field_is_documented_with_its_default(heading):
    documented = rows(heading)
    expected = {(f"{variant}:{name}" if variant else name): (model, name)
                for variant, model in FIELD_TABLES[heading].items()
                for name in model.model_fields if name not in LABELS}
    assert sorted(documented) == sorted(expected), "docs/synthetic.md's table and the IR disagree on the fields"
    for key, (model, name) in expected.items():
        default = rendered_default(model, name)
        if default is not None:
            assert default in documented[key].replace("\\|", "|"), f"{key}: the row does not show the default {default}"
