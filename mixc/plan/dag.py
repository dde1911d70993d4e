"""IR -> plan: the stage DAG with content keys, and the per-leaf budget table (polars).

A stage's key hashes its kind, the IR values it reads, its implementation version and its inputs'
keys; never a path on this machine or a cosmetic field. Two specs that differ in one line differ in
exactly the keys downstream of that line, which is what `mixc diff` and the cache rely on.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from typing import Any

import polars as pl

from mixc.plan import budget
from mixc.ir import AudioSource, BpeTokenizer, FsqTokenizer, KmeansTokenizer, KristGenerator, Spec, Stochastic, TextSource
from mixc.plan.sizes import SourceSize
from mixc.plan.vocab import has_speech

IrPath = tuple[str, ...]

# Bump a stage's version when its implementation changes what it produces.
STAGE_VERSIONS = {
    "ingest": 1, "vad": 1, "diarize": 1, "asr": 1, "filter": 1, "chunk": 1, "encode": 1, "interleave": 1,
    "read": 1, "dedup": 1, "tokenize": 1, "pack": 1, "shards": 1, "extract": 1, "rewrite": 1, "mine": 1,
    "answer": 1, "tts": 1, "train_bpe": 1, "load_text_tokenizer": 1, "train_audio_tokenizer": 1,
    "load_audio_tokenizer": 1,
}

# What each stage makes; read by `mixc plan` and docs.
STAGE_DOCS = {
    "ingest": "decode, resample to 16 kHz mono, quarantine bad files",
    "vad": "speech regions", "diarize": "speaker turns", "asr": "transcripts with word timestamps",
    "filter": "language and transcript filters", "chunk": "(audio, text) chunks",
    "encode": "audio codes per chunk", "interleave": "one modality per chunk, markers, loss mask",
    "read": "documents", "dedup": "exact-duplicate removal", "tokenize": "text tokens",
    "pack": "fixed-length sequences", "shards": "MDS shards", "extract": "page text",
    "rewrite": "LLM rewrite (Krist)", "mine": "questions (Quest)", "answer": "filtered questions + answers",
    "tts": "synthetic speech", "train_bpe": "a trained BPE tokenizer", "load_text_tokenizer": "a text tokenizer",
    "train_audio_tokenizer": "a trained audio tokenizer", "load_audio_tokenizer": "an audio tokenizer",
}


@dataclass(frozen=True)
class Stage:
    id: str
    kind: str
    subject: str
    reads: tuple[IrPath, ...]
    inputs: tuple[str, ...]
    key: str
    params_key: str  # kind, version and the IR values it reads, without its inputs: keys per-item memos

    @property
    def doc(self) -> str:
        return STAGE_DOCS[self.kind]


def _get(spec: Spec, path: IrPath) -> Any:
    node: Any = spec.model_dump(mode="json")
    for part in path:
        node = node.get(part) if isinstance(node, dict) else None
    return node


class _Builder:
    def __init__(self, spec: Spec):
        self.spec = spec
        self.stages: dict[str, Stage] = {}

    def add(self, kind: str, subject: str, reads: list[IrPath], inputs: list[str]) -> str:
        sid = f"{kind}:{subject}"
        if sid in self.stages:
            return sid
        params = {"kind": kind, "version": STAGE_VERSIONS[kind],
                  "params": {"/".join(p): _get(self.spec, p) for p in reads}}
        payload = {**params, "inputs": sorted(self.stages[i].key for i in inputs)}
        key, params_key = (hashlib.sha256(json.dumps(p, sort_keys=True).encode()).hexdigest()[:16]
                           for p in (payload, params))
        self.stages[sid] = Stage(sid, kind, subject, tuple(reads), tuple(inputs), key, params_key)
        return sid

    def seed_if(self, used: bool) -> list[IrPath]:
        return [("seed",)] if used else []

    # tokenizers -----------------------------------------------------------------------------

    def text_tokenizer(self) -> str:
        tok = self.spec.tokenizers.text
        if isinstance(tok, BpeTokenizer):
            names = tok.train_on or tuple(n for n, s in self.spec.sources.items() if isinstance(s, TextSource))
            inputs = [self.read(n) for n in names if isinstance(self.spec.sources.get(n), TextSource)]
            return self.add("train_bpe", "text", [("tokenizers", "text"), ("seed",)], inputs)
        return self.add("load_text_tokenizer", "text", [("tokenizers", "text")], [])

    def audio_tokenizer(self) -> str:
        tok = self.spec.tokenizers.audio
        if isinstance(tok, (FsqTokenizer, KmeansTokenizer)):
            names = getattr(tok, "train_on", ()) or tuple(
                n for n, s in self.spec.sources.items() if isinstance(s, AudioSource))
            inputs = [self.web_audio_front(n) for n in names if isinstance(self.spec.sources.get(n), AudioSource)]
            return self.add("train_audio_tokenizer", "audio", [("tokenizers", "audio"), ("seed",)], inputs)
        return self.add("load_audio_tokenizer", "audio", [("tokenizers", "audio")], [])

    # per-source pipelines ---------------------------------------------------------------------

    def read(self, name: str) -> str:
        base = ("sources", name)
        sid = self.add("read", name, [base + ("files",), base + ("format",), base + ("field",)], [])
        if self.spec.sources[name].dedup:
            sid = self.add("dedup", name, [base + ("dedup",)], [sid])
        return sid

    def web_audio_front(self, name: str) -> str:
        """ingest -> vad -> diarize -> asr -> filter: everything upstream of chunking."""
        base = ("sources", name)
        sid = self.add("ingest", name, [base + ("files",), base + ("manifest",), base + ("max_file_duration",)], [])
        for kind, field in (("vad", "vad"), ("diarize", "diarize"), ("asr", "asr"), ("filter", "filters")):
            sid = self.add(kind, name, [base + (field,)], [sid])
        return sid

    def speech_tail(self, name: str, units: str) -> str:
        """encode -> interleave -> pack -> shards for a stream of (audio, text) chunks."""
        stochastic = isinstance(self.spec.interleave.sampling, Stochastic)
        enc = self.add("encode", name, [], [units, self.audio_tokenizer()])
        inter = self.add("interleave", name, [("interleave",)] + self.seed_if(stochastic), [enc, self.text_tokenizer()])
        return self.tail(name, inter)

    def tail(self, name: str, sid: str) -> str:
        packed = self.add("pack", name, [("pack",)], [sid])
        # the joint vocabulary (text + audio codes + markers) fixes the token dtype of every stream
        vocab = [self.audio_tokenizer()] if has_speech(self.spec) else []
        return self.add("shards", name, [("shards",), ("tokenizers",), ("interleave", "markers")], [packed] + vocab)

    def leaf(self, name: str) -> str | None:
        spec = self.spec
        if name in spec.sources:
            source = spec.sources[name]
            if isinstance(source, TextSource):
                return self.tail(name, self.add("tokenize", name, [], [self.read(name), self.text_tokenizer()]))
            if isinstance(source, AudioSource):
                chunks = self.add("chunk", name, [("sources", name, "chunk")], [self.web_audio_front(name)])
                return self.speech_tail(name, chunks)
            return None
        gen = spec.generators.get(name)
        if gen is None or gen.pages not in spec.sources:
            return None
        base = ("generators", name)
        pages = self.add("extract", gen.pages, [("sources", gen.pages, "files")], [])
        if isinstance(gen, KristGenerator):
            text = self.add("rewrite", name, [base + ("llm",), base + ("prompt",), ("seed",)], [pages])
        else:
            mined = self.add("mine", name, [base + ("question_pattern",)], [pages])
            text = self.add("answer", name, [base + ("llm",), base + ("filter_prompt",), base + ("answer_prompt",),
                                             ("seed",)], [mined])
        voiced = self.add("tts", name, [base + ("tts",), ("seed",)], [text])
        return self.speech_tail(name, voiced)


def stages(spec: Spec) -> dict[str, Stage]:
    """The stage DAG for a spec, in a topological order (every stage after its inputs)."""
    builder = _Builder(spec)
    for name in sorted(budget.leaf_shares(spec.mixture)):
        builder.leaf(name)
    return builder.stages


def downstream(dag: dict[str, Stage], roots: set[str]) -> set[str]:
    out = set(roots)
    for sid, stage in dag.items():  # topological order: one pass suffices
        if any(i in out for i in stage.inputs):
            out.add(sid)
    return out


def readers(dag: dict[str, Stage], path: IrPath) -> set[str]:
    """Stages whose parameters include the IR value at `path` (or a part of it)."""
    n = len(path)
    return {sid for sid, st in dag.items() if any(r[:n] == path or path[:len(r)] == r for r in st.reads)}


# ---------------------------------------------------------------------------------- budget table


def leaf_table(spec: Spec, sizes: dict[str, SourceSize] | None) -> pl.DataFrame:
    shares = budget.leaf_shares(spec.mixture)
    groups = budget.leaf_groups(spec.mixture)
    total = budget.total_tokens(spec)
    rows = []
    for name in sorted(shares):
        size = (sizes or {}).get(name)
        kind = spec.sources[name].kind if name in spec.sources else \
            spec.generators[name].kind if name in spec.generators else "?"
        rows.append({
            "leaf": "/".join(groups.get(name, ()) + (name,)), "name": name, "kind": kind, "share": shares[name],
            "files": size.files if size else None, "hours": (size.seconds / 3600) if size and size.seconds is not None else None,
            "est_tokens": size.tokens if size and size.tokens else None, "cap": budget.repeat_cap(spec, name),
        })
    schema = {"leaf": pl.String, "name": pl.String, "kind": pl.String, "share": pl.Float64, "files": pl.Int64,
              "hours": pl.Float64, "est_tokens": pl.Float64, "cap": pl.Float64}
    df = pl.DataFrame(rows, schema=schema)
    needed = pl.col("share") * (float(total) if total is not None else None)
    return df.with_columns(needed.alias("needed_tokens")).with_columns(
        (pl.col("needed_tokens") / pl.col("est_tokens")).alias("repeats"),
    ).with_columns(
        pl.when(pl.col("repeats").is_null()).then(None)
        .when(pl.col("cap").is_null()).then(True)
        .otherwise(pl.col("repeats") <= pl.col("cap")).alias("feasible"),
    )


@dataclass
class Plan:
    spec: Spec
    dag: dict[str, Stage]
    table: pl.DataFrame
    total_tokens: int | None
    steps: int | None

    def feasible(self) -> bool | None:
        values = self.table["feasible"].to_list()
        if any(v is False for v in values):
            return False
        return None if any(v is None for v in values) else True


def build(spec: Spec, sizes: dict[str, SourceSize] | None = None) -> Plan:
    return Plan(spec, stages(spec), leaf_table(spec, sizes), budget.total_tokens(spec), budget.total_steps(spec))


