"""No input, however broken, produces a Python traceback: random bytes and random mutations of
the example specs always end in diagnostics."""

import os
import random
import subprocess
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mixc.lang.check import check_file
from mixc.lang.diagnostics import render_all
from tests.conftest import REPO

EXAMPLES = [p.read_text() for p in sorted((REPO / "specs").rglob("*.mix"))]
SNIPPETS = ["{", "}", "[", "]", "(", ")", "=", '"', "%", ":", ",", "\n", "#", "extends", "1.5", "60%",
            "source", "mixture", "\x00", "é", "..", "-", "@", "''", "250ms", "1e", "stochastic(", "none"]


def check_text(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "f.mix"
        path.write_bytes(data)
        (Path(tmp) / "base.mix").write_bytes(data[:200])
        low, diags = check_file(str(path))
        render_all(diags, low.texts)  # rendering must not fail either


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400))
def test_random_bytes(data: bytes) -> None:
    check_text(data)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, len(EXAMPLES) - 1), st.lists(st.tuples(st.integers(0, 10 ** 6), st.integers(0, 2),
                                                              st.sampled_from(SNIPPETS)), min_size=1, max_size=6))
def test_mutated_examples(which: int, edits: list[tuple[int, int, str]]) -> None:
    text = EXAMPLES[which]
    for pos, op, snippet in edits:
        at = pos % (len(text) + 1)
        if op == 0:
            text = text[:at] + snippet + text[at:]
        elif op == 1:
            text = text[:at] + text[at + len(snippet):]
        else:
            lines = text.split("\n")
            i = at % len(lines)
            lines.insert(i, lines[i])
            text = "\n".join(lines)
    check_text(text.encode("utf-8", "surrogatepass"))


def test_cli_never_prints_a_traceback(tmp_path: Path) -> None:
    rng = random.Random(7)
    mixc = Path(os.environ.get("VIRTUAL_ENV", REPO / ".venv")) / "bin" / "mixc"
    for i in range(6):
        path = tmp_path / f"junk{i}.mix"
        path.write_bytes(bytes(rng.randrange(256) for _ in range(300)) if i % 2 else
                         EXAMPLES[i % len(EXAMPLES)][: rng.randrange(400)].encode())
        for command in (["check"], ["plan"], ["fmt", "--check"]):
            result = subprocess.run([str(mixc), *command, str(path)], capture_output=True, text=True)
            assert "Traceback" not in result.stdout + result.stderr
            assert result.returncode in (0, 1), result.stderr
