import json
from pathlib import Path

import pytest
import torch

from runtime.monitor import keep_steps_up_to, last_logged_loss, peak_flops


@pytest.mark.parametrize(("name", "peak"), [("NVIDIA H100 80GB HBM3", 989e12), ("NVIDIA H100 PCIe", 756e12),
                                            ("NVIDIA H200", 989e12), ("NVIDIA A100-SXM4-80GB", 312e12),
                                            ("Tesla T4", None)])
def test_peak_flops_by_gpu_name(monkeypatch: pytest.MonkeyPatch, name: str, peak: float | None) -> None:
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *_: name)
    assert peak_flops("gpu", "amp_bf16") == peak


def test_no_mfu_without_a_tensor_core_peak() -> None:
    assert peak_flops("cpu", "fp32") is None
    assert peak_flops("gpu", "fp32") is None


def test_a_resumed_run_drops_the_steps_it_trains_again(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps({"step": s, "loss": 6.0 - s / 10}) + "\n" for s in (5, 10, 15)))
    keep_steps_up_to(path, 10)  # the checkpoint it resumes from
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [5, 10]
    assert last_logged_loss(path) == 5.0
    assert last_logged_loss(tmp_path / "absent.jsonl") is None
