"""Speaker diarization (who spoke when) behind one interface, with two backends.

- `embedding` (default, offline): resemblyzer's GE2E speaker encoder (its weights ship inside the
  package) embeds 1.5 s windows of the VAD speech, after stationary noise is subtracted; regions are
  cut where the windows either side of a point differ (speaker changes without a pause); units of
  up to 3 s of the resulting parts are clustered by spherical k-means with the number of speakers
  estimated (fixed seed); each window takes its nearest speaker, and runs under 1 s are smoothed
  away inside each region. Quality and speed: benchmarks/diarize_quality.py.
- `pyannote`: pyannote.audio's `SpeakerDiarization` pipeline from a local pipeline folder, or from a
  hub id found in the local Hugging Face cache; nothing is ever downloaded.

Both return `Turn`s that are sorted and disjoint, lie inside VAD speech regions, and carry labels
`S0`, `S1`, ... numbered by first appearance. A turn is a stretch of one speaker: another speaker,
or a VAD pause of at least `max_pause` (spec field, default 0.25 s), starts a new one. A shorter
pause (a breath between two sentences) stays inside the turn, so ASR hears whole turns; longer
same-speaker runs are joined by the coarse chunker (`max_gap`), and fine chunks keep every turn.
"""

from __future__ import annotations

import hashlib
import json
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

from mixc import ir
from mixc.audio import SAMPLE_RATE, Interval, Region, Turn
from mixc.backends.hub import cached_file, hf_cache
from mixc.errors import MissingWeights
from mixc.hashing import model_file_digest as file_digest


class Diarizer(ABC):
    @abstractmethod
    def turns(self, wav: np.ndarray, regions: list[Region]) -> list[Turn]:
        """16 kHz mono float32 audio and its VAD speech regions -> speaker turns, sorted, non-overlapping,
        inside speech. Speaker labels 'S0','S1',... numbered by first appearance (deterministic)."""


def load(cfg: ir.Diarize, threads: int = 1) -> Diarizer:
    if cfg.backend == "pyannote":
        return PyannoteDiarizer(cfg, threads)
    return EmbeddingDiarizer(cfg, threads)


def locate(cfg: ir.Diarize) -> None:
    """Raise MissingWeights when the configured weights are not on this machine (reads no weights)."""
    if cfg.backend == "pyannote":
        resolve_pipeline(cfg.model)


def model_revision(cfg: ir.Diarize) -> str:
    """Names the exact weights (and, for `embedding`, the algorithm version); enters the cache key."""
    if cfg.backend == "pyannote":
        return pyannote_revision(cfg)
    return embedding_revision()


# ----------------------------------------------------------------------------- shared by both backends


@dataclass(frozen=True)
class SpeakerPiece(Interval):
    """A stretch of one VAD region with a backend-specific speaker key (before joining and renaming)."""

    speaker: int | str
    region: int


def join_pieces(pieces: list[SpeakerPiece], max_pause: float = 0.0) -> list[Turn]:
    """Disjoint pieces -> sorted turns: consecutive pieces of one speaker in the same VAD region, or
    apart by less than `max_pause`, become one turn; speakers are renamed S0, S1, ... in order of
    first appearance."""
    names: dict[int | str, str] = {}
    turns: list[Turn] = []
    region = None
    for piece in sorted(pieces, key=lambda p: (p.start, p.end)):
        name = names.setdefault(piece.speaker, f"S{len(names)}")
        if turns and turns[-1].speaker == name and (piece.region == region or piece.start - turns[-1].end < max_pause):
            turns[-1] = Turn(turns[-1].start, max(turns[-1].end, piece.end), name)
        else:
            turns.append(Turn(piece.start, piece.end, name))
        region = piece.region
    return turns


# ----------------------------------------------------------------------------- embedding backend

ALGORITHM = "ge2e-changes-units-kmeans-v3"  # bump when the embedding, clustering or smoothing changes results
ENCODER_WEIGHTS = "pretrained.pt"  # inside the resemblyzer package
EMBEDDING_DIM = 256  # GE2E's output size
ENCODER_RATE = 100  # mel frames per second of resemblyzer's encoder (10 ms hop)
WINDOW = 1.5  # seconds per embedding window (the encoder was trained on 1.6 s partials)
STEP = 0.5  # seconds between window starts; WINDOW is a whole number of steps
CHANGE = 0.25  # cosine distance between the windows either side of t that marks a speaker change
PEAK_RADIUS = 1.0  # seconds: a change is the strongest candidate within this distance
UNIT = 3.0  # seconds: parts are cut into units of at most this; units are what gets clustered
MIN_SPEAKER = 2.0  # seconds of speech a cluster needs to count as a speaker (not an odd unit)
SAME_SPEAKER = 0.85  # centroid cosine above which two clusters are one speaker
SILHOUETTE_TOLERANCE = 0.02  # more speakers win when their silhouette is at most this much lower
MIN_SILHOUETTE = 0.4  # weaker structure is one speaker (true counts scored >= 0.44 on 215 recordings)
MIN_RUN = 1.0  # seconds: a shorter speaker run inside a region joins a neighbouring run
TARGET_DBFS = -30.0  # speech loudness the encoder was trained at (resemblyzer's normalisation)
NOISE_OVERSUBTRACT = 3.0  # times the estimated noise spectrum removed from every mel frame
NOISE_FLOOR = 0.02  # fraction of each mel bin always kept by the subtraction
NOISE_QUANTILE = 0.1  # the quietest tenth of the frames estimates the noise spectrum
KMEANS_INITS = 10
SEED = 0


def embedding_revision() -> str:
    """resemblyzer's version, a digest of its shipped weights, and ALGORITHM; found without importing
    resemblyzer (which imports torch and librosa)."""
    from importlib.util import find_spec

    spec = find_spec("resemblyzer")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError("resemblyzer is not installed")
    weights = Path(spec.origin).parent / ENCODER_WEIGHTS
    return f"resemblyzer=={version('resemblyzer')}:{ENCODER_WEIGHTS}@{file_digest(weights)[:16]}:{ALGORITHM}"


@dataclass(frozen=True)
class Part(Interval):
    """A stretch of one VAD region between detected speaker changes."""

    region: int


@dataclass(frozen=True)
class Segment(Interval):
    """One embedding's audio (`start`..`end`), the stretch it labels (`own_*`), the VAD region it
    lies in, and the part of that region (between detected speaker changes) it belongs to."""

    region: int
    part: int
    own_start: float
    own_end: float


class Embedder:
    """GE2E embeddings of spans of one recording's mel frames, memoised by span (the windows that
    find speaker changes are reused as labelling windows); full windows run as one batch."""

    def __init__(self, encoder, mel: np.ndarray):
        self.encoder = encoder
        self.mel = mel
        self.memo: dict[tuple[int, int], np.ndarray] = {}

    def span(self, start: float, end: float) -> tuple[int, int]:
        first = min(round(start * ENCODER_RATE), len(self.mel) - 1)
        return first, min(max(round(end * ENCODER_RATE), first + 1), len(self.mel))

    def __call__(self, spans: list[tuple[int, int]]) -> np.ndarray:
        import torch

        todo = sorted(set(spans) - self.memo.keys())
        by_length: dict[int, list[tuple[int, int]]] = {}
        for span in todo:
            by_length.setdefault(span[1] - span[0], []).append(span)
        with torch.no_grad():
            for group in by_length.values():
                batch = torch.from_numpy(np.stack([self.mel[a:b] for a, b in group]))
                for span, vector in zip(group, self.encoder(batch).numpy()):
                    self.memo[span] = vector
        return np.stack([self.memo[span] for span in spans]) if spans else np.zeros((0, EMBEDDING_DIM), np.float32)


def change_points(region: Region, embed: Embedder) -> list[float]:
    """Times inside a region where the speaker changes without a pause VAD could see: t such that
    the window ending at t and the window starting at t (WINDOW seconds each, t on a STEP grid)
    are further apart than CHANGE in cosine distance, at a local maximum within PEAK_RADIUS."""
    count = int((region.duration - WINDOW) / STEP + 1e-9) + 1
    lag = round(WINDOW / STEP)
    if count <= lag:
        return []
    starts = region.start + STEP * np.arange(count)
    emb = embed([embed.span(s, s + WINDOW) for s in starts])
    score = 1.0 - np.sum(emb[:-lag] * emb[lag:], axis=1)  # score[i]: change at starts[i + lag]
    radius = round(PEAK_RADIUS / STEP)
    return [float(starts[i + lag]) for i in range(len(score))
            if score[i] > CHANGE and score[i] == score[max(0, i - radius):i + radius + 1].max()]


def split_at_changes(regions: list[Region], embed: Embedder) -> list[Part]:
    """Each VAD region cut at its detected speaker changes, in order."""
    out: list[Part] = []
    for index, region in enumerate(regions):
        edges = [region.start, *change_points(region, embed), region.end]
        out.extend(Part(a, b, index) for a, b in zip(edges, edges[1:]))
    return out


def segments(parts: list[Part]) -> list[Segment]:
    """Windows of WINDOW seconds every STEP seconds inside each part (the last one flush with the
    part's end); a part shorter than a window is one segment. Each window labels the stretch
    around its centre, halfway to its neighbours' centres, so a part is covered exactly once."""
    out: list[Segment] = []
    for index, part in enumerate(parts):
        if part.duration <= WINDOW:
            out.append(Segment(part.start, part.end, part.region, index, part.start, part.end))
            continue
        count = int(np.ceil((part.duration - WINDOW) / STEP - 1e-9)) + 1
        starts = [min(part.start + k * STEP, part.end - WINDOW) for k in range(count)]
        centres = [s + WINDOW / 2 for s in starts]
        edges = [part.start] + [(a + b) / 2 for a, b in zip(centres, centres[1:])] + [part.end]
        out.extend(Segment(s, s + WINDOW, part.region, index, a, b) for s, a, b in zip(starts, edges, edges[1:]))
    return out


def units(segs: list[Segment], parts: list[Part]) -> list[list[int]]:
    """Groups segments into units: each part cut into equal stretches of at most UNIT seconds, a
    segment going to the stretch that holds the centre of what it labels. Units do not overlap, so
    (unlike overlapping windows) their embeddings are not near-copies of their neighbours'."""
    groups: dict[tuple[int, int], list[int]] = {}
    for i, seg in enumerate(segs):
        part = parts[seg.part]
        count = max(1, int(np.ceil(part.duration / UNIT)))
        centre = (seg.own_start + seg.own_end) / 2
        slot = min(count - 1, int((centre - part.start) / part.duration * count))
        groups.setdefault((seg.part, slot), []).append(i)
    return [groups[key] for key in sorted(groups)]


class EmbeddingDiarizer(Diarizer):
    """GE2E embeddings: regions cut at speaker changes -> units clustered with the speaker count
    estimated -> each window takes its nearest speaker -> short runs smoothed away -> turns."""

    def __init__(self, cfg: ir.Diarize, threads: int = 1):
        import warnings

        import torch
        with warnings.catch_warnings():  # resemblyzer imports webrtcvad, which imports pkg_resources
            warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
            from resemblyzer import VoiceEncoder

        torch.set_num_threads(threads)
        self.cfg = cfg
        self.encoder = VoiceEncoder("cpu", verbose=False)

    def turns(self, wav: np.ndarray, regions: list[Region]) -> list[Turn]:
        regions = sorted((r for r in regions if r.duration > 0), key=lambda r: r.start)
        if not regions:
            return []
        embed = Embedder(self.encoder, mel_frames(wav, regions))
        parts = split_at_changes(regions, embed)
        segs = segments(parts)
        emb = embed([embed.span(s.start, s.end) for s in segs])
        groups = units(segs, parts)
        seconds = np.array([sum(segs[i].own_end - segs[i].own_start for i in group) for group in groups])
        centroids = speakers(unit_embeddings(emb, groups), seconds, self.cfg.min_speakers, self.cfg.max_speakers)
        labels = np.argmax(emb @ centroids.T, axis=1)
        return join_pieces(smooth(segs, labels, emb, centroids), self.cfg.max_pause)


def mel_frames(wav: np.ndarray, regions: list[Region]) -> np.ndarray:
    """The encoder's mel frames (linear power, 40 bins, 10 ms) of the loudness-normalised audio,
    with stationary noise removed. Noise pulls every speaker's embedding towards the noise's own,
    so the noise spectrum, estimated as the mean of the quietest NOISE_QUANTILE of the frames (the
    pauses, and the gaps between words, which exist even where VAD finds no pause), is
    over-subtracted with a floor. Clean audio's quietest frames are near zero: it is left as is."""
    from resemblyzer import wav_to_mel_spectrogram

    mel = wav_to_mel_spectrogram(normalise(wav, regions))
    energy = mel.sum(axis=1)
    quiet = energy <= np.quantile(energy, NOISE_QUANTILE)
    noise = mel[quiet].mean(axis=0)
    return np.maximum(mel - NOISE_OVERSUBTRACT * noise, NOISE_FLOOR * mel).astype(np.float32)


def normalise(wav: np.ndarray, regions: list[Region]) -> np.ndarray:
    """Scales the audio so its speech sits at TARGET_DBFS (quieter audio is raised, louder is kept),
    as resemblyzer's own preprocessing does for the audio it was trained on."""
    speech = np.concatenate([wav[int(r.start * SAMPLE_RATE):int(r.end * SAMPLE_RATE)] for r in regions])
    rms = float(np.sqrt(np.mean(np.square(speech, dtype=np.float64)))) if len(speech) else 0.0
    if rms <= 0:
        return wav.astype(np.float32)
    gain = 10 ** (TARGET_DBFS / 20) / rms
    return (wav * max(gain, 1.0)).astype(np.float32)


def unit_embeddings(emb: np.ndarray, groups: list[list[int]]) -> np.ndarray:
    return normalised(np.stack([emb[g].mean(axis=0) for g in groups]))


def normalised(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


@dataclass(frozen=True)
class Clustering:
    k: int
    silhouette: float
    admissible: bool
    centroids: np.ndarray


def speakers(units: np.ndarray, seconds: np.ndarray, min_speakers: int, max_speakers: int) -> np.ndarray:
    """Speaker centroids (k, dim) with k estimated from the units' embeddings and durations. For
    each k >= 2, spherical k-means (fixed seed) scored by the cosine silhouette, averaged over the
    units weighted by their seconds. A clustering is admissible when its silhouette reaches
    MIN_SILHOUETTE, every cluster holds at least MIN_SPEAKER seconds and no two centroids are
    closer than SAME_SPEAKER. Among admissible clusterings, the largest k whose silhouette is
    within SILHOUETTE_TOLERANCE of the best wins (the silhouette alone under-counts a speaker who
    says little); none admissible means one speaker. `min_speakers`/`max_speakers` bound k; a forced
    k >= 2 with no admissible clustering takes the best silhouette."""
    ks = range(max(2, min_speakers), min(max_speakers, len(units) - 1) + 1)
    options = [o for o in (clustering(units, seconds, k) for k in ks) if o is not None]
    admitted = [o for o in options if o.admissible]
    if admitted:
        best = max(o.silhouette for o in admitted)
        return max((o for o in admitted if o.silhouette >= best - SILHOUETTE_TOLERANCE), key=lambda o: o.k).centroids
    if min_speakers <= 1:
        return normalised(units.mean(axis=0, keepdims=True))
    if options:
        return max(options, key=lambda o: o.silhouette).centroids
    return units[:min_speakers]  # too few units to cluster: each one is a speaker


def clustering(units: np.ndarray, seconds: np.ndarray, k: int) -> Clustering | None:
    """k clusters of the units with their weighted silhouette, or None when k-means leaves a
    cluster empty (the silhouette needs 2 <= k <= units - 1)."""
    from sklearn.metrics import silhouette_samples

    labels, centroids = spherical_kmeans(units, k)
    if len(set(labels)) < k:
        return None
    silhouette = float(np.average(silhouette_samples(units, labels, metric="cosine"), weights=seconds))
    similarity = centroids @ centroids.T
    admissible = (silhouette >= MIN_SILHOUETTE and np.bincount(labels, weights=seconds).min() >= MIN_SPEAKER
                  and similarity[np.triu_indices(k, 1)].max() < SAME_SPEAKER)
    return Clustering(k, silhouette, bool(admissible), centroids)


def spherical_kmeans(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """k-means on unit vectors (so distances follow cosines), deterministic; normalised centroids."""
    from sklearn.cluster import KMeans

    model = KMeans(n_clusters=k, n_init=KMEANS_INITS, random_state=SEED).fit(x)
    return model.labels_, normalised(model.cluster_centers_)


def smooth(segs: list[Segment], labels: np.ndarray, emb: np.ndarray, centroids: np.ndarray) -> list[SpeakerPiece]:
    """Runs of one label inside each VAD region; while a region has a run shorter than MIN_RUN next
    to another run, the shortest such run takes the label of the neighbour whose centroid its
    embeddings are closest to. Region boundaries stay exactly where VAD put them (a speaker change
    at a pause is never moved); only changes inside a region are smoothed."""
    by_region: dict[int, list[int]] = {}
    for i, seg in enumerate(segs):
        by_region.setdefault(seg.region, []).append(i)
    pieces: list[SpeakerPiece] = []
    for region, members in by_region.items():
        label = {i: int(labels[i]) for i in members}
        while True:
            runs = label_runs([(label[i], i) for i in members])
            seconds = [segs[idx[-1]].own_end - segs[idx[0]].own_start for _, idx in runs]
            shortest = int(np.argmin(seconds))
            if len(runs) == 1 or seconds[shortest] >= MIN_RUN:
                break
            mean = emb[runs[shortest][1]].mean(axis=0)
            neighbours = [runs[j][0] for j in (shortest - 1, shortest + 1) if 0 <= j < len(runs)]
            new = max(neighbours, key=lambda speaker: float(mean @ centroids[speaker]))
            label.update((i, new) for i in runs[shortest][1])
        pieces.extend(SpeakerPiece(segs[idx[0]].own_start, segs[idx[-1]].own_end, speaker, region)
                      for speaker, idx in runs)
    return pieces


def label_runs(items: list[tuple[int, int]]) -> list[tuple[int, list[int]]]:
    """(label, segment index) items in time order -> runs of one label with their indices."""
    runs: list[tuple[int, list[int]]] = []
    for label, index in items:
        if runs and runs[-1][0] == label:
            runs[-1][1].append(index)
        else:
            runs.append((label, [index]))
    return runs


# ----------------------------------------------------------------------------- pyannote backend

PIPELINE_FILE = "config.yaml"
MODEL_FILE = "pytorch_model.bin"
PLDA_FILES = ("xvec_transform.npz", "plda.npz")
COMMUNITY = "pyannote/speaker-diarization-community-1"
# what SpeakerDiarization loads when its config names no model: set explicitly, so that pyannote
# never falls back to the hub
DEFAULT_ASSETS = {key: {"checkpoint": COMMUNITY, "subfolder": key} for key in ("segmentation", "embedding", "plda")}
ASSET_FILES = {"segmentation": (MODEL_FILE,), "embedding": (MODEL_FILE,), "plda": PLDA_FILES}
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
MIN_PYANNOTE_PIECE = 0.1  # seconds: slivers left by cutting pyannote's turns to VAD regions are dropped
RECORDING_URI = "recording"
HOW_TO_PROVIDE = ("mixc never downloads weights: download the pipeline on a machine with access to huggingface.co "
                  "(accept its conditions there; e.g. `huggingface-cli download {name} --local-dir DIR`), copy DIR "
                  "here and name it in the spec: diarize {{ backend = pyannote  model = \"/path/to/DIR\" }}")


@dataclass(frozen=True)
class LocalPipeline:
    """A pyannote pipeline config whose every model reference is a local path, and the files used."""

    name: str
    config: dict
    files: tuple[Path, ...]


def missing_from_cache(name: str, what: str, also: str = "") -> MissingWeights:
    """The error for a hub id absent from the local cache; `also` adds where else mixc looked."""
    return MissingWeights(f"pyannote {what} {name!r} is not in the local Hugging Face cache (looked in "
                          f"{hf_cache()}{also})", HOW_TO_PROVIDE.format(name=name))


def resolve_pipeline(model: str | None) -> LocalPipeline:
    """`model` (a local pipeline folder, its config.yaml, or a hub id in the local cache) -> the
    pipeline config with local paths. Raises MissingWeights naming what is missing and where."""
    import yaml

    if not model:
        raise MissingWeights("diarize backend pyannote needs `model`: a local pipeline folder (with "
                             f"{PIPELINE_FILE}) or a hub id in the local Hugging Face cache",
                             HOW_TO_PROVIDE.format(name=COMMUNITY))
    path = Path(model).expanduser()
    if path.exists():
        config_file = path / PIPELINE_FILE if path.is_dir() else path
        if not config_file.is_file():
            raise MissingWeights(f"pyannote pipeline folder {path} has no {PIPELINE_FILE}; a pipeline folder "
                                 "holds config.yaml and the segmentation, embedding and PLDA it names",
                                 HOW_TO_PROVIDE.format(name=COMMUNITY))
    elif HUB_ID.fullmatch(model):
        cached = cached_file(model, PIPELINE_FILE)
        if cached is None:
            raise missing_from_cache(model, "pipeline", f", and for a folder {path.resolve()}")
        config_file = cached
    else:
        raise MissingWeights(f"pyannote pipeline {model!r}: no such file or folder (looked at {path.resolve()}), "
                             "and it is not a hub id (owner/name)", HOW_TO_PROVIDE.format(name=COMMUNITY))
    config = yaml.safe_load(config_file.read_text())
    if not isinstance(config, dict) or not isinstance(config.get("pipeline"), dict):
        raise MissingWeights(f"{config_file} is not a pyannote pipeline config: it has no `pipeline` section",
                             HOW_TO_PROVIDE.format(name=COMMUNITY))
    params = config["pipeline"]["params"] = dict(config["pipeline"].get("params") or {})
    files = [config_file]
    for key, needed in ASSET_FILES.items():
        location, used = local_asset(params.get(key, DEFAULT_ASSETS[key]), config_file.parent, needed, key)
        params[key] = {"checkpoint": str(location)}  # a mapping: pyannote then loads it as a pyannote model
        files += used
    return LocalPipeline(str(model), config, tuple(files))


def local_asset(ref, root: Path, needed: tuple[str, ...], key: str) -> tuple[Path, list[Path]]:
    """A pipeline config's reference to a model or PLDA -> (local path to load, files it uses).

    References: "$model/SUB" (a folder beside config.yaml), a local path (absolute, or relative to
    config.yaml's folder), a hub id (looked up in the local cache), or a mapping {checkpoint,
    subfolder} (a folder inside a local folder or a hub repository), as pyannote's configs write them."""
    checkpoint, subfolder = ref, ""
    if isinstance(ref, dict):
        checkpoint, subfolder = str(ref.get("checkpoint", "")), str(ref.get("subfolder") or "")
    elif isinstance(ref, str) and ref.startswith("$model/"):
        checkpoint, subfolder = str(root), ref.removeprefix("$model/")
    local = next((p for p in (root / checkpoint, Path(checkpoint).expanduser()) if p.exists()), None)
    if local is not None:
        folder = local / subfolder if local.is_dir() else local
        if folder.is_file():
            return folder, [folder]
        used = [folder / name for name in needed]
        if absent := [str(p) for p in used if not p.is_file()]:
            raise MissingWeights(f"pyannote {key} files missing: {', '.join(absent)} (referenced by "
                                 f"{root / PIPELINE_FILE})", HOW_TO_PROVIDE.format(name=COMMUNITY))
        return folder, used
    if not HUB_ID.fullmatch(checkpoint):
        raise MissingWeights(f"pyannote {key} {checkpoint!r}: no such file or folder (looked in {root} and "
                             f"{Path(checkpoint).expanduser().resolve()})", HOW_TO_PROVIDE.format(name=COMMUNITY))
    used = [cached_file(checkpoint, f"{subfolder}/{name}" if subfolder else name) for name in needed]
    if any(p is None for p in used):
        raise missing_from_cache(f"{checkpoint}/{subfolder}" if subfolder else checkpoint, key)
    return (used[0] if needed == (MODEL_FILE,) else used[0].parent), list(used)


def pyannote_revision(cfg: ir.Diarize) -> str:
    """pyannote.audio's version and a digest of the resolved config and every weight file's bytes."""
    pipeline = resolve_pipeline(cfg.model)
    digest = hashlib.blake2b(digest_size=8)
    for path in pipeline.files:
        digest.update(file_digest(path).encode())
    params = {k: v for k, v in pipeline.config["pipeline"]["params"].items() if k not in ASSET_FILES}
    digest.update(json.dumps([pipeline.config.get("params"), params], sort_keys=True, default=str).encode())
    return f"pyannote.audio=={version('pyannote.audio')}:{pipeline.name}@{digest.hexdigest()}"


class PyannoteDiarizer(Diarizer):
    """pyannote.audio's SpeakerDiarization pipeline on the CPU, from local files only.

    The audio goes in memory as {"waveform": (1, n) tensor, "sample_rate": 16000} (no decoding by
    torchcodec/FFmpeg). Its exclusive diarization (one speaker at a time, pyannote's output meant
    for transcription) is cut to the VAD regions, so turns lie inside the speech the other stages
    see; a speaker's pieces within one region become one turn (pyannote's short gaps inside VAD
    speech do not split it); speech that pyannote gives to nobody is left out. pyannote's telemetry (on by default) is
    switched off: mixc runs offline."""

    def __init__(self, cfg: ir.Diarize, threads: int = 1):
        pipeline = resolve_pipeline(cfg.model)  # fails fast, before torch and pyannote load
        import torch
        from pyannote.audio import Pipeline
        from pyannote.audio.telemetry import set_telemetry_metrics

        set_telemetry_metrics(False)
        torch.set_num_threads(threads)
        self.cfg = cfg
        loaded = Pipeline.from_pretrained(pipeline.config)
        assert loaded is not None, "pyannote loads nothing only for a hub id; mixc gives it the config"
        self.pipeline = loaded

    def turns(self, wav: np.ndarray, regions: list[Region]) -> list[Turn]:
        import torch

        regions = sorted((r for r in regions if r.duration > 0), key=lambda r: r.start)
        if not regions:
            return []
        audio = {"waveform": torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32))[None],
                 "sample_rate": SAMPLE_RATE, "uri": RECORDING_URI}
        # one file's output (pyannote's type also covers the iterator a list of files gives)
        output: Any = self.pipeline(audio, min_speakers=self.cfg.min_speakers, max_speakers=self.cfg.max_speakers)
        annotation = getattr(output, "exclusive_speaker_diarization", output)  # `legacy` pipelines: an Annotation
        pieces = []
        for segment, _, label in annotation.itertracks(yield_label=True):
            for index, region in enumerate(regions):
                start, end = max(segment.start, region.start), min(segment.end, region.end)
                if end - start >= MIN_PYANNOTE_PIECE:
                    pieces.append(SpeakerPiece(start, end, str(label), index))
        return join_pieces(pieces, self.cfg.max_pause)
