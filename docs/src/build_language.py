"""Builds docs/language.md from language.template.md: files verbatim, live command output, every error fixture.

    uv run python docs/src/build_language.py

{{FILE:path}} pastes a repository file, {{RUN:cmd}} (or {{RUN:folder|cmd}}) pastes a command's output,
{{ERRORS}} pastes every tests/golden/errors case with its expected output.
"""
import pathlib
import re
import subprocess

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent.parent
ERR = REPO / "tests/golden/errors"

GROUPS = [
    ("syntax_", "Syntax",
     "The lexer and parser: malformed tokens, missing or extra delimiters, misplaced keywords and non-text input. "
     "Parsing stops at the first syntax error in a file."),
    ("extends_", "`extends`",
     "Composition: where `extends` may appear, how often, and whether the base spec exists and does not lead back to "
     "the spec itself."),
    ("name_", "Names",
     "Lowering against the schema: unknown or duplicated fields, blocks, kinds, tokenizers and arguments, fields "
     "written as blocks and the reverse, missing names, kinds and required fields, and references to sources that do "
     "not exist or have the wrong kind."),
    ("value_", "Values",
     "The type of a value: booleans, strings, choices (including backends), fixed-length lists, paths and call-valued "
     "fields."),
    ("unit_", "Units",
     "Quantities: a missing, unknown or wrong-family unit suffix, a share without `%`, and a fractional value where a "
     "whole number is needed."),
    ("mixture_", "Mixture",
     "The mixture tree: missing mixture, non-entries inside it, shares that do not add up to 100% or are 0%, leaves "
     "that appear twice and groups named like a source."),
    ("grid_", "Grids",
     "The shape of a `grid` (axes of named points), where it may appear, and a point's overrides, checked at every "
     "point."),
    ("check_", "Semantic checks",
     "Checks on the complete IR: value ranges, repeat caps, sampling probability, backend requirements, tokenizer "
     "training data, the budget, files on disk and sources left out of the mixture."),
]

HELPER_NOTES = {
    "extends_cycle_a": ("extends_cycle_b.mix", "The other half of the cycle"),
    "extends_multiple": ("base_ok.mix", "The base it names"),
    "extends_placement": ("base_ok.mix", "The base it names"),
    "grid_placement": ("grid_base.mix", "The base it names"),
}


def mix_block(path: pathlib.Path) -> str:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
        if any((ord(c) < 32 and c not in "\n\t") or ord(c) == 127 for c in text):
            raise UnicodeDecodeError("utf-8", b"", 0, 1, "control")
        return "```mix\n" + text + ("" if text.endswith("\n") else "\n") + "```\n"
    except UnicodeDecodeError:
        return ("The file cannot be shown as text (that is the point of the case); its bytes, as a Python literal:"
                "\n\n```python\n" + repr(data) + "\n```\n")


def errors_section() -> str:
    outs = sorted(ERR.glob("*.out"))
    seen = set()
    parts = []
    for prefix, title, sentence in GROUPS:
        cases = [p for p in outs if p.name.startswith(prefix)]
        if not cases:
            continue
        parts.append(f"### {title} (`{prefix}*`)\n\n{sentence}\n")
        for out in cases:
            seen.add(out)
            name = out.stem
            parts.append(f"#### {name}\n\nInput `{name}.mix`:\n\n" + mix_block(ERR / f"{name}.mix"))
            if name in HELPER_NOTES:
                helper, what = HELPER_NOTES[name]
                parts.append(f"{what}, `{helper}` (a helper with no `.out` of its own):\n\n" + mix_block(ERR / helper))
            parts.append(f"Output:\n\n```\n{out.read_text()}```\n")
    missing = [p.name for p in outs if p not in seen]
    assert not missing, missing
    return "\n".join(parts)


def run(spec: str) -> str:
    cwd, cmd = spec.split("|", 1) if "|" in spec else (".", spec)
    r = subprocess.run(cmd, shell=True, cwd=REPO / cwd, capture_output=True, text=True)
    out = r.stdout + r.stderr
    return out if out.endswith("\n") else out + "\n"


text = (HERE / "language.template.md").read_text()
text = re.sub(r"\{\{FILE:([^}]+)\}\}", lambda m: (REPO / m.group(1)).read_text(), text)
text = re.sub(r"\{\{RUN:([^}]+)\}\}", lambda m: run(m.group(1)), text)
text = text.replace("{{ERRORS}}", errors_section())
(REPO / "docs").mkdir(exist_ok=True)
(REPO / "docs/language.md").write_text(text)
print(len(text.splitlines()), "lines")
