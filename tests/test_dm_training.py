"""Demo diffusion models: short real trainings save loadable folders and sample finite images."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler
from PIL import Image
from safetensors.torch import load_file

from pipeline.demo.dm_sampling import load_sampler, sample_dm
from pipeline.demo.dm_training import (
    DmTrainConfig,
    _anchor_colour,
    _calibrate_decoder_colour,
    _diffusion_loss,
    _x0_error_by_t,
    train_dm,
)
from pipeline.demo.quality import GATE_STATISTICS
from pipeline.errors import ConfigError, InputDataError, ModelLoadError
from pipeline.inversion.ddim import DDIMReconstructor, build_ddim_schedulers
from pipeline.models.dm.autoencoder import build_autoencoder
from pipeline.models.dm.unet import build_unet, unet_config

if TYPE_CHECKING:
    from pathlib import Path

RES = 16


def faces(n: int = 48) -> np.ndarray:
    rng = np.random.default_rng(0)
    base = rng.integers(60, 200, (n, 3, 1, 1))
    return np.clip(base + rng.normal(0, 20, (n, 3, RES, RES)), 0, 255).astype(np.uint8)


def small(**kw: object) -> DmTrainConfig:
    args: dict[str, object] = {
        "unet": "tiny", "resolution": RES, "steps": 20, "batch_size": 8, "warmup": 5, "sample_steps": 4,
        "log_every": 5,
    }  # fmt: skip
    args.update(kw)
    return DmTrainConfig(**args)  # type: ignore[arg-type]


def check_samples(x: np.ndarray, n: int) -> None:
    assert x.shape == (n, 3, RES, RES) and x.dtype == np.uint8


def test_ddpm_train_saves_and_samples(tmp_path: Path) -> None:
    out = tmp_path / "adm"
    report = train_dm(small(), faces(), out, seed=0, device="cpu", live_dir=tmp_path / "live")
    for rel in ("unet/config.json", "scheduler/scheduler_config.json", "samples.png", "train_report.json"):
        assert (out / rel).is_file(), rel
    assert (tmp_path / "live" / "metrics.json").is_file()  # dvclive curves
    saved = json.loads((out / "train_report.json").read_text())
    assert saved["config"]["steps"] == 20 and np.isfinite(saved["final_loss_avg100"])
    by_t = saved["x0_error_by_t"]
    assert {"900", "100"} <= set(by_t) and by_t["900"]["colour_baseline_rms"] > 0
    assert report["seconds_per_step"] > 0
    grid = Image.open(out / "samples.png")
    assert grid.size == (2 * (8 * (RES + 1) + 1),) * 2  # pipeline.plots: 1 px gaps, 2x upscale
    assert set(report["sample_stats"]) == set(report["real_stats"]) == set(GATE_STATISTICS)
    a = sample_dm(out, 5, seed=3, device="cpu")
    check_samples(a, 5)
    assert np.array_equal(a, sample_dm(out, 5, seed=3, device="cpu", batch_size=2))  # noise drawn up front
    # The saved sampler is exactly the forward scheduler DDIM reconstruction builds from this folder.
    sched_cfg = json.loads((out / "scheduler" / "scheduler_config.json").read_text())
    rec = DDIMReconstructor(out, steps=4, device="cpu", resolution=RES)
    assert dict(build_ddim_schedulers(sched_cfg)[0].config) == dict(rec.scheduler.config)
    assert sched_cfg["clip_sample"] is True  # pixel model: predicted x0 clipped, as DDIM recon does


def test_ldm_train_saves_and_samples(tmp_path: Path) -> None:
    cfg = small(
        kind="ldm",
        unet="ldm-tiny",
        autoencoder="kl-f4-tiny",
        ae_steps=20,
        ae_adv_start=14,
        sampler="dpmsolver",
    )
    out = tmp_path / "ldm"
    report = train_dm(cfg, faces(), out, seed=0, device="cpu")
    assert (out / "vae" / "config.json").is_file()
    # LDM's patch-adversarial autoencoder loss joins after ae_adv_start steps, with a finite adaptive weight.
    assert report["ae_adversarial_steps"] == 6 and 0 < report["ae_last_adaptive_weight"] < 1e4
    assert report["scaling_factor"] > 0
    # The autoencoder's own reconstructions are gated like fakes: every statistic's signed gap, finite.
    gaps = report["ae_reconstruction_gaps"]
    assert set(gaps) == set(GATE_STATISTICS) and all(np.isfinite(v) for v in gaps.values())
    vae_cfg = json.loads((out / "vae" / "config.json").read_text())
    assert vae_cfg["scaling_factor"] == pytest.approx(report["scaling_factor"])
    x = sample_dm(out, 3, seed=1, device="cpu")
    check_samples(x, 3)
    # A latent model is not a pixel UNet: DDIM reconstruction refuses it before any work.
    with pytest.raises(ModelLoadError, match="in_channels"):
        DDIMReconstructor(out, steps=2, device="cpu", resolution=RES)


@pytest.mark.parametrize(
    ("sampler", "schedule"), [("ddpm", "squaredcos_cap_v2"), ("pndm", "linear"), ("ddim", "linear")]
)
def test_other_samplers(tmp_path: Path, sampler: str, schedule: str) -> None:
    out = tmp_path / sampler
    cfg = small(
        steps=5, sampler=sampler, beta_schedule=schedule, ddpm_variance="fixed_large", clip_sample_range=2.0
    )
    train_dm(cfg, faces(16), out, seed=0, device="cpu")
    check_samples(sample_dm(out, 2, seed=0, device="cpu"), 2)
    saved = json.loads((out / "scheduler" / "scheduler_config.json").read_text())
    if sampler == "ddpm":  # the ancestral variance is part of the saved sampler
        assert saved["variance_type"] == "fixed_large"
    if sampler in ("ddpm", "ddim"):  # so is the x0 clip bound, and loading keeps it
        assert saved["clip_sample_range"] == 2.0
        assert load_sampler(out).config.clip_sample_range == 2.0


def test_config_validation() -> None:
    with pytest.raises(ConfigError, match="sampler"):
        DmTrainConfig(sampler="euler")
    with pytest.raises(ConfigError, match="ddpm_variance"):
        DmTrainConfig(ddpm_variance="learned")
    with pytest.raises(ConfigError, match="ae_adv_weight"):
        DmTrainConfig(ae_adv_weight=-1.0)
    with pytest.raises(ConfigError, match="unet"):
        DmTrainConfig(unet="huge")
    with pytest.raises(ConfigError, match="sample_steps"):
        DmTrainConfig(sample_steps=2000)
    with pytest.raises(ConfigError, match="clip_sample_range"):
        DmTrainConfig(clip_sample_range=0.0)
    with pytest.raises(ConfigError, match="eps_scale"):
        DmTrainConfig(eps_scale=3.0)
    with pytest.raises(ConfigError, match="snr_gamma"):
        DmTrainConfig(snr_gamma=-5.0)
    with pytest.raises(ConfigError, match="`ae_colour_calibration` must be true or false"):
        DmTrainConfig(ae_colour_calibration="yes")  # type: ignore[arg-type]


def test_min_snr_weighting_matches_its_formula() -> None:
    """Min-SNR-gamma: per-sample eps MSE times min(SNR, gamma) / SNR; gamma 0 is the plain DDPM loss."""
    sched = DDPMScheduler(num_train_timesteps=1000)
    gen = torch.Generator().manual_seed(0)
    pred, noise, x0 = (torch.randn(4, 3, 8, 8, generator=gen) for _ in range(3))
    t = torch.tensor([0, 10, 500, 999])
    plain = torch.nn.functional.mse_loss(pred, noise)
    assert torch.equal(_diffusion_loss(pred, x0, noise, t, sched, 0.0), plain)
    alpha_bar = sched.alphas_cumprod[t]
    snr = alpha_bar / (1 - alpha_bar)
    per_sample = ((pred - noise) ** 2).mean(dim=(1, 2, 3))
    expected = (per_sample * torch.minimum(snr, torch.tensor(5.0)) / snr).mean()
    assert torch.allclose(_diffusion_loss(pred, x0, noise, t, sched, 5.0), expected)
    # Low-noise steps (SNR far above gamma) are down-weighted, high-noise steps (SNR < gamma) keep weight 1.
    assert snr[0] > 5 > snr[3]


def test_colour_anchor_hides_overall_colour_from_the_discriminator() -> None:
    """The anchored reconstruction has the input's channel means and its own texture, and no gradient through
    it can move a reconstruction's per-image channel mean (each image-channel's gradient sums to zero)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 3, 8, 8, generator=gen)
    tint = torch.tensor([0.5, -0.2, 0.1])[:, None, None]
    rec = (torch.randn(3, 3, 8, 8, generator=gen) + tint).requires_grad_()
    judged = _anchor_colour(rec, x)
    assert torch.allclose(judged.mean(dim=(2, 3)), x.mean(dim=(2, 3)), atol=1e-6)
    centred = rec - rec.mean(dim=(2, 3), keepdim=True)
    assert torch.allclose(judged - judged.mean(dim=(2, 3), keepdim=True), centred, atol=1e-6)
    weights = torch.randn(3, 3, 8, 8, generator=gen)
    (judged * weights).square().sum().backward()  # any function of the judged image: a stand-in discriminator
    assert rec.grad is not None and rec.grad.abs().sum() > 0
    assert torch.allclose(rec.grad.sum(dim=(2, 3)), torch.zeros(3, 3), atol=1e-5)


def test_v_prediction_loss_regresses_the_velocity() -> None:
    """v = sqrt(abar) eps - sqrt(1 - abar) x0 (Salimans & Ho 2022); Min-SNR for v divides by SNR + 1."""
    sched = DDPMScheduler(num_train_timesteps=1000, prediction_type="v_prediction")
    gen = torch.Generator().manual_seed(1)
    pred, noise, x0 = (torch.randn(4, 3, 8, 8, generator=gen) for _ in range(3))
    t = torch.tensor([0, 10, 500, 999])
    ab = sched.alphas_cumprod[t].view(-1, 1, 1, 1)
    v = ab.sqrt() * noise - (1 - ab).sqrt() * x0
    assert torch.allclose(_diffusion_loss(pred, x0, noise, t, sched, 0.0), ((pred - v) ** 2).mean())
    assert _diffusion_loss(v, x0, noise, t, sched, 0.0) == 0
    snr = (ab / (1 - ab)).flatten()
    weight = torch.minimum(snr, torch.tensor(5.0)) / (snr + 1)
    expected = (((pred - v) ** 2).mean(dim=(1, 2, 3)) * weight).mean()
    assert torch.allclose(_diffusion_loss(pred, x0, noise, t, sched, 5.0), expected)


class _Oracle(torch.nn.Module):
    """A "UNet" that returns the exact target for known x0 and noise, plus a constant error on channel 0's
    image mean (a colour error of fixed size in the prediction)."""

    def __init__(self, sched: DDPMScheduler, x0: torch.Tensor, err: float) -> None:
        super().__init__()
        self.sched, self.x0, self.err = sched, x0, err

    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> object:
        ab = self.sched.alphas_cumprod[t].view(-1, 1, 1, 1)
        noise = (x_t - ab.sqrt() * self.x0) / (1 - ab).sqrt()
        v = self.sched.config.prediction_type == "v_prediction"
        out = ab.sqrt() * noise - (1 - ab).sqrt() * self.x0 if v else noise
        out = out.clone()
        out[:, 0] += self.err
        return type("Out", (), {"sample": out})()


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_colour_error_by_t_measures_the_x0_estimate(prediction_type: str) -> None:
    """An exact model has no colour error; one small error on a channel's mean costs an epsilon model
    sqrt(1 - abar) / sqrt(abar) times itself in x0 colour (~59 at t = 900), a v model sqrt(1 - abar) (< 1)."""
    sched = DDPMScheduler(num_train_timesteps=1000, prediction_type=prediction_type)
    x0 = torch.from_numpy(faces(16)).float() / 127.5 - 1
    exact = _x0_error_by_t(_Oracle(sched, x0, 0.0), sched, x0, torch.Generator().manual_seed(0))
    assert all(r["colour_rms"] < 1e-4 and r["pred_mse"] < 1e-8 for r in exact.values())
    off = _x0_error_by_t(_Oracle(sched, x0, 0.01), sched, x0, torch.Generator().manual_seed(0))
    # The colour DC of a +0.01 shift on channel 0 (on [-1, 1]), grey removed, RMS over 3 channels, on [0, 1].
    unit = 0.01 / 2 * float(np.sqrt((4 / 9 + 1 / 9 + 1 / 9) / 3))
    for t, r in off.items():
        ab = float(sched.alphas_cumprod[int(t)])
        # x0_hat = (x_t - sqrt(1 - ab) eps_hat) / sqrt(ab)  or  sqrt(ab) x_t - sqrt(1 - ab) v_hat
        gain = np.sqrt(1 - ab) / np.sqrt(ab) if prediction_type == "epsilon" else np.sqrt(1 - ab)
        assert r["colour_rms"] == pytest.approx(unit * gain, rel=1e-3)
    if prediction_type == "epsilon":
        assert off["900"]["colour_rms"] > 50 * off["100"]["colour_rms"]
    assert off["900"]["colour_baseline_rms"] == exact["900"]["colour_baseline_rms"] > 0


def test_v_prediction_model_trains_samples_and_reconstructs(tmp_path: Path) -> None:
    """The option reaches the saved scheduler, so sampling and DDIM inversion use v too; so does the
    sampler's epsilon scaling."""
    out = tmp_path / "adm_v"
    cfg = small(steps=6, prediction_type="v_prediction", eps_scale=1.01)
    report = train_dm(cfg, faces(16), out, seed=0, device="cpu")
    assert np.isfinite(report["final_loss_avg100"])
    saved = json.loads((out / "scheduler" / "scheduler_config.json").read_text())
    assert saved["prediction_type"] == "v_prediction"
    check_samples(sample_dm(out, 2, seed=0, device="cpu"), 2)
    rec = DDIMReconstructor(out, steps=3, device="cpu", resolution=RES)
    assert rec.scheduler.config.prediction_type == "v_prediction"
    assert rec.inverse_scheduler.config.prediction_type == "v_prediction"
    assert rec.eps_scale == 1.01  # recon.ddim.eps_scale: model
    recon = rec(faces(2))
    assert recon.shape == (2, 3, RES, RES) and np.isfinite(recon).all()
    with pytest.raises(ConfigError, match="prediction_type"):
        DmTrainConfig(prediction_type="sample")


def test_bad_training_images(tmp_path: Path) -> None:
    with pytest.raises(InputDataError, match="resolution"):
        train_dm(small(), np.zeros((4, 3, 8, 8), np.uint8), tmp_path, seed=0, device="cpu")
    with pytest.raises(InputDataError, match="uint8"):
        train_dm(small(), np.zeros((4, 3, RES, RES), np.float32), tmp_path, seed=0, device="cpu")


def test_unet_presets_attention_at_8px() -> None:
    cfg = unet_config("adm-s", 32)
    assert cfg["block_out_channels"] == (16, 32, 64)
    assert cfg["down_block_types"] == ("DownBlock2D", "DownBlock2D", "AttnDownBlock2D")
    cfg64 = unet_config("adm-s", 64)
    assert cfg64["down_block_types"][-1] == "AttnDownBlock2D" and len(cfg64["down_block_types"]) == 4
    assert unet_config("iddpm-s", 32)["resnet_time_scale_shift"] == "scale_shift"
    unet = build_unet("ldm-tiny", 8, in_channels=4, out_channels=4)
    assert unet(torch.zeros(1, 4, 8, 8), 3).sample.shape == (1, 4, 8, 8)


def test_training_time_statistics_are_logged_without_changing_training(tmp_path: Path) -> None:
    """`stats_every` samples the EMA model with its saved sampler mid-run; the weights are those of a run
    without it (sampling noise never comes from the training RNG)."""
    cfg = small(steps=6, stats_every=3, stats_samples=4)
    report = train_dm(cfg, faces(16), tmp_path / "a", seed=0, device="cpu", live_dir=tmp_path / "live")
    assert [row["step"] for row in report["stats_history"]] == [3, 6]
    assert set(report["stats_history"][0]) == {"step", *GATE_STATISTICS}
    assert (tmp_path / "live" / "plots" / "metrics" / "stats" / "hf_energy_gap.tsv").is_file()
    train_dm(small(steps=6), faces(16), tmp_path / "b", seed=0, device="cpu")
    wa = load_file(str(next((tmp_path / "a" / "unet").glob("*.safetensors"))))
    wb = load_file(str(next((tmp_path / "b" / "unet").glob("*.safetensors"))))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.parametrize(("preset", "side"), [("kl-f4-tiny", 8), ("kl-f2-s", 16)])
def test_autoencoder_downsampling_follows_its_levels(preset: str, side: int) -> None:
    vae = build_autoencoder(preset, 32)
    with torch.no_grad():
        z = vae.encode(torch.zeros(1, 3, 32, 32)).latent_dist.mean
    assert z.shape == (1, 4, side, side)
    with pytest.raises(ConfigError, match="divisible by 4 for autoencoder 'kl-f4-tiny'"):
        build_autoencoder("kl-f4-tiny", 30)


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(next((folder / "unet").glob("*.safetensors"))))


@pytest.mark.parametrize("kind", ["ddpm", "ldm"])
def test_resumed_training_equals_an_uninterrupted_run(tmp_path: Path, kind: str) -> None:
    """A run stopped at step 6 (its state saved in work_dir) and resumed to 10 steps gives bit-identical
    weights, history and curves to a 10-step run; for the LDM the saved autoencoder is reused."""
    extra = (
        {"kind": "ldm", "unet": "ldm-tiny", "autoencoder": "kl-f4-tiny", "ae_steps": 6}
        if kind == "ldm"
        else {}
    )
    cfg = lambda steps: small(steps=steps, stats_every=3, stats_samples=4, log_every=1, **extra)  # noqa: E731
    whole = train_dm(cfg(10), faces(16), tmp_path / "whole", seed=0, device="cpu")
    work = tmp_path / "work"
    first = train_dm(
        cfg(6), faces(16), tmp_path / "a", seed=0, device="cpu", work_dir=work, live_dir=tmp_path / "l1"
    )
    assert first["resumed_from_step"] == 0 and (work / "state.pt").is_file()
    rest = train_dm(
        cfg(10), faces(16), tmp_path / "b", seed=0, device="cpu", work_dir=work, live_dir=tmp_path / "l2"
    )
    assert rest["resumed_from_step"] == 6
    wa, wb = _weights(tmp_path / "whole"), _weights(tmp_path / "b")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert rest["stats_history"] == whole["stats_history"] and [r["step"] for r in rest["stats_history"]] == [
        3,
        6,
        9,
    ]
    assert rest["final_loss_avg100"] == whole["final_loss_avg100"]
    loss_steps = (tmp_path / "l2" / "plots" / "metrics" / "loss.tsv").read_text().split("\n")[1:]
    assert [int(r.split("\t")[0]) for r in loss_steps if r][-10:] == list(
        range(10)
    )  # restored, then continued


def test_training_state_of_another_recipe_is_not_resumed(tmp_path: Path) -> None:
    work = tmp_path / "work"
    train_dm(small(steps=6), faces(16), tmp_path / "a", seed=0, device="cpu", work_dir=work)
    other_lr = train_dm(
        small(steps=8, lr=1e-3), faces(16), tmp_path / "b", seed=0, device="cpu", work_dir=work
    )
    assert other_lr["resumed_from_step"] == 0  # and its state replaced the first one
    fewer = train_dm(small(steps=4, lr=1e-3), faces(16), tmp_path / "c", seed=0, device="cpu", work_dir=work)
    assert fewer["resumed_from_step"] == 0  # the state ran past the steps asked for
    other_data = train_dm(
        small(steps=6, lr=1e-3), faces(12), tmp_path / "d", seed=0, device="cpu", work_dir=work
    )
    assert other_data["resumed_from_step"] == 0


def test_changing_only_the_sampler_resamples_without_retraining(tmp_path: Path) -> None:
    work = tmp_path / "work"
    first = train_dm(small(steps=6), faces(16), tmp_path / "a", seed=0, device="cpu", work_dir=work)
    resampled = train_dm(
        small(steps=6, sample_steps=2, eps_scale=1.02, clip_sample_range=2.0, stats_every=3, stats_samples=4),
        faces(16), tmp_path / "b", seed=0, device="cpu", work_dir=work,
    )  # fmt: skip
    assert first["resumed_from_step"] == 0 and resampled["resumed_from_step"] == 6  # no step retrained
    a = load_file(str(tmp_path / "a" / "unet" / "diffusion_pytorch_model.safetensors"))
    b = load_file(str(tmp_path / "b" / "unet" / "diffusion_pytorch_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    sched = json.loads((tmp_path / "b" / "scheduler" / "scheduler_config.json").read_text())
    assert sched["clip_sample_range"] == 2.0 and resampled["config"]["sample_steps"] == 2
    # The saved sampler is the report's: its eps_scale is sample_dm's default, and it changes the samples.
    assert resampled["config"]["eps_scale"] == 1.02
    scaled = sample_dm(tmp_path / "b", 3, seed=1, device="cpu")
    assert np.array_equal(scaled, sample_dm(tmp_path / "b", 3, seed=1, device="cpu", eps_scale=1.02))
    assert not np.array_equal(scaled, sample_dm(tmp_path / "b", 3, seed=1, device="cpu", eps_scale=1.0))
    with pytest.raises(ConfigError, match="eps_scale"):
        sample_dm(tmp_path / "b", 1, seed=1, device="cpu", eps_scale=0.0)


def test_decoder_colour_calibration_zeroes_the_mean_reconstruction_error() -> None:
    """The closed-form bias shift leaves no per-channel mean error on the faces it was fitted to, and moves
    nothing but the decoder's output bias."""
    torch.manual_seed(0)
    vae = build_autoencoder("kl-f4-tiny", RES).eval()
    data = torch.as_tensor(faces(20)).float() / 127.5 - 1
    before = {k: v.clone() for k, v in vae.state_dict().items()}

    def mean_error() -> torch.Tensor:
        with torch.no_grad():
            return (vae.decode(vae.encode(data).latent_dist.mean).sample - data).mean(dim=(0, 2, 3))

    error = mean_error()
    offset = _calibrate_decoder_colour(vae, data, torch.device("cpu"))
    assert offset == pytest.approx(error.tolist(), abs=1e-5) and error.abs().max() > 1e-3
    assert mean_error().abs().max() < 1e-5
    changed = [k for k, v in vae.state_dict().items() if not torch.equal(v, before[k])]
    assert changed == ["decoder.conv_out.bias"]


def test_ldm_colour_calibration_changes_the_decoder_only(tmp_path: Path) -> None:
    """Calibration comes after the autoencoder trains and never touches the encoder: the latent UNet trains
    on the same latents, bit for bit, and the offset is reported."""
    cfg = {"kind": "ldm", "unet": "ldm-tiny", "autoencoder": "kl-f4-tiny", "ae_steps": 6, "steps": 6}
    plain = train_dm(small(**cfg), faces(), tmp_path / "plain", seed=0, device="cpu")
    calibrated = train_dm(
        small(**cfg, ae_colour_calibration=True), faces(), tmp_path / "cal", seed=0, device="cpu"
    )
    assert "ae_colour_offset" not in plain and len(calibrated["ae_colour_offset"]) == 3
    unet_a = load_file(tmp_path / "plain" / "unet" / "diffusion_pytorch_model.safetensors")
    unet_b = load_file(tmp_path / "cal" / "unet" / "diffusion_pytorch_model.safetensors")
    assert all(torch.equal(unet_a[k], unet_b[k]) for k in unet_a)
    vae_a = load_file(tmp_path / "plain" / "vae" / "diffusion_pytorch_model.safetensors")
    vae_b = load_file(tmp_path / "cal" / "vae" / "diffusion_pytorch_model.safetensors")
    assert [k for k in vae_a if not torch.equal(vae_a[k], vae_b[k])] == ["decoder.conv_out.bias"]
    shift = vae_a["decoder.conv_out.bias"] - vae_b["decoder.conv_out.bias"]
    assert shift.tolist() == pytest.approx(calibrated["ae_colour_offset"], abs=1e-6)
