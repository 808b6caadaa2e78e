"""Radially averaged power spectra: where in frequency a generator's fakes differ from real faces.

The gate's high-frequency energy (a Laplacian) is one number dominated by the highest frequencies; the
spectrum shows the whole band. The fake/real ratio per frequency is the classic frequency-domain view of
GAN and DM artefacts (Durall et al. 2020, "Watch your up-convolution"; Dzanic et al. 2020): below 1 the
generator is too smooth at that scale, above 1 it adds energy (checkerboards, grain).
"""

from __future__ import annotations

import numpy as np

__all__ = ["radial_power_spectrum", "spectrum_ratio"]


def radial_power_spectrum(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean power of the grey, mean-removed images per integer radius of the centred 2-D FFT.

    Args:
        images (`np.ndarray`): uint8 ``(N, 3, H, W)`` with ``H == W``.

    Returns:
        `tuple[np.ndarray, np.ndarray]`: radial frequencies in cycles per pixel, from 0 to the corner of the
        spectrum (``0.5 sqrt(2)``: beyond 0.5 only diagonal frequencies remain, where a checkerboard lives),
        and the mean power in each bin.
    """
    if images.ndim != 4 or images.shape[1] != 3 or images.shape[2] != images.shape[3]:
        raise ValueError(f"expected square (N, 3, H, H) images. Got shape {images.shape}.")
    side = images.shape[2]
    grey = images.astype(np.float64).mean(axis=1) / 255.0
    grey -= grey.mean(axis=(1, 2), keepdims=True)
    power = (np.abs(np.fft.fftshift(np.fft.fft2(grey), axes=(1, 2))) ** 2).mean(axis=0)
    y, x = np.indices((side, side))
    radius = np.rint(np.hypot(y - side // 2, x - side // 2)).astype(int)
    bins = int(radius.max()) + 1
    sums = np.bincount(radius.ravel(), weights=power.ravel(), minlength=bins)[:bins]
    counts = np.bincount(radius.ravel(), minlength=bins)[:bins]
    return np.arange(bins) / side, sums / counts


def spectrum_ratio(fakes: np.ndarray, reals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Frequencies and the fake/real power ratio per frequency (the DC bin, zero after mean removal, is
    dropped)."""
    freq, fake = radial_power_spectrum(fakes)
    _, real = radial_power_spectrum(reals)
    return freq[1:], fake[1:] / np.maximum(real[1:], 1e-20)
