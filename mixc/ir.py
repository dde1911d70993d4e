"""The typed, validated intermediate representation of a spec.

Every model is frozen and forbids extra fields. The models double as the language's schema: the
lowering pass walks them to know which fields and blocks exist, what units a value takes, and what
the defaults are (so a lowered IR has no hidden defaults). Field metadata markers:

- `Unit.*`       the value is a quantity of that family (durations, counts, percentages, ...);
- `Files()`      one or more globs of input files, resolved against the spec's workspace;
- `FilePath()`   one local file or directory that must exist;
- `Ref(kinds)`   the name of a source or generator of one of the given kinds;
- `Named(word)`  a collection of named blocks written `word NAME [: kind] { ... }`;
- `Variant(f)`   a block whose header label (or call name) picks the model by field `f`;
- `Replace()`    an extending spec replaces this block whole instead of merging it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from enum import Enum
from typing import Annotated, Any, Final, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

IR_VERSION: Final = 1

IrPath = tuple[str, ...]  # a place in the IR: ("sources", "web", "vad", "threshold")


class Unit(str, Enum):
    DURATION = "duration"
    COUNT = "count"
    PERCENT = "percent"
    FREQUENCY = "frequency"
    BYTES = "bytes"
    NUMBER = "number"  # a plain number; a probability may also be written as a percentage


@dataclass(frozen=True)
class Files:
    pass


@dataclass(frozen=True)
class FilePath:
    pass


@dataclass(frozen=True)
class Ref:
    kinds: tuple[str, ...]


@dataclass(frozen=True)
class Named:
    word: str


@dataclass(frozen=True)
class Variant:
    field: str


@dataclass(frozen=True)
class Replace:
    pass


Seconds = Annotated[float, Unit.DURATION]
Count = Annotated[int, Unit.COUNT]
Fraction = Annotated[float, Unit.PERCENT]
Probability = Annotated[float, Unit.NUMBER]
Hertz = Annotated[float, Unit.FREQUENCY]
Bytes = Annotated[int, Unit.BYTES]
Globs = Annotated[tuple[str, ...], Files()]
LocalPath = Annotated[str, FilePath()]
RepeatCap = Annotated[float, Unit.NUMBER]


class Node(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    def canonical_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))

    def content_hash(self) -> str:
        """A stable hash of the content: spans, comments and formatting never reach the IR."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------- audio processing


class Vad(Node):
    """Voice activity detection over each recording."""

    backend: Literal["silero"] = "silero"
    threshold: Probability = Field(0.5, description="speech probability threshold")
    min_speech: Seconds = Field(0.25, description="shortest speech region kept")
    min_silence: Seconds = Field(0.1, description="shortest pause that splits two regions")
    pad: Seconds = Field(0.03, description="padding added around each region")


class Diarize(Node):
    """Who spoke when. `embedding` clusters speaker embeddings (offline); `pyannote` runs its pipeline."""

    backend: Literal["embedding", "pyannote"] = "embedding"
    model: str | None = Field(None, description="pyannote: a local pipeline directory or a hub id in the cache")
    min_speakers: int = 1
    max_speakers: int = 8
    max_pause: Seconds = Field(0.25, description="a speaker's shorter pause stays inside one turn")


class Asr(Node):
    """Speech recognition with word timestamps."""

    backend: Literal["faster_whisper", "whisperx"] = "faster_whisper"
    model: str = Field("tiny.en", description="a model name or a local model directory")
    revision: str | None = Field(None, description="model revision; enters the stage key")
    language: str | None = Field(None, description="force a language; default: 'en' for .en models, else detected")
    batch: int = 8
    beam: int = 5
    device: Literal["cpu", "cuda"] = "cpu"
    compute_type: str | None = Field(
        None, description="CTranslate2 compute type; default: int8 on cpu, float16 on cuda")
    align_model: str | None = Field(
        None, description="whisperx: the alignment model; default: whisperx's for the language")


class Filters(Node):
    """Transcript filters; every drop is counted under its reason."""

    language: str = Field("en", description="keep chunks in this language (ISO 639-1)")
    drop_empty: bool = True
    ngram: int = Field(3, description="n-gram size for hallucination-loop detection")
    max_ngram_repeats: int = Field(4, description="drop a transcript whose most frequent n-gram repeats more")
    min_confidence: Probability = 0.0
    min_duration: Seconds = 0.5
    max_duration: Seconds = 120.0


class FineChunks(Node):
    """Each diarized segment, split further at sentence ends."""

    granularity: Literal["fine"] = "fine"
    split: Literal["sentence", "none"] = "sentence"
    min: Seconds = 1.0
    max: Seconds = 20.0


class CoarseChunks(Node):
    """Consecutive segments of the same speaker merged."""

    granularity: Literal["coarse"] = "coarse"
    max: Seconds = 60.0
    max_gap: Seconds = Field(2.0, description="a longer pause starts a new chunk")


Chunking = Annotated[Union[FineChunks, CoarseChunks], Variant("granularity")]


# ------------------------------------------------------------------------------------- sources


class AudioSource(Node):
    """Web audio: recordings become (audio, text) chunks."""

    kind: Literal["audio"] = "audio"
    files: Globs = ()
    manifest: LocalPath | None = Field(None, description="jsonl/csv/parquet with a `path` column")
    max_file_duration: Seconds = Field(14400.0, description="longer files are quarantined, never decoded")
    vad: Vad = Vad()
    diarize: Diarize = Diarize()
    asr: Asr = Asr()
    filters: Filters = Filters()
    chunk: Chunking = FineChunks()
    max_repeats: RepeatCap | None = Field(None, description="the most times the budget may reuse this source")


class TextSource(Node):
    """Text documents for text-only streams."""

    kind: Literal["text"] = "text"
    files: Globs = ()
    format: Literal["auto", "jsonl", "parquet", "txt"] = "auto"
    field: str = Field("text", description="the field holding the text (jsonl, parquet)")
    dedup: bool = Field(False, description="remove exact duplicates")
    max_repeats: RepeatCap | None = None


class HtmlSource(Node):
    """Web pages, read by synthetic generators: HTML files (plain or compressed), WARC archives, or
    jsonl/parquet records with an HTML or text field. Main content is extracted with trafilatura."""

    kind: Literal["html"] = "html"
    files: Globs = ()
    format: Literal["auto", "html", "warc", "jsonl", "parquet"] = Field(
        "auto", description="auto: by file suffix (.html/.htm, .warc, .jsonl, .parquet; plus .gz/.zst/.bz2)")
    field: str = Field("html", description="jsonl/parquet: the field holding the page")
    content: Literal["html", "text"] = Field("html", description="jsonl/parquet: the field holds HTML or plain text")
    url_field: str = Field("url", description="jsonl/parquet: the field holding the page's URL, if any")
    language: str | None = Field("en", description="quarantine pages in another language (ISO 639-1); none: keep all")
    min_chars: Count = Field(200, description="quarantine pages with less main text than this")
    dedup: bool = Field(True, description="drop exact duplicates (same main text) and repeated URLs")


Source = Annotated[Union[AudioSource, TextSource, HtmlSource], Variant("kind")]


# ---------------------------------------------------------------------------------- generators


class Llm(Node):
    """The language model a generator calls. `extractive` needs no model (the offline default);
    `transformers` runs a local Hugging Face model in process; `openai` calls any OpenAI-compatible
    server; `vllm` runs offline batch inference in a worker environment of its own."""

    backend: Literal["extractive", "transformers", "openai", "vllm"] = "extractive"
    model: str | None = Field(None, description="transformers, vllm: a local model directory or a hub id in the "
                              "local Hugging Face cache; openai: the served name")
    revision: str | None = Field(None, description="openai: the served model's revision (enters the cache key); "
                                 "transformers, vllm: the cached snapshot of a hub id")
    base_url: str | None = Field(None, description="openai: the server, e.g. http://127.0.0.1:8000/v1")
    api_key_env: str = Field("OPENAI_API_KEY", description="openai: the environment variable holding the key")
    temperature: Probability = 0.7
    top_p: Probability = 1.0
    max_tokens: Count = 1024
    batch: Count = Field(8, description="transformers, vllm: prompts per batch; openai: requests in flight")
    timeout: Seconds = Field(120.0, description="openai: seconds to wait for one response")
    retries: Count = Field(4, description="openai: retries of a connection error or 5xx, with backoff")
    device: Literal["cpu", "cuda"] = "cpu"


class Tts(Node):
    """Voices synthetic text: one voice drawn per item from `voices`, one TTS call per chunk.
    A voice is `backend:name` (`piper:joe`, `flite:awb`, `espeak:en-gb-scotland`); a bare name
    uses `backend`."""

    backend: Literal["flite", "espeak", "piper", "kokoro"] = "flite"
    voices: tuple[str, ...] = ("piper:joe", "flite:awb", "flite:rms", "flite:slt", "espeak:en-gb-scotland",
                               "espeak:en-029")
    model: LocalPath | None = Field(None, description="kokoro: the local folder holding its weights")
    noise_scale: float = Field(0.667, description="piper: pinned, so the audio is the same every run")
    noise_w_scale: float = Field(0.8, description="piper: pinned, so the audio is the same every run")
    pause: Seconds = Field(0.3, description="silence between two chunks of an item")
    device: Literal["cpu", "cuda"] = "cpu"

    def pool(self) -> tuple[Voice, ...]:
        """The voices, each with its backend resolved."""
        return tuple(Voice.parse(v, self.backend) for v in self.voices)


TTS_BACKENDS: Final = ("flite", "espeak", "piper", "kokoro")


@dataclass(frozen=True)
class Voice:
    """One voice of a TTS pool: `backend:name` (a bare name takes the pool's default backend)."""
    backend: str
    name: str

    @classmethod
    def parse(cls, text: str, default_backend: str) -> Voice:
        backend, sep, name = text.partition(":")
        return cls(backend, name) if sep and backend in TTS_BACKENDS else cls(default_backend, text)

    @property
    def id(self) -> str:
        return f"{self.backend}:{self.name}"


class Generated(Node):
    """What the generator keeps of its text, and how its speech becomes chunks."""

    language: str = Field("en", description="drop outputs in another language (ISO 639-1)")
    max_chars: Count = Field(4000, description="drop longer outputs; page text is cut into parts of this size")
    max_items: Count | None = Field(None, description="at most this many items (pages' parts or questions)")


class KristGenerator(Node):
    """Krist: extract page text, lightly rewrite it with an LLM, voice it."""

    kind: Literal["krist"] = "krist"
    pages: Annotated[str, Ref(("html",))]
    llm: Llm = Llm()
    prompt: LocalPath | None = Field(None, description="the rewrite prompt; {page} stands for the page's text")
    output: Generated = Generated()
    tts: Tts = Tts()
    chunk: Chunking = FineChunks()
    max_repeats: RepeatCap | None = None


class QuestGenerator(Node):
    """Quest: mine questions from pages, filter them and answer them with an LLM, voice it."""

    kind: Literal["quest"] = "quest"
    pages: Annotated[str, Ref(("html",))]
    question_pattern: str = Field(r"(?:^|(?<=[.!?]\s))([A-Z][^.!?\n]{10,200}\?)",
                                  description="regex that mines questions from page text (group 1, else the match)")
    max_questions: Count = Field(8, description="at most this many questions per page")
    llm: Llm = Llm()
    filter_prompt: LocalPath | None = Field(None, description="{question}, {page}: answer yes or no")
    answer_prompt: LocalPath | None = Field(None, description="{question}, {page}: the spoken answer")
    output: Generated = Generated(max_chars=1500)
    tts: Tts = Tts()
    chunk: Chunking = FineChunks()
    max_repeats: RepeatCap | None = None


Generator = Annotated[Union[KristGenerator, QuestGenerator], Variant("kind")]


# ---------------------------------------------------------------------------------- tokenizers


class BpeTokenizer(Node):
    """A byte-level BPE trained on text sources as a cached stage."""

    kind: Literal["bpe"] = "bpe"
    train_on: tuple[Annotated[str, Ref(("text",))], ...] = Field((), description="default: every text source")
    vocab: Count = 32000
    sample: Bytes = Field(100_000_000, description="how much text to train on")


class FileTokenizer(Node):
    """A local tokenizer.json (Hugging Face) or sentencepiece .model."""

    kind: Literal["file"] = "file"
    path: LocalPath


class TiktokenTokenizer(Node):
    """tiktoken's cl100k vocabulary, shipped offline."""

    kind: Literal["tiktoken"] = "tiktoken"
    encoding: Literal["cl100k"] = "cl100k"


TextTokenizer = Annotated[Union[BpeTokenizer, FileTokenizer, TiktokenTokenizer], Variant("kind")]


class FsqTokenizer(Node):
    """Conformer encoder + finite scalar quantization, trained on the spec's audio."""

    kind: Literal["fsq"] = "fsq"
    frame_rate: Hertz = 12.5
    levels: tuple[int, ...] = (8, 5, 5, 5)
    preset: Literal["tiny", "base"] = "tiny"
    steps: Count = 600
    train_on: tuple[Annotated[str, Ref(("audio", "krist", "quest"))], ...] = Field(
        (), description="audio sources and generators; default: every audio source")
    sample: Seconds = Field(36000.0, description="at most this much speech to train on")


class CheckpointAudioTokenizer(Node):
    """A trained audio tokenizer loaded from a checkpoint."""

    kind: Literal["checkpoint"] = "checkpoint"
    path: LocalPath


class KmeansTokenizer(Node):
    """Weightless baseline: k-means over log-mel frames."""

    kind: Literal["kmeans"] = "kmeans"
    frame_rate: Hertz = 12.5
    codebook: int = 1000
    train_on: tuple[Annotated[str, Ref(("audio", "krist", "quest"))], ...] = Field(
        (), description="audio sources and generators; default: every audio source")
    sample: Seconds = Field(36000.0, description="at most this much speech to fit on")


AudioTokenizer = Annotated[Union[FsqTokenizer, CheckpointAudioTokenizer, KmeansTokenizer], Variant("kind")]


class Tokenizers(Node):
    text: TextTokenizer = TiktokenTokenizer()
    audio: AudioTokenizer = FsqTokenizer()


# ----------------------------------------------------------------------------- interleaving


class Deterministic(Node):
    """Strict alternation A1, T2, A3, ... starting with audio."""

    mode: Literal["deterministic"] = "deterministic"


class Stochastic(Node):
    """Each chunk is audio with probability p; the first chunk is always audio unless first = any."""

    mode: Literal["stochastic"] = "stochastic"
    p: Probability = 0.5
    first: Literal["audio", "any"] = "audio"


Sampling = Annotated[Union[Deterministic, Stochastic], Variant("mode")]


class Interleave(Node):
    """How chunks of a speech-text document become one token sequence."""

    sampling: Sampling = Deterministic()
    loss: Literal["all", "text_only"] = Field("all", description="text_only masks audio tokens and markers")
    markers: Literal["audio_and_text", "audio", "none"] = Field(
        "audio_and_text", description="which modality spans get begin/end marker tokens")


class Pack(Node):
    """Documents are concatenated with EOS and cut into fixed-length sequences."""

    seq_len: Count = 2048
    remainder: Literal["drop", "pad"] = "drop"


class Shards(Node):
    """MDS shard settings."""

    size: Bytes = 67_108_864
    compression: Literal["zstd", "none"] = "zstd"


# ----------------------------------------------------------------------------------- mixture


class MixLeaf(Node):
    name: str
    share: Fraction


class MixGroup(Node):
    name: str
    share: Fraction
    members: tuple[Union["MixGroup", MixLeaf], ...]

    def leaves(self) -> list[MixLeaf]:
        """Every leaf below this group, depth first."""
        return [leaf for m in self.members for leaf in ([m] if isinstance(m, MixLeaf) else m.leaves())]


class Budget(Node):
    """The training budget: tokens, or steps x batch x seq_len."""

    tokens: Count | None = None
    steps: Count | None = None


# ------------------------------------------------------------------------------------- train


class Model(Node):
    preset: Literal["tiny", "125m", "1b", "3b"] = "tiny"
    backbone: LocalPath | None = Field(None, description="a local Hugging Face text LM to start from")


class Optimizer(Node):
    name: Literal["adamw"] = "adamw"
    lr: float = 3e-4
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    weight_decay: float = 0.1


class Schedule(Node):
    name: Literal["cosine", "linear", "constant"] = "cosine"
    warmup: Annotated[float, Unit.PERCENT] | Count = Field(0.01, description="steps, or a share of training")
    min_lr: Fraction = Field(0.1, description="final lr as a share of the peak")


class Parallelism(Node):
    strategy: Literal["auto", "ddp", "fsdp"] = "auto"
    sharding: Literal["full_shard", "shard_grad_op", "hybrid_shard", "no_shard"] = "full_shard"


class Checkpoint(Node):
    every: Count = Field(1000, description="batches between checkpoints")
    keep: int = 3


class Train(Node):
    model: Model = Model()
    batch: int = Field(8, description="global batch, in sequences")
    micro_batch: int | None = Field(None, description="per-device batch; default: as large as the batch allows")
    optimizer: Optimizer = Optimizer()
    schedule: Schedule = Schedule()
    grad_clip: float = 1.0
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field("auto", description="auto: bf16 on GPU, fp32 on CPU")
    attention: Literal["causal", "document"] = Field(
        "document", description="document: a token attends only to earlier tokens of its own packed document, and "
        "positions restart at each document; causal: to every earlier token of the sequence")
    activation_checkpointing: bool = Field(
        False, description="recompute each block's activations in the backward pass instead of keeping them: "
        "about a third more compute for memory that no longer grows with the layers")
    compile_blocks: bool = Field(
        False, description="torch.compile each decoder block (inductor): fused kernels on GPUs, after a "
        "compilation of a minute or so at the first step")
    parallelism: Parallelism = Parallelism()
    checkpoint: Checkpoint = Checkpoint()
    log_every: int = 10


EVAL_FORMATS = ("auto", "mixc", "webquestions", "triviaqa")
QUESTION_EVAL_KINDS = ("sqa", "mc", "modality_gap")  # the kinds whose items are questions with choices
SPOKEN_EVAL_KINDS = ("sqa", "modality_gap")  # the kinds whose questions are spoken


class EvalSet(Node):
    kind: Literal["sqa", "mc", "lm", "modality_gap", "topics"]
    files: Globs = ()
    format: Literal["auto", "mixc", "webquestions", "triviaqa"] = Field(
        "auto", description="the jsonl layout: mixc's schema, WebQuestions', TriviaQA's; auto: by each line's keys")
    limit: int | None = Field(None, description="evaluate at most this many examples")
    choices: int = Field(4, ge=2, description="choices per question (answer-only items get distractors)")
    voice: str = Field("espeak:en-us+f3", description="the TTS voice (backend:name) that reads questions without "
                       "audio; keep it out of the training voices")
    backend: Literal["lexical", "embedding", "classifier"] = Field("lexical",
                                                                  description="topics: how units are labelled")
    model: str | None = Field(None, description="topics, embedding: a local sentence-embedding model folder; "
                              "classifier: a local topic classifier folder (WebOrganizer's)")
    sample: int = Field(2000, ge=1, description="topics: units labelled per stream at most")


class Eval(Node):
    every: Count = Field(1000, description="batches between evaluations")
    heldout: Fraction = Field(0.0, le=0.5, description="share of each stream's documents kept out of training "
                              "and scored as perplexity (the `heldout/STREAM` sets); 0: none")
    heldout_sequences: int = Field(64, ge=1, description="held-out sequences scored per stream at most")
    decontaminate: int | None = Field(None, ge=6, le=13, description="drop training documents sharing an n-gram "
                                      "of at least this many words with a question eval set; unset: report only")
    sets: Annotated[dict[str, EvalSet], Named("set")] = {}


# --------------------------------------------------------------------------------- resources


class StageResources(Node):
    """What each task running the stage's model asks a Ray cluster for (`mixc compile --executor
    ray`): the stage's task itself, or each of its per-item workers. Settings, not content: they
    enter no cache key; the local executor ignores them."""

    cpus: float = Field(1.0, description="CPU cores (fractions allowed)")
    gpus: float = Field(0.0, description="GPUs (fractions share one)")
    memory: Bytes | None = Field(None, description="memory the scheduler reserves, e.g. 16GB; default: none reserved")


class Resources(Node):
    """Per model stage, keyed by stage kind: what its Ray tasks request."""

    vad: StageResources = StageResources()
    diarize: StageResources = StageResources()
    asr: StageResources = StageResources()
    tts: StageResources = StageResources()
    rewrite: StageResources = Field(StageResources(), description="Krist's LLM rewrite")
    answer: StageResources = Field(StageResources(), description="Quest's LLM filter and answers")


# -------------------------------------------------------------------------------------- spec


class Spec(Node):
    """The whole, resolved spec."""

    version: Literal[1] = IR_VERSION
    seed: int = 0
    sources: Annotated[dict[str, Source], Named("source")] = {}
    generators: Annotated[dict[str, Generator], Named("generator")] = {}
    tokenizers: Annotated[Tokenizers, Named("tokenizer")] = Tokenizers()
    interleave: Interleave = Interleave()
    pack: Pack = Pack()
    shards: Shards = Shards()
    mixture: Annotated[MixGroup, Replace()] = MixGroup(name="mixture", share=1.0, members=())
    budget: Budget = Budget()
    train: Train = Train()
    eval: Eval = Eval()
    resources: Resources = Field(Resources(), description="Ray resource requests per model stage (settings)")


MixGroup.model_rebuild()


def value_at(node: Any, path: IrPath) -> Any:
    """The IR value at `path` below `node` (a model's field or a named collection's item); None
    where the path leads nowhere (an absent name, or a field another variant does not have)."""
    for part in path:
        node = node.get(part) if isinstance(node, dict) else getattr(node, part, None)
        if node is None:
            return None
    return node
