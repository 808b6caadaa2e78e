"""Durall et al.'s spectral loss: reduced spectra in [0, 1], smallest when fake and real spectra agree."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.demo.spectral_loss import reduced_spectrum, spectral_loss
from pipeline.demo.spectrum import radial_power_spectrum


def smooth_and_noisy(n: int = 8, side: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    noisy = torch.rand(n, 3, side, side, generator=g) * 2 - 1
    smooth = torch.nn.functional.avg_pool2d(noisy, 3, stride=1, padding=1)
    return smooth, noisy


def test_reduced_spectrum_is_a_normalised_radial_profile() -> None:
    smooth, noisy = smooth_and_noisy()
    rs = reduced_spectrum(noisy)
    assert rs.shape == (8, 12)  # rings 0..round(8 sqrt 2) = 11
    assert torch.allclose(rs.min(1).values, torch.zeros(8))
    assert torch.allclose(rs.max(1).values, torch.ones(8))
    # Blurring removes energy at high radii: the smooth images' outer rings sit lower.
    assert reduced_spectrum(smooth)[:, -4:].mean() < rs[:, -4:].mean()


def test_rings_are_the_reports_rings() -> None:
    # The loss and the report's spectrum (pipeline.demo.spectrum) bin the same rings, DC to the corner.
    uint8 = np.zeros((1, 3, 32, 32), np.uint8)
    freq, _ = radial_power_spectrum(uint8)
    rings = reduced_spectrum(torch.from_numpy(uint8.astype(np.float32))).shape[1]
    assert rings == len(freq) == 24  # radii 0..round(16 sqrt 2)


def test_loss_is_minimal_and_flat_at_the_real_spectrum() -> None:
    smooth, noisy = smooth_and_noisy()
    fake = noisy.clone().requires_grad_(True)
    same = spectral_loss(fake, noisy)
    same.backward()
    assert fake.grad is not None and float(fake.grad.abs().max()) < 1e-4  # the BCE optimum in the mean
    assert float(spectral_loss(smooth, noisy)) > float(same.detach())


def test_bad_shape() -> None:
    with pytest.raises(ValueError, match="square"):
        reduced_spectrum(torch.zeros(2, 3, 8, 16))
