"""Epsilon scaling in DDIM inversion and reconstruction: the model's own sampling lambda, applied exactly."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler

from pipeline.demo.dm_sampling import saved_eps_scale, scale_epsilon
from pipeline.errors import ConfigError, ModelLoadError
from pipeline.inversion.ddim import (
    DDIMReconstructor,
    build_ddim_schedulers,
    own_sampler_agreement,
    step_alpha_bar,
)
from tests.test_ddim_model import RES, save_model

if TYPE_CHECKING:
    from pathlib import Path

LAMBDA = 1.02


def implied_eps(prev: torch.Tensor, x0: torch.Tensor, alpha_bar_target: torch.Tensor) -> torch.Tensor:
    """The noise estimate a DDIM step used, read off its result: prev = sqrt(ab) x0 + sqrt(1 - ab) eps."""
    return (prev - alpha_bar_target.sqrt() * x0) / (1 - alpha_bar_target).sqrt()


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_scaled_output_divides_the_noise_estimate_each_step_uses(prediction_type: str) -> None:
    """For every step of both chains, the scheduler's own noise estimate from the scaled output is the
    unscaled one / lambda. The target level of each step is DDIM's definition, not `step_alpha_bar`'s, so
    a wrong conversion level (e.g. the inverse step's t instead of the level it starts from) fails."""
    cfg = dict(DDPMScheduler(num_train_timesteps=1000, prediction_type=prediction_type).config)
    forward, inverse = build_ddim_schedulers(cfg, clip_sample=False)
    gen = torch.Generator().manual_seed(0)
    x, out = torch.randn((2, 3, 4, 4), generator=gen), torch.randn((2, 3, 4, 4), generator=gen)
    for sched in (forward, inverse):
        sched.set_timesteps(5)
        stride = 1000 // 5
        checked = 0
        for t in sched.timesteps:
            t = int(t)
            if sched is forward:
                target = sched.alphas_cumprod[t - stride] if t - stride >= 0 else sched.final_alpha_cumprod
            else:
                target = sched.alphas_cumprod[t]
            if float(target) >= 1.0:
                continue  # the clean end: no noise term to read the estimate from
            scaled = scale_epsilon(out, x, step_alpha_bar(sched, t), prediction_type, LAMBDA)
            raw_prev, raw_x0 = sched.step(out, t, x, return_dict=False)
            new_prev, new_x0 = sched.step(scaled, t, x, return_dict=False)
            torch.testing.assert_close(
                implied_eps(new_prev, new_x0, target), implied_eps(raw_prev, raw_x0, target) / LAMBDA,
                rtol=1e-4, atol=1e-4,
            )  # fmt: skip
            checked += 1
        assert checked >= 4, type(sched).__name__


def write_report(folder: Path, **config: object) -> None:
    (folder / "train_report.json").write_text(json.dumps({"config": {"sample_steps": 4, **config}}))


def test_reconstruction_uses_the_models_own_lambda(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    plain = save_model(tmp_path / "user_checkpoint")  # no train_report.json: not trained here
    assert saved_eps_scale(plain) == 1.0
    assert DDIMReconstructor(plain, steps=3, device="cpu", resolution=RES).eps_scale == 1.0
    own = save_model(tmp_path / "adm")
    write_report(own, eps_scale=LAMBDA)
    rec = DDIMReconstructor(own, steps=3, batch_size=2, device="cpu", resolution=RES)
    assert rec.eps_scale == LAMBDA and rec.provenance()["eps_scale"] == LAMBDA
    images = np.random.default_rng(0).integers(0, 256, (2, 3, RES, RES), dtype=np.uint8)
    with caplog.at_level(logging.WARNING, logger="pipeline.inversion.ddim"):
        off = DDIMReconstructor(own, steps=3, batch_size=2, device="cpu", resolution=RES, eps_scale=1.0)
    assert "not sampled with the reconstruction's settings" in caplog.text
    assert "recon.ddim.eps_scale" in caplog.text
    scaled_out, plain_out = rec(images), off(images)
    assert np.isfinite(scaled_out).all() and not np.allclose(scaled_out, plain_out)
    write_report(own)  # a report older than epsilon scaling: the plain sampler
    assert DDIMReconstructor(own, steps=3, device="cpu", resolution=RES).eps_scale == 1.0


def test_bad_eps_scale_names_the_key(tmp_path: Path) -> None:
    folder = save_model(tmp_path / "m")
    for bad in ("auto", 0.0, 3.0, None):
        with pytest.raises(ConfigError, match=r"recon\.ddim\.eps_scale"):
            DDIMReconstructor(folder, steps=2, device="cpu", resolution=RES, eps_scale=bad)  # type: ignore[arg-type]
    (folder / "train_report.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match=r"train_report\.json"):
        DDIMReconstructor(folder, steps=2, device="cpu", resolution=RES)


def test_own_sampler_agreement_compares_every_scheduler_setting(tmp_path: Path) -> None:
    hub = save_model(tmp_path / "hub")  # a DDPM scheduler config, no train report: nothing to compare
    rec = DDIMReconstructor(hub, steps=3, device="cpu", resolution=RES)
    assert own_sampler_agreement(rec.model, rec.eps_scale) == {
        "scheduler": "DDPMScheduler", "same_scheduler_config": None, "differing_settings": [],
        "eps_scale": 1.0, "same_eps_scale": True, "sample_steps": None,
    }  # fmt: skip
    own = save_model(tmp_path / "adm")  # as train_dm saves it: the DDIM sampler it samples with
    cfg = dict(DDPMScheduler(num_train_timesteps=1000).config)
    build_ddim_schedulers(cfg)[0].save_pretrained(str(own / "scheduler"))
    write_report(own, eps_scale=LAMBDA)
    rec = DDIMReconstructor(own, steps=3, device="cpu", resolution=RES)
    agree = own_sampler_agreement(rec.model, rec.eps_scale)
    assert agree["same_scheduler_config"] is True and agree["differing_settings"] == []
    assert agree["same_eps_scale"] and agree["eps_scale"] == LAMBDA and agree["sample_steps"] == 4
    rec = DDIMReconstructor(own, steps=3, device="cpu", resolution=RES, clip_sample_range=2.0, eps_scale=1.0)
    agree = own_sampler_agreement(rec.model, rec.eps_scale)
    assert agree["differing_settings"] == ["clip_sample_range"] and not agree["same_eps_scale"]
