"""`train.compile_blocks`: every decoder block torch.compile'd in place (inductor; on CPU here, the
same compiler path GPUs take with other kernels). The loss and gradients are the eager model's up
to rounding, parameter names do not change, and a run trains through Composer with them."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch

from mixc.planfile import TrainingPlan
from runtime.model import PRESETS, DecoderBlock, SpeechLM, build_model, compile_blocks
from runtime.train import train
from tests.runtime.conftest import MIXED, make_plan
from tests.runtime.test_activation_checkpointing import loss_and_grads
from tests.runtime.test_document_attention import VOCAB


def compiled(model: torch.nn.Module) -> list[bool]:
    """For each decoder block, whether it runs compiled."""
    return [m._compiled_call_impl is not None for m in model.modules() if isinstance(m, DecoderBlock)]


def test_compiled_blocks_give_the_same_loss_and_gradients() -> None:
    torch.manual_seed(0)
    eager = SpeechLM(replace(PRESETS["tiny"], vocab_size=VOCAB, n_kv_heads=2))
    fused = copy.deepcopy(eager)
    compile_blocks(fused)
    assert all(compiled(fused)) and not any(compiled(eager))
    assert fused.state_dict().keys() == eager.state_dict().keys()  # checkpoints load either way
    loss, grads = loss_and_grads(eager)  # a packed batch: the document mask goes through the graph
    loss_again, grads_again = loss_and_grads(fused)
    torch.testing.assert_close(loss_again, loss, atol=1e-5, rtol=1e-5)
    assert grads_again.keys() == grads.keys() and grads
    for name in grads:
        torch.testing.assert_close(grads_again[name], grads[name], atol=1e-5, rtol=1e-4, msg=name)


def test_the_plan_compiles_the_blocks_and_a_run_trains(plan_factory: Callable[..., Path], tmp_path: Path) -> None:
    plan = plan_factory(compile_blocks=True)
    assert all(compiled(build_model(TrainingPlan.read(plan))))
    result = train(plan, run_dir=tmp_path / "run", max_duration="2ba", device="cpu")
    eager = train(make_plan(tmp_path / "eager", MIXED), run_dir=tmp_path / "eager-run", max_duration="2ba",
                  device="cpu")
    assert result.step == 2 and abs(result.loss - eager.loss) < 1e-3 * abs(eager.loss)
