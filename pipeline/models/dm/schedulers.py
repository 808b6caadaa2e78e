"""The DDIM scheduler pair that both samples the demo's pixel DMs and inverts / reconstructs images.

Its own module so that what shapes a DM's sampler is one small file: the generator and sampling stages
depend on it, not on the reconstruction code (`pipeline.inversion.ddim`), whose edits must not re-sample
fakes.

Scheduler pair: `DDIMScheduler` and `DDIMInverseScheduler` are built from ONE config with the same
overrides, so betas, timestep spacing, step count and ``steps_offset`` are identical and the inverse chain
visits exactly the noise levels the forward chain visits, in reverse:

* ``clip_sample`` (``recon.ddim.clip_sample``, default True) on both: the predicted x0 is clipped to
  [-1, 1] at every step, as guided-diffusion's ``clip_denoised=True`` that DIRE's ``compute_dire.py`` passes
  to both ``ddim_reverse_sample_loop`` and ``ddim_sample_loop``. Without it a small pixel DDPM's eps errors
  at high t are multiplied by 1/sqrt(alpha_bar) and its samples saturate (measured on the medium rehearsal:
  72% of pixels outside [-1, 1]). False gives the exactly-invertible textbook DDIM.
  ``clip_sample_range`` (``recon.ddim.clip_sample_range``, default 1 as DIRE) widens the clip to
  [-r, r]: on the medium run's ``adm`` (9k steps, DDIM 50) clipping at 1 left samples low in contrast and
  colour (std -25%, colourfulness -41% vs real faces), at 2 it did not (+1%, +9%; 5% of pixels then end
  outside [-1, 1] and are clamped), with no clip they diverged (68% outside). A model's saved DDIM sampler
  should use the same range as its reconstruction (``DmTrainConfig.clip_sample_range``).
* ``thresholding=False`` (a pixel-space sampling trick, not invertible; the inverse scheduler lacks it).
* ``set_alpha_to_one=True`` on both: inversion starts from alpha_bar = 1 (the clean image) and sampling
  ends there. With ``False`` both ends sit at ``alphas_cumprod[0]`` and the first inverse / last forward
  step is an identity that still costs a UNet call (diffusers 0.42.1, `scheduling_ddim_inverse.py`).
* ``timestep_spacing`` must be ``leading`` or ``trailing``: the inverse scheduler has no ``linspace``.
"""

from __future__ import annotations

import inspect
from typing import Any

from diffusers import DDIMInverseScheduler, DDIMScheduler

from pipeline.errors import ConfigError, ModelLoadError

__all__ = ["SCHEDULER_OVERRIDES", "build_ddim_schedulers"]

SCHEDULER_OVERRIDES: dict[str, Any] = {
    "thresholding": False,
    "set_alpha_to_one": True,
}
_PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")
_SPACINGS = ("leading", "trailing")
_BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")


def build_ddim_schedulers(
    config: dict[str, Any],
    *,
    clip_sample: bool = True,
    clip_sample_range: float = 1.0,
    source: str = "scheduler config",
) -> tuple[DDIMScheduler, DDIMInverseScheduler]:
    """The forward/inverse DDIM pair from one scheduler config with `SCHEDULER_OVERRIDES` applied to both.

    Args:
        config (`dict`): any diffusers scheduler config holding the training betas (DDPM, DDIM, PNDM, ...).
        clip_sample (`bool`, defaults to True): clip the predicted x0 to [-1, 1] in both chains (see the
            module docstring); the config's own ``clip_sample`` is ignored so the pair always agrees.
        clip_sample_range (`float`, defaults to 1.0): the clip bound r of ``[-r, r]`` in both chains.
        source (`str`): where the config came from, for error messages.
    """
    bad = {
        "prediction_type": (config.get("prediction_type", "epsilon"), _PREDICTION_TYPES),
        "timestep_spacing": (config.get("timestep_spacing", "leading"), _SPACINGS),
        "beta_schedule": (config.get("beta_schedule", "linear"), _BETA_SCHEDULES),
    }
    for key, (value, allowed) in bad.items():
        if value not in allowed and not (key == "beta_schedule" and config.get("trained_betas") is not None):
            raise ModelLoadError(f"{source}: `{key}` = {value!r} is not supported; allowed: {allowed}.")
    # Keep only the keys each class takes (a DDPM config's `variance_type` etc. would only log noise).
    if not clip_sample_range > 0:
        raise ConfigError(f"`clip_sample_range` must be > 0. Got {clip_sample_range!r} instead.")
    overrides = {
        **SCHEDULER_OVERRIDES,
        "clip_sample": bool(clip_sample),
        "clip_sample_range": float(clip_sample_range),
    }
    fwd_keys = set(inspect.signature(DDIMScheduler.__init__).parameters)
    forward = DDIMScheduler.from_config({k: v for k, v in config.items() if k in fwd_keys}, **overrides)
    inv_keys = set(inspect.signature(DDIMInverseScheduler.__init__).parameters)
    shared = {k: v for k, v in dict(forward.config).items() if k in inv_keys}
    inverse = DDIMInverseScheduler.from_config(
        shared, **{k: v for k, v in overrides.items() if k in inv_keys}
    )
    return forward, inverse
