import copy
import json
import math
from pathlib import Path

import pytest
import torch

from mixc.errors import UsageError
from mixc.planfile import TrainingPlan
from runtime.__main__ import main
from runtime.model import SpeechLM, model_config
from runtime.train import (
    RunDirConflict,
    TrainResult,
    build_optimizer,
    device_batch_size,
    resolve_duration,
    run_name,
    train,
)
from tests.runtime.helpers import BatchRecorder


@pytest.fixture(scope="module")
def full(plan_path: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[TrainResult, BatchRecorder]:
    recorder = BatchRecorder()
    return train(plan_path, run_dir=tmp_path_factory.mktemp("full"), device="cpu", callbacks=[recorder]), recorder


@pytest.fixture(scope="module")
def resumed(plan_path: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[list[TrainResult], list[BatchRecorder]]:
    run_dir = tmp_path_factory.mktemp("resumed")
    first, second = BatchRecorder(), BatchRecorder()
    results = [train(plan_path, run_dir=run_dir, max_duration="10ba", device="cpu", callbacks=[first]),
               train(plan_path, run_dir=run_dir, device="cpu", callbacks=[second])]
    return results, [first, second]


def test_resumed_run_sees_the_same_batches_and_ends_with_the_same_weights(full, resumed) -> None:
    (full_result, full_rec), ([half, end], [first, second]) = full, resumed
    assert (half.step, end.step, full_result.step) == (10, 20, 20)
    assert len(first.batches) == len(second.batches) == 10
    assert first.batches + second.batches == full_rec.batches
    assert full_rec.weights.keys() == second.weights.keys()
    assert all(torch.equal(full_rec.weights[k], second.weights[k]) for k in full_rec.weights)
    assert end.loss == full_result.loss


def test_metrics_hold_the_loss_curve(full, resumed) -> None:
    for result in (full[0], resumed[0][1]):
        rows = [json.loads(line) for line in result.metrics.read_text().splitlines()]
        assert [r["step"] for r in rows] == [5, 10, 15, 20]  # log_every = 5, no step twice after resuming
        assert all(math.isfinite(r["loss"]) and r["tokens_per_sec"] > 0 and r["mfu"] is None for r in rows)
        lrs = [r["lr"] for r in rows]
        assert lrs == sorted(lrs, reverse=True) and lrs[-1] < 0.2 * 3e-3  # cosine towards min_lr_ratio 0.1
        assert rows[-1]["loss"] == pytest.approx(result.loss)


def test_checkpoints_are_kept_as_the_plan_says(full) -> None:
    result = full[0]
    assert result.checkpoint == result.run_dir / "checkpoints" / "ep0-ba20-rank0.pt"
    kept = sorted(p.name for p in (result.run_dir / "checkpoints").glob("ep*"))
    assert kept == ["ep0-ba15-rank0.pt", "ep0-ba20-rank0.pt"]  # checkpoint_keep = 2


def test_rerunning_a_finished_run_resumes_it_and_trains_nothing(full, plan_path: Path, capsys) -> None:
    result = full[0]
    main([str(plan_path), "--run-dir", str(result.run_dir), "--device", "cpu"])
    out = capsys.readouterr().out
    assert "resuming from step 20" in out
    assert "done at step 20" in out and str(result.checkpoint) in out and str(result.metrics) in out
    assert len(result.metrics.read_text().splitlines()) == 4


def test_run_name_follows_the_plan(plan_path: Path) -> None:
    plan = TrainingPlan.read(plan_path)
    assert run_name(plan, plan_path.parent) == run_name(TrainingPlan.read(plan_path), plan_path.parent)
    assert run_name(plan, plan_path.parent) != run_name(plan.model_copy(update={"seed": 1}), plan_path.parent)


def test_batch_and_duration_arguments() -> None:
    assert device_batch_size(512, 8) == 64
    with pytest.raises(UsageError, match="does not split over 3 processes"):
        device_batch_size(512, 3)
    assert resolve_duration(None, 200) == "200ba"
    assert resolve_duration("20ba", 200) == "20ba"
    assert resolve_duration(7, 200) == "7ba"
    with pytest.raises(UsageError, match="'twenty' is not a duration") as err:
        resolve_duration("twenty", 200)
    assert "20ba" in err.value.hint


def test_no_weight_decay_on_norms_and_embeddings(plan_path: Path) -> None:
    model = SpeechLM(model_config(TrainingPlan.read(plan_path)))
    decay, no_decay = build_optimizer(model, TrainingPlan.read(plan_path).optimizer).param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert any(p is model.embed.weight for p in no_decay["params"])
    assert all(p.ndim == 2 and p is not model.embed.weight for p in decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_the_fused_update_is_the_for_each_update(plan_path: Path) -> None:
    """The GPU path's fused AdamW kernel (it runs on CPU too) takes the same steps as the default."""
    plan = TrainingPlan.read(plan_path)
    torch.manual_seed(0)
    models = [SpeechLM(model_config(plan))]
    models.append(copy.deepcopy(models[0]))
    tokens = torch.randint(0, plan.vocab.size, (2, 16))
    for model, fused in zip(models, (False, True)):
        optimizer = build_optimizer(model, plan.optimizer, fused=fused)
        assert optimizer.defaults["fused"] is (True if fused else None)
        for _ in range(3):
            model(tokens).float().logsumexp(-1).mean().backward()
            optimizer.step()
            optimizer.zero_grad()
    for a, b in zip(*(m.parameters() for m in models)):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)  # rounding, not another update


def test_a_run_dir_is_not_resumed_with_another_plan(full, plan_factory) -> None:
    result = full[0]
    other = plan_factory(seed=8)
    with pytest.raises(RunDirConflict, match="holds a run of another plan"):
        train(other, run_dir=result.run_dir, device="cpu")
    assert TrainingPlan.read(result.run_dir / "plan.json").seed == 7  # the run's own plan, kept beside it
