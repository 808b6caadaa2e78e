"""Sample a trained demo diffusion model with the scheduler saved beside it, optionally with epsilon scaling.

Kept apart from `pipeline.demo.dm_training` because sampling never changes the weights: training states are
resumed only under the same training code (`pipeline.demo.resume`), so a change here must not restart hours
of training.

Epsilon scaling (Ning et al., "Elucidating the Exposure Bias in Diffusion Models", ICLR 2024; their "ADM-ES")
divides the network's noise estimate by a constant ``lambda`` slightly above 1 at every sampling step. A
trained network's noise estimate is, on average, slightly too large in norm at sampling time, because the
inputs it sees there (its own previous steps) are not the training marginals (exposure bias); removing
that excess keeps the fine detail the posterior-mean steps otherwise smooth away. It needs no retraining and
no change to the scheduler: ``lambda = 1`` is the plain sampler. The scaled estimate is converted back to the
model's prediction type, so every diffusers scheduler applies it unchanged. DDIM inversion and reconstruction
(`pipeline.inversion.ddim`) apply the same lambda by default (`saved_eps_scale`; ``recon.ddim.eps_scale:
model``): a model reconstructs with the sampler that drew its fakes, step count aside (``sample_steps`` vs
``recon.steps``, an argument of each run, not a scheduler setting).
"""

from __future__ import annotations

import inspect
import json
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from diffusers import (
    AutoencoderKL,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    PNDMScheduler,
    UNet2DModel,
)

from pipeline.device import resolve_device
from pipeline.errors import ConfigError, ModelLoadError, MultireconError
from pipeline.imaging import from_model
from pipeline.models.dm.schedulers import build_ddim_schedulers
from pipeline.progress import progress

if TYPE_CHECKING:
    from diffusers.schedulers.scheduling_utils import SchedulerMixin

__all__ = [
    "SamplingError",
    "load_sampler",
    "run_sampler",
    "sample_dm",
    "sample_folder",
    "saved_eps_scale",
    "scale_epsilon",
]

logger = logging.getLogger(__name__)


class SamplingError(MultireconError):
    """Sampling produced NaN/Inf: the model diverged or is broken."""


def scale_epsilon(
    output: torch.Tensor, x_t: torch.Tensor, alpha_bar: torch.Tensor, prediction_type: str, eps_scale: float
) -> torch.Tensor:
    """The model output whose implied noise estimate is ``eps_hat / eps_scale``, in the same prediction type.

    With ``x_t = sqrt(abar) x0 + sqrt(1 - abar) eps``: epsilon models predict eps; v models predict
    ``v = sqrt(abar) eps - sqrt(1 - abar) x0``, so ``eps = sqrt(abar) v + sqrt(1 - abar) x_t`` and back
    ``v = (eps - sqrt(1 - abar) x_t) / sqrt(abar)``; "sample" models predict x0.
    """
    if eps_scale == 1.0:
        return output
    a, s = alpha_bar.sqrt(), (1.0 - alpha_bar).sqrt()
    if prediction_type == "epsilon":
        return output / eps_scale
    if prediction_type == "v_prediction":
        eps = a * output + s * x_t
        return (eps / eps_scale - s * x_t) / a
    if prediction_type == "sample":
        eps = (x_t - a * output) / s
        return (x_t - s * eps / eps_scale) / a
    raise ConfigError(f"epsilon scaling does not know prediction type {prediction_type!r}.")


def load_sampler(folder: Path) -> SchedulerMixin:
    """The scheduler saved in ``folder/scheduler``; a DDIM one is rebuilt as reconstruction builds it."""
    path = folder / "scheduler" / "scheduler_config.json"
    if not path.is_file():
        raise ModelLoadError(
            f"diffusion model folder {str(folder)!r} has no scheduler/scheduler_config.json."
        )
    cfg = json.loads(path.read_text())
    cls = cfg.get("_class_name")
    if cls == "DDIMScheduler":
        # Exactly the forward scheduler DDIM reconstruction builds from this folder.
        return build_ddim_schedulers(
            cfg,
            clip_sample=bool(cfg.get("clip_sample", False)),
            clip_sample_range=float(cfg.get("clip_sample_range", 1.0)),
            source=f"scheduler config {str(path)!r}",
        )[0]
    classes = {c.__name__: c for c in (DDPMScheduler, DPMSolverMultistepScheduler, PNDMScheduler)}
    if cls not in classes:
        raise ModelLoadError(
            f"scheduler config {str(path)!r} names {cls!r}; expected one of {['DDIMScheduler', *classes]}."
        )
    return classes[cls].from_config(cfg)


def _saved_config(folder: Path) -> dict[str, Any] | None:
    """The training config in ``folder/train_report.json`` (written by `train_dm`), or None without one."""
    rep = folder / "train_report.json"
    if not rep.is_file():
        return None
    try:
        return dict(json.loads(rep.read_text())["config"])
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ModelLoadError(f"{str(rep)!r} has no readable `config`: {exc}.") from exc


def saved_eps_scale(folder: str | Path) -> float:
    """The epsilon-scaling lambda the model's own sampler uses: ``eps_scale`` of its training config; 1 (the
    plain sampler) for a folder without ``train_report.json`` (any checkpoint not trained here) or a report
    older than epsilon scaling."""
    cfg = _saved_config(Path(folder))
    return 1.0 if cfg is None else float(cfg.get("eps_scale", 1.0))


def _saved_sampling(folder: Path) -> dict[str, Any]:
    """``sample_steps`` and ``eps_scale`` of the model's training config."""
    cfg = _saved_config(folder)
    if cfg is None:
        raise ModelLoadError(
            f"{str(folder / 'train_report.json')!r} is missing; pass `steps` and `eps_scale` to sample_dm."
        )
    return {"steps": int(cfg["sample_steps"]), "eps_scale": saved_eps_scale(folder)}


def sample_dm(
    model_dir: str | Path,
    n: int,
    *,
    seed: int,
    batch_size: int = 64,
    device: str = "auto",
    steps: int | None = None,
    eta: float = 0.0,
    eps_scale: float | None = None,
) -> np.ndarray:
    """Draw ``n`` uint8 `(n, 3, H, W)` samples with the model folder's saved sampler.

    Args:
        model_dir (`str | Path`): a folder written by `train_dm` (``unet/``, ``scheduler/``, maybe ``vae/``).
        n (`int`): number of images.
        seed (`int`): seeds the initial noise (and ancestral noise); same seed, same images.
        batch_size (`int`, defaults to 64): images per UNet call.
        device (`str`, defaults to `"auto"`): torch device name.
        steps (`int`, *optional*): sampling steps; default ``sample_steps`` from ``train_report.json``.
        eta (`float`, defaults to 0): DDIM's stochasticity (0 = deterministic, as saved and as reconstruction
            inverts; 1 = ancestral). Other samplers refuse eta > 0.
        eps_scale (`float`, *optional*): epsilon scaling's lambda (module docstring); default ``eps_scale``
            from ``train_report.json`` (1 = none).
    """
    return sample_folder(
        Path(model_dir),
        n,
        seed=seed,
        batch_size=batch_size,
        device=device,
        steps=steps,
        eta=eta,
        eps_scale=eps_scale,
    )[0]


def sample_folder(
    folder: Path,
    n: int,
    *,
    seed: int,
    batch_size: int,
    device: str,
    steps: int | None,
    eta: float = 0.0,
    eps_scale: float | None = None,
) -> tuple[np.ndarray, tuple[float, float, float]]:
    """`sample_dm` plus the pre-clamp (min, max, share outside [-1, 1]) of the final images."""
    if not isinstance(n, int) or n < 1:
        raise ConfigError(f"`n` must be a positive int. Got {n!r} instead.")
    if not eta >= 0:
        raise ConfigError(f"`eta` must be >= 0. Got {eta!r} instead.")
    if not (folder / "unet").is_dir():
        raise ModelLoadError(f"diffusion model folder {str(folder)!r} has no unet/ subfolder.")
    if steps is None or eps_scale is None:
        saved = _saved_sampling(folder)
        steps = saved["steps"] if steps is None else steps
        eps_scale = saved["eps_scale"] if eps_scale is None else eps_scale
    dev = resolve_device(device)
    try:
        unet = UNet2DModel.from_pretrained(str(folder / "unet"), low_cpu_mem_usage=False).to(dev).eval()
        vae = (
            AutoencoderKL.from_pretrained(str(folder / "vae"), low_cpu_mem_usage=False).to(dev).eval()
            if (folder / "vae").is_dir()
            else None
        )
    except (OSError, ValueError, RuntimeError) as exc:
        raise ModelLoadError(f"diffusers could not load the model in {str(folder)!r}: {exc}") from exc
    images, (lo, hi, frac) = run_sampler(
        unet,
        vae,
        load_sampler(folder),
        n,
        seed=seed,
        batch_size=batch_size,
        steps=steps,
        where=str(folder),
        eta=eta,
        eps_scale=eps_scale,
        show_progress=True,
    )
    if frac > 0.05:
        logger.warning(
            "samples exceed [-1, 1] before clamping <model=%s> <frac=%.3f> <min=%.2f> <max=%.2f>",
            folder,
            frac,
            lo,
            hi,
        )
    return images, (lo, hi, frac)


def run_sampler(
    unet: UNet2DModel,
    vae: AutoencoderKL | None,
    scheduler: SchedulerMixin,
    n: int,
    *,
    seed: int,
    batch_size: int,
    steps: int,
    where: str,
    eta: float = 0.0,
    eps_scale: float = 1.0,
    show_progress: bool = False,
) -> tuple[np.ndarray, tuple[float, float, float]]:
    """``n`` uint8 samples and the pre-clamp (min, max, share outside [-1, 1]). Noise comes from a private
    generator seeded with ``seed``, never from the global RNG (training can sample mid-run unperturbed).
    ``eta`` > 0 makes a DDIM sampler stochastic (eta 1 = ancestral DDPM on the same timesteps);
    ``eps_scale`` > 1 is epsilon scaling (module docstring); ``show_progress`` shows UNet steps done
    (`pipeline.progress`: a line a minute in a log; 1,300 fakes at 200 DDIM steps take ~20 min here)."""
    if not eps_scale > 0:
        raise ConfigError(f"`eps_scale` must be > 0 (1 = off). Got {eps_scale!r} instead.")
    dev = next(unet.parameters()).device
    scheduler.set_timesteps(steps)
    step_params = inspect.signature(scheduler.step).parameters
    accepts_gen = "generator" in step_params
    if eta and "eta" not in step_params:
        raise ConfigError(f"`eta` needs a DDIM sampler; {where!r} samples with {type(scheduler).__name__}.")
    prediction_type = scheduler.config.prediction_type
    alphas_cumprod = scheduler.alphas_cumprod.to(dev)
    gen = torch.Generator().manual_seed(seed)
    c, side = unet.config.in_channels, unet.config.sample_size
    x_all = torch.randn((n, c, side, side), generator=gen) * scheduler.init_noise_sigma
    outs = []
    lo, hi, outside, total = math.inf, -math.inf, 0, 0
    n_steps = math.ceil(n / batch_size) * len(scheduler.timesteps)
    bar = progress(total=n_steps, desc=f"sample {where}", unit="step", disable=not show_progress)
    with torch.inference_mode():
        for s in range(0, n, batch_size):
            x = x_all[s : s + batch_size].to(dev)
            scheduler.set_timesteps(steps)  # multistep solvers keep a per-chain history: reset it
            for t in scheduler.timesteps:
                x_in = scheduler.scale_model_input(x, t)
                out = unet(x_in, t).sample
                out = scale_epsilon(out, x_in, alphas_cumprod[int(t)], prediction_type, eps_scale)
                kw: dict[str, Any] = {"generator": gen} if accepts_gen else {}
                if eta:
                    kw["eta"] = eta
                x = scheduler.step(out, t, x, **kw).prev_sample
                bar.update(1)
            if vae is not None:
                x = vae.decode(x / vae.config.scaling_factor).sample
            if not torch.isfinite(x).all():
                raise SamplingError(f"sampling from {where!r} produced NaN/Inf (steps={steps}).")
            lo, hi = min(lo, float(x.min())), max(hi, float(x.max()))
            outside += int((x.abs() > 1).sum())
            total += x.numel()
            outs.append(from_model(x))  # the only clamp: the final image
    bar.close()
    return np.concatenate(outs), (lo, hi, outside / max(1, total))
