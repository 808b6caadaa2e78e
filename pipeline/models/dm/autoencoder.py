"""Small diffusers ``AutoencoderKL`` for the LDM-like demo generator.

Latent diffusion (Rombach et al. 2022) trains a diffusion UNet on the latents of a KL-regularised
autoencoder. At 32 px a 4x downsampling autoencoder gives 8x8x4 latents (256 numbers per 3072 pixel values),
so the latent UNet runs on 8x8 maps and trains far faster per step than a pixel UNet; a 2x one keeps more fine
detail (16x16x4 latents) at a higher cost per step.
"""

from __future__ import annotations

from typing import Any

from diffusers import AutoencoderKL

from pipeline.errors import ConfigError

__all__ = ["AUTOENCODER_PRESETS", "autoencoder_config", "build_autoencoder"]

AUTOENCODER_PRESETS: dict[str, dict[str, Any]] = {
    # ~0.95M parameters; 4x downsampling (three encoder levels, two downsamples).
    "kl-f4-s": {"block_out_channels": (32, 64, 64), "layers_per_block": 1, "norm_num_groups": 16},
    # ~0.66M parameters; 2x downsampling (two levels) to 16x16x4 latents at 32 px. Tried on the medium run
    # (2026-12-03) against kl-f4-s: hf -51 vs -57% but std -22 vs -5% (README "Results"); not the default.
    "kl-f2-s": {"block_out_channels": (32, 64), "layers_per_block": 1, "norm_num_groups": 16},
    # For unit tests: a few ten thousand parameters.
    "kl-f4-tiny": {"block_out_channels": (8, 16, 16), "layers_per_block": 1, "norm_num_groups": 4},
}


def autoencoder_config(preset: str, resolution: int, *, latent_channels: int = 4) -> dict[str, Any]:
    """``AutoencoderKL`` keyword arguments for a named preset (downsampling ``2 ** (levels - 1)``).

    Args:
        preset (`str`): a key of `AUTOENCODER_PRESETS`.
        resolution (`int`): image side in pixels; must be divisible by the preset's downsampling factor.
        latent_channels (`int`, defaults to 4): channels of the latent map.
    """
    if preset not in AUTOENCODER_PRESETS:
        raise ConfigError(
            f"`autoencoder preset` must be one of {sorted(AUTOENCODER_PRESETS)}. Got {preset!r} instead."
        )
    p = AUTOENCODER_PRESETS[preset]
    n = len(p["block_out_channels"])
    factor = 2 ** (n - 1)
    if resolution % factor:
        raise ConfigError(
            f"`resolution` must be divisible by {factor} for autoencoder {preset!r}. Got {resolution}."
        )
    return {
        "in_channels": 3,
        "out_channels": 3,
        "down_block_types": ("DownEncoderBlock2D",) * n,
        "up_block_types": ("UpDecoderBlock2D",) * n,
        "block_out_channels": p["block_out_channels"],
        "layers_per_block": p["layers_per_block"],
        "norm_num_groups": p["norm_num_groups"],
        "latent_channels": latent_channels,
        "sample_size": resolution,
    }


def build_autoencoder(preset: str, resolution: int, **kwargs: Any) -> AutoencoderKL:
    """A fresh ``AutoencoderKL``; its ``scaling_factor`` is set after training from the latent std."""
    return AutoencoderKL(**autoencoder_config(preset, resolution, **kwargs))
