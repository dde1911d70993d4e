"""Audio tokenizer stages on real speech: train (k-means and FSQ) from filtered utterances, encode
chunks at 12.5 Hz, memoised per recording; a checkpoint loads back to the same codes."""

import math

import numpy as np
import polars as pl
import pytest
import soundfile as sf

from mixc.audio import SAMPLE_RATE
from mixc.build.cache import Cache
from mixc.demo.audio import read_sentences
from mixc.stages.audio_tokens import TOKENIZER, AudioCodes, AudioVocab
from mixc.stages.chunk import ChunkManifest
from mixc.stages.transcripts import UtteranceTable
from tests.mixc.stages.helpers import run_stage, spec_of

SPEC = """
seed = 3
source web : audio {{ files = "a/*.flac" }}
tokenizer audio : {tokenizer}
mixture {{ 100% web }}
budget {{ steps = 1 }}
"""


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    """Two 'recordings' of three flite sentences each, stored as the ingest stage stores audio, and the
    filter artifact listing each sentence as an utterance."""
    root = tmp_path_factory.mktemp("speech")
    cache = Cache(root / "cache")
    clips = read_sentences(6)
    rows = []
    for rec in range(2):
        parts, t = [], 0.0
        for wav, text in clips[3 * rec: 3 * rec + 3]:
            rows.append({"rec": f"{rec:032x}", "path": f"a/{rec}.flac", "audio": f"audio{rec}", "utt": len(parts),
                         "speaker": "S0", "start": t, "end": t + len(wav) / SAMPLE_RATE, "text": text, "words": [],
                         "confidence": 1.0, "language": "en"})
            parts.append(wav)
            t += len(wav) / SAMPLE_RATE
        wav = np.concatenate(parts)
        cache.items.put("ingest", f"audio{rec}", ".flac",
                        lambda tmp, w=wav: sf.write(tmp, w, SAMPLE_RATE, format="FLAC"))
    (root / "filter").mkdir()
    UtteranceTable.write(root / "filter", rows)
    chunks = pl.DataFrame(rows).with_row_index("chunk").with_columns(
        pl.col("chunk").cast(pl.Int64), pl.col("utt").alias("index"),
        pl.col("rec").rank("dense").cast(pl.Int64).alias("doc") - 1)
    (root / "chunk").mkdir()
    ChunkManifest.write(root / "chunk", chunks)
    return root, cache, rows


def stage(root, cache, spec, sid, inputs, name):
    return run_stage(root, spec, sid, inputs, name, cache.items)


@pytest.mark.parametrize("tokenizer", ["kmeans { codebook = 16 }", "fsq { levels = [4, 4, 4]  steps = 20 }"])
def test_train_then_encode_every_chunk_at_12_5_hz(speech, tmp_path, tokenizer):
    root, cache, rows = speech
    spec = spec_of(tmp_path, SPEC.format(tokenizer=tokenizer))
    tok, stats = stage(tmp_path, cache, spec, "train_audio_tokenizer:audio", {"filter:web": root / "filter"}, "tok")
    vocab = AudioVocab.read(tok)
    assert vocab.codebook_size == (16 if "kmeans" in tokenizer else 64) and vocab.frame_rate == 12.5
    assert (tok / TOKENIZER / "config.json").exists()
    assert stats.counts["recon_vs_mean"] < 1.0  # reconstructs better than predicting the mean
    assert 0 < stats.counts["usage_share"] <= 1 and stats.counts["tokens_per_second"] > 12
    inputs = {"chunk:web": root / "chunk", "train_audio_tokenizer:audio": tok}
    enc, enc_stats = stage(tmp_path, cache, spec, "encode:web", inputs, "enc")
    encoded = AudioCodes.open(enc)
    offsets, codes = encoded.offsets, encoded.codes
    assert len(offsets) == len(rows) + 1 and offsets[-1] == len(codes)
    for row, n in zip(rows, np.diff(offsets)):  # 80 ms per code: ceil(samples / 1280)
        samples = int(row["end"] * SAMPLE_RATE) - int(row["start"] * SAMPLE_RATE)
        assert n == math.ceil(samples / 1280)
    assert codes.max() < vocab.codebook_size and encoded.codebook_size == vocab.codebook_size
    again, again_stats = stage(tmp_path, cache, spec, "encode:web", inputs, "enc-again")
    assert again_stats.counts["recordings_cached"] == 2  # memoised per recording
    assert (AudioCodes.open(again).codes == codes).all()


def test_a_saved_tokenizer_loads_as_a_checkpoint_with_the_same_codes(speech, tmp_path):
    root, cache, _ = speech
    spec = spec_of(tmp_path, SPEC.format(tokenizer="kmeans { codebook = 16 }"))
    tok, _ = stage(tmp_path, cache, spec, "train_audio_tokenizer:audio", {"filter:web": root / "filter"}, "tok")
    (tmp_path / "ckpt").mkdir()
    for f in (tok / TOKENIZER).iterdir():
        (tmp_path / "ckpt" / f.name).write_bytes(f.read_bytes())
    spec2 = spec_of(tmp_path, SPEC.format(tokenizer='checkpoint { path = "ckpt" }'))
    loaded, stats = stage(tmp_path, cache, spec2, "load_audio_tokenizer:audio", {}, "loaded")
    assert stats.counts["codebook_size"] == 16
    codes = {}
    for name, spec_, folder in (("trained", spec, tok), ("loaded", spec2, loaded)):
        sid = "train_audio_tokenizer:audio" if name == "trained" else "load_audio_tokenizer:audio"
        enc, _ = stage(tmp_path, cache, spec_, "encode:web", {"chunk:web": root / "chunk", sid: folder}, f"enc-{name}")
        codes[name] = AudioCodes.open(enc).codes
    assert (codes["trained"] == codes["loaded"]).all()
