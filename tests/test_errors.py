"""Every failure a user can fix, run through the console script as a user meets it: a clear error
(`mixc: error: ...` or a located diagnostic) with a hint, the documented exit status, and never a
Python traceback or "this is a bug" wording (docs/errors.md lists the statuses)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mixc import errors
from tests.mixc.workspace import write_corpus

MIXC = str(Path(sys.executable).with_name("mixc"))
TEXT = """
source news : text {{ files = "data/news/*.jsonl" }}
tokenizer text : bpe {{ vocab = 300 }}
pack {{ seq_len = 32 }}
mixture {{ 100% news }}
budget {{ steps = 4 }}
train {{
  batch = 2
  {model}
}}
"""
AUDIO = """
source web : audio {
  files = "data/web/*.flac"
  asr { model = "large-v3" }
}
source news : text { files = "data/news/*.jsonl" }
tokenizer text : bpe { vocab = 300 }
tokenizer audio : checkpoint { path = "broken-checkpoint" }
mixture {
  50% web
  50% news
}
budget { steps = 4 }
"""
GENERATED = """
source news : text { files = "data/news/*.jsonl" }
source pages : html { files = "pages.html" }
generator k : krist { pages = pages }
mixture {
  50% news
  50% k
}
budget { steps = 4 }
"""


def mixc(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k != "MIXC_DEBUG"}
    return subprocess.run([MIXC, *args], cwd=cwd, capture_output=True, text=True, timeout=600,
                          env={**base, **(env or {})})


def assert_user_error(out: subprocess.CompletedProcess, status: int, says: str) -> None:
    text = out.stdout + out.stderr
    assert out.returncode == status, text
    assert says in text, text
    assert "hint:" in text and "Traceback" not in text and "bug" not in text and "internal error" not in text, text


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> Path:
    """A workspace with a compiled text plan (build/plan.json) and a backbone folder left empty."""
    root = tmp_path_factory.mktemp("errors")
    (root / "pyproject.toml").write_text("")
    write_corpus(root)
    (root / "backbone").mkdir()
    (root / "text.mix").write_text(TEXT.format(model=""))
    (root / "backbone.mix").write_text(TEXT.format(model='model { backbone = "backbone" }'))
    for spec, out in (("text.mix", "build"), ("backbone.mix", "build-backbone")):
        done = mixc("compile", spec, "--out", out, "--cache-dir", "cache", cwd=root)
        assert done.returncode == 0, done.stdout + done.stderr
    return root


def copy_plan(root: Path, name: str) -> Path:
    shutil.copytree(root / "build", root / name)
    return root / name / "plan.json"


def test_train_without_mix_lock(compiled):
    plan = copy_plan(compiled, "no-lock")
    (plan.parent / "mix.lock").unlink()
    assert_user_error(mixc("train", str(plan), cwd=compiled), errors.DATA, "mix.lock is missing")


def test_train_on_a_changed_shard(compiled):
    plan = copy_plan(compiled, "tampered")
    shard = next((plan.parent / "streams").rglob("*.mds*"))
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0xFF
    shard.write_bytes(bytes(data))
    assert_user_error(mixc("train", str(plan), cwd=compiled), errors.DATA, "does not match mix.lock")


def test_train_on_a_damaged_plan(compiled):
    plan = copy_plan(compiled, "damaged")
    plan.write_text(plan.read_text()[:40])
    assert_user_error(mixc("train", str(plan), cwd=compiled), errors.DATA, "is not a valid TrainingPlan")


def test_train_into_another_plans_run_folder(compiled):
    other = copy_plan(compiled, "other")
    (other.parent / "plan.json").write_text(other.read_text().replace('"seed": 0', '"seed": 1'))
    run = compiled / "runs" / "taken"
    run.mkdir(parents=True)
    shutil.copyfile(other, run / "plan.json")
    assert_user_error(mixc("train", "build/plan.json", "--run-dir", str(run), cwd=compiled), errors.DATA,
                      "holds a run of another plan")


def test_train_with_an_unreadable_duration(compiled):
    assert_user_error(mixc("train", "build/plan.json", "--max-duration", "twenty", cwd=compiled), errors.USAGE,
                      "is not a duration")


def test_train_from_a_backbone_that_is_not_a_model(compiled):
    assert_user_error(mixc("train", "build-backbone/plan.json", cwd=compiled), errors.SETUP,
                      "config.json is missing")


def test_compile_with_absent_weights_and_a_broken_checkpoint(compiled):
    (compiled / "broken-checkpoint").mkdir(exist_ok=True)
    (compiled / "audio.mix").write_text(AUDIO)
    checked = mixc("check", "audio.mix", cwd=compiled)
    built = mixc("compile", "audio.mix", "--cache-dir", "cache", cwd=compiled)
    for out in (checked, built):  # check says what compile refuses, at the same place
        assert_user_error(out, errors.SPEC, "audio.mix:4:17: error: ASR model 'large-v3' is not on this machine")
    (compiled / "audio.mix").write_text(AUDIO.replace('  asr { model = "large-v3" }\n', ""))
    assert_user_error(mixc("compile", "audio.mix", "--cache-dir", "cache", cwd=compiled), errors.SPEC,
                      "error: audio tokenizer checkpoint")


GENERATOR_SETTINGS = {
    "an absent model": ('  llm {\n    backend = transformers\n    model = "models/absent"\n  }\n',
                        "gen.mix:8:13: error: LLM model 'models/absent': no such directory"),
    "an espeak voice espeak-ng lacks": ('  tts { voices = ["espeak:en-xx"] }\n',
                                        "gen.mix:6:18: error: espeak-ng 1.52.0 has no voice 'en-xx'"),
}


@pytest.mark.parametrize("setting", sorted(GENERATOR_SETTINGS))
def test_a_generator_that_cannot_run_here_is_refused_before_any_stage(compiled, setting):
    block, says = GENERATOR_SETTINGS[setting]
    (compiled / "pages.html").write_text("<p>Hello.</p>")
    (compiled / "gen.mix").write_text(GENERATED.replace("{ pages = pages }", "{\n  pages = pages\n" + block + "}"))
    for command in ("check", "compile"):  # check says what compile refuses, at the same place
        out = mixc(command, "gen.mix", "--cache-dir", "gen-cache", cwd=compiled) if command == "compile" \
            else mixc(command, "gen.mix", cwd=compiled)
        assert_user_error(out, errors.SPEC, says)
    assert not (compiled / "gen-cache").exists() or not any((compiled / "gen-cache").rglob("stats.json"))


def test_a_prompt_that_is_not_text(compiled):
    (compiled / "pages.html").write_text("<p>Hello.</p>")
    (compiled / "rewrite.txt").write_bytes(b"Rewrite {page} \xff\xfe for speech.\n")
    krist = '{\n  pages = pages\n  prompt = "rewrite.txt"\n}'
    (compiled / "gen.mix").write_text(GENERATED.replace("{ pages = pages }", krist))
    assert_user_error(mixc("compile", "gen.mix", "--cache-dir", "gen-cache", cwd=compiled), errors.SPEC,
                      "gen.mix:6:12: error: the prompt file rewrite.txt is not UTF-8 text")


def test_compile_into_a_folder_that_cannot_be(compiled):
    (compiled / "a-file").write_text("")
    assert_user_error(mixc("compile", "text.mix", "--out", "a-file/out", "--cache-dir", "cache", cwd=compiled),
                      errors.SETUP, "Not a directory: 'a-file/out'")


def test_demo_data_without_flite(tmp_path):
    bin_dir = Path(sys.executable).parent  # python and mixc only: no flite on this PATH
    assert_user_error(mixc("demo-data", "out", "--conversations", "1", cwd=tmp_path, env={"PATH": str(bin_dir)}),
                      errors.SETUP, "flite is not installed")
