"""The per-recording model stages of web audio: VAD -> diarization -> ASR.

Each stores one item per recording (see `mixc.stages.items`): VAD its speech `Region`s, diarization
its speaker `Turn`s, ASR its `Utterance`s (one per turn with speech: text, words with absolute
times, confidence, language). A recording with no speech or no turns leaves the pipeline at that
stage, counted under its reason.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import numpy as np

from mixc.audio import Region, Turn, Utterance
from mixc.stages.base import Context, Declared
from mixc.stages.items import RecordingStage, audio_path, load_wav, read_records, threads_per_worker, write_records


class ModelStage(RecordingStage):
    """A stage whose work is one backend model over each recording: the subject's block it declares
    (`weights`) configures it; `mixc.backends.<backend>` loads it (`load_<backend>`) and names its
    weights (`model_revision`) and finds them (`locate`)."""
    backend: ClassVar[str]

    @classmethod
    def _backend(cls) -> ModuleType:
        return importlib.import_module(f"mixc.backends.{cls.backend}")

    @classmethod
    def _cfg(cls, config: Declared) -> Any:
        return config.get(cls.reads[0])

    @classmethod
    def locate_weights(cls, config: Declared, root: Path) -> None:
        cls._backend().locate(cls._cfg(config))

    def revision(self, config: Declared) -> str:
        return self._backend().model_revision(self._cfg(config))

    def load(self, config: Declared, threads: int, *args: Any) -> Any:
        return self._backend().load(self._cfg(config), threads)


def _rounded(value: float) -> float:
    return round(value, 3)


class VadStage(ModelStage):
    kind, version, doc = "vad", 2, "speech regions"
    reads, weights, backend = (".vad",), ".vad", "vad"
    record = Region
    drop_reason = "no speech found"

    def compute(self, model: Any, wav: np.ndarray, upstream: list[Any]) -> list[Region]:
        return [Region(_rounded(r.start), _rounded(r.end)) for r in model.regions(wav)]

    def summary(self, records: list[Region]) -> dict:
        return {"regions": len(records), "speech_seconds": round(sum(r.duration for r in records), 3)}


class DiarizeStage(ModelStage):
    kind, version, doc = "diarize", 2, "speaker turns"
    reads, weights, backend = (".diarize",), ".diarize.model", "diarize"
    record, upstream = Turn, Region
    drop_reason = "no speaker turns"

    def compute(self, model: Any, wav: np.ndarray, upstream: list[Region]) -> list[Turn]:
        return [Turn(_rounded(t.start), _rounded(t.end), t.speaker) for t in model.turns(wav, upstream)]

    def summary(self, records: list[Turn]) -> dict:
        return {"turns": len(records), "speakers": len({t.speaker for t in records})}


WORKER_BATCH = 32  # recordings per start of a worker-process backend (whisperx)


class AsrStage(ModelStage):
    """ASR. An in-process backend maps recordings in `workers` processes like the other stages; a
    worker backend (whisperx, in its own environment) gets them in batches, one worker start each."""
    kind, version, doc = "asr", 2, "transcripts with word timestamps"
    reads, weights, backend = (".asr",), ".asr.model", "asr"
    record, upstream = Utterance, Turn
    drop_reason = "no transcribed speech"

    def build_all(self, ctx: Context, todo: list[tuple]) -> None:
        if self._cfg(ctx.config).backend != "whisperx" or not todo:
            return super().build_all(ctx, todo)
        store = self.item_store(ctx)
        model = self.load(ctx.config, threads_per_worker(1))
        batches = [todo[i:i + WORKER_BATCH] for i in range(0, len(todo), WORKER_BATCH)]
        for batch in ctx.progress(batches, f"asr {ctx.subject} (batches)", len(batches)):
            recordings = [(load_wav(audio_path(store, audio)), read_records(Path(up), Turn)) for audio, up, _ in batch]
            for (_, _, key), utterances in zip(batch, model.transcribe_many(recordings)):
                write_records(store, self.kind, key, self.suffix, utterances)

    def compute(self, model: Any, wav: np.ndarray, upstream: list[Turn]) -> list[Utterance]:
        return model.transcribe(wav, upstream)

    def summary(self, records: list[Utterance]) -> dict:
        return {"utterances": len(records), "words": sum(len(u.words) for u in records)}

