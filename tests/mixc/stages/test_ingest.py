"""Ingest: formats and rates to 16 kHz mono, every kind of bad file quarantined with its reason,
content-addressed keys that survive moves and renames, per-recording reuse."""

import json
import shutil
import struct

import av
import numpy as np
import pytest
import soundfile as sf

from mixc.audio import SAMPLE_RATE
from mixc.build.cache import Cache
from mixc.build.execute import Executor
from mixc.lang.lower import load
from mixc.stages import graph
from mixc.stages.decode import AudioError, decode
from mixc.stages.items import RecordingManifest

SPEC = """
source web : audio {{
  files = "audio/**/*"
  max_file_duration = {max_seconds}s
}}
mixture {{ 100% web }}
budget {{ steps = 1 }}
"""


def tone(seconds: float, rate: int, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    wave = (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    return np.stack([wave] * channels, axis=1) if channels > 1 else wave


def write_m4a(path, wave: np.ndarray, rate: int) -> None:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(wave[None, :].astype(np.float32), format="fltp", layout="mono")
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def good_files(folder) -> dict[str, float]:
    """One file per format and layout; returns name -> duration."""
    folder.mkdir(parents=True, exist_ok=True)
    sf.write(folder / "a.wav", tone(2.0, 44_100, 2), 44_100)  # stereo 44.1 kHz
    sf.write(folder / "b.flac", tone(1.5, 16_000), 16_000)
    sf.write(folder / "c.ogg", tone(1.0, 48_000), 48_000, format="OGG")
    sf.write(folder / "d.mp3", tone(1.2, 22_050), 22_050, format="MP3")
    write_m4a(folder / "e.m4a", tone(1.0, 24_000), 24_000)
    return {"a.wav": 2.0, "b.flac": 1.5, "c.ogg": 1.0, "d.mp3": 1.2, "e.m4a": 1.0}


def bad_files(folder) -> dict[str, str]:
    """One file per kind of damage; returns name -> the start of its quarantine reason."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "empty.wav").write_bytes(b"")
    (folder / "garbage.flac").write_bytes(bytes(range(256)) * 20)
    sf.write(folder / "whole.wav", tone(2.0, 16_000), 16_000)
    data = (folder / "whole.wav").read_bytes()
    (folder / "whole.wav").unlink()
    (folder / "cut.wav").write_bytes(data[: len(data) // 3])
    sf.write(folder / "silence.wav", np.zeros(16_000, np.float32), 16_000)
    sf.write(folder / "nothing.wav", np.zeros(0, np.float32), 16_000)
    sf.write(folder / "nan.wav", np.full(8_000, np.nan, np.float32), 16_000, subtype="FLOAT")
    sf.write(folder / "long.flac", tone(6.0, 8_000), 8_000)  # longer than the spec's max (5 s)
    return {"empty.wav": "empty file", "garbage.flac": "unreadable", "cut.wav": "truncated",
            "silence.wav": "silent", "nothing.wav": "zero-length", "nan.wav": "corrupt samples",
            "long.flac": "too long"}


def ingest(root, cache_dir=None, max_seconds=5):
    (root / "pyproject.toml").write_text("")
    (root / "s.mix").write_text(SPEC.format(max_seconds=max_seconds))
    low = load(root / "s.mix")
    assert low.ok, [d.message for d in low.diagnostics]
    dag = {k: v for k, v in graph(low.ir).items() if k == "ingest:web"}
    return Executor(low.ir, low.root, Cache(cache_dir or root / "cache")).run(dag)["ingest:web"]


def test_every_format_becomes_16k_mono_and_every_bad_file_is_quarantined(tmp_path):
    durations = good_files(tmp_path / "audio" / "good")
    reasons = bad_files(tmp_path / "audio" / "bad")
    (tmp_path / "audio" / "notes.md").write_text("not audio")
    run = ingest(tmp_path)
    rows = {r["path"].split("/")[-1]: r for r in RecordingManifest.read(run.path).rows}
    assert set(rows) == set(durations)
    for name, seconds in durations.items():
        wav, rate = sf.read(Cache(tmp_path / "cache").items.path("ingest", rows[name]["audio"], ".flac"))
        assert rate == SAMPLE_RATE and wav.ndim == 1
        assert abs(len(wav) / rate - seconds) < 0.08, name  # mp3/aac pad a few frames
    assert rows["a.wav"]["source_rate"] == 44_100 and rows["a.wav"]["channels"] == 2
    quarantined = {q["item"].split("/")[-1]: q["reason"] for q in run.stats.quarantined}
    assert set(quarantined) == set(reasons)
    for name, start in reasons.items():
        assert quarantined[name].startswith(start), (name, quarantined[name])
    assert run.stats.dropped["not an audio file"] == 1
    assert sum(v for k, v in run.stats.dropped.items() if k.startswith("quarantined: ")) == len(reasons)
    assert run.stats.items_out == len(durations)


def test_the_length_limit_is_judged_on_every_run(tmp_path):
    folder = tmp_path / "audio"
    folder.mkdir()
    sf.write(folder / "short.flac", tone(2.0, 16_000), 16_000)
    sf.write(folder / "long.flac", tone(6.0, 8_000), 8_000)
    strict = ingest(tmp_path)
    assert [q["item"] for q in strict.stats.quarantined] == ["audio/long.flac"] and strict.stats.items_out == 1
    loose = ingest(tmp_path, max_seconds=10)  # raised: the file left out is decoded now
    assert loose.stats.items_out == 2 and loose.stats.counts["recordings_cached"] == 1
    again = ingest(tmp_path, max_seconds=4)  # lowered: decided from what is stored, nothing decoded
    assert again.stats.counts["recordings_cached"] == 2 and again.stats.items_out == 1
    assert again.stats.quarantined[0]["reason"].startswith("too long")


def test_truncated_headers_are_detected_before_use(tmp_path):
    sf.write(tmp_path / "x.wav", tone(1.0, 16_000), 16_000)
    data = bytearray((tmp_path / "x.wav").read_bytes())
    (tmp_path / "y.wav").write_bytes(bytes(data[:-4000]))  # the data chunk declares more than it holds
    with pytest.raises(AudioError, match="truncated"):
        decode(tmp_path / "y.wav", 3600)
    riff_size = struct.unpack("<I", data[4:8])[0]
    assert riff_size > 0  # a well-formed header: the check reads the data chunk's declared size


def test_keys_survive_moves_renames_and_new_files_cost_only_themselves(tmp_path):
    good_files(tmp_path / "audio" / "x")
    first = ingest(tmp_path)
    shutil.move(tmp_path / "audio" / "x", tmp_path / "audio" / "deeper" / "y")  # moved and renamed folders
    (tmp_path / "audio" / "deeper" / "y" / "b.flac").rename(tmp_path / "audio" / "deeper" / "y" / "bee.flac")
    moved = ingest(tmp_path)
    assert moved.hit and moved.key == first.key  # content ids, not paths, key the stage
    sf.write(tmp_path / "audio" / "new.flac", tone(0.7, 16_000), 16_000)
    grown = ingest(tmp_path)
    assert not grown.hit and grown.stats.counts["recordings_cached"] == 5  # only the new file decoded
    assert grown.stats.items_out == 6


def test_a_manifest_names_files_and_carries_metadata(tmp_path):
    good_files(tmp_path / "audio" / "x")
    (tmp_path / "lists").mkdir()
    lines = [{"path": "../audio/x/b.flac", "show": "weather"}, {"path": "../audio/x/gone.flac", "show": "?"}]
    (tmp_path / "lists" / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "s.mix").write_text('source web : audio {\n  manifest = "lists/m.jsonl"\n}\n'
                                     'mixture { 100% web }\nbudget { steps = 1 }\n')
    low = load(tmp_path / "s.mix")
    assert low.ok, [d.message for d in low.diagnostics]
    run = Executor(low.ir, low.root, Cache(tmp_path / "cache")).run(
        {k: v for k, v in graph(low.ir).items() if k == "ingest:web"})["ingest:web"]
    rows = RecordingManifest.read(run.path).rows
    assert [json.loads(r["meta"]) for r in rows] == [{"show": "weather"}]
    assert [q["reason"] for q in run.stats.quarantined] == ["missing file (named by the manifest)"]


def test_audio_in_object_storage_is_the_same_recordings_named_by_url(tmp_path, s3):
    """`files = "s3://..."`: objects are mirrored locally, keyed by content like local files, and
    reports and lineage name them by their URLs (a real S3 server: moto)."""
    local = tmp_path / "local"
    good_files(local / "audio" / "good")
    bad_files(local / "audio" / "bad")
    for path in sorted((local / "audio").rglob("*")):
        if path.is_file():
            s3.put(f"pods/{path.relative_to(local / 'audio').as_posix()}", path.read_bytes())
    here = ingest(local)
    remote = tmp_path / "remote"
    remote.mkdir()
    (remote / "pyproject.toml").write_text("")
    (remote / "s.mix").write_text(SPEC.format(max_seconds=5).replace('"audio/**/*"', f'"{s3.url}/pods/**/*"'))
    low = load(remote / "s.mix")
    assert low.ok and low.ir.sources["web"].files == (f"{s3.url}/pods/**/*",)  # kept verbatim, not a path
    dag = {k: v for k, v in graph(low.ir).items() if k == "ingest:web"}
    there = Executor(low.ir, low.root, Cache(remote / "cache")).run(dag)["ingest:web"]

    def rows(run):
        return sorted((r["audio"], r["path"]) for r in RecordingManifest.read(run.path).rows)
    assert [a for a, _ in rows(there)] == [a for a, _ in rows(here)]  # the same recordings, by content
    assert {p for _, p in rows(there)} == {f"{s3.url}/pods/good/{name}" for name in good_files(tmp_path / "x")}
    quarantined = {q["item"] for q in there.stats.quarantined}
    assert quarantined == {f"{s3.url}/pods/bad/{name}" for name in bad_files(tmp_path / "y")}
    assert (remote / "cache" / "sources" / "s3").is_dir()
