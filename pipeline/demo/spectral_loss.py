"""Spectral regularisation of a GAN generator (Durall et al. 2020, "Watch your up-convolution").

The demo GANs' fakes lack high-frequency energy, most of it on the diagonal frequencies beyond Nyquist's
radius (`pipeline.demo.spectrum`; README "Results"), and a discriminator that blurs before every
downsampling barely sees them. Durall et al. give the generator a direct signal instead: each image's
*reduced spectrum* (grey image, log magnitude of its centred 2-D FFT, averaged over rings of equal radius,
min-max normalised to [0, 1]) is averaged over a fake batch and over a real batch, and the generator's loss
gains ``lambda * BCE(mean fake spectrum, mean real spectrum)``. It matches the whole radial profile, not one
statistic, so the fakes' texture is pulled towards the reals' at every scale.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

__all__ = ["reduced_spectrum", "spectral_loss"]


@functools.lru_cache(maxsize=8)
def _rings(side: int, device: str) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Integer radius of every pixel of a centred ``side x side`` spectrum, pixels per radius, ring count."""
    y, x = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    radius = torch.round(torch.hypot((y - side // 2).float(), (x - side // 2).float())).long().flatten()
    rings = int(radius.max()) + 1
    counts = torch.bincount(radius, minlength=rings).float()
    return radius.to(device), counts.to(device), rings


def reduced_spectrum(images: torch.Tensor) -> torch.Tensor:
    """``(B, R)`` reduced spectra of ``(B, C, H, H)`` images (any range): Durall et al.'s 1-D representation,
    each row min-max normalised to [0, 1]. Differentiable."""
    if images.ndim != 4 or images.shape[2] != images.shape[3]:
        raise ValueError(f"expected square (B, C, H, H) images. Got shape {tuple(images.shape)}.")
    grey = images.float().mean(dim=1)
    spectrum = torch.fft.fftshift(torch.fft.fft2(grey), dim=(-2, -1))
    log_magnitude = 20.0 * torch.log(spectrum.abs() + 1e-8)
    radius, counts, rings = _rings(images.shape[-1], str(images.device))
    flat = log_magnitude.flatten(1)
    sums = torch.zeros(flat.shape[0], rings, device=flat.device).index_add_(1, radius, flat)
    profile = sums / counts
    low = profile.min(dim=1, keepdim=True).values
    high = profile.max(dim=1, keepdim=True).values
    return (profile - low) / (high - low).clamp_min(1e-8)


def spectral_loss(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy between the batch-mean reduced spectra of ``fake`` and ``real`` (the target,
    not differentiated). Its minimum over fakes is the target's own entropy, reached when the means agree."""
    fake_mean = reduced_spectrum(fake).mean(dim=0).clamp(1e-6, 1.0 - 1e-6)
    with torch.no_grad():
        real_mean = reduced_spectrum(real).mean(dim=0)
    return F.binary_cross_entropy(fake_mean, real_mean)
