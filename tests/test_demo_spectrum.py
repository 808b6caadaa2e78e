"""Radial power spectra: blur shows as a deficit at high frequency, a checkerboard as a Nyquist excess."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageFilter

from pipeline.demo.spectrum import radial_power_spectrum, spectrum_ratio


def _noise(n: int, seed: int, side: int = 32) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(rng.normal(128, 40, (n, 3, side, side)), 0, 255).astype(np.uint8)


def _blur(images: np.ndarray, sigma: float) -> np.ndarray:
    blur = ImageFilter.GaussianBlur(sigma)
    out = [np.asarray(Image.fromarray(x.transpose(1, 2, 0)).filter(blur)) for x in images]
    return np.stack(out).transpose(0, 3, 1, 2)


def test_white_noise_has_a_flat_spectrum() -> None:
    freq, power = radial_power_spectrum(_noise(64, 0))
    assert freq[0] == 0.0 and freq[16] == 0.5 and len(freq) == 24  # to the corner, radius 16 sqrt(2)
    assert power[0] < 1e-12  # mean removed
    assert power[1:].max() / power[1:].min() < 1.5


def test_blur_is_a_high_frequency_deficit() -> None:
    reals = _noise(64, 1)
    _, ratio = spectrum_ratio(_blur(reals, 1.0), reals)
    assert ratio[-1] < 0.1 < ratio[0]  # the finest scale loses most
    assert np.all(np.diff(ratio) < 0.05)  # and the loss grows with frequency
    _, same = spectrum_ratio(reals[::-1].copy(), reals)
    np.testing.assert_allclose(same, 1.0)


def test_checkerboard_adds_power_in_the_corner() -> None:
    reals = _noise(32, 2)
    board = reals.astype(np.int16) + 20 * (np.indices((32, 32)).sum(axis=0) % 2 * 2 - 1)
    _, ratio = spectrum_ratio(np.clip(board, 0, 255).astype(np.uint8), reals)
    assert ratio[-1] > 2.0 and abs(ratio[3] - 1.0) < 0.1


def test_rejects_non_square_batches() -> None:
    with pytest.raises(ValueError, match="square"):
        radial_power_spectrum(np.zeros((2, 3, 8, 16), np.uint8))
