"""Reading text sources in every format, normalising, quarantining bad files, dedup."""

import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import zstandard

from mixc.stages.text import Documents, normalise
from tests.mixc.stages.helpers import run_stage, spec_of

SPEC = """
source s : text {{
  files = "d/*"
  {extra}
}}
mixture {{ 100% s }}
budget {{ steps = 1 }}
"""


def docs(folder) -> list[dict]:
    return [row for b in Documents.batches(folder, ("doc_id", "file", "row", "text")) for row in b.to_pylist()]


def test_every_format_and_compression(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    lines = "".join(json.dumps({"text": t}) + "\n" for t in ["one", "two"])
    (d / "a.jsonl").write_text(lines)
    (d / "b.jsonl.gz").write_bytes(gzip.compress(lines.encode()))
    (d / "c.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(lines.encode()))
    pq.write_table(pa.table({"text": ["three", "four"]}), d / "d.parquet")
    (d / "e.txt").write_text("a whole file\nis one document\n")
    spec = spec_of(tmp_path, SPEC.format(extra=""))
    out, stats = run_stage(tmp_path, spec, "read:s", {})
    got = docs(out)
    assert [r["text"] for r in got] == ["one", "two", "one", "two", "one", "two", "three", "four",
                                         "a whole file\nis one document"]
    assert [r["doc_id"] for r in got] == list(range(9))
    assert got[6]["file"] == "d/d.parquet" and got[7]["row"] == 1
    assert stats.items_out == 9 and stats.counts["files"] == 5


def test_bad_files_are_quarantined_with_a_reason_and_bad_records_counted(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "good.jsonl").write_text('{"text": "fine"}\n{"other": 1}\n{"text": "   "}\n')
    (d / "broken.jsonl").write_text('{"text": "half"\n')
    (d / "binary.jsonl.gz").write_bytes(b"not gzip at all")
    spec = spec_of(tmp_path, SPEC.format(extra=""))
    out, stats = run_stage(tmp_path, spec, "read:s", {})
    assert [r["text"] for r in docs(out)] == ["fine"]
    assert stats.dropped == {"no field 'text'": 1, "empty": 1, "unreadable": 2}
    reasons = {q["item"]: q["reason"] for q in stats.quarantined}
    assert set(reasons) == {"d/broken.jsonl", "d/binary.jsonl.gz"}
    assert "JSONDecodeError" in reasons["d/broken.jsonl"]


def test_custom_field_and_normalisation(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "a.jsonl").write_text(json.dumps({"body": "Cafe\u0301\r\nline two  \n"}) + "\n")
    spec = spec_of(tmp_path, SPEC.format(extra='field = "body"'))
    out, _ = run_stage(tmp_path, spec, "read:s", {})
    assert docs(out)[0]["text"] == "Caf\u00e9\nline two"
    assert normalise("x\r\ny\rz  ") == "x\ny\nz"


def test_dedup_keeps_first_of_exact_duplicates(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "a.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in ["a", "b", "a", "c", "b"]))
    spec = spec_of(tmp_path, SPEC.format(extra="dedup = true"))
    read, _ = run_stage(tmp_path, spec, "read:s", {})
    out, stats = run_stage(tmp_path, spec, "dedup:s", {"read:s": read})
    assert [(r["doc_id"], r["text"]) for r in docs(out)] == [(0, "a"), (1, "b"), (3, "c")]
    assert stats.dropped == {"duplicate": 2}
