"""The per-recording model stages of web audio: VAD -> diarization -> ASR.

Each stores one JSON item per recording (see `mixc.stages.items`): VAD a list of [start, end] speech
regions, diarization a list of [start, end, speaker] turns, ASR a list of utterances (one per turn
with speech: text, words with absolute times, confidence, language). A recording with no speech or
no turns leaves the pipeline at that stage, counted under its reason.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any, ClassVar

from mixc.audio import Region, Turn, Utterance
from mixc.ir import Spec
from mixc.stages.base import Context
from mixc.stages.items import RecordingStage, audio_file, load_wav, threads_per_worker


class ModelStage(RecordingStage):
    """A stage whose work is one backend model over each recording: the source's `field` block
    configures it, `mixc.backends.<module>` loads it (`loader`) and names its weights."""
    field: ClassVar[str]
    module: ClassVar[str]
    loader: ClassVar[str]

    def _cfg(self, spec: Spec, subject: str):
        return getattr(spec.sources[subject], self.field)

    def _backend(self):
        return importlib.import_module(f"mixc.backends.{self.module}")

    def revision(self, spec: Spec, subject: str) -> str:
        return self._backend().model_revision(self._cfg(spec, subject))

    def load(self, spec: Spec, subject: str, threads: int, *args: Any) -> Any:
        return getattr(self._backend(), self.loader)(self._cfg(spec, subject), threads)

    def keep(self, result: Any) -> bool:
        return bool(result)


class VadStage(ModelStage):
    kind, field, module, loader = "vad", "vad", "vad", "load_vad"
    drop_reason = "no speech found"

    def compute(self, model: Any, wav, upstream: Any) -> Any:
        return [[round(r.start, 3), round(r.end, 3)] for r in model.regions(wav)]

    def summary(self, result: Any) -> dict:
        return {"regions": len(result), "speech_seconds": round(sum(e - s for s, e in result), 3)}


class DiarizeStage(ModelStage):
    kind, field, module, loader = "diarize", "diarize", "diarize", "load_diarizer"
    drop_reason = "no speaker turns"

    def compute(self, model: Any, wav, upstream: Any) -> Any:
        turns = model.turns(wav, [Region(s, e) for s, e in upstream])
        return [[round(t.start, 3), round(t.end, 3), t.speaker] for t in turns]

    def summary(self, result: Any) -> dict:
        return {"turns": len(result), "speakers": len({t[2] for t in result})}


WORKER_BATCH = 32  # recordings per start of a worker-process backend (whisperx)


class AsrStage(ModelStage):
    """ASR. An in-process backend maps recordings in `workers` processes like the other stages; a
    worker backend (whisperx, in its own environment) gets them in batches, one worker start each."""
    kind, field, module, loader = "asr", "asr", "asr", "load_asr"
    drop_reason = "no transcribed speech"

    def build_all(self, ctx: Context, todo: list[tuple]) -> None:
        if self._cfg(ctx.spec, ctx.stage.subject).backend != "whisperx" or not todo:
            return super().build_all(ctx, todo)
        model = self.load(ctx.spec, ctx.stage.subject, threads_per_worker(1))
        batches = [todo[i:i + WORKER_BATCH] for i in range(0, len(todo), WORKER_BATCH)]
        for batch in ctx.progress(batches, f"asr {ctx.stage.subject} (batches)", len(batches)):
            recordings = [(load_wav(audio_file(ctx.items, row)), self._turns(json.loads(Path(up).read_text())))
                          for row, up, _ in batch]
            for (_, _, key), utts in zip(batch, model.transcribe_many(recordings)):
                self.store(ctx.items, key, [u.to_json() for u in utts])

    @staticmethod
    def _turns(upstream: list) -> list[Turn]:
        return [Turn(s, e, spk) for s, e, spk in upstream]

    def compute(self, model: Any, wav, upstream: Any) -> Any:
        return [u.to_json() for u in model.transcribe(wav, self._turns(upstream))]

    def summary(self, result: Any) -> dict:
        return {"utterances": len(result), "words": sum(len(u["words"]) for u in result)}


def utterances(result: list[dict]) -> list[Utterance]:
    return [Utterance.from_json(u) for u in result]
