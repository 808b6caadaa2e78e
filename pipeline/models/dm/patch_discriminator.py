"""PatchGAN discriminator for the LDM autoencoder's adversarial loss.

Latent diffusion (Rombach et al. 2022, Sec. 3 and App. G) trains its autoencoder with "a perceptual loss and
a patch-based adversarial objective" so that decoded images keep local realism: L1/L2 alone make blurry
decoders, and the blur ends up in every LDM sample (the medium demo run's LDM had 64% less high-frequency
energy than real faces). This is the N-layer PatchGAN of pix2pix (Isola et al. 2017) that taming-transformers
and LDM use, sized for 32 px: each output logit judges one overlapping patch.
"""

from __future__ import annotations

import torch
from torch import nn

from pipeline.errors import ConfigError

__all__ = ["PatchDiscriminator"]


class PatchDiscriminator(nn.Module):
    """Image `(B, 3, H, W)` in [-1, 1] -> patch logits `(B, 1, h, w)`.

    Args:
        n_layers (`int`, defaults to 2): stride-2 convolutions (2 at 32 px: 70x70-style patches shrink to
            ~22 px receptive fields).
        base_channels (`int`, defaults to 32): width of the first layer; doubles per layer up to 8x.
    """

    def __init__(self, n_layers: int = 2, base_channels: int = 32) -> None:
        super().__init__()
        if n_layers < 1 or base_channels < 1:
            raise ConfigError(
                f"`n_layers` and `base_channels` must be >= 1. Got {n_layers}, {base_channels}."
            )
        layers: list[nn.Module] = [nn.Conv2d(3, base_channels, 4, 2, 1), nn.LeakyReLU(0.2)]
        width = base_channels
        for i in range(1, n_layers + 1):
            out = base_channels * min(2**i, 8)
            stride = 2 if i < n_layers else 1
            layers += [
                nn.Conv2d(width, out, 4, stride, 1, bias=False),
                nn.BatchNorm2d(out),
                nn.LeakyReLU(0.2),
            ]
            width = out
        layers.append(nn.Conv2d(width, 1, 4, 1, 1))
        self.net = nn.Sequential(*layers)
        for m in self.modules():  # pix2pix / taming initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.02)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
