"""The SpeechLM: a decoder-only transformer over one joint vocabulary (text ids, audio codes, markers).

Architecture (Llama-style): pre-norm blocks with RMSNorm, rotary position embeddings, grouped-query
causal attention through `torch.nn.functional.scaled_dot_product_attention` (flash / memory-efficient
kernels on GPU), and a SwiGLU MLP; no biases and no dropout, as in current LM pretraining. The `3b`
preset has Llama-3.2-3B's block shapes: 2.8B parameters without embeddings, the size of the paper's
text backbone.

Embeddings are UNTIED (separate input table and output head). The joint vocabulary mixes two very
different kinds of ids: text tokens and audio codes. What an audio code means as an input (a frame of
sound) and how likely it is as an output (a prediction over 12.5 Hz frames) are different jobs, and the
new audio rows start from Xavier-normal noise: tying would make the pretrained output head share that
noise, and every gradient of the head would also move the input rows. The cost is one more V x d
table: 0.49B parameters for the `3b` preset with a 160k joint vocabulary, which brings it to about
3.8B parameters, the size of the paper's model. A backbone keeps its own choice (tied or not).

A local Hugging Face causal LM can replace the preset (`plan.model.backbone`): it is loaded offline,
its token embeddings are resized to the joint vocabulary and the new rows initialised Xavier-normal.

Attention over packed sequences (`plan.model.attention`): `document` (the default) keeps each packed
document to itself: a token attends only to earlier tokens of its own document, and rotary positions
restart at 0 at each document start, so a packed sequence computes what each document alone, unpacked,
would. The loader gives per-position document indices and positions (`runtime.data.collate`, from the
shards' `boundaries`); the mask is built once per forward and shared by every layer. On GPUs it is a
FlexAttention block mask (`document_block_mask`: 128 x 128 tiles; tiles where no query shares a
document with an earlier key are skipped, and nothing T x T is materialised, which 16k-token
sequences need), run by `flex_attention` compiled once. On CPU, where FlexAttention has no backward
pass, it is a boolean same-document-and-causal [B, 1, T, T] tensor given to
`scaled_dot_product_attention`. Both compute the same attention (tested on CPU, forward).
`causal` attends over the whole sequence
with positions 0..T-1 (`is_causal=True`: flash attention on GPU). Without document ids (scoring a
single text) both are plain causal attention. A backbone takes the same mask as a 4D attention mask
and the positions as `position_ids`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.attention.flex_attention import BlockMask, create_block_mask, flex_attention
from torch.utils.checkpoint import checkpoint

from mixc.errors import SetupError
from mixc.planfile import TrainingPlan

if TYPE_CHECKING:
    from transformers import PreTrainedModel

Attending = Literal["causal", "document"]  # plan.model.attention
Mask = Tensor | BlockMask | None  # what a block's attention takes: none (causal), a bool tensor, a block mask

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")


@dataclass(frozen=True)
class ModelConfig:
    """The shape of a SpeechLM. `vocab_size` is the plan's joint vocabulary (`plan.vocab.size`)."""
    d_model: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    d_ff: int
    vocab_size: int = 32_768
    rope_theta: float = 10_000.0
    norm_eps: float = 1e-5
    init_std: float = 0.02

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    def num_params(self, embedding: bool = True) -> int:
        """Parameter count from the shape alone, so paper-scale presets can be sized without memory."""
        attn = self.d_model * (self.n_heads + 2 * self.n_kv_heads) * self.head_dim \
            + self.n_heads * self.head_dim * self.d_model
        block = attn + 3 * self.d_model * self.d_ff + 2 * self.d_model
        head = self.vocab_size * self.d_model
        return self.n_layers * block + self.d_model + head + (head if embedding else 0)


PRESETS: dict[str, ModelConfig] = {
    # trains on 2 CPU cores in minutes
    "tiny": ModelConfig(d_model=128, n_layers=4, n_heads=4, n_kv_heads=4, d_ff=384),
    # GPT-2 small's width and depth
    "125m": ModelConfig(d_model=768, n_layers=12, n_heads=12, n_kv_heads=12, d_ff=2048),
    # Llama-3.2-1B's shape; 500k rope base for 16k-token packed sequences
    "1b": ModelConfig(d_model=2048, n_layers=16, n_heads=32, n_kv_heads=8, d_ff=8192, rope_theta=500_000.0),
    # Llama-3.2-3B's blocks (2.8B without embeddings, the paper's backbone size)
    "3b": ModelConfig(d_model=3072, n_layers=28, n_heads=24, n_kv_heads=8, d_ff=8192, rope_theta=500_000.0),
}


class BackboneError(SetupError):
    """`plan.model.backbone` does not hold a loadable Hugging Face causal LM."""


def rotary_tables(seq_len: int, head_dim: int, theta: float, device: torch.device) -> tuple[Tensor, Tensor]:
    """cos/sin of the rotary angles, [seq_len, head_dim/2]; computed per forward (cheap) so the model
    holds no buffers that meta-device construction or checkpoints would have to carry."""
    inv_freq = theta ** -(torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim)
    angles = torch.outer(torch.arange(seq_len, device=device, dtype=torch.float32), inv_freq)
    return angles.cos(), angles.sin()


def document_tables(cos: Tensor, sin: Tensor, positions: Tensor) -> tuple[Tensor, Tensor]:
    """The rotary tables gathered at per-token positions [B, T]: [B, 1, T, head_dim/2], broadcast over
    heads. Rows of the same table, so a document at positions 0..n-1 gets exactly its unpacked angles."""
    return cos[positions].unsqueeze(1), sin[positions].unsqueeze(1)


def document_positions(doc_ids: Tensor) -> Tensor:
    """Each token's position within its document [B, T], from document indices that never decrease."""
    t = torch.arange(doc_ids.shape[1], device=doc_ids.device).expand_as(doc_ids)
    starts = torch.zeros_like(t)
    starts[:, 1:] = torch.where(doc_ids[:, 1:] != doc_ids[:, :-1], t[:, 1:], 0)
    return t - starts.cummax(dim=1).values


def use_flex(device: torch.device) -> bool:
    """Whether document attention runs on FlexAttention here: on GPUs (CPU has no backward pass)."""
    return device.type == "cuda"


def document_block_mask(doc_ids: Tensor) -> BlockMask:
    """The same-document causal mask as a FlexAttention block mask over [B, T] document ids."""
    def same_document_causal(b: Tensor, h: Tensor, q: Tensor, k: Tensor) -> Tensor:
        return (doc_ids[b, q] == doc_ids[b, k]) & (k <= q)

    batch, t = doc_ids.shape
    return create_block_mask(same_document_causal, batch, None, t, t, device=doc_ids.device,
                             _compile=doc_ids.is_cuda)


@functools.cache
def _compiled_flex() -> Callable[..., Tensor]:
    """flex_attention compiled (its fused kernel; uncompiled, it materialises the scores)."""
    return cast("Callable[..., Tensor]", torch.compile(flex_attention, dynamic=False))


def flex(q: Tensor, k: Tensor, v: Tensor, mask: BlockMask, gqa: bool) -> Tensor:
    """FlexAttention under a block mask: compiled on GPUs; eager elsewhere (the CPU tests, forward)."""
    run = _compiled_flex() if q.is_cuda else cast("Callable[..., Tensor]", flex_attention)
    return run(q, k, v, block_mask=mask, enable_gqa=gqa)


def document_mask(doc_ids: Tensor) -> Tensor:
    """[B, 1, T, T] bool, True where query t may attend to key s: same document and s <= t."""
    t = doc_ids.shape[1]
    causal = torch.ones(t, t, dtype=torch.bool, device=doc_ids.device).tril()
    return ((doc_ids[:, :, None] == doc_ids[:, None, :]) & causal).unsqueeze(1)


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate the two halves of each head ([B, H, T, hd]) by the position's angles, in fp32."""
    x1, x2 = x.float().chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1).type_as(x)


class Attention(nn.Module):
    """Causal grouped-query self-attention with one fused q/k/v projection."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        self.qkv = nn.Linear(cfg.d_model, (cfg.n_heads + 2 * cfg.n_kv_heads) * cfg.head_dim, bias=False)
        self.out = nn.Linear(cfg.n_heads * cfg.head_dim, cfg.d_model, bias=False)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, mask: Mask = None) -> Tensor:
        """`mask`: None for causal attention over the whole sequence, else `document_mask`'s or
        `document_block_mask`'s."""
        b, t, _ = x.shape
        q, k, v = self.qkv(x).split(
            [self.n_heads * self.head_dim, self.n_kv_heads * self.head_dim, self.n_kv_heads * self.head_dim], -1)
        q = apply_rotary(q.view(b, t, self.n_heads, self.head_dim).transpose(1, 2), cos, sin)
        k = apply_rotary(k.view(b, t, self.n_kv_heads, self.head_dim).transpose(1, 2), cos, sin)
        v = v.view(b, t, self.n_kv_heads, self.head_dim).transpose(1, 2)
        gqa = self.n_kv_heads != self.n_heads
        if mask is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
        elif isinstance(mask, BlockMask):
            y = flex(q, k, v, mask, gqa)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=gqa)
        return self.out(y.transpose(1, 2).reshape(b, t, self.n_heads * self.head_dim))


class SwiGLU(nn.Module):
    """silu(x W_gate) * (x W_up) W_down, gate and up fused into one matmul."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.gate_up = nn.Linear(cfg.d_model, 2 * cfg.d_ff, bias=False)
        self.down = nn.Linear(cfg.d_ff, cfg.d_model, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


class DecoderBlock(nn.Module):
    """Pre-norm residual block; the unit FSDP shards."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.attn_norm = nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        self.attn = Attention(cfg)
        self.mlp_norm = nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        self.mlp = SwiGLU(cfg)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, mask: Mask = None) -> Tensor:
        x = x + self.attn(self.attn_norm(x), cos, sin, mask)
        return x + self.mlp(self.mlp_norm(x))


class SpeechLM(nn.Module):
    """tokens [B, T] (int64) -> next-token logits [B, T, vocab_size]; with `attention="document"`,
    `doc_ids` and `positions` [B, T] (`runtime.data.collate`) keep packed documents apart."""

    def __init__(self, cfg: ModelConfig, attention: Attending = "document") -> None:
        super().__init__()
        self.cfg = cfg
        self.attention = attention
        self.checkpointing = False  # activation checkpointing, block by block (`checkpoint_activations`)
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.blocks = nn.ModuleList(DecoderBlock(cfg) for _ in range(cfg.n_layers))
        self.norm = nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """N(0, 0.02) everywhere; the two projections that write into the residual stream are scaled by
        1/sqrt(2 * n_layers) (GPT-2) so the residual's variance does not grow with depth."""
        residual_std = self.cfg.init_std / math.sqrt(2 * self.cfg.n_layers)
        for name, p in self.named_parameters():
            if p.ndim == 1:
                nn.init.ones_(p)
            else:
                std = residual_std if name.endswith(("attn.out.weight", "mlp.down.weight")) else self.cfg.init_std
                nn.init.normal_(p, std=std)

    @property
    def n_layers(self) -> int:
        return self.cfg.n_layers

    @property
    def attn_dim(self) -> int:
        return self.cfg.n_heads * self.cfg.head_dim

    def input_embedding(self) -> nn.Embedding:
        return self.embed

    def fsdp_wrap_fn(self, module: nn.Module) -> bool:
        """Composer's FSDP wrap policy: shard block by block."""
        return isinstance(module, DecoderBlock)

    def forward(self, tokens: Tensor, doc_ids: Tensor | None = None, positions: Tensor | None = None) -> Tensor:
        cos, sin = rotary_tables(tokens.shape[1], self.cfg.head_dim, self.cfg.rope_theta, tokens.device)
        mask: Mask = None
        if self.attention == "document" and doc_ids is not None:
            mask = document_block_mask(doc_ids) if use_flex(tokens.device) else document_mask(doc_ids)
            cos, sin = document_tables(cos, sin, document_positions(doc_ids) if positions is None else positions)
        x = self.embed(tokens)
        for block in self.blocks:
            if self.checkpointing and self.training:  # recomputed in the backward pass (no RNG: same values)
                x = checkpoint(block, x, cos, sin, mask, use_reentrant=False)
            else:
                x = block(x, cos, sin, mask)
        return self.head(self.norm(x))


class BackboneLM(nn.Module):
    """A Hugging Face causal LM behind the SpeechLM interface: tokens -> logits."""

    def __init__(self, hf: PreTrainedModel, attention: Attending = "document") -> None:
        super().__init__()
        self.hf = hf
        self.attention = attention
        config = hf.config
        self.n_layers: int = config.num_hidden_layers
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        self.attn_dim: int = config.num_attention_heads * head_dim
        self._block_types = frozenset(getattr(hf, "_no_split_modules", None) or ())

    def input_embedding(self) -> nn.Embedding:
        return _input_table(self.hf)

    def fsdp_wrap_fn(self, module: nn.Module) -> bool:
        """Shard the decoder layers (the classes the HF model marks as not to be split)."""
        return type(module).__name__ in self._block_types

    def forward(self, tokens: Tensor, doc_ids: Tensor | None = None, positions: Tensor | None = None) -> Tensor:
        """With document attention, the same-document causal mask as a 4D attention mask (the HF
        model uses it as given) and the per-document positions as `position_ids`."""
        if self.attention == "document" and doc_ids is not None:
            if positions is None:
                positions = document_positions(doc_ids)
            return self.hf(input_ids=tokens, attention_mask=document_mask(doc_ids), position_ids=positions,
                           use_cache=False).logits
        return self.hf(input_ids=tokens, use_cache=False).logits


def _input_table(hf: PreTrainedModel) -> nn.Embedding:
    """A causal LM's input embedding table (transformers types it as any nn.Module)."""
    return cast(nn.Embedding, hf.get_input_embeddings())


def _missing_backbone_part(path: Path) -> str | None:
    """What a Hugging Face model folder lacks, in words; None when it looks complete."""
    if not path.is_dir():
        return "the directory does not exist"
    if not (path / "config.json").is_file():
        return "config.json is missing"
    if not any((path / name).is_file() for name in WEIGHT_FILES):
        return f"no weights file ({' / '.join(WEIGHT_FILES)})"
    return None


def xavier_rows_(weight: Tensor, start: int) -> None:
    """Xavier-normal init of rows `start:` (the new vocabulary), sized by the new block's own shape."""
    with torch.no_grad():
        fresh = torch.empty(weight.shape[0] - start, weight.shape[1], dtype=torch.float32)
        nn.init.xavier_normal_(fresh)
        weight[start:] = fresh.to(weight.dtype)


def load_backbone(path: str | Path, vocab_size: int, attention: Attending = "document") -> BackboneLM:
    """Load a local HF causal LM (no network) and grow its vocabulary to the joint `vocab_size`.

    Rows below the backbone's own vocabulary keep their pretrained values; new rows (audio codes,
    markers) are Xavier-normal, in the output head too when it is not tied to the input table.
    """
    path = Path(path)
    missing = _missing_backbone_part(path)
    if missing:
        raise BackboneError(f"backbone {path}: {missing}", "a backbone is a local Hugging Face causal LM saved with "
                            "save_pretrained (config.json + weights); set `train { model { backbone = ... } }` "
                            "to one and recompile")
    from transformers import AutoModelForCausalLM  # heavy import, only on this path

    try:
        hf = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=torch.float32,
                                                  attn_implementation="sdpa")
    except (OSError, ValueError, KeyError) as err:
        raise BackboneError(f"backbone {path}: cannot load it as a causal LM: {err}",
                            "a backbone is a local Hugging Face causal LM saved with save_pretrained") from err
    old = _input_table(hf).num_embeddings
    if vocab_size < old:
        raise BackboneError(f"backbone {path}: its vocabulary ({old}) is larger than the plan's joint "
                            f"vocabulary ({vocab_size})", "the text tokenizer must be the backbone's: "
                            "`tokenizer text : file { path = \"BACKBONE/tokenizer.json\" }`, then recompile")
    hf.resize_token_embeddings(vocab_size, mean_resizing=False)
    embed, head = _input_table(hf).weight, hf.get_output_embeddings()
    xavier_rows_(embed, old)
    if head is not None and head.weight is not embed:
        xavier_rows_(head.weight, old)
    return BackboneLM(hf, attention)


def model_config(plan: TrainingPlan) -> ModelConfig:
    """The preset's shape over the plan's joint vocabulary."""
    return replace(PRESETS[plan.model.preset], vocab_size=plan.vocab.size)


def checkpoint_activations(model: nn.Module) -> None:
    """Recompute each decoder block's activations in the backward pass instead of storing them
    (`train.activation_checkpointing`): the preset's blocks through `torch.utils.checkpoint`, a
    backbone through Hugging Face's gradient checkpointing; both non-reentrant, so DDP and FSDP2
    wrap them as usual."""
    if isinstance(model, BackboneLM):
        model.hf.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    elif isinstance(model, SpeechLM):
        model.checkpointing = True


def compile_blocks(model: SpeechLM | BackboneLM) -> None:
    """torch.compile every decoder block in place (`train.compile_blocks`): `Module.compile` keeps
    the parameters' names, so checkpoints load either way, and FSDP2 shards the same blocks. The
    blocks are what is compiled, not the whole model: one graph per block shape, reused by every
    layer, and FSDP's per-block all-gathers stay between graphs (as torchtitan does it)."""
    for module in model.modules():
        if model.fsdp_wrap_fn(module):
            module.compile()


def build_model(plan: TrainingPlan) -> nn.Module:
    """The backbone when the plan names one, else a freshly initialised preset; with activation
    checkpointing and compiled blocks when the plan asks for them."""
    model: SpeechLM | BackboneLM = load_backbone(plan.model.backbone, plan.vocab.size, plan.model.attention) \
        if plan.model.backbone else SpeechLM(model_config(plan), plan.model.attention)
    if plan.trainer.activation_checkpointing:
        checkpoint_activations(model)
    if plan.trainer.compile_blocks:
        compile_blocks(model)
    return model


def flops_per_token(model_or_config: nn.Module | ModelConfig, seq_len: int) -> float:
    """Training FLOPs per token (forward + backward), the numerator of MFU (PaLM, appendix B).

    6N for the weight matmuls (2N forward, 4N backward), N = parameters without the input embedding
    table (a lookup does no matmul), plus 12 * layers * attn_dim * seq_len for the attention scores and
    the weighted sum of values (QK^T and AV: 2 * 2 * T * attn_dim forward, twice that backward),
    counted over the full T x T square as is conventional, although the causal half is skipped.
    Call it before FSDP shards the model: afterwards parameters() holds only this rank's shard.
    """
    if isinstance(model_or_config, ModelConfig):
        cfg = model_or_config
        n, layers, width = cfg.num_params(embedding=False), cfg.n_layers, cfg.n_heads * cfg.head_dim
    else:
        lm = getattr(model_or_config, "model", model_or_config)  # the Composer wrapper holds the LM
        if not isinstance(lm, (SpeechLM, BackboneLM)):
            raise TypeError(f"cannot count the FLOPs of a {type(lm).__name__}")
        # remove_duplicate=False: a tied table is counted twice (lookup + head matmul), then once removed
        params = lm.named_parameters(remove_duplicate=False)
        n = sum(p.numel() for _, p in params) - lm.input_embedding().weight.numel()
        layers, width = lm.n_layers, lm.attn_dim
    return 6.0 * n + 12.0 * layers * width * seq_len
