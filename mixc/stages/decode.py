"""Decoding audio files into the one audio format (16 kHz mono float32), or naming why a file cannot
be used: the reasons ingest quarantines files with.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mixc.audio import to_mono_16k
from mixc.errors import DataError


class AudioError(DataError):
    """A file that cannot become 16 kHz mono audio; the message is the quarantine reason."""


class TooLong(AudioError):
    """Longer than the spec allows: a limit of the spec, not a fault of the file."""

    def __init__(self, seconds: float, max_seconds: float):
        super().__init__(too_long(seconds, max_seconds))
        self.seconds = seconds


def too_long(seconds: float, max_seconds: float) -> str:
    return f"too long: {seconds / 3600:.2f} h (max_file_duration is {max_seconds / 3600:.2f} h)"


SILENT_RMS = 10 ** (-60 / 20)  # below -60 dBFS over the whole file: nothing to hear
TRUNCATED_SHARE = 0.98  # a file holding less of the audio its header declares is truncated
LIBSNDFILE_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif"}


@dataclass(frozen=True)
class Probe:
    seconds: float | None  # from the header; None when the header does not say
    rate: int
    channels: int
    format: str


def probe(path: Path) -> Probe:
    """Duration, rate and channels from the file header, without decoding; raises AudioError."""
    if path.stat().st_size == 0:
        raise AudioError("empty file (0 bytes)")
    if path.suffix.lower() in LIBSNDFILE_SUFFIXES:
        import soundfile
        try:
            info = soundfile.info(str(path))
            seconds = info.frames / info.samplerate if info.samplerate else None
            return Probe(seconds, info.samplerate, info.channels, info.format.lower())
        except Exception:  # noqa: BLE001 - libsndfile refuses some valid files (e.g. odd mp3): try FFmpeg
            pass
    return _probe_av(path)


def _probe_av(path: Path) -> Probe:
    import av
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise AudioError("no audio stream")
            stream = container.streams.audio[0]
            seconds = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else \
                (container.duration / 1e6 if container.duration else None)
            return Probe(seconds, stream.rate or 0, stream.channels or 0, container.format.name)
    except AudioError:
        raise
    except Exception as exc:  # noqa: BLE001 - FFmpeg's many error types all mean: not audio we can read
        raise AudioError(f"unreadable: {_reason(exc)}") from None


def _reason(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[-1][:200]


def _wav_declared_frames(path: Path, channels: int) -> int | None:
    """Frames the RIFF header's data chunk declares (libsndfile silently trims a short data chunk)."""
    import struct
    with open(path, "rb") as handle:
        head = handle.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        bits, fmt_seen = 16, False
        while chunk := handle.read(8):
            if len(chunk) < 8:
                return None
            name, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if name == b"fmt ":
                body = handle.read(size)
                bits, fmt_seen = struct.unpack("<H", body[14:16])[0] if len(body) >= 16 else 16, True
                handle.seek(size % 2, 1)
            elif name == b"data":
                frame_bytes = max(1, channels) * max(1, bits // 8)
                return size // frame_bytes if fmt_seen else None
            else:
                handle.seek(size + size % 2, 1)
    return None


def _read(path: Path, head: Probe) -> tuple[np.ndarray, int, int | None]:
    """Samples (frames, channels) float32, their rate, and the frames the header declares."""
    if path.suffix.lower() in LIBSNDFILE_SUFFIXES:
        import soundfile
        try:
            data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
        except Exception as exc:  # noqa: BLE001 - a decode error mid-file: corrupt or truncated
            raise AudioError(f"unreadable: {_reason(exc)}") from None
        declared = _wav_declared_frames(path, head.channels) if path.suffix.lower() == ".wav" else None
        if declared is None and head.seconds and path.suffix.lower() != ".ogg":
            declared = round(head.seconds * rate)
        return data, rate, declared
    return _read_av(path)


def _read_av(path: Path) -> tuple[np.ndarray, int, int | None]:
    import av
    try:
        with av.open(str(path)) as container:
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="flt", layout="mono")
            parts = [f.to_ndarray().reshape(-1)
                     for frame in container.decode(stream) for f in resampler.resample(frame)]
            parts += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
            rate = stream.rate
    except Exception as exc:  # noqa: BLE001 - FFmpeg's many error types all mean: corrupt
        raise AudioError(f"unreadable: {_reason(exc)}") from None
    data = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    return data[:, None], rate, None


def decode(path: Path, max_seconds: float) -> tuple[np.ndarray, Probe]:
    """A file as float32 16 kHz mono, or AudioError naming why it cannot be used: empty, unreadable,
    too long (checked on the header, before decoding), truncated, zero-length, non-finite or silent."""
    head = probe(path)
    if head.seconds is not None and head.seconds > max_seconds:
        raise TooLong(head.seconds, max_seconds)
    data, rate, declared = _read(path, head)
    if len(data) == 0 or not rate:
        raise AudioError("zero-length audio")
    if declared and len(data) < TRUNCATED_SHARE * declared:
        raise AudioError(f"truncated: the header declares {declared / rate:.2f} s, "
                         f"the file holds {len(data) / rate:.2f} s")
    if len(data) / rate > max_seconds:
        raise TooLong(len(data) / rate, max_seconds)
    if not np.isfinite(data).all():
        raise AudioError("corrupt samples (NaN or infinite values)")
    wav = to_mono_16k(data, rate)
    if float(np.sqrt(np.mean(np.square(wav, dtype=np.float64)))) < SILENT_RMS:
        raise AudioError("silent: the whole file is below -60 dBFS")
    return wav, Probe(len(data) / rate, rate, data.shape[1], head.format)
