"""The synthetic generators' stages (Krist, Quest), declared for the planner but not runnable yet.

`mixc plan` and `mixc diff` key and show them from these declarations; `mixc check` and `mixc
compile` refuse a spec whose mixture needs them, at the generator, until they run.
"""

from __future__ import annotations

from mixc.stages.base import Context, Stage, Stats


class _NotYetRunnable(Stage):
    runnable = False

    def run(self, ctx: Context, stats: Stats) -> None:
        raise NotImplementedError(f"{self.kind} is declared but not runnable")  # the executor never calls it


class ExtractStage(_NotYetRunnable):
    kind, version, doc = "extract", 1, "page text"
    reads = (".files",)


class RewriteStage(_NotYetRunnable):
    kind, version, doc = "rewrite", 1, "LLM rewrite (Krist)"
    reads = (".llm", ".prompt", "seed")


class MineStage(_NotYetRunnable):
    kind, version, doc = "mine", 1, "questions (Quest)"
    reads = (".question_pattern",)


class AnswerStage(_NotYetRunnable):
    kind, version, doc = "answer", 1, "filtered questions + answers"
    reads = (".llm", ".filter_prompt", ".answer_prompt", "seed")


class TtsStage(_NotYetRunnable):
    kind, version, doc = "tts", 1, "synthetic speech"
    reads = (".tts", "seed")
