"""The per-recording model stages of web audio: VAD -> diarization -> ASR.

Each stores one JSON item per recording (see `mixc.stages.items`): VAD a list of [start, end] speech
regions, diarization a list of [start, end, speaker] turns, ASR a list of utterances (one per turn
with speech: text, words with absolute times, confidence, language). A recording with no speech or
no turns leaves the pipeline at that stage, counted under its reason.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mixc.audio import Region, Turn, Utterance
from mixc.ir import Spec
from mixc.stages.base import Context
from mixc.stages.items import RecordingStage, audio_file, load_wav, threads_per_worker


class VadStage(RecordingStage):
    kind = "vad"
    drop_reason = "no speech found"

    def _cfg(self, spec: Spec, subject: str):
        return spec.sources[subject].vad

    def revision(self, spec: Spec, subject: str) -> str:
        from mixc.backends.vad import model_revision
        return model_revision(self._cfg(spec, subject))

    def load(self, spec: Spec, subject: str, threads: int, *args: Any) -> Any:
        from mixc.backends.vad import load_vad
        return load_vad(self._cfg(spec, subject), threads)

    def compute(self, model: Any, wav, upstream: Any) -> Any:
        return [[round(r.start, 3), round(r.end, 3)] for r in model.regions(wav)]

    def summary(self, result: Any) -> dict:
        return {"regions": len(result), "speech_seconds": round(sum(e - s for s, e in result), 3)}

    def keep(self, result: Any) -> bool:
        return bool(result)


class DiarizeStage(RecordingStage):
    kind = "diarize"
    drop_reason = "no speaker turns"

    def _cfg(self, spec: Spec, subject: str):
        return spec.sources[subject].diarize

    def revision(self, spec: Spec, subject: str) -> str:
        from mixc.backends.diarize import model_revision
        return model_revision(self._cfg(spec, subject))

    def load(self, spec: Spec, subject: str, threads: int, *args: Any) -> Any:
        from mixc.backends.diarize import load_diarizer
        return load_diarizer(self._cfg(spec, subject), threads)

    def compute(self, model: Any, wav, upstream: Any) -> Any:
        turns = model.turns(wav, [Region(s, e) for s, e in upstream])
        return [[round(t.start, 3), round(t.end, 3), t.speaker] for t in turns]

    def summary(self, result: Any) -> dict:
        return {"turns": len(result), "speakers": len({t[2] for t in result})}

    def keep(self, result: Any) -> bool:
        return bool(result)


WORKER_BATCH = 32  # recordings per start of a worker-process backend (whisperx)


class AsrStage(RecordingStage):
    """ASR. An in-process backend maps recordings in `workers` processes like the other stages; a
    worker backend (whisperx, in its own environment) gets them in batches, one worker start each."""
    kind = "asr"
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

    def _cfg(self, spec: Spec, subject: str):
        return spec.sources[subject].asr

    def revision(self, spec: Spec, subject: str) -> str:
        from mixc.backends.asr import model_revision
        return model_revision(self._cfg(spec, subject))

    def load(self, spec: Spec, subject: str, threads: int, *args: Any) -> Any:
        from mixc.backends.asr import load_asr
        return load_asr(self._cfg(spec, subject), threads)

    @staticmethod
    def _turns(upstream: list) -> list[Turn]:
        return [Turn(s, e, spk) for s, e, spk in upstream]

    def compute(self, model: Any, wav, upstream: Any) -> Any:
        return [u.to_json() for u in model.transcribe(wav, self._turns(upstream))]

    def summary(self, result: Any) -> dict:
        return {"utterances": len(result), "words": sum(len(u["words"]) for u in result)}

    def keep(self, result: Any) -> bool:
        return bool(result)


def utterances(result: list[dict]) -> list[Utterance]:
    return [Utterance.from_json(u) for u in result]
