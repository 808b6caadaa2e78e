"""Input compositions: fields, channel counts, conversions, CNNSpot augmentation, flips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.detectors.inputs import COMPOSITIONS, CNNSpotAugment, cnnspot_augment, get_composition
from pipeline.errors import ConfigError, InputDataError

EXPECTED = {
    "multirecon": (("image", "gan.recon", "ddim.recon"), 9, ("ddim", "gan")),
    "rgb_gan_recon": (("image", "gan.recon"), 6, ("gan",)),
    "rgb_ddim_recon": (("image", "ddim.recon"), 6, ("ddim",)),
    "multi_residual": (("image", "gan.residual", "ddim.residual"), 9, ("ddim", "gan")),
    "gan_residual": (("gan.residual",), 3, ("gan",)),
    "ddim_residual": (("ddim.residual",), 3, ("ddim",)),
    "dire": (("ddim.residual",), 3, ("ddim",)),
    "cnnspot": (("image",), 3, ()),
}


def _arrays(n: int = 2, res: int = 8) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    out: dict[str, np.ndarray] = {"image": rng.integers(0, 256, (n, 3, res, res), dtype=np.uint8)}
    for r in ("ddim", "gan"):
        out[f"{r}.recon"] = rng.integers(0, 256, (n, 3, res, res), dtype=np.uint8)
        out[f"{r}.residual"] = rng.uniform(-2, 2, (n, 3, res, res)).astype(np.float16)
    return out


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fields_channels_and_recons(name: str) -> None:
    fields, channels, recons = EXPECTED[name]
    comp = COMPOSITIONS[name]
    assert comp.fields == fields and comp.in_channels == channels and comp.recons == recons
    x = comp.compose(_arrays())
    assert x.shape == (2, channels, 8, 8) and x.dtype == torch.float32


def test_conversions_per_field() -> None:
    a = _arrays()
    x = COMPOSITIONS["multi_residual"].compose(a)
    assert torch.allclose(x[:, :3], torch.as_tensor(a["image"]).float() / 127.5 - 1)
    assert torch.equal(x[:, 3:6], torch.as_tensor(a["gan.residual"].astype(np.float32)))
    assert torch.equal(x[:, 6:], torch.as_tensor(a["ddim.residual"].astype(np.float32)))
    m = COMPOSITIONS["multirecon"].compose(a)
    assert torch.allclose(m[:, 3:6], torch.as_tensor(a["gan.recon"]).float() / 127.5 - 1)  # GAN before DDIM
    d = COMPOSITIONS["dire"].compose(a)
    assert torch.allclose(d, torch.as_tensor(np.abs(a["ddim.residual"].astype(np.float32)) - 1))
    assert d.min() >= -1 and d.max() <= 1


def test_missing_field_is_named() -> None:
    a = _arrays()
    del a["gan.recon"]
    with pytest.raises(InputDataError, match=r"gan\.recon"):
        COMPOSITIONS["multirecon"].compose(a)


def test_flip_keeps_channels_aligned() -> None:
    a = _arrays(n=64)
    comp = COMPOSITIONS["multirecon"]
    plain = comp.compose(a)
    flipped = comp.compose(a, train=True, hflip=True, rng=np.random.default_rng(1))
    was_flipped = [bool(torch.equal(flipped[i], plain[i].flip(-1))) for i in range(64)]
    unchanged = [bool(torch.equal(flipped[i], plain[i])) for i in range(64)]
    assert all(f or u for f, u in zip(was_flipped, unchanged, strict=True))
    assert 10 < sum(was_flipped) < 54


def test_cnnspot_augment_probabilities_and_determinism() -> None:
    imgs = np.random.default_rng(0).integers(0, 256, (40, 3, 16, 16), dtype=np.uint8)
    aug = CNNSpotAugment()
    out1 = cnnspot_augment(imgs, np.random.default_rng(3), aug)
    out2 = cnnspot_augment(imgs, np.random.default_rng(3), aug)
    assert np.array_equal(out1, out2) and out1.dtype == np.uint8
    changed = np.array([not np.array_equal(a, b) for a, b in zip(imgs, out1, strict=True)])
    assert 0.5 < changed.mean() < 0.95  # P(blur or JPEG) = 0.75
    none = CNNSpotAugment(blur_prob=0.0, jpeg_prob=0.0)
    assert np.array_equal(cnnspot_augment(imgs, np.random.default_rng(3), none), imgs)
    # the augmentation happens only in training
    comp = get_composition("cnnspot")
    assert torch.equal(comp.compose({"image": imgs}), comp.compose({"image": imgs}))


def test_bad_settings() -> None:
    with pytest.raises(ConfigError, match="blur_prob"):
        CNNSpotAugment(blur_prob=1.5)
    with pytest.raises(ConfigError, match="composition"):
        get_composition("rgb_only")
