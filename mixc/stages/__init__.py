"""Stage implementations, by the kind names the plan uses."""

from mixc.stages.base import StageRun
from mixc.stages.pack import Pack
from mixc.stages.shards import WriteShards
from mixc.stages.text import Dedup, ReadText
from mixc.stages.tokenizer import LoadTextTokenizer, TrainBpe
from mixc.stages.tokens import Tokenize

REGISTRY: dict[str, type[StageRun]] = {
    cls.kind: cls for cls in (ReadText, Dedup, TrainBpe, LoadTextTokenizer, Tokenize, Pack, WriteShards)
}
