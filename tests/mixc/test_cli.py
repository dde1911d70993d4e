"""The `mixc` console script, run as a user runs it: exit codes, text and JSON output, help."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import GOLDEN, REPO

MIXC = str(Path(sys.executable).with_name("mixc"))
COMMANDS = ["check", "plan", "diff", "fmt", "ablate"]


def mixc(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MIXC_DEBUG"}
    return subprocess.run([MIXC, *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=120)


def test_console_script_is_installed():
    assert Path(MIXC).exists(), "run `uv sync` so the `mixc` console script exists"


def test_check_clean_spec_exits_0():
    out = mixc("check", "--no-sizes", "specs/demo.mix")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "error" not in out.stdout


def test_check_refuses_what_compile_refuses():
    """The paper's recipe needs a 70B LLM and a pyannote pipeline that this machine lacks: check
    says so, located, as compile would."""
    out = mixc("check", "--no-sizes", "specs/spelangy.mix")
    assert out.returncode == 1
    assert out.stdout.count("error: LLM model 'meta-llama/Llama-3.1-70B-Instruct': no such directory") == 2
    assert "error: pyannote pipeline 'pyannote/speaker-diarization-3.1' is not in the local" in out.stdout


def test_check_reports_every_error_with_caret_and_exits_1():
    out = mixc("check", "check_many_errors.mix", cwd=GOLDEN / "errors")
    assert out.returncode == 1
    assert out.stdout == (GOLDEN / "errors" / "check_many_errors.out").read_text()
    assert out.stdout.count(": error: ") >= 2


def test_check_json_is_machine_readable():
    out = mixc("check", "--format", "json", str(GOLDEN / "errors" / "syntax_missing_brace.mix"))
    assert out.returncode == 1
    data = json.loads(out.stdout)
    assert data["errors"] == 1 and data["warnings"] == 0
    first = data["diagnostics"][0]
    assert first["code"] == "syntax.missing-brace" and first["severity"] == "error"
    assert first["span"]["line"] == 3 and first["span"]["col"] == 7
    assert first["hint"]


@pytest.mark.parametrize("args", [
    ["check"],  # no spec
    ["check", "no/such/file.mix"],
    ["plan", "a.mix", "b.mix"],
    ["nosuchcommand"],
    ["check", "--format", "xml", "specs/demo.mix"],
])
def test_usage_errors_exit_2(args):
    out = mixc(*args)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "Traceback" not in out.stderr


def test_binary_garbage_is_an_error_not_a_traceback(tmp_path):
    junk = tmp_path / "junk.mix"
    junk.write_bytes(bytes(range(256)) * 4)
    out = mixc("check", str(junk))
    assert out.returncode == 1
    assert "Traceback" not in out.stderr + out.stdout
    assert "binary file" in out.stdout or "not UTF-8" in out.stdout


def test_plan_text_and_json():
    out = mixc("plan", "--no-sizes", "specs/spelangy.mix")
    assert out.returncode == 0, out.stderr
    assert "shards:web" in out.stdout and "text_corpus" in out.stdout
    data = json.loads(mixc("plan", "--no-sizes", "--format", "json", "specs/spelangy.mix").stdout)
    assert {leaf["name"] for leaf in data["leaves"]} == {"text_corpus", "web", "quest", "krist"}
    assert sum(leaf["share"] for leaf in data["leaves"]) == pytest.approx(1.0)


def test_diff_names_one_factor():
    out = mixc("diff", "specs/spelangy.mix", "specs/ablations/coarse.mix")
    assert out.returncode == 0, out.stderr
    assert "1 factor: chunk granularity" in out.stdout
    data = json.loads(mixc("diff", "--format", "json", "specs/spelangy.mix", "specs/ablations/coarse.mix").stdout)
    assert data["factors"] == ["chunk granularity"]
    assert data["edits"][0]["path"] == "sources.web.chunk"


def test_diff_warns_when_more_than_one_factor_changes(tmp_path):
    shutil.copytree(REPO / "specs", tmp_path / "specs")
    (tmp_path / "pyproject.toml").write_text("")
    two = tmp_path / "specs" / "two.mix"
    two.write_text('extends "spelangy.mix"\nsource web { chunk coarse { max = 60s } }\ninterleave { loss = all }\n')
    out = mixc("diff", "specs/spelangy.mix", "specs/two.mix", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "warning" in out.stdout and "2 factors" in out.stdout


def test_a_grid_point_is_a_spec_for_diff_and_fmt_resolved():
    point = "specs/experiments/paper.mix@stochastic"
    out = mixc("diff", "specs/experiments/paper.mix", point)
    assert out.returncode == 0, out.stderr
    assert "1 factor: modality sampling" in out.stdout and "interleave:conversations" in out.stdout
    resolved = mixc("fmt", "--resolved", point)
    assert resolved.returncode == 0, resolved.stderr
    assert "sampling = stochastic(p=0.5, first=audio)" in resolved.stdout
    missing = mixc("check", "--no-sizes", "specs/experiments/paper.mix@stochastc")
    assert missing.returncode == 1 and "no grid point 'stochastc'" in missing.stdout and "stochastic" in missing.stdout


def test_ablate_dry_run_previews_the_points_and_their_cost(tmp_path):
    shutil.copytree(REPO / "specs", tmp_path / "specs")
    (tmp_path / "pyproject.toml").write_text("")
    out = mixc("ablate", "specs/experiments/paper.mix", "--dry-run", "--no-sizes", "--cache-dir", str(tmp_path / "c"),
               cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "5 points" in out.stdout and "coarse" in out.stdout and "web_only" in out.stdout
    assert not (tmp_path / "experiments").exists()  # a dry run writes nothing
    lone = mixc("ablate", "specs/demo.mix", "--dry-run", "--no-sizes", cwd=tmp_path)
    assert lone.returncode == 2 and "has no grid and no ablation" in lone.stderr


def test_fmt_check_passes_on_the_repo_specs_and_fails_on_unformatted(tmp_path):
    assert mixc("fmt", "--check", "specs/").returncode == 0
    messy = tmp_path / "messy.mix"
    messy.write_text((REPO / "specs" / "demo.mix").read_text().replace("\n  ", "\n        "))
    out = mixc("fmt", "--check", str(messy))
    assert out.returncode == 1
    assert mixc("fmt", str(messy)).returncode == 0
    assert messy.read_text() == (REPO / "specs" / "demo.mix").read_text()


def test_top_level_help_lists_every_command():
    out = mixc("--help")
    assert out.returncode == 0
    for command in COMMANDS:
        assert command in out.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_every_subcommand_has_complete_help(command):
    out = mixc(command, "--help")
    assert out.returncode == 0
    assert "Usage: mixc " + command in out.stdout
    body = out.stdout.split("Options:")[0]
    assert len(body.split()) > 15, "help should explain the command, not just name it"
    options = out.stdout.split("Options:")[1]
    for line in options.splitlines():
        if line.strip().startswith("--") and "--help" not in line:
            assert len(line.split()) > 1, f"option without help: {line}"


def test_compile_prints_a_line_per_stage_when_stderr_is_not_a_terminal(tmp_path):
    """CI logs and `nohup` runs: one line when a stage starts building, one when it is done."""
    from tests.mixc.workspace import write_corpus
    (tmp_path / "pyproject.toml").write_text("")
    write_corpus(tmp_path)
    (tmp_path / "s.mix").write_text('source news : text { files = "data/news/*.jsonl" }\n'
                                    "tokenizer text : bpe { vocab = 300 }\npack { seq_len = 32 }\n"
                                    "mixture { 100% news }\nbudget { steps = 2 }\ntrain { batch = 2 }\n")
    first = mixc("compile", "s.mix", "--cache-dir", "cache", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    lines = first.stderr.splitlines()
    assert "mixc: [1/5] read:news: building (documents)" in lines
    assert any(line.startswith("mixc: [1/5] read:news: built in ") and "183 in, 183 out" in line for line in lines)
    assert sum(": built in " in line for line in lines) == 5
    again = mixc("compile", "s.mix", "--cache-dir", "cache", cwd=tmp_path)
    assert again.stderr.count(": from the cache") == 5 and "building" not in again.stderr
