"""Speaker diarization on generated conversations with known turns (real speech, real models): the
`embedding` backend (resemblyzer's shipped GE2E weights), and the `pyannote` backend run end to end
with randomly initialised models of pyannote's real architectures, from a local pipeline folder and
from a hub id in a local Hugging Face cache. Nothing is downloaded."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before anything imports huggingface_hub

import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from mixc.audio import SAMPLE_RATE, Region, Turn
from mixc.backends.diarize import SpeakerPiece, join_pieces, model_revision
from mixc.backends.diarize import load as load_diarizer
from mixc.backends.vad import load as load_vad
from mixc.demo.audio import conversation
from mixc.demo.scoring import der
from mixc.errors import MissingWeights, SetupError
from mixc.ir import Diarize, Vad

FLITE_VOICES = ("awb", "rms", "slt", "kal16")  # flite renders in milliseconds; piper's voice takes seconds
# benchmarks/diarize_quality.py on 54 clean 2-4 speaker demo conversations: DER mean 0.011, max 0.081
# (a speaker split in two); the conversations here score 0.000-0.007.
MAX_DER = 0.05
PYANNOTE_SECONDS = 10.0  # one 10 s chunk of the segmentation model: keeps the random-init run to ~2 s


@pytest.fixture(scope="module")
def vad():
    return load_vad(Vad())


@pytest.fixture(scope="module")
def diarizer():
    return load_diarizer(Diarize(), threads=1)


@pytest.fixture(scope="module")
def recordings(vad) -> dict[int, tuple]:
    """Speaker count -> (conversation, its VAD regions)."""
    out = {}
    for n, seed in ((1, 5), (2, 11), (3, 12)):
        conv = conversation(seed, n_speakers=n, n_turns=6 if n > 1 else 3, voices=FLITE_VOICES)
        out[n] = (conv, vad.regions(conv.wav))
    return out


def inside(t: float, regions: list[Region], eps: float = 1e-6) -> bool:
    return any(r.start - eps <= t <= r.end + eps for r in regions)


def assert_well_formed(turns: list[Turn], regions: list[Region], max_pause: float = Diarize().max_pause) -> None:
    """Sorted, disjoint, S0.. by first appearance, starting and ending in speech; a turn spans a VAD
    pause only when it is shorter than max_pause."""
    assert all(a.end <= b.start for a, b in zip(turns, turns[1:]))
    assert all(t.start < t.end for t in turns)
    first_seen = list(dict.fromkeys(t.speaker for t in turns))
    assert first_seen == [f"S{i}" for i in range(len(first_seen))]
    assert all(inside(t.start, regions) and inside(t.end, regions) for t in turns)
    for t in turns:
        gaps = [b.start - a.end for a, b in zip(regions, regions[1:]) if t.start < a.end and b.start < t.end]
        assert all(g < max_pause for g in gaps)


# ----------------------------------------------------------------------------- embedding backend


@pytest.mark.parametrize("n", [2, 3])
def test_finds_the_speakers_and_their_turns(diarizer, recordings, n):
    conv, regions = recordings[n]
    turns = diarizer.turns(conv.wav, regions)
    assert_well_formed(turns, regions)
    assert len({t.speaker for t in turns}) == n
    assert der(conv.turns, turns) <= MAX_DER


def test_short_pauses_stay_inside_a_turn_longer_ones_split_it(recordings):
    conv, regions = recordings[3]
    split = load_diarizer(Diarize(max_pause=0.0), threads=1).turns(conv.wav, regions)
    joined = load_diarizer(Diarize(max_pause=0.25), threads=1).turns(conv.wav, regions)
    assert_well_formed(split, regions, max_pause=0.0)
    assert_well_formed(joined, regions, max_pause=0.25)
    assert len(joined) <= len(split)
    assert der(conv.turns, joined) <= MAX_DER


def test_one_speaker_is_one_speaker(diarizer, recordings):
    conv, regions = recordings[1]
    turns = diarizer.turns(conv.wav, regions)
    assert_well_formed(turns, regions)
    assert {t.speaker for t in turns} == {"S0"}


def test_same_audio_same_turns(diarizer, recordings):
    conv, regions = recordings[3]
    again = load_diarizer(Diarize(), threads=1)
    assert diarizer.turns(conv.wav, regions) == again.turns(conv.wav, regions) == diarizer.turns(conv.wav, regions)


def test_speaker_bounds_are_kept(recordings):
    conv, regions = recordings[3]
    capped = load_diarizer(Diarize(max_speakers=2), threads=1).turns(conv.wav, regions)
    assert len({t.speaker for t in capped}) == 2
    conv, regions = recordings[1]
    forced = load_diarizer(Diarize(min_speakers=2), threads=1).turns(conv.wav, regions)
    assert len({t.speaker for t in forced}) == 2


def test_no_speech_no_turns(diarizer):
    assert diarizer.turns(np.zeros(SAMPLE_RATE, np.float32), []) == []


def test_join_pieces_joins_one_speaker_within_a_region():
    pieces = [SpeakerPiece(4.0, 5.0, 7, 2), SpeakerPiece(0.0, 1.0, 3, 0), SpeakerPiece(1.2, 2.0, 3, 0),
              SpeakerPiece(2.2, 3.0, 7, 0), SpeakerPiece(3.5, 4.0, 7, 1)]
    assert join_pieces(pieces) == [Turn(0.0, 2.0, "S0"), Turn(2.2, 3.0, "S1"), Turn(3.5, 4.0, "S1"),
                                   Turn(4.0, 5.0, "S1")]


def test_embedding_revision_names_the_shipped_weights():
    revision = model_revision(Diarize())
    assert revision.startswith("resemblyzer==0.1.4:pretrained.pt@") and revision == model_revision(Diarize())


# ----------------------------------------------------------------------------- pyannote backend


def save_checkpoint(model, path: Path) -> None:
    """A checkpoint as pyannote's Model.from_pretrained loads it (what its training would write)."""
    import lightning
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams),
                  "pytorch-lightning_version": lightning.__version__}
    model.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, path)


def random_pipeline(root: Path) -> Path:
    """A local pipeline folder laid out like pyannote/speaker-diarization-community-1 (config.yaml,
    segmentation/, embedding/, plda/), with random weights of the real architectures: PyanNet with
    community-1's hyper-parameters and powerset specifications (3 speakers, 2 at a time), a WeSpeaker
    ResNet34, and PLDA arrays of community-1's shapes. The segmentation's non-speech class is biased
    down so that random weights still produce speakers to cluster; its window steps by half its
    length (community-1: a tenth) to keep the run short."""
    import torch
    from pyannote.audio.core.task import Problem, Resolution, Specifications
    from pyannote.audio.models.embedding import WeSpeakerResNet34
    from pyannote.audio.models.segmentation import PyanNet

    torch.manual_seed(0)
    segmentation = PyanNet(sincnet={"stride": 10}, linear={"hidden_size": 128, "num_layers": 2},
                           lstm={"hidden_size": 128, "num_layers": 4, "bidirectional": True, "monolithic": True,
                                 "dropout": 0.5})
    segmentation.specifications = Specifications(
        problem=Problem.MONO_LABEL_CLASSIFICATION, resolution=Resolution.FRAME, duration=10.0,
        classes=["speaker#1", "speaker#2", "speaker#3"], powerset_max_classes=2, permutation_invariant=True)
    segmentation.build()
    with torch.no_grad():
        segmentation.classifier.bias[0] = -10.0
    save_checkpoint(segmentation, root / "segmentation" / "pytorch_model.bin")
    embedding = WeSpeakerResNet34()
    embedding.specifications = Specifications(problem=Problem.REPRESENTATION, resolution=Resolution.CHUNK,
                                              duration=5.0)
    save_checkpoint(embedding, root / "embedding" / "pytorch_model.bin")
    rng = np.random.default_rng(0)
    (root / "plda").mkdir()
    np.savez(root / "plda" / "xvec_transform.npz", mean1=0.01 * rng.normal(size=256),
             mean2=0.01 * rng.normal(size=128), lda=np.linalg.qr(rng.normal(size=(256, 256)))[0][:, :128])
    np.savez(root / "plda" / "plda.npz", mu=np.zeros(128), tr=np.eye(128) + 0.01 * rng.normal(size=(128, 128)),
             psi=np.linspace(2.0, 0.1, 128))
    config = {
        "dependencies": {"pyannote.audio": "4.0.0"},
        "pipeline": {"name": "pyannote.audio.pipelines.SpeakerDiarization", "params": {
            "clustering": "VBxClustering", "segmentation": "$model/segmentation", "segmentation_batch_size": 8,
            "segmentation_step": 0.5, "embedding": "$model/embedding", "embedding_batch_size": 8,
            "embedding_exclude_overlap": True, "plda": "$model/plda"}},
        "params": {"clustering": {"threshold": 0.6, "Fa": 0.07, "Fb": 0.8}, "segmentation": {"min_duration_off": 0.0}},
    }
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    return root


@pytest.fixture(scope="module")
def pipeline_dir(tmp_path_factory) -> Path:
    return random_pipeline(tmp_path_factory.mktemp("pyannote") / "pipeline")


def test_pyannote_runs_end_to_end_from_a_local_folder(pipeline_dir, recordings, vad):
    conv, _ = recordings[2]
    wav = conv.wav[: int(PYANNOTE_SECONDS * SAMPLE_RATE)]
    regions = vad.regions(wav)
    diarizer = load_diarizer(Diarize(backend="pyannote", model=str(pipeline_dir)), threads=1)
    turns = diarizer.turns(wav, regions)
    assert turns, "random weights biased towards speech still give turns"
    assert_well_formed(turns, regions)
    assert turns == diarizer.turns(wav, regions)


def test_pyannote_revision_follows_the_weights(pipeline_dir, tmp_path):
    copy = shutil.copytree(pipeline_dir, tmp_path / "copy")
    cfg = Diarize(backend="pyannote", model=str(copy))
    before = model_revision(cfg)
    assert before.startswith("pyannote.audio==4.0.7:") and before == model_revision(cfg)
    arrays = dict(np.load(copy / "plda" / "plda.npz"))
    np.savez(copy / "plda" / "plda.npz", **{**arrays, "psi": arrays["psi"] * 2})
    assert model_revision(cfg) != before


def hub_cache_with(pipeline_dir: Path, cache: Path, repo: str, commit: str = "0" * 40) -> None:
    """The pipeline folder as huggingface_hub lays out a downloaded repository in its cache."""
    folder = cache / f"models--{repo.replace('/', '--')}"
    shutil.copytree(pipeline_dir, folder / "snapshots" / commit)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(commit)


def test_pyannote_hub_id_loads_from_the_local_cache(pipeline_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    hub_cache_with(pipeline_dir, tmp_path, "someone/diarization")
    cfg = Diarize(backend="pyannote", model="someone/diarization")
    assert model_revision(cfg).startswith("pyannote.audio==4.0.7:someone/diarization@")
    assert load_diarizer(cfg, threads=1).pipeline is not None


def test_missing_weights_name_the_path_and_how_to_provide(tmp_path):
    absent = tmp_path / "nowhere"
    with pytest.raises(MissingWeights) as err:
        load_diarizer(Diarize(backend="pyannote", model=str(absent)), threads=1)
    assert str(absent) in err.value.message
    assert 'diarize { backend = pyannote  model = "/path/to/DIR" }' in err.value.hint
    assert isinstance(err.value, SetupError) and err.value.exit_code == 5


def test_missing_hub_id_names_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(MissingWeights) as err:
        model_revision(Diarize(backend="pyannote", model="pyannote/speaker-diarization-community-1"))
    assert "'pyannote/speaker-diarization-community-1'" in err.value.message and str(tmp_path) in err.value.message
    assert "never downloads" in err.value.hint and "huggingface-cli download" in err.value.hint


def test_missing_files_inside_a_pipeline_folder_are_named(pipeline_dir, tmp_path):
    copy = shutil.copytree(pipeline_dir, tmp_path / "copy")
    (copy / "plda" / "plda.npz").unlink()
    with pytest.raises(MissingWeights, match=r"plda files missing: .*plda\.npz"):
        model_revision(Diarize(backend="pyannote", model=str(copy)))
    (copy / "config.yaml").unlink()
    with pytest.raises(MissingWeights, match=r"has no config\.yaml"):
        model_revision(Diarize(backend="pyannote", model=str(copy)))
    with pytest.raises(MissingWeights, match=r"needs `model`"):
        model_revision(Diarize(backend="pyannote"))
