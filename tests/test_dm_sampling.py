"""Sampling: epsilon scaling divides the implied noise estimate by lambda (any prediction type); progress."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.demo.dm_sampling import sample_dm, scale_epsilon
from pipeline.demo.dm_training import DmTrainConfig, train_dm
from pipeline.errors import ConfigError


def implied_epsilon(output: torch.Tensor, x_t: torch.Tensor, abar: float, kind: str) -> torch.Tensor:
    """The noise estimate a scheduler derives from ``output``, written from x0 (not as the module does)."""
    a, s = math.sqrt(abar), math.sqrt(1.0 - abar)
    if kind == "epsilon":
        return output
    x0 = a * x_t - s * output if kind == "v_prediction" else output
    return (x_t - a * x0) / s


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
@pytest.mark.parametrize("abar", [0.02, 0.5, 0.995])
def test_scaled_output_implies_the_scaled_noise(prediction_type: str, abar: float) -> None:
    g = torch.Generator().manual_seed(0)
    x0, eps, out = (torch.randn(2, 3, 4, 4, generator=g) for _ in range(3))
    x_t = math.sqrt(abar) * x0 + math.sqrt(1 - abar) * eps
    scaled = scale_epsilon(out, x_t, torch.tensor(abar), prediction_type, 1.01)
    torch.testing.assert_close(
        implied_epsilon(scaled, x_t, abar, prediction_type),
        implied_epsilon(out, x_t, abar, prediction_type) / 1.01,
        rtol=1e-4,
        atol=1e-4,
    )
    assert scale_epsilon(out, x_t, torch.tensor(abar), prediction_type, 1.0) is out  # lambda 1 = off


def test_unknown_prediction_type_is_refused() -> None:
    x = torch.zeros(1, 3, 2, 2)
    with pytest.raises(ConfigError, match="prediction type 'flow'"):
        scale_epsilon(x, x, torch.tensor(0.5), "flow", 1.01)


def test_sampling_reports_its_unet_steps(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Long sampling (a stage's 1,300 fakes x 200 steps) shows progress: batches x timesteps UNet steps."""
    faces = np.random.default_rng(0).integers(0, 256, (16, 3, 16, 16)).astype(np.uint8)
    cfg = DmTrainConfig(unet="tiny", resolution=16, steps=2, batch_size=8, warmup=1, sample_steps=4)
    train_dm(cfg, faces, tmp_path / "dm", seed=0, device="cpu")
    capsys.readouterr()
    sample_dm(tmp_path / "dm", 5, seed=1, device="cpu", batch_size=2)
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith(f"sample {tmp_path / 'dm'}: 100%") and "12/12" in last  # 3 batches x 4 steps
