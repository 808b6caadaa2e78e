"""Model folders and the DDIM scheduler pair: validation happens before any work, errors name the path."""

from __future__ import annotations

import json
import logging
import shutil
from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler, UNet2DConditionModel

from pipeline.errors import ConfigError, ModelLoadError
from pipeline.inversion.ddim import (
    DDIMReconstructor,
    build_ddim_schedulers,
    load_ddim_model,
    locate_model_parts,
)
from pipeline.models.checkpoint import weights_hash
from pipeline.models.dm.unet import build_unet

if TYPE_CHECKING:
    from pathlib import Path

RES = 8


def save_model(
    folder: Path, *, layout: str = "pipeline", res: int = RES, channels: int = 3, **sched: object
) -> Path:
    """An untrained tiny UNet + a DDPM scheduler config, saved as diffusers writes them."""
    torch.manual_seed(0)
    unet = build_unet("tiny", res, in_channels=channels, out_channels=channels)
    scheduler = DDPMScheduler(num_train_timesteps=1000, **sched)  # type: ignore[arg-type]
    if layout == "pipeline":
        unet.save_pretrained(str(folder / "unet"))
        scheduler.save_pretrained(str(folder / "scheduler"))
    else:  # hub model layout (google/ddpm-ema-celebahq-256): UNet + scheduler_config.json at the root
        unet.save_pretrained(str(folder))
        scheduler.save_config(str(folder))
    return folder


@pytest.mark.parametrize("spacing", ["leading", "trailing"])
@pytest.mark.parametrize("schedule", ["linear", "squaredcos_cap_v2"])
def test_scheduler_pair_mirrors(spacing: str, schedule: str) -> None:
    cfg = DDPMScheduler(beta_schedule=schedule, timestep_spacing=spacing, clip_sample=True).config
    clipped = build_ddim_schedulers(dict(cfg))
    assert all(s.config.clip_sample and s.config.clip_sample_range == 1.0 for s in clipped)
    fwd, inv = build_ddim_schedulers(dict(cfg), clip_sample=False)  # the exactly invertible textbook pair
    assert fwd.config.clip_sample is False and inv.config.clip_sample is False
    assert fwd.config.set_alpha_to_one and inv.config.set_alpha_to_one
    torch.testing.assert_close(fwd.betas, inv.betas, rtol=0, atol=0)
    torch.testing.assert_close(fwd.alphas_cumprod, inv.alphas_cumprod, rtol=0, atol=0)
    wide = build_ddim_schedulers(dict(cfg), clip_sample_range=2.0)  # recon.ddim.clip_sample_range
    assert all(s.config.clip_sample and s.config.clip_sample_range == 2.0 for s in wide)
    with pytest.raises(ConfigError, match="clip_sample_range"):
        build_ddim_schedulers(dict(cfg), clip_sample_range=0.0)
    for key in ("timestep_spacing", "steps_offset", "num_train_timesteps", "prediction_type"):
        assert fwd.config[key] == inv.config[key]
    fwd.set_timesteps(10)
    inv.set_timesteps(10)
    assert torch.equal(fwd.timesteps.flip(0), inv.timesteps)
    # With a fixed epsilon, the inverse chain followed by the forward chain is the identity up to float32
    # rounding, amplified by 1/sqrt(alpha_bar) at the noisiest step (tiny for cosine + trailing, t=999).
    x, eps = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    y = x
    for t in inv.timesteps:
        y = inv.step(eps, t, y).prev_sample
    for t in fwd.timesteps:
        y = fwd.step(eps, t, y).prev_sample
    torch.testing.assert_close(y, x, atol=5e-3 if schedule != "linear" else 1e-4, rtol=0)


def test_linspace_spacing_rejected() -> None:
    cfg = dict(DDPMScheduler(timestep_spacing="linspace").config)
    with pytest.raises(ModelLoadError, match="timestep_spacing"):
        build_ddim_schedulers(cfg, source="x.json")


@pytest.mark.parametrize("layout", ["pipeline", "model"])
def test_both_layouts_load(tmp_path: Path, layout: str) -> None:
    folder = save_model(tmp_path / "m", layout=layout)
    model = load_ddim_model(folder, resolution=RES)
    unet_dir, _ = locate_model_parts(folder)
    assert model.weights_hash == weights_hash(unet_dir)
    assert model.scheduler.config.clip_sample and model.inverse_scheduler.config.clip_sample
    plain = load_ddim_model(folder, resolution=RES, clip_sample=False)
    assert not plain.scheduler.config.clip_sample and not plain.inverse_scheduler.config.clip_sample


def test_missing_folder_named(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist") as e:
        load_ddim_model(tmp_path / "nope", resolution=RES)
    assert str(tmp_path / "nope") in str(e.value)


def test_missing_scheduler_named(tmp_path: Path) -> None:
    folder = save_model(tmp_path / "m")
    shutil.rmtree(folder / "scheduler")
    with pytest.raises(ModelLoadError, match=r"scheduler_config\.json"):
        load_ddim_model(folder, resolution=RES)


def test_missing_weights_named(tmp_path: Path) -> None:
    folder = save_model(tmp_path / "m")
    (folder / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(ModelLoadError, match="diffusion_pytorch_model"):
        load_ddim_model(folder, resolution=RES)


def test_conditional_unet_rejected(tmp_path: Path) -> None:
    folder = tmp_path / "cond"
    cond = UNet2DConditionModel(
        sample_size=RES, block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4,
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
        cross_attention_dim=8, attention_head_dim=2,
    )  # fmt: skip
    cond.save_pretrained(str(folder / "unet"))
    DDPMScheduler().save_pretrained(str(folder / "scheduler"))
    with pytest.raises(ModelLoadError, match="UNet2DConditionModel") as e:
        load_ddim_model(folder, resolution=RES)
    assert str(folder / "unet" / "config.json") in str(e.value)


def test_four_channels_rejected(tmp_path: Path) -> None:
    folder = save_model(tmp_path / "latent", channels=4)
    with pytest.raises(ModelLoadError, match="in_channels") as e:
        load_ddim_model(folder, resolution=RES)
    assert str(folder) in str(e.value)


def test_wrong_sample_size_rejected(tmp_path: Path) -> None:
    folder = save_model(tmp_path / "m16", res=16)
    with pytest.raises(ModelLoadError, match=r"sample_size.*16.*data.resolution.*8"):
        load_ddim_model(folder, resolution=RES)


def test_hash_mismatch_rejected_before_loading(tmp_path: Path) -> None:
    folder = save_model(tmp_path / "m")
    good = weights_hash(folder / "unet")
    assert load_ddim_model(folder, resolution=RES, expected_hash=good).weights_hash == good
    with pytest.raises(ModelLoadError, match="hash") as e:
        DDIMReconstructor(folder, steps=2, device="cpu", resolution=RES, expected_hash="0" * 64)
    assert str(folder / "unet") in str(e.value)


def test_scheduler_config_recorded_in_provenance(tmp_path: Path) -> None:
    folder = save_model(tmp_path / "m", beta_schedule="squaredcos_cap_v2")
    rec = DDIMReconstructor(folder, steps=3, batch_size=2, device="cpu", resolution=RES)
    prov = rec.provenance()
    json.dumps(prov)  # must be JSON-serialisable for the cache attributes
    assert prov["kind"] == "ddim" and prov["steps"] == 3 and prov["resolution"] == RES
    assert prov["scheduler"]["beta_schedule"] == "squaredcos_cap_v2"
    assert prov["scheduler"]["clip_sample"] is True and prov["inverse_scheduler"]["clip_sample"] is True
    assert prov["weights_hash"] == weights_hash(folder / "unet")
    out = rec(np.zeros((1, 3, RES, RES), dtype=np.uint8))
    assert out.dtype == np.float32 and out.shape == (1, 3, RES, RES)


def test_recon_clip_settings_differing_from_the_models_own_sampler_are_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A DDIM model's fakes were sampled with its saved clip bound; recon with another one says so."""
    folder = tmp_path / "m"
    save_model(folder)
    cfg = dict(DDPMScheduler(num_train_timesteps=1000).config)
    build_ddim_schedulers(cfg, clip_sample=True, clip_sample_range=2.0)[0].save_pretrained(
        str(folder / "scheduler")
    )
    with caplog.at_level(logging.WARNING, logger="pipeline.inversion.ddim"):
        load_ddim_model(folder, resolution=RES, clip_sample_range=2.0)
    assert "not sampled with the reconstruction's settings" not in caplog.text
    with caplog.at_level(logging.WARNING, logger="pipeline.inversion.ddim"):
        load_ddim_model(folder, resolution=RES)
    assert "not sampled with the reconstruction's settings" in caplog.text and "2.0" in caplog.text


def test_x0_predicting_model_is_refused_before_loading(tmp_path: Path) -> None:
    """Its first inverse step's noise estimate divides by sqrt(1 - 1): say so, not "NaN in float32" later."""
    folder = save_model(tmp_path / "m", prediction_type="sample")
    with pytest.raises(ModelLoadError, match="cannot be DDIM-inverted") as e:
        DDIMReconstructor(folder, steps=3, device="cpu", resolution=RES)
    assert str(folder / "scheduler" / "scheduler_config.json") in str(e.value)
