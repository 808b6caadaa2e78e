"""Small diffusers ``UNet2DModel`` configurations for the demo's diffusion models.

The paper reconstructs with ADM (guided-diffusion) at 256 px; on a 2-core CPU the demo trains its own
models at 32 px (64 px optional). Presets are named so that params, checkpoints and reports can refer to
them, and attention is placed where ADM puts it: at the 8x8 feature map (IDDPM-like presets also at 16x16).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from diffusers import UNet2DModel

from pipeline.errors import ConfigError

__all__ = ["UNET_PRESETS", "UnetPreset", "build_unet", "count_params", "unet_config"]


@dataclass(frozen=True, kw_only=True)
class UnetPreset:
    """Shape of a UNet independent of resolution; levels are added/removed so the bottom sits at 8x8 or 4x4.

    Attributes:
        channels (`tuple[int, ...]`): channels of the first levels; the list is extended with its last value
            when the resolution needs more levels.
        layers_per_block (`int`): ResNet blocks per level.
        attention_at (`tuple[int, ...]`): feature-map sizes (px) that get self-attention.
        scale_shift (`bool`): AdaGN time conditioning (`resnet_time_scale_shift="scale_shift"`, IDDPM/ADM).
        norm_groups (`int`): GroupNorm groups (must divide every channel count).
        bottom (`int`): feature-map size of the lowest level.
    """

    channels: tuple[int, ...]
    layers_per_block: int
    attention_at: tuple[int, ...] = (8,)
    scale_shift: bool = False
    norm_groups: int = 8
    bottom: int = 8
    head_dim: int = 8


UNET_PRESETS: dict[str, UnetPreset] = {
    # For unit tests only: a few thousand parameters at 8-16 px.
    "tiny": UnetPreset(channels=(8, 16), layers_per_block=1, attention_at=(), norm_groups=4, bottom=4),
    # "ADM"-like pixel DDPM: the pilot's 0.69M model (16,32,64) at 32 px.
    "adm-s": UnetPreset(channels=(16, 32, 64), layers_per_block=1, attention_at=(8,)),
    # Wider ADM-like model: (32,64,64), ~1.1M parameters at 32 px.
    "adm-m": UnetPreset(channels=(32, 64, 64), layers_per_block=1, attention_at=(8,)),
    # "IDDPM"-like: different widths, two ResNet blocks per level, AdaGN, attention at 16 and 8.
    "iddpm-s": UnetPreset(
        channels=(24, 48, 64), layers_per_block=2, attention_at=(16, 8), scale_shift=True, norm_groups=8
    ),
    # Cheaper "IDDPM"-like (1.03M): same differences from adm-s (2 blocks/level, AdaGN) but attention at
    # 8x8 only: 0.53 s/step vs 1.45 for iddpm-s (1 thread, 32 px, batch 32).
    "iddpm-xs": UnetPreset(
        channels=(16, 32, 64), layers_per_block=2, attention_at=(8,), scale_shift=True, norm_groups=8
    ),
    # Latent UNet of the LDM-like model: runs on 8x8x4 latents, attention at 8x8 and 4x4.
    "ldm-s": UnetPreset(channels=(64, 128), layers_per_block=1, attention_at=(8, 4), bottom=4),
    # Latent UNet for the 16x16x4 latents of a 2x autoencoder (kl-f2-s): a cheap 16x16 level, then ldm-s's.
    "ldm-f2": UnetPreset(channels=(32, 64, 128), layers_per_block=1, attention_at=(8, 4), bottom=4),
    "ldm-tiny": UnetPreset(channels=(16, 32), layers_per_block=1, attention_at=(4,), norm_groups=4, bottom=4),
}


def _levels(preset: UnetPreset, resolution: int) -> list[int]:
    """Channel list with one level per halving from ``resolution`` down to ``preset.bottom``."""
    if resolution < preset.bottom or resolution & (resolution - 1):
        raise ConfigError(
            f"`resolution` must be a power of two >= {preset.bottom} for this preset. Got {resolution}."
        )
    n = 1
    size = resolution
    while size > preset.bottom:
        size //= 2
        n += 1
    chans = list(preset.channels[:n])
    while len(chans) < n:
        chans.append(preset.channels[-1])
    return chans


def unet_config(
    preset: str, resolution: int, *, in_channels: int = 3, out_channels: int = 3
) -> dict[str, Any]:
    """``UNet2DModel`` keyword arguments for a named preset at ``resolution`` px.

    Args:
        preset (`str`): a key of `UNET_PRESETS`.
        resolution (`int`): input side in pixels (latent side for latent UNets).
        in_channels, out_channels (`int`): 3 for pixel models, the latent channels for LDM.
    """
    if preset not in UNET_PRESETS:
        raise ConfigError(f"`unet preset` must be one of {sorted(UNET_PRESETS)}. Got {preset!r} instead.")
    p = UNET_PRESETS[preset]
    chans = _levels(p, resolution)
    sizes = [resolution // 2**i for i in range(len(chans))]
    down = tuple("AttnDownBlock2D" if s in p.attention_at else "DownBlock2D" for s in sizes)
    up = tuple("AttnUpBlock2D" if s in p.attention_at else "UpBlock2D" for s in reversed(sizes))
    return {
        "sample_size": resolution,
        "in_channels": in_channels,
        "out_channels": out_channels,
        "block_out_channels": tuple(chans),
        "layers_per_block": p.layers_per_block,
        "down_block_types": down,
        "up_block_types": up,
        "norm_num_groups": p.norm_groups,
        "attention_head_dim": p.head_dim,
        "resnet_time_scale_shift": "scale_shift" if p.scale_shift else "default",
    }


def build_unet(preset: str, resolution: int, **kwargs: Any) -> UNet2DModel:
    """A freshly initialised ``UNet2DModel`` for a preset (see `unet_config` for the arguments)."""
    return UNet2DModel(**unet_config(preset, resolution, **kwargs))


def count_params(module: Any) -> int:
    """Number of parameters of a torch module."""
    return sum(p.numel() for p in module.parameters())
