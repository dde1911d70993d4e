import json
import re

import pytest

from mixc.audio_tokenizer import CheckpointError, load_tokenizer


def test_missing_folder_names_the_path(tmp_path):
    with pytest.raises(CheckpointError, match=re.escape(str(tmp_path / "nope")) + ".*not a folder"):
        load_tokenizer(tmp_path / "nope")


def test_missing_file_is_named(kmeans, tmp_path):
    kmeans[0].save(tmp_path / "km")
    (tmp_path / "km" / "tokenizer.pt").unlink()
    with pytest.raises(CheckpointError, match=r"km has no tokenizer\.pt"):
        load_tokenizer(tmp_path / "km")
    (tmp_path / "km" / "config.json").unlink()
    with pytest.raises(CheckpointError, match=r"km has no config\.json"):
        load_tokenizer(tmp_path / "km")


@pytest.mark.parametrize("field, value, message", [
    ("kind", "vqvae", "kind 'vqvae'"), ("frame_rate", 25.0, "frame_rate"), ("format", 99, "format 99")])
def test_invalid_config_is_rejected(kmeans, tmp_path, field, value, message):
    kmeans[0].save(tmp_path / "km")
    config_path = tmp_path / "km" / "config.json"
    config = json.loads(config_path.read_text())
    assert config["kind"] == "kmeans" and config["frame_rate"] == 12.5 and "torch" in config["versions"]
    config_path.write_text(json.dumps(config | {field: value}))
    with pytest.raises(CheckpointError, match=message):
        load_tokenizer(tmp_path / "km")


def test_fsq_config_records_what_encoding_needs(trained, tmp_path):
    trained[0].save(tmp_path / "tok")
    config = json.loads((tmp_path / "tok" / "config.json").read_text())
    assert config["kind"] == "fsq" and config["preset"] == "tiny" and config["levels"] == [8, 5, 5, 5]
    assert config["frame_rate"] == 12.5 and len(config["mel_mean"]) == len(config["mel_std"]) == 80
    assert config["alphabet"].startswith(" '") and "vector-quantize-pytorch" in config["versions"]
    (tmp_path / "tok" / "tokenizer.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="unreadable"):
        load_tokenizer(tmp_path / "tok")
