"""report.md for `mixc compile`: what was built, token counts vs the spec, drops, cache hits, time."""

from __future__ import annotations

from mixc.build.execute import StageRun
from mixc.planfile import TrainingPlan
from mixc.stages.chunk import ChunkManifest
from mixc.stages.evalsets import HELDOUT_PREFIX
from mixc.stages.tts import TtsStage


def _drops(dropped: dict[str, int]) -> str:
    return ", ".join(f"{n:,} {reason}" for reason, n in sorted(dropped.items())) or "-"


def compile_report(plan: TrainingPlan, runs: dict[str, StageRun], seconds: float) -> str:
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
    lines += _web_audio(runs) + _synthetic(runs) + _audio_tokenizer(runs) + _interleaving(runs) + _eval_sets(plan, runs)
    lines += _topics(runs)
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


def _eval_sets(plan: TrainingPlan, runs: dict[str, StageRun]) -> list[str]:
    """Per eval set: questions kept of those read, drops by reason (each line is listed under
    Quarantined inputs), how many came spoken and how many the held-out voice read, the file's hash."""
    if not plan.eval.sets:
        return []
    rows = []
    for s in plan.eval.sets:
        if s.name.startswith(HELDOUT_PREFIX):  # a stream's held-out documents: sequences packed, scored
            stream = s.name.removeprefix(HELDOUT_PREFIX)
            packed = runs[f"pack:{stream}"].stats.counts
            docs, seqs = int(packed.get("heldout_documents", 0)), int(packed.get("heldout_sequences", 0))
            kept = f"{docs:,} documents, {seqs:,} sequences, {s.items:,} scored"
            rows.append([s.name, s.kind, kept, "-", "-", "-", "-", f"`{s.path}`", f"`{s.sha256[:16]}`"])
            continue
        if s.kind == "lm":  # held-out text: documents read, windows scored
            text = runs[f"eval_text:{s.name}"].stats
            kept = f"{int(text.counts.get('documents', 0)):,} documents, {text.items_out:,} windows"
            rows.append([s.name, s.kind, kept, _drops(text.dropped), "-", "-", "-", f"`{s.path}`",
                         f"`{s.sha256[:16]}`"])
            continue
        items = runs[f"eval_items:{s.name}"].stats
        rows.append([s.name, s.kind, f"{items.items_out:,} of {items.items_in:,}", _drops(items.dropped),
                     f"{int(items.counts.get('spoken', 0)):,}", f"{int(items.counts.get('voiced', 0)):,}",
                     s.voice or "-", f"`{s.path}`", f"`{s.sha256[:16]}`"])
    return ["", "## Eval sets", ""] + _md_table(
        ["set", "kind", "kept", "dropped", "with audio", "voiced", "voice", "file", "sha256"], rows) + [
        "", f"Scored every {plan.eval.every:,} batches during training and by `mixc eval` (docs/evaluation.md)."] + \
        _contamination(plan, runs)


SHOWN_TOPICS = 3


def _topics(runs: dict[str, StageRun]) -> list[str]:
    """Per topics set: each stream's most frequent topics and its distance to the eval sets'."""
    from mixc.stages.topics import TopicCoverage

    lines = []
    for run in (r for r in runs.values() if r.node.kind == "topics"):
        summary, table = TopicCoverage.read(run.path)
        rows = []
        for stream in sorted(set(table["stream"].to_list())):
            shares = table.filter((table["stream"] == stream) & (table["share"] > 0)).sort(
                ["share", "topic"], descending=[True, False])
            top = ", ".join(f"{t} {v:.0%}" for t, v in zip(shares["topic"].to_list()[:SHOWN_TOPICS],
                                                          shares["share"].to_list()[:SHOWN_TOPICS]))
            info = summary["streams"].get(stream, {})
            distance = info.get("distance_to_eval")
            rows.append([stream, f"{info.get('units', summary['eval_units']):,}", top,
                         "-" if distance is None else f"{distance:.2f}"])
        name = run.node.subject
        lines += ["", f"## Topics: {name}", "", f"Backend `{summary['backend']}` over WebOrganizer's 24 topics "
                  "(docs/evaluation.md); distance: Jensen-Shannon, base 2, to the eval sets' questions.", ""]
        lines += _md_table(["stream", "units", f"top {SHOWN_TOPICS} topics", "distance to eval"], rows)
        lines += ["", f"![topics](topics/{name}.png)"]
    return lines


SHOWN_OVERLAPS = 10


def _contamination(plan: TrainingPlan, runs: dict[str, StageRun]) -> list[str]:
    """Per eval set and training stage: items sharing an n-gram, then the longest overlaps found."""
    from mixc.stages.contamination import MAX_N, MIN_N, Overlaps

    lines = ["", "### Contamination", ""]
    rows, shown = [], []
    for s in plan.eval.sets:
        if f"contamination:{s.name}" not in runs:  # held-out text (lm) is not questions
            continue
        summary, overlaps = Overlaps.read(runs[f"contamination:{s.name}"].path)
        for stage, counts in summary["stages"].items():
            rows.append([s.name, stage, f"{counts['items_at_min']:,} of {summary['items']:,}",
                         f"{counts['items_at_max']:,}"])
        longest = overlaps.sort(["longest", "item"], descending=[True, False]).head(SHOWN_OVERLAPS)
        for r in longest.iter_rows(named=True):
            shown.append([s.name, r["item"], r["stage"], r["unit"], str(r["longest"]), r["ngram"]])
    lines += _md_table(["set", "training stage", f"items sharing a {MIN_N}-gram", f"... a {MAX_N}-gram"], rows)
    if shown:
        lines += ["", f"Longest overlaps (at most {SHOWN_OVERLAPS}; all in the contamination stage's "
                  "overlaps.parquet):", ""]
        lines += _md_table(["set", "item", "training stage", "unit", "words", "shared text"], shown)
    return lines


def _of(runs: dict[str, StageRun], kind: str, subject: str) -> StageRun | None:
    return runs.get(f"{kind}:{subject}")


def _web_audio(runs: dict[str, StageRun]) -> list[str]:
    """Per audio source: recordings, hours, speech, speakers, utterances kept, chunk lengths."""
    subjects = sorted(r.node.subject for r in runs.values() if r.node.kind == "chunk")
    if not subjects:
        return []
    rows = []
    for name in subjects:
        ingest, vad, diarize, filt = (_of(runs, k, name) for k in ("ingest", "vad", "diarize", "filter"))
        chunk = runs[f"chunk:{name}"]  # every subject here has a chunk stage
        c = chunk.stats.counts
        quarantined = len(ingest.stats.quarantined) if ingest else 0
        rows.append([name, f"{ingest.stats.items_out:,} of {ingest.stats.counts.get('files', 0):,}" if ingest else "-",
                     str(quarantined), f"{ingest.stats.counts.get('seconds', 0) / 3600:.2f}" if ingest else "-",
                     f"{vad.stats.counts.get('speech_seconds', 0) / 3600:.2f}" if vad else "-",
                     f"{diarize.stats.counts.get('speakers', 0):,}" if diarize else "-",
                     f"{filt.stats.items_out:,} of {filt.stats.items_in:,}" if filt else "-",
                     _drops(filt.stats.dropped) if filt else "-",
                     _granularity(chunk), f"{c.get('chunks', 0):,}",
                     *(f"{c.get(f'chunk_seconds_{k}', 0):.1f}" for k in ("mean", "p50", "p95"))])
    return ["", "## Web audio", ""] + _md_table(
        ["source", "recordings", "quarantined", "hours", "speech hours", "speakers (sum)", "utterances kept",
         "utterance drops", "granularity", "chunks", "mean s", "p50 s", "p95 s"], rows)


def _synthetic(runs: dict[str, StageRun]) -> list[str]:
    """Per generator: pages, items and their drops, LLM tokens, chunk lengths; then the voices drawn."""
    gens = sorted(r.node.subject for r in runs.values() if r.node.kind == "tts")
    if not gens:
        return []
    rows, voices = [], []
    for name in gens:
        tts = runs[f"tts:{name}"]
        text = _of(runs, "rewrite", name) or _of(runs, "answer", name)
        pages = next((r for r in runs.values() if r.node.kind == "extract" and r.node.id in _upstream(runs, tts)), None)
        mine = _of(runs, "mine", name)
        c = tts.stats.counts
        quarantined = _drops(pages.stats.dropped) if pages else "-"
        rows.append([name, f"{pages.stats.items_out:,} of {pages.stats.items_in:,}" if pages else "-", quarantined,
                     f"{mine.stats.items_out:,}" if mine else "-",
                     f"{text.stats.items_out:,} of {text.stats.items_in:,}" if text else "-",
                     _drops(text.stats.dropped) if text else "-",
                     *(f"{text.stats.counts.get(k, 0):,.0f}" if text else "-" for k in ("tokens_in", "tokens_out")),
                     _granularity(tts), f"{c.get('chunks', 0):,}",
                     *(f"{c.get(f'chunk_seconds_{k}', 0):.1f}" for k in ("mean", "p50", "p95"))])
        report = TtsStage.voices(tts.path)
        for v in report["voices"]:
            others = [x for other, x in report["cosine"][v["voice"]].items() if other != v["voice"]]
            voices.append([name, v["voice"], f"{v['items']:,}", f"{v['chunks']:,}", f"{v['seconds'] / 60:.1f}",
                           "-" if v["wer"] is None else f"{v['wer']:.1%} ({v['wer_chunks']} chunks)",
                           f"{max(others):.2f}" if others else "-"])
    return ["", "## Synthetic speech", ""] + _md_table(
        ["generator", "pages kept", "pages dropped", "questions mined", "items kept", "item drops", "LLM tokens in",
         "LLM tokens out", "granularity", "chunks", "mean s", "p50 s", "p95 s"], rows) + [
        "", "Voices drawn (WER: the default ASR, faster-whisper tiny.en, on a sample of each voice's chunks; "
        "closest: the highest speaker-embedding cosine to another voice drawn, 1.0 = the same timbre):", ""] + \
        _md_table(["generator", "voice", "items", "chunks", "minutes", "WER", "closest voice (cosine)"], voices)


def _upstream(runs: dict[str, StageRun], run: StageRun) -> set[str]:
    seen, todo = set(), list(run.node.inputs)
    while todo:
        sid = todo.pop()
        if sid not in seen and sid in runs:
            seen.add(sid)
            todo += runs[sid].node.inputs
    return seen


def _granularity(run: StageRun) -> str:
    return ChunkManifest.read_summary(run.path).get("granularity", "?")


TOKENIZER_FIGURES = (("recon_l1", "reconstruction L1 (normalised log-mel)"),
                     ("recon_mean_baseline", "the same, predicting the mean"),
                     ("recon_vs_mean", "reconstruction / mean baseline"), ("ctc", "CTC loss (nats per character)"),
                     ("cer", "greedy CTC character error rate"), ("usage_perplexity", "code usage perplexity"),
                     ("usage_share", "share of codes used"), ("tokens_per_second", "tokens per second of audio"))


def _audio_tokenizer(runs: dict[str, StageRun]) -> list[str]:
    """The trained (or loaded) audio tokenizer's quality on held-out utterances."""
    run = next((r for r in runs.values() if r.node.kind in ("train_audio_tokenizer", "load_audio_tokenizer")), None)
    if run is None:
        return []
    c = run.stats.counts
    where = ("held-out utterances" if c.get("held_out") else "its training utterances (too few to hold any out)")
    head = [f"{run.node.id}: codebook {c.get('codebook_size', 0):,}"
            + (f", trained on {c.get('train_seconds', 0) / 60:.1f} min of speech; measured on {c.get('eval_clips', 0)} "
               f"{where}." if "train_seconds" in c else " (loaded from a checkpoint).")]
    rows = [[label, f"{c[key]:.3f}"] for key, label in TOKENIZER_FIGURES if key in c]
    return ["", "## Audio tokenizer", ""] + head + ([""] + _md_table(["figure", "value"], rows) if rows else [])


def _interleaving(runs: dict[str, StageRun]) -> list[str]:
    """Per speech stream: draws, modality switches per document, the audio/text token split."""
    inter = sorted((r for r in runs.values() if r.node.kind == "interleave"), key=lambda r: r.node.subject)
    if not inter:
        return []
    rows = []
    for run in inter:
        c = run.stats.counts
        audio, text = c.get("audio_tokens", 0), c.get("text_tokens", 0)
        rows.append([run.node.subject, str(c.get("draws", 1)), f"{c.get('documents', 0):,}",
                     f"{c.get('chunks_per_document', 0):.1f}", f"{c.get('switches_per_document', 0):.2f}",
                     f"{audio:,}", f"{text:,}", f"{audio / max(audio + text, 1):.1%}"])
    return ["", "## Interleaving", ""] + _md_table(
        ["stream", "draws", "documents", "chunks / document", "switches / document", "audio tokens", "text tokens",
         "audio share"], rows)


def _md_table(headers: list[str], rows: list[list[str]]) -> list[str]:
    head = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return head + ["| " + " | ".join(r) + " |" for r in rows]
