"""Property: IR -> printed spec -> parse -> lower gives the same IR hash; fmt keeps meaning and is
idempotent. Specs are generated from the language's own constructs."""

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mixc.lang.fmt import format_spec, print_ir, quote
from mixc.lang.lower import load
from mixc.lang.syntax import parse

NAMES = ["pile", "books", "web", "talks", "news", "wiki", "pods"]
PRINTABLE = st.text(st.characters(exclude_categories=("Cc", "Cs")), min_size=1, max_size=12)
DURATIONS = ["30ms", "100ms", "250ms", "500ms", "1s", "1.5s", "20s", "2min"]


@st.composite
def text_source(draw, name: str) -> str:
    fields = [f'files = {quote(draw(st.sampled_from(["t/*.jsonl", "a b/*.txt", "x/**/*.zst"])))}']
    if draw(st.booleans()):
        fields.append(f"field = {quote(draw(PRINTABLE))}")
    if draw(st.booleans()):
        fields.append(f"dedup = {draw(st.sampled_from(['true', 'false']))}")
    if draw(st.booleans()):
        fields.append(f"max_repeats = {draw(st.integers(1, 50))}")
    return f"source {name} : text {{ {' '.join(fields)} }}"


@st.composite
def audio_source(draw, name: str) -> str:
    vad = f"vad {{ threshold = 0.{draw(st.integers(1, 99)):02d} min_speech = {draw(st.sampled_from(DURATIONS))} }}"
    chunk = draw(st.sampled_from([
        f"chunk fine {{ min = 1s max = {draw(st.sampled_from(['5s', '10s', '20s']))} }}",
        f"chunk coarse {{ max = {draw(st.sampled_from(['30s', '1min']))} }}",
        "chunk fine {}",
    ]))
    asr = f'asr {{ backend = {draw(st.sampled_from(["faster_whisper", "whisperx"]))} model = "tiny.en" }}'
    return f'source {name} : audio {{ files = "a/*.wav" {vad} {asr} {chunk} }}'


def shares(draw, n: int) -> list[int]:
    cuts = sorted(draw(st.lists(st.integers(1, 99), min_size=n - 1, max_size=n - 1, unique=True)))
    bounds = [0, *cuts, 100]
    return [b - a for a, b in zip(bounds, bounds[1:])]


@st.composite
def specs(draw) -> str:
    names = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=5, unique=True))
    kinds = {n: draw(st.sampled_from(["text", "audio"])) for n in names}
    blocks = [draw(text_source(n)) if kinds[n] == "text" else draw(audio_source(n)) for n in names]
    parts = shares(draw, len(names))
    if len(names) >= 3 and draw(st.booleans()):
        inner = shares(draw, 2)
        entries = [f"{parts[0]}% {names[0]}",
                   f"{100 - parts[0]}% group {{ {inner[0]}% {names[1]} {inner[1]}% {names[2]} }}"]
        entries += []
        names = names[:3]
        blocks = blocks[:3]
    else:
        entries = [f"{s}% {n}" for s, n in zip(parts, names)]
    sampling = draw(st.sampled_from(["deterministic", "stochastic(p=0.5)", "stochastic(0.25, first=any)"]))
    budget = draw(st.sampled_from(["tokens = 1.67T", "tokens = 10M", "steps = 200K", "steps = 300"]))
    batch, lr = draw(st.integers(1, 1024)), draw(st.sampled_from(["3e-4", "0.001", "1e-3"]))
    train = f"train {{ batch = {batch} optimizer {{ lr = {lr} }} }}"
    seed = f"seed = {draw(st.integers(0, 2 ** 31))}"
    return "\n".join([seed, *blocks, f"interleave {{ sampling = {sampling} loss = text_only }}",
                      f"mixture {{ {' '.join(entries)} }}", f"budget {{ {budget} }}", train]) + "\n"


def lower_text(folder: Path, name: str, text: str):
    path = folder / name
    path.write_text(text)
    low = load(path)
    assert low.ok, [d.message for d in low.diagnostics if d.severity.value == "error"]
    return low.ir


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs())
def test_ir_print_parse_round_trip(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "mixc.toml").write_text("")
        ir = lower_text(folder, "a.mix", text)
        again = lower_text(folder, "b.mix", print_ir(ir))
        assert again.content_hash() == ir.content_hash()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs())
def test_fmt_keeps_meaning_and_is_idempotent(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "mixc.toml").write_text("")
        spec = parse(text)
        once = format_spec(spec.text, spec.items, spec.comments)
        again = parse(once)
        assert format_spec(again.text, again.items, again.comments) == once
        assert lower_text(folder, "f.mix", once).content_hash() == lower_text(folder, "a.mix", text).content_hash()
