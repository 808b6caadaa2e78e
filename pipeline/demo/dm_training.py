"""Train and sample the demo's diffusion models: pixel DDPMs ("ADM", "IDDPM") and a latent one ("LDM").

All use diffusers models and schedulers and the standard epsilon-prediction loss of DDPM (Ho et al. 2020):
``E || eps - eps_theta(sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, t) ||^2`` with t uniform, or, as an option,
the v-prediction loss (Salimans & Ho 2022, ``v = sqrt(abar) eps - sqrt(1 - abar) x0``; diffusers'
``prediction_type="v_prediction"``), which sampling and DDIM inversion follow from the saved scheduler config.
Why the option: an epsilon model's x0 estimate at high noise is ``(x_t - sqrt(1 - abar) eps_hat) /
sqrt(abar)``, so the small error of eps_hat's image mean (1/1024 of the loss at 32 px) is multiplied by ~60 at
t = 900; each sample's overall colour is fixed at those steps and comes out as a random cast. The report's
``x0_error_by_t`` measures this. What makes small
models learn faster here, without changing the loss: a higher peak learning rate (2e-4 .. 1e-3) reached by
linear warm-up, gradient clipping, an EMA of the weights (with EMA warm-up so early checkpoints are usable)
and horizontal flips; for LDM, diffusion on 8x8x4 latents of a small KL autoencoder (Rombach et al. 2022),
latents scaled to unit variance.

The "ADM" model is sampled with DDIM using exactly the scheduler pair that DDIM reconstruction builds
(`pipeline.models.dm.schedulers.build_ddim_schedulers`), so its fakes come from the process that later inverts
them. Pixel models clip the predicted x0 to [-1, 1] at every step, as guided-diffusion / IDDPM sample with
``clip_denoised=True`` (DDIM and ancestral DDPM: ``clip_sample``; DPM-Solver: ``thresholding`` with
``sample_max_value=1``, which clips x0 to [-1, 1]); latent models never clip. Unclipped DDIM diverged on an
undertrained model in the pilot (``DEMO-SCIENCE.md``) and on the medium rehearsal. The final image's
pre-clamp range is reported.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import (
    AutoencoderKL,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    PNDMScheduler,
    UNet2DModel,
)
from diffusers.training_utils import compute_snr

from pipeline.demo.dm_sampling import run_sampler, sample_folder
from pipeline.demo.faces import jpeg_roundtrip
from pipeline.demo.resume import TrainingCheckpoint, recipe_key, step_bar
from pipeline.demo.statistics import relative_gaps, summary_statistics
from pipeline.device import resolve_device, seed_everything
from pipeline.errors import ConfigError, InputDataError
from pipeline.imaging import from_model, to_model
from pipeline.models.dm.autoencoder import AUTOENCODER_PRESETS, build_autoencoder
from pipeline.models.dm.patch_discriminator import PatchDiscriminator
from pipeline.models.dm.schedulers import build_ddim_schedulers
from pipeline.models.dm.unet import UNET_PRESETS, build_unet, count_params
from pipeline.plots import save_image_grid
from pipeline.progress import progress

if TYPE_CHECKING:
    from diffusers.schedulers.scheduling_utils import SchedulerMixin

__all__ = ["DmTrainConfig", "train_dm"]

logger = logging.getLogger(__name__)

Kind = Literal["ddpm", "ldm"]
Sampler = Literal["ddim", "ddpm", "dpmsolver", "pndm"]
_SAMPLERS = ("ddim", "ddpm", "dpmsolver", "pndm")
_SCHEDULES = ("linear", "squaredcos_cap_v2")
_PREDICTION_TYPES = ("epsilon", "v_prediction")


@dataclass(frozen=True, kw_only=True)
class DmTrainConfig:
    """Everything that defines a trained demo diffusion model (recorded in ``train_report.json``).

    Attributes:
        kind (`"ddpm" | "ldm"`): pixel-space DDPM or latent diffusion with its own autoencoder.
        prediction_type (`"epsilon" | "v_prediction"`): what the UNet regresses (see the module docstring);
            saved in the scheduler config, so sampling and DDIM inversion of the model use it too.
        unet (`str`): a `pipeline.models.dm.unet.UNET_PRESETS` key.
        resolution (`int`): image side in pixels.
        beta_schedule (`"linear" | "squaredcos_cap_v2"`): DDPM linear (1e-4..0.02) or IDDPM cosine.
        num_train_timesteps (`int`): T of the forward process.
        steps, batch_size, lr, warmup (`int/float`): optimisation (AdamW, linear warm-up then constant).
        weight_decay, grad_clip (`float`): AdamW weight decay; max gradient norm.
        ema_decay (`float`): EMA decay of the saved weights (with warm-up ``(1 + n) / (10 + n)``).
        hflip (`bool`): random horizontal flips of training images.
        sampler (`"ddim" | "ddpm" | "dpmsolver" | "pndm"`): the scheduler saved with the model.
        sample_steps (`int`): sampling steps used by `sample_dm` and for ``samples.png``.
        eps_scale (`float`): epsilon scaling at sampling time (`pipeline.demo.dm_sampling`; Ning et al. 2024):
            the noise estimate is divided by this lambda at every step. 1 = the plain sampler. Sampling only:
            it never changes the weights, reconstruction never uses it.
        clip_sample_range (`float`): pixel samplers clip the predicted x0 to ``[-r, r]`` (DDIM, DDPM;
            DPM-Solver's ``sample_max_value``). 1 is guided-diffusion's ``clip_denoised``; a DDIM model used
            for reconstruction should match ``recon.ddim.clip_sample_range`` (see `pipeline.inversion.ddim`).
        ddpm_variance (`"fixed_small" | "fixed_large"`): the ancestral DDPM sampler's variance, beta-tilde or
            beta (Ho et al. 2020 found both work; IDDPM learns a value between them). With few sampling steps
            "fixed_large" keeps more fine detail: on the medium run's iddpm (100 steps) it left 22% less
            high-frequency energy than real faces where "fixed_small" left 39% less.
        autoencoder, ae_steps, ae_lr, ae_batch_size, kl_weight: LDM autoencoder preset and training.
        ae_adv_weight (`float`): weight of the autoencoder's patch-adversarial loss (LDM's ``disc_weight``,
            scaled adaptively as in LDM/taming); 0 trains with L1 + L2 + KL only.
        ae_adv_start (`int`): autoencoder steps of reconstruction-only warm-up before the discriminator
            joins (LDM's ``disc_start``).
        ae_adv_colour_anchor (`bool`): the discriminator sees each reconstruction with its per-channel mean
            replaced by its input's (`_anchor_colour`), so the adversarial gradient shapes texture but can
            never move an image's overall colour; L1 + L2 alone set it. Without it the medium run's second
            `ldm` autoencoder reconstructed held-out reals 23% redder (cast rg; the first training 8%).
        ae_colour_calibration (`bool`): after the autoencoder trains, shift its decoder's output bias by the
            per-channel mean reconstruction error over the training faces (`_calibrate_decoder_colour`): the
            exact minimiser of the L2 reconstruction loss over those three parameters, in closed form. It
            removes a dataset-wide colour cast the decoder kept despite the anchor; the encoder, hence the
            latents and the latent UNet's training, is unchanged.
        log_every (`int`): steps between dvclive points.
        snr_gamma (`float`): Min-SNR-gamma loss weighting (Hang et al. 2023): each sample's epsilon MSE is
            weighted by ``min(SNR(t), gamma) / SNR(t)``, so the many easy low-noise steps stop dominating the
            gradient; the paper reports ~3x faster convergence with gamma 5. 0 = the unweighted DDPM loss.
        stats_every (`int`): every this many steps, ``stats_samples`` samples of the EMA model (its saved
            sampler) go through the demo's JPEG codec (``jpeg_quality``) and their gate statistics are logged
            (dvclive ``stats/*``, report ``stats_history``); 0 = never. It costs ``stats_samples x
            sample_steps`` UNet evaluations each time, so the default is off and the full profile turns it on.
    """

    kind: Kind = "ddpm"
    prediction_type: str = "epsilon"
    unet: str = "adm-s"
    resolution: int = 32
    beta_schedule: str = "linear"
    num_train_timesteps: int = 1000
    steps: int = 2000
    batch_size: int = 32
    lr: float = 5e-4
    warmup: int = 200
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    hflip: bool = True
    sampler: str = "ddim"
    sample_steps: int = 50
    eps_scale: float = 1.0
    clip_sample_range: float = 1.0
    ddpm_variance: str = "fixed_small"
    autoencoder: str = "kl-f4-s"
    ae_steps: int = 1500
    ae_lr: float = 1e-3
    ae_batch_size: int = 64
    kl_weight: float = 1e-6
    ae_adv_weight: float = 0.5
    ae_adv_start: int = 500
    ae_adv_colour_anchor: bool = True
    ae_colour_calibration: bool = False
    snr_gamma: float = 0.0
    log_every: int = 25
    stats_every: int = 0
    stats_samples: int = 128
    jpeg_quality: int = 75

    def __post_init__(self) -> None:
        choices = {
            "kind": (self.kind, ("ddpm", "ldm")),
            "prediction_type": (self.prediction_type, _PREDICTION_TYPES),
            "beta_schedule": (self.beta_schedule, _SCHEDULES),
            "sampler": (self.sampler, _SAMPLERS),
            "ddpm_variance": (self.ddpm_variance, ("fixed_small", "fixed_large")),
            "unet": (self.unet, tuple(UNET_PRESETS)),
            "autoencoder": (self.autoencoder, tuple(AUTOENCODER_PRESETS)),
        }
        for key, (value, allowed) in choices.items():
            if value not in allowed:
                raise ConfigError(f"`{key}` must be one of {allowed}. Got {value!r} instead.")
        positive = {
            "resolution": self.resolution,
            "num_train_timesteps": self.num_train_timesteps,
            "steps": self.steps,
            "batch_size": self.batch_size,
            "sample_steps": self.sample_steps,
            "ae_batch_size": self.ae_batch_size,
            "log_every": self.log_every,
            "stats_samples": self.stats_samples,
            "jpeg_quality": self.jpeg_quality,
        }
        for key, value in positive.items():
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"`{key}` must be a positive int. Got {value!r} instead.")
        if self.kind == "ldm" and (not isinstance(self.ae_steps, int) or self.ae_steps < 1):
            raise ConfigError(f"`ae_steps` must be a positive int for kind 'ldm'. Got {self.ae_steps!r}.")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"`ema_decay` must be in [0, 1). Got {self.ema_decay!r} instead.")
        if not isinstance(self.stats_every, int) or self.stats_every < 0:
            raise ConfigError(f"`stats_every` must be an int >= 0 (0 = off). Got {self.stats_every!r}.")
        if not 0.5 <= self.eps_scale <= 2.0:
            raise ConfigError(f"`eps_scale` must be in [0.5, 2] (1 = off). Got {self.eps_scale!r} instead.")
        if not self.clip_sample_range > 0:
            raise ConfigError(f"`clip_sample_range` must be > 0. Got {self.clip_sample_range!r} instead.")
        if not self.snr_gamma >= 0:
            raise ConfigError(f"`snr_gamma` must be >= 0 (0 = off). Got {self.snr_gamma!r} instead.")
        for key in ("hflip", "ae_adv_colour_anchor", "ae_colour_calibration"):
            if not isinstance(getattr(self, key), bool):
                raise ConfigError(f"`{key}` must be true or false. Got {getattr(self, key)!r} instead.")
        if self.ae_adv_weight < 0 or self.ae_adv_start < 0:
            raise ConfigError(
                f"`ae_adv_weight` and `ae_adv_start` must be >= 0. Got {self.ae_adv_weight},"
                f" {self.ae_adv_start}."
            )
        if self.lr <= 0 or self.ae_lr <= 0 or self.warmup < 0:
            raise ConfigError(
                f"`lr`/`ae_lr` must be > 0 and `warmup` >= 0. Got {self.lr}, {self.ae_lr}, {self.warmup}."
            )
        if self.sample_steps > self.num_train_timesteps:
            raise ConfigError(
                f"`sample_steps` ({self.sample_steps}) cannot exceed `num_train_timesteps` "
                f"({self.num_train_timesteps})."
            )


# -- schedulers -------------------------------------------------------------------------------------
def _betas(config: DmTrainConfig) -> dict[str, Any]:
    return {
        "num_train_timesteps": config.num_train_timesteps,
        "beta_schedule": config.beta_schedule,
        "beta_start": 0.0001,
        "beta_end": 0.02,
        "prediction_type": config.prediction_type,
    }


def _sampler_scheduler(config: DmTrainConfig) -> SchedulerMixin:
    """The scheduler saved beside the UNet; it defines how `sample_dm` samples."""
    betas = _betas(config)
    pixel = config.kind == "ddpm"
    clip = config.clip_sample_range
    if config.sampler == "ddim":
        return build_ddim_schedulers(betas, clip_sample=pixel, clip_sample_range=clip)[0]
    if config.sampler == "ddpm":
        # Ancestral DDPM clips the predicted x0 for pixel models (as DDPM/IDDPM do); never for latents.
        return DDPMScheduler(
            **betas, clip_sample=pixel, clip_sample_range=clip, variance_type=config.ddpm_variance
        )
    if config.sampler == "dpmsolver":
        # thresholding with sample_max_value r clamps the dynamic threshold to r: x0 is clipped to [-r, r].
        return DPMSolverMultistepScheduler(
            **betas, algorithm_type="dpmsolver++", solver_order=2, thresholding=pixel, sample_max_value=clip
        )
    return PNDMScheduler(**betas, skip_prk_steps=True)


# -- training ----------------------------------------------------------------------------------------
# Config keys that change how the trained model samples or what is logged, never the weights: a run differing
# from a saved training state only in these resumes it (a finished one re-samples without retraining), so
# `dvc exp run -S 'demo.generators.adm.train.sample_steps=...'` costs a sampling, not hours of training.
_SAMPLING_ONLY = frozenset(
    {"sampler", "sample_steps", "eps_scale", "clip_sample_range", "ddpm_variance", "log_every",
     "stats_every", "stats_samples", "jpeg_quality"}
)  # fmt: skip


def _training_code() -> list[Any]:
    """Modules whose source shapes a run: a saved training state is resumed only under the same code."""
    import sys

    from pipeline.demo import statistics
    from pipeline.models.dm import autoencoder, patch_discriminator, unet

    return [sys.modules[__name__], statistics, autoencoder, patch_discriminator, unet]


class _Ema:
    """Exponential moving average of a module's parameters, with warm-up ``min(decay, (1+n)/(10+n))``."""

    def __init__(self, module: torch.nn.Module, decay: float) -> None:
        self.module = copy.deepcopy(module).eval().requires_grad_(False)
        self.decay = decay
        self.updates = 0

    @torch.no_grad()
    def update(self, module: torch.nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for e, p in zip(self.module.parameters(), module.parameters(), strict=True):
            e.lerp_(p.detach(), 1.0 - d)
        for e, b in zip(self.module.buffers(), module.buffers(), strict=True):
            e.copy_(b)


def _target(sched: DDPMScheduler, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """What the UNet regresses under the scheduler's ``prediction_type``: the noise, or v."""
    if sched.config.prediction_type == "v_prediction":
        return sched.get_velocity(x0, noise, t)
    return noise


def _diffusion_loss(
    pred: torch.Tensor,
    x0: torch.Tensor,
    noise: torch.Tensor,
    t: torch.Tensor,
    noise_sched: DDPMScheduler,
    snr_gamma: float,
) -> torch.Tensor:
    """MSE to the scheduler's target (eps, or v for v-prediction), optionally Min-SNR-gamma weighted per
    sample as diffusers' training scripts do (``min(SNR, gamma) / SNR`` for eps, ``/ (SNR + 1)`` for v)."""
    v = noise_sched.config.prediction_type == "v_prediction"
    target = _target(noise_sched, x0, noise, t)
    if not snr_gamma:
        return F.mse_loss(pred, target)
    snr = compute_snr(noise_sched, t)
    weight = torch.clamp(snr, max=snr_gamma) / (snr + 1 if v else snr)
    per_sample = F.mse_loss(pred, target, reduction="none").mean(dim=(1, 2, 3))
    return (per_sample * weight).mean()


def _warmup_lambda(warmup: int) -> Any:
    return lambda step: min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0


class _Live:
    """dvclive when a folder is given, nothing otherwise (tests and quick runs)."""

    def __init__(self, live_dir: str | Path | None, *, resume: bool = False) -> None:
        self.live = None
        if live_dir is not None:
            from dvclive import Live

            self.live = Live(str(live_dir), save_dvc_exp=False, dvcyaml=None, resume=resume)

    def log(self, step: int, **metrics: float) -> None:
        if self.live is None:
            return
        self.live.step = step
        for k, v in metrics.items():
            self.live.log_metric(k, v)
        self.live.next_step()

    def end(self) -> None:
        if self.live is not None:
            self.live.end()


class _Batches:
    """Endless random index batches, reshuffled each epoch; its position is part of a resumable state."""

    def __init__(self, n: int, batch_size: int, gen: torch.Generator) -> None:
        self.n, self.batch_size, self.gen = n, batch_size, gen
        self.starts = list(range(0, n - batch_size + 1 if n >= batch_size else 1, batch_size))
        self.perm: torch.Tensor | None = None
        self.pos = 0

    def __next__(self) -> torch.Tensor:
        if self.perm is None or self.pos == len(self.starts):
            self.perm, self.pos = torch.randperm(self.n, generator=self.gen), 0
        s = self.starts[self.pos]
        self.pos += 1
        return self.perm[s : s + self.batch_size]

    def state_dict(self) -> dict[str, Any]:
        return {"perm": self.perm, "pos": self.pos}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.perm, self.pos = state["perm"], int(state["pos"])


def _flip(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    mask = torch.rand(x.shape[0], generator=gen) < 0.5
    return torch.where(mask[:, None, None, None], x.flip(-1), x)


def _anchor_colour(rec: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``rec`` with each image's channel means swapped for ``x``'s: what the discriminator judges.

    The swap is exact and differentiable in ``rec``'s texture only (the per-image channel mean of the result
    is ``x``'s, a constant), so no adversarial gradient reaches an image's overall colour.
    """
    return rec - rec.mean(dim=(2, 3), keepdim=True) + x.mean(dim=(2, 3), keepdim=True)


@torch.no_grad()
def _calibrate_decoder_colour(vae: AutoencoderKL, data: torch.Tensor, device: torch.device) -> list[float]:
    """Subtract the mean per-channel error of the posterior-mean reconstructions of ``data`` from the
    decoder's output bias (``conv_out`` is the decoder's last, linear, layer): afterwards that error is zero
    on ``data``. Returns the offset removed, in model units ([-1, 1] scale)."""
    total, count = torch.zeros(3, dtype=torch.float64), 0
    for s in range(0, len(data), 256):
        x = data[s : s + 256].to(device)
        rec = vae.decode(vae.encode(x).latent_dist.mean).sample
        total += (rec - x).double().sum(dim=(0, 2, 3)).cpu()
        count += x.shape[0] * x.shape[2] * x.shape[3]
    offset = (total / count).float()
    vae.decoder.conv_out.bias.sub_(offset.to(device))
    return offset.tolist()


def _adaptive_weight(rec_loss: torch.Tensor, adv_loss: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
    """LDM/taming's balance: ``||grad_last rec|| / (||grad_last adv|| + 1e-4)``, clamped to [0, 1e4]."""
    (g_rec,) = torch.autograd.grad(rec_loss, last, retain_graph=True)
    (g_adv,) = torch.autograd.grad(adv_loss, last, retain_graph=True)
    return (g_rec.norm() / (g_adv.norm() + 1e-4)).clamp(0.0, 1e4).detach()


def _train_autoencoder(
    config: DmTrainConfig, data: torch.Tensor, device: torch.device, gen: torch.Generator, live: _Live
) -> tuple[AutoencoderKL, dict[str, float]]:
    """KL autoencoder as LDM trains it (Rombach et al. 2022, Sec. 3; taming's ``LPIPSWithDiscriminator``):
    L1 + L2 reconstruction + ``kl_weight`` * KL(q(z|x) || N(0, I)), and after ``ae_adv_start`` steps a
    patch-adversarial hinge loss weighted adaptively by ``ae_adv_weight``. LPIPS is left out (its weights
    cannot be downloaded here); the adversarial term is what keeps the decoder's textures sharp. With
    ``ae_adv_colour_anchor`` the discriminator judges colour-anchored reconstructions (`_anchor_colour`)."""
    vae = build_autoencoder(config.autoencoder, config.resolution).to(device).train()
    opt = torch.optim.AdamW(vae.parameters(), lr=config.ae_lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _warmup_lambda(min(config.warmup, config.ae_steps // 4)))
    adversarial = config.ae_adv_weight > 0 and config.ae_adv_start < config.ae_steps
    disc = PatchDiscriminator().to(device).train() if adversarial else None
    # LDM's discriminator optimiser: Adam, the autoencoder's learning rate, betas (0.5, 0.9).
    opt_d = torch.optim.Adam(disc.parameters(), lr=config.ae_lr, betas=(0.5, 0.9)) if disc else None
    last_layer = vae.decoder.conv_out.weight
    it = _Batches(len(data), config.ae_batch_size, gen)
    bar = progress(range(config.ae_steps), desc="autoencoder", unit="step")
    t0 = time.perf_counter()
    recent: list[float] = []
    adv_steps, adv_weight = 0, 0.0
    for step in bar:
        x = data[next(it)].to(device)
        if config.hflip:
            x = _flip(x, gen)
        post = vae.encode(x).latent_dist
        rec = vae.decode(post.sample()).sample
        rec_loss = F.l1_loss(rec, x) + F.mse_loss(rec, x)
        kl = post.kl().mean() / x[0].numel()
        loss = rec_loss + config.kl_weight * kl
        adv_on = disc is not None and step >= config.ae_adv_start
        metrics = {"ae_rec_loss": rec_loss.item(), "ae_kl": kl.item()}
        if adv_on:
            judged = _anchor_colour(rec, x) if config.ae_adv_colour_anchor else rec
            disc.requires_grad_(False)
            g_adv = -disc(judged).mean()
            weight = _adaptive_weight(rec_loss, g_adv, last_layer) * config.ae_adv_weight
            loss = loss + weight * g_adv
            adv_steps, adv_weight = adv_steps + 1, float(weight)
            metrics.update(ae_g_adv=g_adv.item(), ae_adv_weight=adv_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), config.grad_clip)
        opt.step()
        sched.step()
        if adv_on:
            # Hinge loss of the patch discriminator on reals vs (detached) reconstructions.
            disc.requires_grad_(True)
            d_loss = 0.5 * (F.relu(1.0 - disc(x)).mean() + F.relu(1.0 + disc(judged.detach())).mean())
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
            metrics["ae_d_loss"] = d_loss.item()
        recent = [*recent[-99:], rec_loss.item()]
        if step % config.log_every == 0 or step == config.ae_steps - 1:
            ips = (step + 1) * x.shape[0] / (time.perf_counter() - t0)
            bar.set_postfix(rec=f"{np.mean(recent):.4f}", img_s=f"{ips:.0f}")
            live.log(step, **metrics)
    vae.eval().requires_grad_(False)
    return vae, {
        "ae_rec_loss": float(np.mean(recent)),
        "ae_seconds": time.perf_counter() - t0,
        "ae_adversarial_steps": adv_steps,
        "ae_last_adaptive_weight": adv_weight,
    }


@torch.no_grad()
def _encode_all(
    vae: AutoencoderKL, data: torch.Tensor, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior mean and std of every image (training draws z = mean + std * noise per step)."""
    means, stds = [], []
    for s in range(0, len(data), 256):
        dist = vae.encode(data[s : s + 256].to(device)).latent_dist
        means.append(dist.mean.cpu())
        stds.append(dist.std.cpu())
    return torch.cat(means), torch.cat(stds)


@torch.no_grad()
def _reconstruction_gaps(
    vae: AutoencoderKL, images: np.ndarray, jpeg_quality: int, device: torch.device
) -> dict[str, float]:
    """Signed relative gaps (`relative_gaps`, signed as fake - real) of the autoencoder's reconstructions
    (posterior mean, then the demo's JPEG codec) against the same faces: an LDM cannot sample sharper or
    truer colours than its decoder draws, so a cast here is a cast in every fake (the medium run's +23%)."""
    rec = from_model(vae.decode(vae.encode(to_model(images, device)).latent_dist.mean).sample)
    fake, real = summary_statistics(jpeg_roundtrip(rec, jpeg_quality)), summary_statistics(images)
    return {k: float(np.sign(fake[k] - real[k]) * g) for k, g in relative_gaps(fake, real).items()}


def _colour_dc(x: torch.Tensor) -> torch.Tensor:
    """Each image's overall colour on a [0, 1] scale: channel means minus their grey average, ``(N, 3)``."""
    dc = x.mean(dim=(2, 3)) / 2.0
    return dc - dc.mean(dim=1, keepdim=True)


@torch.no_grad()
def _x0_error_by_t(
    unet: UNet2DModel, sched: DDPMScheduler, x0: torch.Tensor, gen: torch.Generator
) -> dict[str, dict[str, float]]:
    """How well the model knows x0 at a few noise levels, and above all each image's overall colour.

    ``pred_mse``: the training target's MSE (eps or v). ``x0_mse``: MSE of the implied x0 estimate; for an
    epsilon model ``(x_t - sqrt(1 - abar) eps_hat) / sqrt(abar)`` multiplies eps errors by 1/sqrt(abar) (~59
    at t = 900 with linear betas), which is how an undertrained model's DDIM samples diverge.
    ``colour_rms``: RMS error of that estimate's overall colour (`_colour_dc`), beside
    ``colour_baseline_rms``, the error of guessing the probe images' average colour: a model whose colour
    error exceeds the baseline paints a random cast at that noise level, which the sampler then keeps.
    Latent models: MSEs on latents, no colour.
    """
    out = {}
    T = sched.config.num_train_timesteps
    v_pred = sched.config.prediction_type == "v_prediction"
    rgb = x0.shape[1] == 3
    truth = _colour_dc(x0)
    baseline = float((truth - truth.mean(dim=0, keepdim=True)).pow(2).mean().sqrt())
    for frac in (0.1, 0.5, 0.7, 0.9):
        t = int(frac * T)
        noise = torch.randn(x0.shape, generator=gen).to(x0.device)
        tt = torch.full((x0.shape[0],), t, device=x0.device)
        x_t = sched.add_noise(x0, noise, tt)
        pred = unet(x_t, tt).sample
        abar = sched.alphas_cumprod[t]
        if v_pred:
            x0_hat = abar.sqrt() * x_t - (1 - abar).sqrt() * pred
        else:
            x0_hat = (x_t - (1 - abar).sqrt() * pred) / abar.sqrt()
        out[str(t)] = {
            "pred_mse": float(F.mse_loss(pred, _target(sched, x0, noise, tt))),
            "x0_mse": float(F.mse_loss(x0_hat, x0)),
        }
        if rgb:
            out[str(t)]["colour_rms"] = float((_colour_dc(x0_hat) - truth).pow(2).mean().sqrt())
            out[str(t)]["colour_baseline_rms"] = baseline
    return out


def train_dm(
    config: DmTrainConfig,
    images: np.ndarray,
    out_dir: str | Path,
    *,
    seed: int,
    device: str = "auto",
    live_dir: str | Path | None = None,
    work_dir: str | Path | None = None,
    checkpoint_seconds: float = 300.0,
) -> dict[str, Any]:
    """Train a diffusion model on uint8 `(N, 3, H, W)` faces and save it as a diffusers folder.

    Writes ``<out>/unet/``, ``<out>/scheduler/`` (the sampler), ``<out>/vae/`` (ldm only),
    ``<out>/samples.png`` (8x8 grid, `sample_dm` with ``seed``) and ``<out>/train_report.json``.
    With ``work_dir``, the training state is saved there every ``checkpoint_seconds`` and after the last
    step, and a run of the same recipe resumes from it (`pipeline.demo.resume`): an interrupted stage
    continues, a finished one asked for more ``steps`` trains only the extra steps.

    Returns:
        `dict`: the report (config, parameter counts, loss, seconds per step, sample vs real statistics).
    """
    arr = np.asarray(images)
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[1] != 3:
        raise InputDataError(f"training images must be uint8 (N, 3, H, W). Got {arr.dtype} {arr.shape}.")
    if arr.shape[2:] != (config.resolution, config.resolution):
        raise InputDataError(
            f"training images are {arr.shape[2:]}, config `resolution` is {config.resolution}."
        )
    if len(arr) < 2:
        raise InputDataError(f"need at least 2 training images, got {len(arr)}.")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dev = resolve_device(device)
    gen = seed_everything(seed)
    data = to_model(arr)
    key = recipe_key(asdict(config), seed=seed, images=arr, code=_training_code(), ignore=_SAMPLING_ONLY)
    ckpt = TrainingCheckpoint(work_dir, key, every_seconds=checkpoint_seconds)
    state = ckpt.load(max_step=config.steps)
    if state is not None:
        ckpt.restore_live(live_dir)
    live = _Live(live_dir, resume=state is not None)
    report: dict[str, Any] = {
        "config": asdict(config),
        "seed": seed,
        "n_images": len(arr),
        "device": str(dev),
        "resumed_from_step": int(state["step"]) if state is not None else 0,
    }

    vae: AutoencoderKL | None = None
    if config.kind == "ldm":
        if state is not None:  # the autoencoder phase finished before the state was saved
            vae = build_autoencoder(config.autoencoder, config.resolution).to(dev)
            vae.load_state_dict(state["vae"])
            vae.eval().requires_grad_(False)
            ae_info = state["ae_info"]
        else:
            vae, ae_info = _train_autoencoder(config, data, dev, gen, live)
            if config.ae_colour_calibration:
                ae_info["ae_colour_offset"] = _calibrate_decoder_colour(vae, data, dev)
                logger.info("decoder colour calibrated <offset=%s>", ae_info["ae_colour_offset"])
        mean, std = _encode_all(vae, data, dev)
        fmean, fstd = _encode_all(vae, data.flip(-1), dev) if config.hflip else (mean, std)
        scaling = float(1.0 / torch.cat([mean, fmean]).std())
        vae.register_to_config(scaling_factor=scaling)
        ae_gaps = _reconstruction_gaps(vae, arr[: config.stats_samples], config.jpeg_quality, dev)
        logger.info("autoencoder reconstructions of training faces, gaps to them %s", ae_gaps)
        report.update(
            ae_info,
            scaling_factor=scaling,
            autoencoder_params=count_params(vae),
            ae_reconstruction_gaps=ae_gaps,
        )
        side, chans = mean.shape[-1], mean.shape[1]
    else:
        side, chans = config.resolution, 3

    unet = build_unet(config.unet, side, in_channels=chans, out_channels=chans).to(dev).train()
    ema = _Ema(unet, config.ema_decay)
    noise_sched = DDPMScheduler(**_betas(config))
    opt = torch.optim.AdamW(unet.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    lr_sched = torch.optim.lr_scheduler.LambdaLR(opt, _warmup_lambda(config.warmup))
    it = _Batches(len(data), config.batch_size, gen)
    x0_probe = (mean[:64] * scaling) if vae is not None else data[:64]
    recent: list[float] = []
    stats_history: list[dict[str, float]] = []
    start, earlier_seconds = 0, 0.0
    if state is not None:
        unet.load_state_dict(state["unet"])
        ema.module.load_state_dict(state["ema"])
        ema.updates = int(state["ema_updates"])
        opt.load_state_dict(state["opt"])
        lr_sched.load_state_dict(state["lr_sched"])
        it.load_state_dict(state["batches"])
        gen.set_state(state["gen"])
        recent, stats_history = list(state["recent"]), list(state["stats_history"])
        start, earlier_seconds = int(state["step"]), float(state["seconds"])

    def training_state(done: int) -> dict[str, Any]:
        return {
            "step": done,
            "unet": unet.state_dict(),
            "ema": ema.module.state_dict(),
            "ema_updates": ema.updates,
            "opt": opt.state_dict(),
            "lr_sched": lr_sched.state_dict(),
            "batches": it.state_dict(),
            "gen": gen.get_state(),
            "recent": recent,
            "stats_history": stats_history,
            "seconds": earlier_seconds + time.perf_counter() - t0,
            **({"vae": vae.state_dict(), "ae_info": ae_info} if vae is not None else {}),
        }

    bar = step_bar(start, config.steps, f"train {config.kind}/{config.unet}")
    real_stats = summary_statistics(arr[:2048])
    t0 = time.perf_counter()
    for step in bar:
        idx = next(it)
        if vae is not None:
            flip = (
                torch.rand(len(idx), generator=gen) < 0.5
                if config.hflip
                else torch.zeros(len(idx), dtype=torch.bool)
            )
            m = torch.where(flip[:, None, None, None], fmean[idx], mean[idx])
            s = torch.where(flip[:, None, None, None], fstd[idx], std[idx])
            x0 = (m + s * torch.randn(m.shape, generator=gen)) * scaling
        else:
            x0 = _flip(data[idx], gen) if config.hflip else data[idx]
        x0 = x0.to(dev)
        # DDPM loss (Ho et al. 2020, Alg. 1): t ~ U{0..T-1}, eps ~ N(0, I), regress eps (or v) from x_t.
        noise = torch.randn(x0.shape, generator=gen).to(dev)
        t = torch.randint(0, config.num_train_timesteps, (x0.shape[0],), generator=gen).to(dev)
        x_t = noise_sched.add_noise(x0, noise, t)
        loss = _diffusion_loss(unet(x_t, t).sample, x0, noise, t, noise_sched, config.snr_gamma)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), config.grad_clip)
        opt.step()
        lr_sched.step()
        ema.update(unet)
        recent = [*recent[-99:], loss.item()]
        if config.stats_every and (step + 1) % config.stats_every == 0:
            stats = _sample_statistics(ema.module, vae, config, seed=seed)
            stats_history.append({"step": step + 1, **stats})
            live.log(
                step,
                **{f"stats/{k}": v for k, v in stats.items()},
                **{f"stats/{k}_gap": v for k, v in relative_gaps(stats, real_stats).items()},
            )
            logger.info("sample statistics <step=%d> %s <real=%s>", step + 1, stats, real_stats)
        if step % config.log_every == 0 or step == config.steps - 1:
            ips = (step + 1 - start) * config.batch_size / (time.perf_counter() - t0)
            bar.set_postfix(loss=f"{np.mean(recent):.4f}", img_s=f"{ips:.0f}")
            live.log(step, loss=loss.item(), loss_avg100=float(np.mean(recent)), lr=lr_sched.get_last_lr()[0])
        if ckpt.due() or step == config.steps - 1:
            ckpt.save(training_state(step + 1), live_dir)
    seconds = earlier_seconds + time.perf_counter() - t0
    live.end()

    report["x0_error_by_t"] = _x0_error_by_t(ema.module, noise_sched, x0_probe.to(dev), gen)
    ema.module.save_pretrained(str(out / "unet"))
    _sampler_scheduler(config).save_pretrained(str(out / "scheduler"))
    if vae is not None:
        vae.save_pretrained(str(out / "vae"))
    report.update(
        unet_params=count_params(unet),
        train_seconds=round(seconds, 2),
        seconds_per_step=round(seconds / max(config.steps, 1), 4),
        final_loss_avg100=float(np.mean(recent)),
    )
    (out / "train_report.json").write_text(json.dumps(report, indent=2, sort_keys=True))
    samples, pre = sample_folder(
        out,
        64,
        seed=seed,
        batch_size=64,
        device=str(dev),
        steps=config.sample_steps,
        eps_scale=config.eps_scale,
    )
    save_image_grid(samples, out / "samples.png")
    report.update(
        sample_stats=summary_statistics(samples),
        real_stats=real_stats,
        stats_history=stats_history,
        sample_preclamp={"min": pre[0], "max": pre[1], "frac_outside_1": pre[2]},
    )
    (out / "train_report.json").write_text(json.dumps(report, indent=2, sort_keys=True))
    logger.info(
        "trained dm <kind=%s> <unet=%s> <s_per_step=%.3f>", config.kind, config.unet, seconds / config.steps
    )
    return report


def _sample_statistics(
    unet: UNet2DModel, vae: AutoencoderKL | None, config: DmTrainConfig, *, seed: int
) -> dict[str, float]:
    """Gate statistics of the EMA model's samples (the sampler it will be saved with) after the JPEG codec."""
    images, _ = run_sampler(
        unet,
        vae,
        _sampler_scheduler(config),
        config.stats_samples,
        seed=seed + 1,
        batch_size=min(config.stats_samples, 128),
        steps=config.sample_steps,
        where="training-time samples",
        eps_scale=config.eps_scale,
    )
    return summary_statistics(jpeg_roundtrip(images, config.jpeg_quality))
