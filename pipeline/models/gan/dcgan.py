"""A DCGAN/ProGAN-style generator and discriminator: the structurally different GAN of the unseen test split.

Unlike StyleGAN2 there is no mapping network, no style modulation, no noise inputs and no skip toRGB: z is
projected to 4x4 by a transposed convolution and upsampled by stride-2 transposed convolutions (DCGAN, Radford
et al. 2016). Pixelwise feature normalisation replaces BatchNorm in the generator (ProGAN, Karras et al. 2018)
so that the EMA generator behaves identically in training and evaluation mode (no running statistics).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from pipeline.errors import ConfigError
from pipeline.models.gan.stylegan2 import PixelNorm

__all__ = ["DCGANDiscriminator", "DCGANGenerator"]


def _widths(size: int, base_channels: int, max_channels: int) -> dict[int, int]:
    if not isinstance(size, int) or size < 8 or size > 256 or size & (size - 1):
        raise ConfigError(f"`size` must be a power of two in [8, 256]. Got {size!r} instead.")
    return {2**i: min(max_channels, base_channels * size // 2**i) for i in range(2, int(math.log2(size)) + 1)}


class DCGANGenerator(nn.Module):
    """z `(B, z_dim)` -> image `(B, 3, size, size)` in [-1, 1] (tanh).

    Args:
        size (`int`): output resolution (power of two, 8..256).
        z_dim (`int`, defaults to 64): latent width.
        base_channels (`int`, defaults to 32): width at full resolution; doubles per halving.
        max_channels (`int`, defaults to 256): cap on the width.
    """

    def __init__(
        self, size: int, z_dim: int = 64, *, base_channels: int = 32, max_channels: int = 256
    ) -> None:
        super().__init__()
        w = _widths(size, base_channels, max_channels)
        self.size, self.z_dim = size, z_dim
        self.style_dim = z_dim  # the attribute samplers use to draw z
        self.arch_config: dict[str, Any] = {
            "size": size,
            "z_dim": z_dim,
            "base_channels": base_channels,
            "max_channels": max_channels,
        }
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(z_dim, w[4], 4, 1, 0),
            PixelNorm(),
            nn.LeakyReLU(0.2),
        ]
        res = 4
        while res < size:
            layers += [nn.ConvTranspose2d(w[res], w[res * 2], 4, 2, 1), PixelNorm(), nn.LeakyReLU(0.2)]
            res *= 2
        layers += [nn.Conv2d(w[size], 3, 3, 1, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, **_: Any) -> torch.Tensor:
        return self.net(z[:, :, None, None])


class DCGANDiscriminator(nn.Module):
    """Image `(B, in_channels, size, size)` -> logit `(B, 1)`: stride-2 convolutions with leaky ReLU, no
    normalisation (BatchNorm would couple the samples that the R1 penalty treats independently).
    ``in_channels`` is 3 for RGB, 6 behind a `pipeline.models.gan.highpass.HighPassView`."""

    def __init__(
        self, size: int, *, base_channels: int = 32, max_channels: int = 256, in_channels: int = 3
    ) -> None:
        super().__init__()
        w = _widths(size, base_channels, max_channels)
        self.arch_config: dict[str, Any] = {
            "size": size,
            "base_channels": base_channels,
            "max_channels": max_channels,
            "in_channels": in_channels,
        }
        layers: list[nn.Module] = [nn.Conv2d(in_channels, w[size], 3, 1, 1), nn.LeakyReLU(0.2)]
        res = size
        while res > 4:
            layers += [nn.Conv2d(w[res], w[res // 2], 4, 2, 1), nn.LeakyReLU(0.2)]
            res //= 2
        layers += [nn.Flatten(), nn.Linear(w[4] * 16, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
