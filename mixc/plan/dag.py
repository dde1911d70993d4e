"""IR -> the stage graph: which stages a spec needs, how they connect, and each one's content key.

The planner only wires the graph: each `add` names a stage kind, its subject (a source, generator
or tokenizer) and its inputs. What a kind is (its version, its one-line doc, the IR values it
reads, the field naming its weights) is declared once, on its class in `mixc.stages`, and handed to
`wire` as a catalogue; this layer never imports the stages.

A stage's key hashes its kind, version, the IR values it declares and its inputs' keys; never a path
on this machine or a cosmetic field. Two specs that differ in one line differ in exactly the keys
downstream of that line, which is what `mixc diff` and the cache rely on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from pydantic_core import to_jsonable_python

from mixc import ir
from mixc.hashing import json_digest
from mixc.ir import IrPath
from mixc.plan import budget

SUBJECT = "."  # a declared read starting with "." is below the stage's subject's block: ".vad"


class Declaration(Protocol):
    """What the planner needs to know of a stage kind; its class in `mixc.stages` declares it."""

    kind: ClassVar[str]
    version: ClassVar[int]
    doc: ClassVar[str]

    @classmethod
    def declared_reads(cls, spec: ir.Spec) -> tuple[str, ...]: ...


def subject_block(spec: ir.Spec, subject: str) -> IrPath:
    """Where a subject's block is in the IR: a source, a generator, an eval set, or a tokenizer
    (names are unique across the first three: the language checks it)."""
    if subject in spec.sources:
        return ("sources", subject)
    if subject in spec.generators:
        return ("generators", subject)
    if subject in spec.eval.sets:
        return ("eval", "sets", subject)
    return ("tokenizers", subject)


def resolve(read: str, spec: ir.Spec, subject: str) -> IrPath:
    """A declared read ("pack", "interleave.markers", ".vad") as an IR path for this subject."""
    if read.startswith(SUBJECT):
        return subject_block(spec, subject) + tuple(read[1:].split("."))
    return tuple(read.split("."))


@dataclass(frozen=True)
class StageNode:
    id: str  # "kind:subject"
    kind: str
    subject: str
    doc: str
    reads: tuple[IrPath, ...]
    inputs: tuple[str, ...]
    key: str
    params_key: str  # kind, version and the IR values it reads, without its inputs: keys per-item memos


StageGraph = dict[str, StageNode]  # stage id -> node, in a topological order


class _Wiring:
    def __init__(self, spec: ir.Spec, kinds: Mapping[str, type[Declaration]]):
        self.spec, self.kinds = spec, kinds
        self.graph: StageGraph = {}

    def add(self, kind: str, subject: str, inputs: list[str]) -> str:
        sid = f"{kind}:{subject}"
        if sid in self.graph:
            return sid
        decl = self.kinds[kind]
        reads = tuple(resolve(r, self.spec, subject) for r in decl.declared_reads(self.spec))
        values: dict[str, Any] = {"/".join(p): to_jsonable_python(ir.value_at(self.spec, p)) for p in reads}
        params = {"kind": kind, "version": decl.version, "params": values}
        key = json_digest({**params, "inputs": sorted(self.graph[i].key for i in inputs)}, 16)
        self.graph[sid] = StageNode(sid, kind, subject, decl.doc, reads, tuple(inputs), key, json_digest(params, 16))
        return sid

    # tokenizers -----------------------------------------------------------------------------

    def text_tokenizer(self) -> str:
        tok = self.spec.tokenizers.text
        if isinstance(tok, ir.BpeTokenizer):
            texts = [n for n, s in self.spec.sources.items() if isinstance(s, ir.TextSource)]
            names = [n for n in tok.train_on or texts if n in texts]
            return self.add("train_bpe", "text", [self.read(n) for n in names])
        return self.add("load_text_tokenizer", "text", [])

    def audio_tokenizer(self) -> str:
        tok = self.spec.tokenizers.audio
        if isinstance(tok, (ir.FsqTokenizer, ir.KmeansTokenizer)):
            audio = [n for n, s in self.spec.sources.items() if isinstance(s, ir.AudioSource)]
            voiced = [n for n in sorted(budget.leaf_shares(self.spec.mixture)) if n in self.spec.generators]
            names = [n for n in tok.train_on or audio or voiced if n in audio or n in self.spec.generators]
            return self.add("train_audio_tokenizer", "audio", [self.speech_front(n) for n in names])
        return self.add("load_audio_tokenizer", "audio", [])

    # per-source pipelines ---------------------------------------------------------------------

    def read(self, name: str) -> str:
        """A text source's documents (deduplicated when it asks)."""
        sid = self.add("read", name, [])
        source = self.spec.sources[name]
        if isinstance(source, ir.TextSource) and source.dedup:
            sid = self.add("dedup", name, [sid])
        return sid

    def web_audio_front(self, name: str) -> str:
        """ingest -> vad -> diarize -> asr -> filter: everything upstream of chunking."""
        sid = self.add("ingest", name, [])
        for kind in ("vad", "diarize", "asr", "filter"):
            sid = self.add(kind, name, [sid])
        return sid

    def generated_text(self, name: str) -> str:
        """extract -> (rewrite | mine -> answer): a generator's items as text."""
        gen = self.spec.generators[name]
        pages = self.add("extract", gen.pages, [])
        if isinstance(gen, ir.KristGenerator):
            return self.add("rewrite", name, [pages])
        return self.add("answer", name, [self.add("mine", name, [pages]), pages])

    def synthetic_front(self, name: str) -> str:
        """generated text -> tts: a generator's voiced chunks."""
        return self.add("tts", name, [self.generated_text(name)])

    def speech_front(self, name: str) -> str:
        """What the audio tokenizer trains on: a source's filtered utterances, a generator's speech."""
        return self.synthetic_front(name) if name in self.spec.generators else self.web_audio_front(name)

    def speech_tail(self, name: str, units: str) -> str:
        """encode -> interleave -> pack -> shards for a stream of (audio, text) chunks."""
        encoded = self.add("encode", name, [units, self.audio_tokenizer()])
        interleaved = self.add("interleave", name, [encoded, self.text_tokenizer()] + self.decontaminated_by())
        return self.tail(name, interleaved)

    def tail(self, name: str, sid: str) -> str:
        packed = self.add("pack", name, [sid])
        if self.spec.eval.heldout:
            self.add("eval_heldout", name, [packed])
        # the joint vocabulary (text + audio codes + markers) fixes the token dtype of every stream
        vocab = [self.audio_tokenizer()] if budget.has_speech(self.spec) else []
        return self.add("shards", name, [packed] + vocab)

    def eval_set(self, name: str) -> None:
        """eval_items -> eval_encode (with the text tokenizer, and the audio one for spoken sets), and
        eval_items -> contamination (with every mixture leaf's training text)."""
        kind = self.spec.eval.sets[name].kind
        tokenizers = [self.text_tokenizer()] + ([self.audio_tokenizer()] if kind in ir.SPOKEN_EVAL_KINDS else [])
        self.add("eval_encode", name, [self.add("eval_items", name, [])] + tokenizers)
        self.contamination(name)

    def contamination(self, name: str) -> str:
        return self.add("contamination", name, [self.add("eval_items", name, [])] + self.training_texts())

    def decontaminated_by(self) -> list[str]:
        """With `eval.decontaminate`, the contamination stages whose overlapping training documents a
        leaf's tokenising stage drops: one per question eval set."""
        if not self.spec.eval.decontaminate:
            return []
        return [self.contamination(n) for n, s in sorted(self.spec.eval.sets.items())
                if s.kind in ir.QUESTION_EVAL_KINDS]

    def topics(self, name: str) -> None:
        """Topic coverage of every leaf's training text and of the scored eval sets' questions."""
        spec = self.spec
        scored = [self.add("eval_items", n, []) for n, s in sorted(spec.eval.sets.items())
                  if s.kind in ir.QUESTION_EVAL_KINDS]
        self.add("topics", name, scored + self.training_texts())

    def training_texts(self) -> list[str]:
        """Every mixture leaf's training-text stage, in leaf order."""
        return [t for leaf in sorted(budget.leaf_shares(self.spec.mixture)) if (t := self.training_text(leaf))]

    def training_text(self, name: str) -> str | None:
        """The stage whose artifact holds a leaf's training text: documents, transcripts, generated items."""
        source = self.spec.sources.get(name)
        if isinstance(source, ir.TextSource):
            return self.read(name)
        if isinstance(source, ir.AudioSource):
            return self.add("chunk", name, [self.web_audio_front(name)])
        gen = self.spec.generators.get(name)
        return self.generated_text(name) if gen is not None and gen.pages in self.spec.sources else None

    def leaf(self, name: str) -> None:
        source = self.spec.sources.get(name)
        if isinstance(source, ir.TextSource):
            inputs = [self.read(name), self.text_tokenizer()] + self.decontaminated_by()
            self.tail(name, self.add("tokenize", name, inputs))
        elif isinstance(source, ir.AudioSource):
            self.speech_tail(name, self.add("chunk", name, [self.web_audio_front(name)]))
        elif (gen := self.spec.generators.get(name)) is not None and gen.pages in self.spec.sources:
            self.speech_tail(name, self.synthetic_front(name))


def wire(spec: ir.Spec, kinds: Mapping[str, type[Declaration]]) -> StageGraph:
    """The stage graph for a spec, in a topological order (every stage after its inputs), keyed
    with the declarations in `kinds` (`mixc.stages.REGISTRY`)."""
    wiring = _Wiring(spec, kinds)
    for leaf in sorted(budget.leaf_shares(spec.mixture)):
        wiring.leaf(leaf)
    for name, evalset in sorted(spec.eval.sets.items()):
        if evalset.kind in ir.QUESTION_EVAL_KINDS:
            wiring.eval_set(name)
        elif evalset.kind == "topics":
            wiring.topics(name)
        else:  # lm: held-out text, framed with the joint vocabulary's markers
            vocab = [wiring.audio_tokenizer()] if budget.has_speech(spec) else []
            wiring.add("eval_text", name, [wiring.text_tokenizer()] + vocab)
    return wiring.graph


def downstream(graph: StageGraph, roots: set[str]) -> set[str]:
    out = set(roots)
    for sid, stage in graph.items():  # topological order: one pass suffices
        if any(i in out for i in stage.inputs):
            out.add(sid)
    return out


def readers(graph: StageGraph, path: IrPath) -> set[str]:
    """Stages whose parameters include the IR value at `path` (or a part of it)."""
    n = len(path)
    return {sid for sid, st in graph.items() if any(r[:n] == path or path[:len(r)] == r for r in st.reads)}
