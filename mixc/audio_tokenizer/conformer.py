"""A masked Conformer (macaron feed-forward / self-attention / convolution / feed-forward) and the
strided-conv 8x downsampler and transposed-conv 8x upsampler around it.

Every module zeroes padded frames before a convolution reads them, and attention ignores padded
keys, so a clip's outputs do not depend on the clips it is batched with (up to float rounding).
That is also why normalisation is LayerNorm (per frame) and never BatchNorm. There is no positional
encoding: the convolutions give local order, and a code must not depend on where in a recording
its 80 ms fall.
"""

from __future__ import annotations

import torch
from torch import nn

DOWNSAMPLE_STAGES = 3  # 2 ** 3 = 8: 100 Hz mel frames -> 12.5 Hz tokens


def _init_relu_conv(conv: nn.Conv1d | nn.ConvTranspose1d) -> nn.Module:
    """He-normal weights so a stack of GELU convs keeps its activation scale (PyTorch's default
    init shrinks it about 3x per layer, which starved the encoder of gradient), zero bias."""
    nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return conv


def masked(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """x (B, T, D) with frames where mask (B, T) is False set to zero."""
    return x * mask.unsqueeze(-1).to(x.dtype)


class FeedForward(nn.Module):
    """Pre-norm position-wise MLP with a SiLU (Swish) hidden layer."""

    def __init__(self, dim: int, hidden: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.SiLU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SelfAttention(nn.Module):
    """Pre-norm multi-head self-attention over real frames only."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        out, _ = self.attn(h, h, h, key_padding_mask=~mask, need_weights=False)
        return self.dropout(out)


class ConvModule(nn.Module):
    """Pointwise conv + GLU, depthwise conv over time, LayerNorm, SiLU, pointwise conv."""

    def __init__(self, dim: int, kernel: int, dropout: float):
        super().__init__()
        if kernel % 2 == 0:
            raise ValueError(f"conformer conv kernel must be odd to keep frames centred, got {kernel}")
        self.norm = nn.LayerNorm(dim)
        self.pointwise_in = nn.Conv1d(dim, 2 * dim, 1)
        self.depthwise = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=dim)
        self.depth_norm = nn.LayerNorm(dim)
        self.pointwise_out = nn.Conv1d(dim, dim, 1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = nn.functional.glu(self.pointwise_in(self.norm(x).transpose(1, 2)), dim=1)
        h = self.depthwise(h * mask.unsqueeze(1).to(h.dtype))
        h = nn.functional.silu(self.depth_norm(h.transpose(1, 2))).transpose(1, 2)
        return self.dropout(self.pointwise_out(h).transpose(1, 2))


class ConformerBlock(nn.Module):
    """x + FF/2, + MHSA, + Conv, + FF/2, then LayerNorm (Gulati et al. 2020, macaron style)."""

    def __init__(self, dim: int, heads: int, ffn: int, kernel: int, dropout: float):
        super().__init__()
        self.ff1 = FeedForward(dim, ffn, dropout)
        self.attn = SelfAttention(dim, heads, dropout)
        self.conv = ConvModule(dim, kernel, dropout)
        self.ff2 = FeedForward(dim, ffn, dropout)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + 0.5 * self.ff1(x)
        x = x + self.attn(x, mask)
        x = x + self.conv(x, mask)
        x = x + 0.5 * self.ff2(x)
        return masked(self.norm(x), mask)


class Conformer(nn.Module):
    """A stack of ConformerBlocks over (B, T, dim) with a (B, T) mask of real frames."""

    def __init__(self, dim: int, layers: int, heads: int, ffn: int, kernel: int, dropout: float):
        super().__init__()
        self.blocks = nn.ModuleList(ConformerBlock(dim, heads, ffn, kernel, dropout) for _ in range(layers))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, mask)
        return x


class Downsample(nn.Module):
    """(B, T, in_dim) frames -> (B, T / 8, dim) by three kernel-3 stride-2 convs with GELU, then a
    linear layer and LayerNorm (so the Conformer's residual stream starts at unit scale).

    T must be a multiple of 8 (features.log_mel guarantees it); output frame j of a stage reads
    input frames 2j-1..2j+1, so real outputs never read padding.
    """

    def __init__(self, in_dim: int, dim: int):
        super().__init__()
        dims = [in_dim] + [dim] * DOWNSAMPLE_STAGES
        self.convs = nn.ModuleList(_init_relu_conv(nn.Conv1d(a, b, 3, stride=2, padding=1))
                                   for a, b in zip(dims, dims[1:]))
        self.out = nn.Sequential(nn.Linear(dim, dim), nn.LayerNorm(dim))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = masked(x, mask).transpose(1, 2)
        for conv in self.convs:
            mask = mask[:, ::2]
            h = nn.functional.gelu(conv(h)) * mask.unsqueeze(1).to(h.dtype)
        return masked(self.out(h.transpose(1, 2)), mask), mask


class Upsample(nn.Module):
    """(B, T, dim) -> (B, 8 T, out_dim) by three kernel-4 stride-2 transposed convs with GELU."""

    def __init__(self, dim: int, out_dim: int):
        super().__init__()
        self.convs = nn.ModuleList(_init_relu_conv(nn.ConvTranspose1d(dim, dim, 4, stride=2, padding=1))
                                   for _ in range(DOWNSAMPLE_STAGES))
        self.out = nn.Linear(dim, out_dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = masked(x, mask).transpose(1, 2)
        for conv in self.convs:
            mask = mask.repeat_interleave(2, dim=1)
            h = nn.functional.gelu(conv(h)) * mask.unsqueeze(1).to(h.dtype)
        return masked(self.out(h.transpose(1, 2)), mask), mask
