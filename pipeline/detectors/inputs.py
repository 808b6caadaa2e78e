"""Detector inputs as compositions of cached fields: which arrays, in which order, converted how.

Every detector in Tables I and III is "a ResNet on some stack of channels"; what differs is only the stack.
A `Composition` names the cache fields it reads (``image``, ``gan.recon``, ``ddim.residual``, ...) and turns a
batch of them into one float32 tensor `(B, C, H, W)`:

- uint8 fields (``image``, ``*.recon``) -> ``[-1, 1]`` (`pipeline.imaging.to_model`);
- ``*.residual`` (float16, ``x_rec - x`` in model units, in ``[-2, 2]``) -> float32 as-is (signed), as the
  Multi-Residual ablation of Table III feeds it;
- DIRE (Wang et al. 2023) feeds ``|x - x_rec|``: its code saves ``|x - x_rec|`` (pixels in ``[-1, 1]``) as an
  8-bit image ``|r| * 255 / 2`` and normalises that image for the classifier. ``abs_residual`` reproduces the
  same values without the 8-bit rounding: ``|r| - 1`` in ``[-1, 1]``.

Augmentation: every CNN detector gets random horizontal flips (applied to the whole stack, so an image and its
reconstructions stay aligned). Only CNNSpot gets its paper's blur + JPEG augmentation (Wang et al. 2020,
"Blur+JPEG (0.5)": Gaussian blur sigma ~ U[0, 3] with probability 0.5 and JPEG re-compression quality
~ U{30..100} with probability 0.5, on the uint8 RGB, in memory via PIL, training only). We pick the 0.5
variant (not 0.1) because the paper's robustness test (IV-D) perturbs with blur and JPEG. The other detectors
get flips only, as in their papers' recipes; CNNSpot's augmentation is part of what "CNNSpot" means, so the
comparison is of methods, not of inputs alone. Note sigma is in pixels: at 32 px sigma 3 erases most detail,
as CNNSpot's sigma 3 would not at 256 px; `CNNSpotAugment.blur_sigma_max` makes this a parameter.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from PIL import Image, ImageFilter

from pipeline.errors import ConfigError, InputDataError
from pipeline.imaging import to_model

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "COMPOSITIONS",
    "CONTROL",
    "CNNSpotAugment",
    "Composition",
    "cnnspot_augment",
    "get_composition",
]

Transform = Literal["image", "residual", "abs_residual"]


@dataclass(frozen=True, kw_only=True)
class CNNSpotAugment:
    """CNNSpot's training augmentation (Wang et al. 2020), defaults = their "Blur+JPEG (0.5)" model."""

    blur_prob: float = 0.5
    blur_sigma_max: float = 3.0
    jpeg_prob: float = 0.5
    jpeg_quality_min: int = 30
    jpeg_quality_max: int = 100

    def __post_init__(self) -> None:
        for name in ("blur_prob", "jpeg_prob"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ConfigError(f"`{name}` must be in [0, 1]. Got {v!r} instead.")
        if self.blur_sigma_max < 0:
            raise ConfigError(f"`blur_sigma_max` must be >= 0. Got {self.blur_sigma_max!r} instead.")
        if not 1 <= self.jpeg_quality_min <= self.jpeg_quality_max <= 100:
            raise ConfigError(
                "`jpeg_quality_min`/`jpeg_quality_max` must satisfy 1 <= min <= max <= 100."
                f" Got {self.jpeg_quality_min!r}/{self.jpeg_quality_max!r} instead."
            )


def cnnspot_augment(images: np.ndarray, rng: np.random.Generator, aug: CNNSpotAugment) -> np.ndarray:
    """Blur and/or JPEG-recompress each uint8 `(B, 3, H, W)` image at random; returns a new uint8 array.

    Blur: PIL ``GaussianBlur(radius=sigma)`` (PIL's radius is the Gaussian's standard deviation, realised
    as an extended box blur), sigma ~ U[0, blur_sigma_max]. JPEG: PIL encoder at quality ~ U{min..max}
    (CNNSpot randomly used cv2 or PIL; we use PIL only, no OpenCV dependency).
    """
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise InputDataError(f"cnnspot_augment needs uint8 (B, 3, H, W). Got {images.dtype} {images.shape}.")
    out = images.copy()
    for i in range(images.shape[0]):
        do_blur = rng.random() < aug.blur_prob
        sigma = rng.uniform(0.0, aug.blur_sigma_max)
        do_jpeg = rng.random() < aug.jpeg_prob
        quality = int(rng.integers(aug.jpeg_quality_min, aug.jpeg_quality_max + 1))
        if not (do_blur or do_jpeg):
            continue
        pil = Image.fromarray(np.ascontiguousarray(images[i].transpose(1, 2, 0)), mode="RGB")
        if do_blur and sigma > 0:
            pil = pil.filter(ImageFilter.GaussianBlur(radius=sigma))
        if do_jpeg:
            buf = io.BytesIO()
            pil.save(buf, format="JPEG", quality=quality)
            buf.seek(0)
            with Image.open(buf) as decoded:
                pil = decoded.convert("RGB")
        out[i] = np.asarray(pil, dtype=np.uint8).transpose(2, 0, 1)
    return out


@dataclass(frozen=True, kw_only=True)
class Composition:
    """One detector input: cache fields stacked on channels, each converted by its transform.

    Attributes:
        name (`str`): the key used in params and reports (e.g. ``multirecon``).
        fields (`tuple[str, ...]`): cache field per 3-channel group, in channel order.
        transforms (`tuple[str, ...]`): per field, ``image`` (uint8 -> [-1, 1]), ``residual`` (float as-is)
            or ``abs_residual`` (``|r| - 1``, DIRE).
        augment (`str`): ``flip`` (flips only) or ``cnnspot`` (flips + blur/JPEG on ``image``).
        description (`str`): one line for reports.
    """

    name: str
    fields: tuple[str, ...]
    transforms: tuple[Transform, ...]
    augment: Literal["flip", "cnnspot"] = "flip"
    description: str = ""
    cnnspot: CNNSpotAugment = field(default_factory=CNNSpotAugment)

    def __post_init__(self) -> None:
        if len(self.fields) != len(self.transforms) or not self.fields:
            raise ConfigError(
                f"composition {self.name!r}: `fields` and `transforms` must pair up, non-empty."
            )
        if self.augment == "cnnspot" and self.fields[0] != "image":
            raise ConfigError(
                f"composition {self.name!r}: cnnspot augmentation needs `image` as first field."
            )

    @property
    def in_channels(self) -> int:
        """3 channels per field."""
        return 3 * len(self.fields)

    @property
    def recons(self) -> tuple[str, ...]:
        """Reconstruction stores this composition reads (subset of ``ddim``, ``gan``), sorted."""
        return tuple(sorted({f.split(".", 1)[0] for f in self.fields if "." in f}))

    def to_config(self) -> dict[str, object]:
        """JSON-able description stored in checkpoints and metrics."""
        cfg: dict[str, object] = {
            "name": self.name,
            "fields": list(self.fields),
            "transforms": list(self.transforms),
            "augment": self.augment,
            "in_channels": self.in_channels,
        }
        if self.augment == "cnnspot":
            cfg["cnnspot"] = {
                "blur_prob": self.cnnspot.blur_prob,
                "blur_sigma_max": self.cnnspot.blur_sigma_max,
                "jpeg_prob": self.cnnspot.jpeg_prob,
                "jpeg_quality_min": self.cnnspot.jpeg_quality_min,
                "jpeg_quality_max": self.cnnspot.jpeg_quality_max,
            }
        return cfg

    def compose(
        self,
        arrays: Mapping[str, np.ndarray],
        *,
        train: bool = False,
        hflip: bool = False,
        rng: np.random.Generator | None = None,
        device: torch.device | str = "cpu",
    ) -> torch.Tensor:
        """Stack one batch of cached arrays into a model tensor `(B, in_channels, H, W)` float32.

        Args:
            arrays (`Mapping[str, np.ndarray]`): field -> `(B, 3, H, W)` array (uint8 or float16).
            train (`bool`): apply training augmentation (CNNSpot blur/JPEG when ``augment == "cnnspot"``).
            hflip (`bool`): random horizontal flip per sample (training only; needs ``rng``).
            rng (`np.random.Generator | None`): source of augmentation randomness (seeded by the caller).
            device: where the tensor is built.
        """
        if (train and (hflip or self.augment == "cnnspot")) and rng is None:
            raise ConfigError("`rng` is required for training-time augmentation.")
        parts = []
        for fname, transform in zip(self.fields, self.transforms, strict=True):
            if fname not in arrays:
                raise InputDataError(
                    f"composition {self.name!r} needs field {fname!r}; got fields {sorted(arrays)}."
                )
            a = arrays[fname]
            if transform == "image":
                if a.dtype != np.uint8:
                    raise InputDataError(
                        f"field {fname!r} must be uint8 for an image transform, got {a.dtype}."
                    )
                if train and self.augment == "cnnspot" and fname == "image":
                    assert rng is not None
                    a = cnnspot_augment(a, rng, self.cnnspot)
                parts.append(to_model(a, device))
            elif transform == "residual":
                parts.append(torch.as_tensor(np.asarray(a, dtype=np.float32), device=device))
            else:
                parts.append(torch.as_tensor(np.abs(np.asarray(a, dtype=np.float32)) - 1.0, device=device))
        x = torch.cat(parts, dim=1)
        if train and hflip:
            assert rng is not None
            flip = torch.as_tensor(rng.random(x.shape[0]) < 0.5, device=x.device)
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        return x


def _c(
    name: str, fields: tuple[str, ...], transforms: tuple[Transform, ...], desc: str, **kw: object
) -> Composition:
    return Composition(name=name, fields=fields, transforms=transforms, description=desc, **kw)  # type: ignore[arg-type]


COMPOSITIONS: dict[str, Composition] = {
    c.name: c
    for c in (
        _c(
            "multirecon",
            ("image", "gan.recon", "ddim.recon"),
            ("image", "image", "image"),
            "Multi-Reconstruction (III-B3): RGB + GAN recon + DDIM recon, 9 ch",
        ),
        _c("rgb_gan_recon", ("image", "gan.recon"), ("image", "image"), "Table III: RGB + GAN recon, 6 ch"),
        _c("rgb_ddim_recon", ("image", "ddim.recon"), ("image", "image"), "Table III: RGB + DM recon, 6 ch"),
        _c(
            "multi_residual",
            ("image", "gan.residual", "ddim.residual"),
            ("image", "residual", "residual"),
            "Table III Multi-Residual: RGB + GAN residual + DM residual, 9 ch",
        ),
        _c("gan_residual", ("gan.residual",), ("residual",), "Table III: GAN residual only, 3 ch"),
        _c("ddim_residual", ("ddim.residual",), ("residual",), "Table III: DM residual only, 3 ch"),
        _c("dire", ("ddim.residual",), ("abs_residual",), "DIRE: |x - DDIM recon|, 3 ch"),
        _c(
            "cnnspot",
            ("image",),
            ("image",),
            "CNNSpot: RGB + blur/JPEG aug, 3 ch",
            augment="cnnspot",
        ),
    )
}

CONTROL = "control"
"""Composition name of the trivial control (`pipeline.detectors.control`): image statistics, not a CNN."""


def get_composition(name: str, *, cnnspot: CNNSpotAugment | None = None) -> Composition:
    """Look up a composition by name; ``cnnspot`` overrides the CNNSpot augmentation settings."""
    if name not in COMPOSITIONS:
        raise ConfigError(f"`composition` must be one of {(*COMPOSITIONS, CONTROL)}. Got {name!r} instead.")
    comp = COMPOSITIONS[name]
    if cnnspot is not None and comp.augment == "cnnspot":
        comp = Composition(
            name=comp.name,
            fields=comp.fields,
            transforms=comp.transforms,
            augment=comp.augment,
            description=comp.description,
            cnnspot=cnnspot,
        )
    return comp
