"""report.md for `mixc compile`: what was built, token counts vs the spec, drops, cache hits, time."""

from __future__ import annotations

from mixc.execute import Run
from mixc.planfile import Plan


def _drops(dropped: dict[str, int]) -> str:
    return ", ".join(f"{n:,} {reason}" for reason, n in sorted(dropped.items())) or "-"


def compile_report(plan: Plan, runs: dict[str, Run], seconds: float) -> str:
    """report.md: token counts per stream vs the spec, drops by reason, cache hits, time per stage."""
    hits = sum(r.hit for r in runs.values())
    lines = [f"# Compile report: {plan.spec}", "",
             f"IR hash `{plan.ir_hash}`, seed {plan.seed}. {len(runs)} stages: {hits} from the cache, "
             f"{len(runs) - hits} built; {seconds:.1f} s in all.", "",
             f"Budget: {plan.trainer.steps:,} steps x {plan.trainer.global_batch} sequences x {plan.seq_len} tokens "
             f"= {plan.epoch_samples:,} sequences ({plan.epoch_samples * plan.seq_len:,} tokens).", "",
             "## Streams", ""]
    rows = [[s.name, f"{s.share:.2%}", f"{s.choose / plan.epoch_samples:.2%}", f"{s.samples:,}", f"{s.choose:,}",
             f"{s.repeat:.2f}", f"{s.tokens:,}"] for s in plan.streams]
    lines += _md_table(["stream", "spec share", "realised share", "sequences", "drawn per epoch", "passes",
                        "tokens compiled"], rows)
    lines += ["", "## Stages", ""]
    rows = [[sid, "cache" if r.hit else "built", f"{r.stats.items_in:,}", f"{r.stats.items_out:,}",
             _drops(r.stats.dropped), f"{r.stats.seconds:.2f}", f"`{r.key}`"] for sid, r in runs.items()]
    lines += _md_table(["stage", "", "in", "out", "dropped", "seconds (when built)", "key"], rows)
    quarantined = [(sid, q) for sid, r in runs.items() for q in r.stats.quarantined]
    if quarantined:
        lines += ["", "## Quarantined inputs", ""]
        lines += _md_table(["stage", "item", "reason"], [[sid, q["item"], q["reason"]] for sid, q in quarantined])
    v = plan.vocab
    lines += ["", "## Vocabulary", "",
              f"{v.size:,} ids ({v.dtype}): text 0-{v.text_size - 1} ({v.tokenizer_kind}, EOS {v.eos}, PAD {v.pad})"
              + (f", audio codes {v.audio_offset}-{v.audio_offset + v.audio_size - 1}" if v.audio_size else "")
              + (", markers " + ", ".join(f"{m} {i}" for m, i in v.markers.items()) if v.markers else "") + "."]
    return "\n".join(lines) + "\n"


def _md_table(headers: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)] + ["| " + " | ".join(r) + " |" for r in rows]
