"""Stage implementations, by the kind names the plan uses."""

from mixc.stages.audio_tokens import Encode, LoadAudioTokenizer, TrainAudioTokenizer
from mixc.stages.base import StageRun
from mixc.stages.chunk import Chunk
from mixc.stages.ingest import Ingest
from mixc.stages.interleave import Interleave
from mixc.stages.pack import Pack
from mixc.stages.shards import WriteShards
from mixc.stages.speech import AsrStage, DiarizeStage, VadStage
from mixc.stages.text import Dedup, ReadText
from mixc.stages.tokenizer import LoadTextTokenizer, TrainBpe
from mixc.stages.tokens import Tokenize
from mixc.stages.transcripts import FilterTranscripts

REGISTRY: dict[str, type[StageRun]] = {
    cls.kind: cls for cls in (ReadText, Dedup, TrainBpe, LoadTextTokenizer, Tokenize, Pack, WriteShards,
                              Ingest, VadStage, DiarizeStage, AsrStage, FilterTranscripts, Chunk,
                              TrainAudioTokenizer, LoadAudioTokenizer, Encode, Interleave)
}
