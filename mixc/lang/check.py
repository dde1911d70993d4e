"""Semantic checks over lowered IR. Each check is a pure function returning diagnostics; `run`
collects them all so one `mixc check` reports every problem at once. These are the language's own
checks; what needs planning (budget feasibility against the data found) or the stages (can this
mixc run them, are their weights here) is checked by `mixc.build.preflight`."""

from __future__ import annotations

import glob as globlib
import math
import os
import re
from collections.abc import Callable, Iterator

from mixc import ir
from mixc.ir import IrPath
from mixc.lang.diagnostics import Diagnostic, Span, error, sort_key, warning
from mixc.lang.lower import Lowered, did_you_mean, load
from mixc.planfile import MAX_VOCAB
from mixc.storage import is_remote

SHARE_TOLERANCE = 1e-6
FLITE_VOICES = ("awb", "rms", "slt", "kal16", "kal")
MIN_SEQ_LEN = 16
MAX_SEQ_LEN = (1 << 31) - 1
MARKERS = 4  # at most <audio> </audio> <text> </text>
MIN_FSQ_LEVEL = 3  # FSQ with level 2 needs its symmetric mode, which the tokenizer does not use
TOKEN_RATE = 12.5  # Hz: 16 kHz, 100 mel frames/s, 8x downsampling

Problem = tuple[IrPath, str, str | None]  # a value out of range: where, what is wrong, a hint


def _kind_of(spec: ir.Spec, name: str) -> str | None:
    if name in spec.sources:
        return spec.sources[name].kind
    if name in spec.generators:
        return spec.generators[name].kind
    return None


def _a(word: str) -> str:
    return "an" if word[:1] in "aeiouh" else "a"


def _wanted(kinds: tuple[str, ...]) -> str:
    sources = [k for k in kinds if k in ("audio", "text", "html")]
    gens = [k for k in kinds if k in ("krist", "quest")]
    parts = []
    if sources:
        parts.append(f"{_a(sources[0])} {' or '.join(sources)} source")
    if gens:
        parts.append(f"{_a(gens[0])} {' or '.join(gens)} generator")
    return ", or ".join(parts)


def check_refs(low: Lowered) -> Iterator[Diagnostic]:
    spec = low.spec
    names = list(spec.sources) + list(spec.generators)
    for use in low.refs:
        if use.name in low.failed_names:
            continue
        kind = _kind_of(spec, use.name)
        wanted = _wanted(use.kinds)
        if kind is None:
            candidates = [n for n in names if _kind_of(spec, n) in use.kinds] or names
            yield error("name.unknown-ref", f"unknown source or generator '{use.name}'", use.span,
                        did_you_mean(use.name, candidates, "names") or "define it with `source NAME : KIND { ... }`")
        elif kind not in use.kinds:
            hint = ("html pages feed generators: mix a `generator NAME : krist { pages = ... }` instead"
                    if kind == "html" else None)
            what = "generator" if kind in ("krist", "quest") else "source"
            yield error("name.wrong-kind", f"'{use.name}' is {_a(kind)} {kind} {what}; this place takes {wanted}",
                        use.span, hint)


def check_name_clash(low: Lowered) -> Iterator[Diagnostic]:
    """Sources and generators share one namespace: the mixture names them alike."""
    spec = low.spec
    for name in sorted(set(spec.sources) & set(spec.generators)):
        yield error("name.duplicate", f"'{name}' names both a source and a generator",
                    low.span(("generators", name)), f"rename one of them; the source '{name}' is defined too")
    for name in sorted(set(spec.eval.sets) & (set(spec.sources) | set(spec.generators))):
        yield error("name.duplicate", f"'{name}' names both an eval set and a source or generator",
                    low.span(("eval", "sets", name)), "rename the eval set (stages and reports name it)")


def _groups(group: ir.MixGroup, path: tuple[str, ...]) -> Iterator[tuple[ir.MixGroup, tuple[str, ...]]]:
    yield group, path
    for member in group.members:
        if isinstance(member, ir.MixGroup):
            yield from _groups(member, path + (member.name,))


def check_mixture(low: Lowered) -> Iterator[Diagnostic]:
    spec = low.spec
    if low.failed_under(("mixture",)):
        return
    if not spec.mixture.members:
        yield error("mixture.empty", "the spec has no mixture", low.span(("mixture",)) or _top(low),
                    "add `mixture { 100% NAME }` naming the sources to train on")
        return
    seen: dict[str, tuple[str, ...]] = {}
    for group, path in _groups(spec.mixture, ("mixture",)):
        total = sum(m.share for m in group.members)
        if abs(total - 1.0) > SHARE_TOLERANCE:
            shares = " + ".join(f"{m.share * 100:g}% {m.name}" for m in group.members)
            where = low.span(path)
            label = "the mixture" if len(path) == 1 else f"group '{path[-1]}'"
            yield error("mixture.shares", f"shares in {label} sum to {total * 100:g}%, not 100%", where,
                        f"{shares}; the shares within a group add up to 100%")
        for member in group.members:
            mpath = path + (member.name,)
            if member.share <= 0:
                yield error("mixture.share-range", f"share of '{member.name}' must be above 0%",
                            low.span(mpath + ("share",)), "drop the entry instead of giving it 0%")
            if isinstance(member, ir.MixLeaf):
                if member.name in seen:
                    yield error("mixture.duplicate-leaf", f"'{member.name}' appears twice in the mixture",
                                low.span(mpath), "give each source one place; shares multiply down the tree",
                                (("first here", low.span(seen[member.name])),))
                seen[member.name] = mpath
            elif member.name in spec.sources or member.name in spec.generators:
                yield error("mixture.group-name", f"group '{member.name}' has the name of a source",
                            low.span(mpath), "rename the group")


def check_repeats(low: Lowered) -> Iterator[Diagnostic]:
    for collection, items in (("sources", low.spec.sources), ("generators", low.spec.generators)):
        for name, item in items.items():
            cap = getattr(item, "max_repeats", None)
            if cap is not None and cap <= 0:
                yield error("repeats.cap", f"max_repeats of '{name}' must be above 0, found {cap:g}",
                            low.span((collection, name, "max_repeats")), "a cap of 1 means one pass over the data")


def check_sampling(low: Lowered) -> Iterator[Diagnostic]:
    sampling = low.spec.interleave.sampling
    if isinstance(sampling, ir.Stochastic) and not 0 < sampling.p < 1:
        yield error("interleave.p", f"sampling probability p must lie strictly between 0 and 1, found {sampling.p:g}",
                    low.span(("interleave", "sampling", "p")),
                    "p is the chance that a chunk is audio; use 0.5 for the paper's stochastic setting")


def _ranges(spec: ir.Spec) -> Iterator[Problem]:
    for name, source in spec.sources.items():
        if isinstance(source, ir.AudioSource):
            base = ("sources", name)
            if not 0 < source.vad.threshold < 1:
                yield (base + ("vad", "threshold"), "vad threshold must lie between 0 and 1",
                       "the paper-style default is 0.5")
            if source.filters.min_duration >= source.filters.max_duration:
                yield (base + ("filters", "max_duration"), "filters: max_duration must exceed min_duration",
                       "raise max_duration")
            chunk = source.chunk
            if getattr(chunk, "min", 0) >= chunk.max:
                yield base + ("chunk", "max"), "chunk max must exceed chunk min", "fine chunks default to 1s..20s"
            if source.diarize.min_speakers > source.diarize.max_speakers:
                yield base + ("diarize", "max_speakers"), "max_speakers is below min_speakers", "swap them"
            if source.asr.batch < 1:
                yield base + ("asr", "batch"), "asr batch must be at least 1", None
    if spec.pack.seq_len < MIN_SEQ_LEN:
        yield ("pack", "seq_len"), f"seq_len must be at least {MIN_SEQ_LEN}", "the paper packs 16384 tokens"
    if spec.train.batch < 1:
        yield ("train", "batch"), "batch must be at least 1", None
    micro = spec.train.micro_batch
    if micro is not None and (micro < 1 or micro > spec.train.batch):
        yield ("train", "micro_batch"), "micro_batch must lie between 1 and batch", None
    audio = spec.tokenizers.audio
    if isinstance(audio, ir.FsqTokenizer) and any(level < MIN_FSQ_LEVEL for level in audio.levels):
        yield (("tokenizers", "audio", "levels"), f"every FSQ level must be at least {MIN_FSQ_LEVEL}",
               "the paper-style default is [8, 5, 5, 5]")
    if isinstance(audio, (ir.FsqTokenizer, ir.KmeansTokenizer)) and audio.frame_rate != TOKEN_RATE:
        yield (("tokenizers", "audio", "frame_rate"), f"the audio tokenizers run at {TOKEN_RATE:g} Hz only",
               "12.5Hz is 16 kHz audio at 100 log-mel frames/s, downsampled 8x: 80 ms per token")
    if isinstance(audio, ir.KmeansTokenizer) and audio.codebook < 2:
        yield (("tokenizers", "audio", "codebook"), "a k-means codebook needs at least 2 clusters",
               "1000 clusters match the code count of FSQ levels [8, 5, 5, 5]")
    if isinstance(audio, ir.FsqTokenizer) and audio.steps < 1:
        yield ("tokenizers", "audio", "steps"), "the audio tokenizer trains for at least 1 step", "the default is 600"
    text = spec.tokenizers.text
    if isinstance(text, ir.BpeTokenizer) and text.vocab < 300:
        yield ("tokenizers", "text", "vocab"), "a BPE vocabulary needs at least 300 entries (256 bytes + merges)", None
    if spec.pack.seq_len > MAX_SEQ_LEN:
        yield (("pack", "seq_len"), f"seq_len must be at most {MAX_SEQ_LEN:,}: document starts are stored as int32",
               "the paper packs 16384 tokens")
    yield from _vocabulary(spec)
    yield from _resources(spec)


def _resources(spec: ir.Spec) -> Iterator[Problem]:
    """Requests a Ray scheduler refuses: negative amounts, more than one GPU in fractions."""
    for kind in ir.Resources.model_fields:
        res: ir.StageResources = getattr(spec.resources, kind)
        base = ("resources", kind)
        for name in ("cpus", "gpus"):
            if getattr(res, name) < 0:
                yield (base + (name,), f"resources {kind}: {name} cannot be negative",
                       f"0 asks for none; the default is {1 if name == 'cpus' else 0}")
        if res.gpus > 1 and res.gpus != int(res.gpus):
            yield (base + ("gpus",), f"resources {kind}: more than one GPU must be a whole number, found {res.gpus:g}",
                   "fractions (0.5) share one GPU between tasks; ask for 1, 2, ... GPUs otherwise")
        if res.memory is not None and res.memory <= 0:
            yield (base + ("memory",), f"resources {kind}: memory must be positive",
                   "16GB, 512MiB; leave it out to reserve none")


def _vocabulary(spec: ir.Spec) -> Iterator[tuple[tuple[str, ...], str, str]]:
    """Sizes no token dtype can hold: the joint vocabulary (text, then audio codes and markers when
    the mixture has speech) must fit the widest dtype a shard stores (uint32)."""
    text, audio = spec.tokenizers.text, spec.tokenizers.audio
    speech = any(isinstance(spec.sources.get(leaf.name), ir.AudioSource) or leaf.name in spec.generators
                 for leaf in spec.mixture.leaves())
    codes = 0 if not speech else math.prod(audio.levels) if isinstance(audio, ir.FsqTokenizer) else \
        audio.codebook if isinstance(audio, ir.KmeansTokenizer) else 0
    words = text.vocab if isinstance(text, ir.BpeTokenizer) else 0
    total = words + codes + (MARKERS if speech else 0)
    if total <= MAX_VOCAB:
        return
    where = ("tokenizers", "text", "vocab") if words >= codes else \
        ("tokenizers", "audio", "levels" if isinstance(audio, ir.FsqTokenizer) else "codebook")
    parts = f"text {words:,}" + (f" + audio codes {codes:,} + markers" if speech else "")
    yield (where, f"a vocabulary of {total:,} ids ({parts}) does not fit the widest token dtype "
           f"(uint32: {MAX_VOCAB:,} ids)", "text vocabularies hold 32K-256K tokens and audio codebooks 1K-64K codes")


def check_ranges(low: Lowered) -> Iterator[Diagnostic]:
    for path, message, hint in _ranges(low.spec):
        yield error("value.range", message, low.span(path), hint)


def check_backends(low: Lowered) -> Iterator[Diagnostic]:
    for name, source in low.spec.sources.items():
        if isinstance(source, ir.AudioSource) and source.diarize.backend == "pyannote" and not source.diarize.model:
            yield error("backend.model", f"source '{name}': the pyannote diarizer needs a model",
                        low.span(("sources", name, "diarize")),
                        'add `model = "/path/to/pipeline"` (a local folder, or a hub id already in your cache)')
    for name, gen in low.spec.generators.items():
        tts = gen.tts
        path = ("generators", name, "tts", "voices")
        if not tts.voices:
            yield error("tts.voices", f"generator '{name}' has no voices", low.span(path), "list at least one voice")
        for voice in tts.pool():
            if voice.backend == "flite" and voice.name not in FLITE_VOICES:
                yield error("backend.voice", f"unknown flite voice '{voice.name}'; known: {', '.join(FLITE_VOICES)}",
                            low.span(path), did_you_mean(voice.name, list(FLITE_VOICES)))
            if voice.backend == "piper" and voice.name != "joe" and not voice.name.endswith(".onnx"):
                yield error("backend.voice", f"unknown piper voice '{voice.name}'",
                            low.span(path), "use `piper:joe` (shipped) or `piper:path/to/voice.onnx` (a local voice)")
        yield from _check_llm(low, name, gen.llm)
        if isinstance(gen, ir.QuestGenerator):
            yield from _check_pattern(low, name, gen.question_pattern)


def _check_pattern(low: Lowered, name: str, pattern: str) -> Iterator[Diagnostic]:
    try:
        re.compile(pattern)
    except re.error as err:
        yield error("value.regex", f"generator '{name}': question_pattern is not a valid regular expression: {err}",
                    low.span(("generators", name, "question_pattern")),
                    "in a spec string a backslash is written \\\\ (\\\\s for \\s)")


def _check_llm(low: Lowered, name: str, llm: ir.Llm) -> Iterator[Diagnostic]:
    where = low.span(("generators", name, "llm"))
    if llm.backend in ("transformers", "vllm", "openai") and not llm.model:
        what = "the served model's name" if llm.backend == "openai" else "a local model directory"
        yield error("backend.model", f"generator '{name}': the {llm.backend} backend needs a model ({what})",
                    where, 'add `model = "..."` inside llm { }')
    if llm.backend == "openai" and not llm.base_url:
        yield error("backend.base_url", f"generator '{name}': the openai backend needs the server's base_url",
                    where, 'add `base_url = "http://127.0.0.1:8000/v1"` inside llm { } (vllm serve, llama.cpp, TGI)')


def check_tokenizers(low: Lowered) -> Iterator[Diagnostic]:
    spec = low.spec
    text = spec.tokenizers.text
    used = {leaf.name for leaf in spec.mixture.leaves()}
    if isinstance(text, ir.BpeTokenizer) and not text.train_on and not any(
            isinstance(s, ir.TextSource) for s in spec.sources.values()):
        yield error("tokenizer.no-data", "the bpe text tokenizer has no text source to train on",
                    low.span(("tokenizers", "text")), "add a text source, or use `tokenizer text : tiktoken {}`")
    speech = [n for n in used if _kind_of(spec, n) in ("audio", "krist", "quest")]
    audio = spec.tokenizers.audio
    if speech and isinstance(audio, ir.FsqTokenizer) and not audio.train_on and not any(
            isinstance(s, ir.AudioSource) for s in spec.sources.values()) and not spec.generators:
        yield error("tokenizer.no-data", "the fsq audio tokenizer has no audio to train on",
                    low.span(("tokenizers", "audio")), "add an audio source, or load one with `: checkpoint`")


def check_budget_declared(low: Lowered) -> Iterator[Diagnostic]:
    spec = low.spec
    b = spec.budget
    if low.failed_under(("budget",)):
        return
    if b.tokens is None and b.steps is None:
        yield error("budget.missing", "the spec sets no training budget", low.span(("budget",)) or _top(low),
                    "add `budget { tokens = 1B }` or `budget { steps = 10K }`")
    elif b.tokens is not None and b.steps is not None:
        implied = b.steps * spec.train.batch * spec.pack.seq_len
        if abs(implied - b.tokens) > 0.01 * b.tokens:
            yield error("budget.inconsistent",
                        f"budget gives both tokens ({b.tokens:,}) and steps, which imply {implied:,} tokens",
                        low.span(("budget", "tokens")), "give one of them; steps x batch x seq_len sets the other")


def check_unused(low: Lowered) -> Iterator[Diagnostic]:
    spec = low.spec
    if not spec.mixture.members:
        return
    used = {leaf.name for leaf in spec.mixture.leaves()}
    for gen_name, gen in spec.generators.items():
        if gen_name in used:
            used.add(gen.pages)
    for collection, items in (("sources", spec.sources), ("generators", spec.generators)):
        for name in items:
            span = low.span((collection, name))
            if name not in used and span is not None and span.file == low.files[0]:
                yield warning("name.unused", f"'{name}' is defined but not in the mixture", span,
                              "add it to `mixture { }` or remove it")


def check_files(low: Lowered) -> Iterator[Diagnostic]:
    for use in low.file_uses:
        if is_remote(use.written):  # object storage: listed when the stage runs (a missing object is its error)
            continue
        full = use.pattern if os.path.isabs(use.pattern) else str(low.root / use.pattern)
        if use.glob and globlib.has_magic(full):
            if not any(True for _ in globlib.iglob(full, recursive=True)):
                yield warning("files.empty-glob", f"'{use.written}' matches no files", use.span,
                              f"looked for {os.path.relpath(full)}; paths are relative to the spec that names them")
        elif not os.path.exists(full):
            yield error("files.missing", f"file not found: {use.written}", use.span,
                        f"looked for {os.path.relpath(full)}; paths are relative to the spec that names them")


def check_eval(low: Lowered) -> Iterator[Diagnostic]:
    """Eval sets: spoken sets without speech, the voice, the topic backend's model."""
    spec = low.spec
    training_voices = {v for gen in spec.generators.values() for v in gen.tts.pool()}
    speech = any(isinstance(spec.sources.get(leaf.name), ir.AudioSource) or leaf.name in spec.generators
                 for leaf in spec.mixture.leaves())
    if spec.eval.decontaminate and not any(s.kind in ir.QUESTION_EVAL_KINDS for s in spec.eval.sets.values()):
        yield warning("eval.decontaminate", "decontaminate has nothing to compare with: no question eval set",
                      low.span(("eval", "decontaminate")), "declare an sqa, mc or modality_gap set, or remove the line")
    for name, evalset in spec.eval.sets.items():
        path = ("eval", "sets", name)
        if evalset.kind == "topics":
            if evalset.backend != "lexical" and not evalset.model:
                yield error("backend.model", f"eval set '{name}': the {evalset.backend} topic backend needs a model",
                            low.span(path + ("backend",)) or low.span(path),
                            'add `model = "DIR"`: a local model folder (a sentence embedder, or the topic classifier)')
            continue
        if evalset.kind == "lm":
            continue
        if evalset.kind in ir.SPOKEN_EVAL_KINDS and not speech:
            yield error("eval.no-speech", f"eval set '{name}' is spoken ({evalset.kind}) and the mixture has no speech",
                        low.span(path + ("kind",)) or low.span(path),
                        "a model trained without audio cannot hear the questions: use kind = mc, or add speech")
        voice = ir.Voice.parse(evalset.voice, "flite")
        if evalset.kind in ir.SPOKEN_EVAL_KINDS and voice in training_voices:
            yield warning("eval.voice", f"eval set '{name}' is read by {evalset.voice}, which voices training data too",
                          low.span(path + ("voice",)) or low.span(path),
                          "hold a voice out of training (the default, espeak:en-us+f3, is in no default pool)")
        if voice.backend == "flite" and voice.name not in FLITE_VOICES:
            yield error("backend.voice", f"unknown flite voice '{voice.name}'; known: {', '.join(FLITE_VOICES)}",
                        low.span(path + ("voice",)) or low.span(path), did_you_mean(voice.name, list(FLITE_VOICES)))


CHECKS: tuple[Callable[[Lowered], Iterator[Diagnostic]], ...] = (
    check_refs, check_name_clash, check_mixture, check_repeats, check_sampling, check_ranges, check_backends,
    check_tokenizers, check_budget_declared, check_unused, check_files, check_eval,
)


def _top(low: Lowered) -> Span | None:
    return Span(low.files[0], 1, 1, 1, 2) if low.files else None


def run(low: Lowered) -> list[Diagnostic]:
    """Every diagnostic for a lowered spec: lowering's own, then all checks, sorted by location."""
    diags = list(low.diagnostics)
    if low.ir is not None:
        for check in CHECKS:
            diags.extend(check(low))
    return sorted(diags, key=sort_key)


def check_file(path: str) -> tuple[Lowered, list[Diagnostic]]:
    """Load, lower and check one spec (the language's checks only)."""
    low = load(path)
    return low, run(low)
