"""`mixc train s3://.../plan.json` (gs://): a plan compiled and uploaded to a real S3-compatible
server (moto) or GCS API server (gcp-storage-emulator), trained with its shards streaming into a
local data cache, every file checked against mix.lock: a tampered remote shard or index stops the
run with ShardMismatch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mixc.build.publish import publish
from mixc.planfile import Lock
from runtime.remote import fetch_plan, mirror_folder
from runtime.train import train
from runtime.verify import ShardMismatch
from tests.mixc.build.test_compile import spec_text
from tests.mixc.workspace import workspace


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> Path:
    ws = workspace(tmp_path_factory.mktemp("ws"))
    return ws.compile(ws.spec(spec_text())).out


def shards_of(out: Path) -> list[str]:
    return [s.path for s in Lock.read(out / "mix.lock").shards if s.path.endswith((".mds", ".zstd"))]


def test_remote_plan_trains_with_shards_streamed_into_the_data_cache(compiled, store, tmp_path):
    url = f"{store.url}/two"
    publish(compiled, url)
    cache = tmp_path / "data"
    result = train(f"{url}/plan.json", run_dir=tmp_path / "run", max_duration="2ba", device="cpu", data_cache=cache)
    assert result.step == 2 and result.metrics.is_file()
    mirror = mirror_folder(f"{url}/plan.json", cache)
    assert mirror.parent == cache and mirror.name.startswith("two-")
    assert (mirror / "mix.lock").read_bytes() == (compiled / "mix.lock").read_bytes()
    assert any((mirror / p).is_file() for p in shards_of(compiled))  # streamed in (and kept: keep_zip)
    for p in shards_of(compiled):
        if (mirror / p).is_file():
            assert (mirror / p).read_bytes() == (compiled / p).read_bytes()
    kept = json.loads((tmp_path / "run" / "run.json").read_text())
    assert Path(kept["plan"]) == mirror / "plan.json"


def test_a_tampered_remote_shard_stops_training(compiled, store, tmp_path):
    url = f"{store.url}/tampered"
    publish(compiled, url)
    for path in shards_of(compiled):
        data = bytearray((compiled / path).read_bytes())
        data[len(data) // 2] ^= 0xFF  # same size, other bytes
        store.put(f"tampered/{path}", bytes(data))
    with pytest.raises(ShardMismatch, match="does not match mix.lock: expected sha256"):
        train(f"{url}/plan.json", run_dir=tmp_path / "run", max_duration="2ba", device="cpu",
              data_cache=tmp_path / "data")
    mirror = mirror_folder(f"{url}/plan.json", tmp_path / "data")
    assert not any((mirror / p).exists() for p in shards_of(compiled))  # bad copies are not kept


def test_a_tampered_index_is_refused_before_training(compiled, s3, tmp_path):
    url = f"{s3.url}/index"
    publish(compiled, url)
    index = next(s.path for s in Lock.read(compiled / "mix.lock").shards if s.path.endswith("/index.json"))
    s3.put(f"index/{index}", (compiled / index).read_bytes().replace(b'"version"', b'"versiom"'))
    with pytest.raises(ShardMismatch, match=f"shard {index} from s3://"):
        fetch_plan(f"{url}/plan.json", tmp_path / "data")


def test_a_tampered_cached_shard_is_refused_with_a_hint(compiled, s3, tmp_path):
    url = f"{s3.url}/cached"
    publish(compiled, url)
    cache = tmp_path / "data"
    mirror = fetch_plan(f"{url}/plan.json", cache).parent
    shard = shards_of(compiled)[0]
    (mirror / shard).parent.mkdir(parents=True, exist_ok=True)
    (mirror / shard).write_bytes(b"not the shard")
    with pytest.raises(ShardMismatch, match="from the data cache") as info:
        fetch_plan(f"{url}/plan.json", cache)
    assert f"remove {mirror}" in (info.value.hint or "")


def test_missing_remote_plan_is_a_clear_error(s3, tmp_path):
    from mixc.storage import MissingObject
    with pytest.raises(MissingObject, match="plan.json does not exist"):
        fetch_plan(f"{s3.url}/nothing/plan.json", tmp_path / "data")
