"""The training plan `mixc compile` writes (`plan.json`) and `mixc train` reads: a versioned schema.

Everything the runtime needs and nothing about how the data was made: the compiled streams (paths
relative to the plan file, exact sample counts per epoch), the joint vocabulary layout, the model,
optimizer, schedule and trainer settings, the seeds, and the spec's IR hash for provenance.
`mix.lock` beside it pins the bytes of every shard.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Final, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mixc.errors import DataError

RECOMPILE = "recompile with `mixc compile SPEC --out DIR`"
MAX_VOCAB = 1 << 32  # token ids the widest dtype a shard stores (uint32) holds

PLAN_SCHEMA: Final = "mixc.plan/1"
LOCK_SCHEMA: Final = "mixc.lock/1"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class StreamPlan(_Model):
    name: str = Field(description="the mixture leaf")
    path: str = Field(description="the stream's MDS folder, relative to plan.json")
    share: float = Field(description="the spec's token share of this leaf (0-1)")
    samples: int = Field(description="sequences the compiled stream holds")
    choose: int = Field(description="sequences drawn from it per epoch; proportional to `share`")
    repeat: float = Field(description="choose / samples: passes over the stream per epoch")
    proportion: float = Field(description="choose / epoch_samples")
    tokens: int = Field(description="real (non-pad) tokens in the compiled stream")


class VocabLayout(_Model):
    """Ids 0..text_size-1 are the text tokenizer's; audio codes and markers follow."""
    text_size: int
    eos: int = Field(description="end of document; also separates packed documents")
    pad: int = Field(description="fills the last sequence when pack.remainder = pad; never trained on")
    audio_offset: int = Field(description="id of audio code 0")
    audio_size: int = Field(description="number of audio codes (0 when the mix has no audio)")
    markers: dict[str, int] = Field(description="modality markers, e.g. <audio>, </audio>, <text>, </text>")
    size: int = Field(description="the joint vocabulary size the model embeds")
    dtype: Literal["uint8", "uint16", "uint32"] = Field(description="token dtype in the shards")
    tokenizer: str = Field(description="the text tokenizer file, relative to plan.json")
    tokenizer_kind: Literal["hf", "tiktoken"]


class ModelPlan(_Model):
    preset: Literal["tiny", "125m", "1b", "3b"]
    backbone: str | None = Field(None, description="absolute path of a local Hugging Face text LM")
    attention: Literal["causal", "document"] = Field(
        "document", description="document: attention stays within each packed document, positions restart at "
        "each (the shards' `boundaries`); causal: over the whole sequence")


class OptimizerPlan(_Model):
    name: Literal["adamw"] = "adamw"
    lr: float
    betas: tuple[float, float]
    eps: float
    weight_decay: float


class SchedulePlan(_Model):
    name: Literal["cosine", "linear", "constant"]
    warmup_steps: int
    min_lr_ratio: float


class TrainerPlan(_Model):
    global_batch: int = Field(description="sequences per optimizer step, over all devices")
    micro_batch: int | None = Field(description="per-device micro batch; None: the whole device batch")
    steps: int = Field(description="optimizer steps the budget buys")
    grad_clip: float
    precision: Literal["auto", "fp32", "bf16", "fp16"]
    parallelism: Literal["auto", "ddp", "fsdp"]
    sharding: Literal["full_shard", "shard_grad_op", "hybrid_shard", "no_shard"]
    checkpoint_every: int
    checkpoint_keep: int
    log_every: int
    activation_checkpointing: bool = Field(False, description="recompute block activations in the backward pass")
    compile_blocks: bool = Field(False, description="torch.compile each decoder block")


class EvalSetPlan(_Model):
    name: str
    kind: Literal["sqa", "mc", "modality_gap", "lm"]
    path: str = Field(description="the framed items (jsonl), relative to plan.json")
    items: int
    sha256: str = Field(description="the file's digest: names the exact items and choices scored")
    voice: str | None = Field(description="the TTS voice that read questions without audio (spoken sets)")


class EvalPlan(_Model):
    every: int = Field(0, description="batches between evaluations during training; 0: none")
    text_size: int = Field(0, description="ids below this are text tokens (the modality gap's text-only figures)")
    sets: tuple[EvalSetPlan, ...] = ()


class _Document(_Model):
    """A versioned JSON file: written with its `schema` tag, read back with validation."""
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    def dump(self, path: Path) -> None:
        path.write_text(self.model_dump_json(indent=2, by_alias=True) + "\n")

    @classmethod
    def read(cls, path: Path) -> Self:
        """The file, validated; DataError when it is missing, not JSON, or not this schema."""
        try:
            return cls.model_validate_json(path.read_bytes())
        except FileNotFoundError:
            raise DataError(f"{path} is missing", RECOMPILE) from None
        except OSError as exc:
            raise DataError(f"{path} cannot be read ({exc.strerror})", RECOMPILE) from None
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "the file"
            raise DataError(f"{path} is not a valid {cls.__name__} ({where}: {first['msg']})",
                            f"it was written by another version of mixc, or edited; {RECOMPILE}") from None


class TrainingPlan(_Document):
    schema_: Literal["mixc.plan/1"] = Field(PLAN_SCHEMA, alias="schema")
    spec: str = Field(description="the spec this plan was compiled from (as given on the command line)")
    ir_hash: str
    seed: int
    seq_len: int
    epoch_samples: int = Field(description="sum of the streams' `choose`: steps x global_batch")
    streams: tuple[StreamPlan, ...]
    vocab: VocabLayout
    loss: Literal["all", "text_only"]
    model: ModelPlan
    optimizer: OptimizerPlan
    schedule: SchedulePlan
    trainer: TrainerPlan
    eval: EvalPlan = EvalPlan()


class ShardLock(_Model):
    path: str = Field(description="relative to plan.json")
    sha256: str
    bytes: int


class Lock(_Document):
    """mix.lock: what the compiled data is, byte for byte."""
    schema_: Literal["mixc.lock/1"] = Field(LOCK_SCHEMA, alias="schema")
    ir_hash: str
    seed: int
    sources: dict[str, str] = Field(description="source name -> content hash of its input files")
    tokenizer: str = Field(description="sha256 of the text tokenizer file")
    models: dict[str, str] = Field(description="backend -> model revision used by a stage")
    stage_keys: dict[str, str] = Field(description="stage id -> cache key")
    tokens: dict[str, int] = Field(description="stream -> real tokens compiled")
    shards: tuple[ShardLock, ...]



def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks: how mix.lock pins every file (hashlib releases
    the GIL, so threads scale)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()
