"""Every stage kind, one class each (declared in its module: kind, version, doc, reads), and the
stage graph of a spec keyed with their declarations."""

from mixc import ir
from mixc.plan.dag import StageGraph, wire
from mixc.stages.audio_tokens import EncodeStage, LoadAudioTokenizerStage, TrainAudioTokenizerStage
from mixc.stages.base import Stage
from mixc.stages.chunk import ChunkStage
from mixc.stages.contamination import ContaminationStage
from mixc.stages.evalsets import EvalEncodedStage, EvalHeldoutStage, EvalItemsStage, EvalTextStage
from mixc.stages.generate import AnswerStage, MineStage, RewriteStage
from mixc.stages.ingest import IngestStage
from mixc.stages.interleave import InterleaveStage
from mixc.stages.pack import PackStage
from mixc.stages.pages import ExtractStage
from mixc.stages.shards import ShardsStage
from mixc.stages.speech import AsrStage, DiarizeStage, VadStage
from mixc.stages.text import DedupStage, ReadStage
from mixc.stages.tokenizer import LoadTextTokenizerStage, TrainBpeStage
from mixc.stages.tokens import TokenizeStage
from mixc.stages.topics import TopicsStage
from mixc.stages.transcripts import FilterStage
from mixc.stages.tts import TtsStage

REGISTRY: dict[str, type[Stage]] = {
    cls.kind: cls for cls in (ReadStage, DedupStage, TrainBpeStage, LoadTextTokenizerStage, TokenizeStage, PackStage,
                              ShardsStage, IngestStage, VadStage, DiarizeStage, AsrStage, FilterStage, ChunkStage,
                              TrainAudioTokenizerStage, LoadAudioTokenizerStage, EncodeStage, InterleaveStage,
                              ExtractStage, RewriteStage, MineStage, AnswerStage, TtsStage, EvalItemsStage,
                              EvalEncodedStage, ContaminationStage, TopicsStage,
                              EvalTextStage, EvalHeldoutStage)
}


def graph(spec: ir.Spec) -> StageGraph:
    """The spec's stage graph, in a topological order, keyed with every stage's declaration."""
    return wire(spec, REGISTRY)
