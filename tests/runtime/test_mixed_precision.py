"""bf16 under FSDP2, the GPU path, run on CPU: the sharding config mixc gives Composer, the
mixed-precision policy Composer derives from it for `amp_bf16`, and that policy applied to the
SpeechLM's blocks with `fully_shard` (one gloo process): blocks compute in bf16, gradients land in
fp32 on the fp32 master weights, and the loss is the fp32 model's up to bf16 rounding."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.distributed as torch_dist
from composer.core import Precision
from composer.distributed.fsdp2 import create_mixed_precision_policy
from torch.distributed.fsdp import fully_shard

import runtime.train
from mixc.planfile import TrainingPlan
from runtime.model import PRESETS, SpeechLM
from runtime.train import PRECISIONS_GPU, parallelism_config
from tests.runtime.test_activation_checkpointing import loss_and_grads
from tests.runtime.test_document_attention import VOCAB
from tests.s3 import free_port


@pytest.fixture
def one_process_group(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(free_port()))
    torch_dist.init_process_group("gloo", rank=0, world_size=1)
    try:
        yield
    finally:
        torch_dist.destroy_process_group()


def test_gpu_runs_shard_with_bf16_compute_and_fp32_reduction(plan_factory: Callable[..., Path],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    plan = TrainingPlan.read(plan_factory(parallelism="fsdp"))
    monkeypatch.setattr(runtime.train.dist, "get_world_size", lambda: 8)
    monkeypatch.setattr(runtime.train.dist, "get_local_world_size", lambda: 8)
    config = parallelism_config(plan, "gpu", 10**9)
    assert config is not None
    policy = create_mixed_precision_policy(Precision(PRECISIONS_GPU["auto"]), config["fsdp"].mixed_precision)
    assert (policy.param_dtype, policy.reduce_dtype) == (torch.bfloat16, torch.float32)


def test_the_bf16_policy_on_sharded_blocks(one_process_group: None) -> None:
    torch.manual_seed(0)
    full = SpeechLM(replace(PRESETS["tiny"], vocab_size=VOCAB, n_kv_heads=2))
    sharded = copy.deepcopy(full)
    policy = create_mixed_precision_policy(Precision.AMP_BF16, "DEFAULT")
    seen: list[torch.dtype] = []
    for block in sharded.blocks:
        block.register_forward_pre_hook(lambda _, args: seen.append(args[0].dtype))
        fully_shard(block, mp_policy=policy)
    fully_shard(sharded, mp_policy=policy)
    loss, grads = loss_and_grads(full)
    loss_bf16, grads_bf16 = loss_and_grads(sharded)
    assert seen == [torch.bfloat16] * full.cfg.n_layers  # every block computed in bf16
    assert all(p.dtype == torch.float32 for p in sharded.parameters())  # fp32 master weights
    assert all(g.dtype == torch.float32 for g in grads_bf16.values()) and grads_bf16.keys() == grads.keys()
    torch.testing.assert_close(loss_bf16, loss, atol=0.05, rtol=0.02)
