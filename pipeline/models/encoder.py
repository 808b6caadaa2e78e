"""FeatureStyleEncoder-type GAN inversion encoder (paper section III-B1) and its training.

The encoder maps an image to (a) a hierarchical latent w+ (one style vector per generator style input,
predicted as offsets from the generator's mean w) and (b) a spatial feature code at a middle resolution that
is added to the generator's own feature map there (Yao et al., "A Style-Based GAN Encoder for High Fidelity
Reconstruction of Images and Videos", ECCV 2022). The feature head is zero-initialised, so an untrained
encoder is a pure w+ encoder and the feature code only learns what w+ cannot express.

No pretrained LPIPS/VGG weights are available offline, so the perceptual term is a proxy: L2 between the
activations of a fixed, seeded random convolutional pyramid (random conv features are known to carry texture
and structure statistics; Ulyanov et al. 2018 "Deep Image Prior", Gatys-style random-feature studies). It is
documented as a proxy and can be switched off (weight 0).
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.demo.gan_sampling import load_generator
from pipeline.device import seed_everything
from pipeline.errors import ConfigError, InputDataError, ModelLoadError, TrainingDivergedError
from pipeline.imaging import to_model
from pipeline.models.checkpoint import load_checkpoint, load_state_into, save_checkpoint, weights_hash
from pipeline.models.gan.stylegan2 import Generator
from pipeline.progress import progress

__all__ = [
    "ENCODER_KIND",
    "EncoderTrainConfig",
    "EncoderTrainReport",
    "FeatureStyleEncoder",
    "RandomFeaturePyramid",
    "invert",
    "load_encoder",
    "load_face_folder",
    "load_stylegan_generator",
    "train_encoder",
    "train_encoder_from_faces",
]

log = logging.getLogger(__name__)

ENCODER_KIND = "feature_style_encoder"


class _ResBlock(nn.Module):
    """Pre-activation residual block, optional 2x downsampling."""

    def __init__(self, in_ch: int, out_ch: int, *, down: bool) -> None:
        super().__init__()
        stride = 2 if down else 1
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1)
        self.skip = nn.Conv2d(in_ch, out_ch, 1, stride, 0) if (down or in_ch != out_ch) else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.leaky_relu(x, 0.2))
        h = self.conv2(F.leaky_relu(h, 0.2))
        return (h + self.skip(x)) / math.sqrt(2)


class FeatureStyleEncoder(nn.Module):
    """Image `(B, 3, R, R)` in [-1, 1] -> (w+ `(B, n_latent, style_dim)`, feature `(B, C, r, r)`).

    Args:
        resolution (`int`): input side R (the generator's size).
        n_latent (`int`), style_dim (`int`): the generator's w+ shape.
        feature_res (`int`): resolution r of the feature code (e.g. 8 at 32 px).
        feature_channels (`int`): the generator's channel width at ``feature_res``.
        width (`int`, defaults to 32), max_width (`int`, defaults to 128): backbone widths (doubling per
        halving).
        generator_hash (`str`): weights hash of the generator this encoder was trained for (checked on use).
    """

    def __init__(
        self,
        *,
        resolution: int,
        n_latent: int,
        style_dim: int,
        feature_res: int,
        feature_channels: int,
        width: int = 32,
        max_width: int = 128,
        generator_hash: str = "",
    ) -> None:
        super().__init__()
        if resolution & (resolution - 1) or resolution < 8:
            raise ConfigError(f"`resolution` must be a power of two >= 8. Got {resolution!r} instead.")
        if feature_res & (feature_res - 1) or not 4 <= feature_res <= resolution:
            raise ConfigError(
                f"`feature_res` must be a power of two in [4, {resolution}]. Got {feature_res!r} instead."
            )
        self.arch_config: dict[str, Any] = {
            "resolution": resolution,
            "n_latent": n_latent,
            "style_dim": style_dim,
            "feature_res": feature_res,
            "feature_channels": feature_channels,
            "width": width,
            "max_width": max_width,
            "generator_hash": generator_hash,
        }
        self.resolution, self.n_latent, self.style_dim, self.feature_res = (
            resolution,
            n_latent,
            style_dim,
            feature_res,
        )
        self.stem = nn.Conv2d(3, width, 3, 1, 1)
        blocks, ch, res = [], width, resolution
        self.res_to_index: dict[int, int] = {}
        while res > 4:
            out = min(max_width, ch * 2)
            blocks.append(_ResBlock(ch, out, down=True))
            ch, res = out, res // 2
            self.res_to_index[res] = len(blocks) - 1
        self.blocks = nn.ModuleList(blocks)
        feat_in = (
            width
            if feature_res == resolution
            else min(max_width, width * 2 ** int(math.log2(resolution // feature_res)))
        )
        self.feature_head = nn.Sequential(
            _ResBlock(feat_in, feat_in, down=False),
            nn.LeakyReLU(0.2),
            nn.Conv2d(feat_in, feature_channels, 3, 1, 1),
        )
        nn.init.zeros_(self.feature_head[-1].weight)
        nn.init.zeros_(self.feature_head[-1].bias)
        self.w_reduce = nn.Conv2d(ch, 32, 1)
        self.w_head = nn.Sequential(
            nn.Linear(32 * 16, 512), nn.LeakyReLU(0.2), nn.Linear(512, n_latent * style_dim)
        )
        with torch.no_grad():
            self.w_head[-1].weight.mul_(0.1)
            self.w_head[-1].bias.zero_()
        # Offsets are added to the generator's mean w, a buffer saved with the encoder.
        self.register_buffer("w_avg", torch.zeros(1, 1, style_dim))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.stem(x)
        feat = h if self.feature_res == self.resolution else None
        for i, block in enumerate(self.blocks):
            h = block(h)
            if feat is None and self.res_to_index.get(self.feature_res) == i:
                feat = h
        assert feat is not None
        b = x.shape[0]
        w = self.w_head(F.leaky_relu(self.w_reduce(F.leaky_relu(h, 0.2)), 0.2).reshape(b, -1))
        w_plus = self.w_avg + w.reshape(b, self.n_latent, self.style_dim)
        return w_plus, self.feature_head(feat)


class RandomFeaturePyramid(nn.Module):
    """Fixed random conv pyramid used as an offline perceptual-loss proxy (no pretrained weights exist
    here)."""

    def __init__(self, *, levels: int = 3, width: int = 32, seed: int = 1234) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        convs, ch = [], 3
        for i in range(levels):
            out = width * 2**i
            conv = nn.Conv2d(ch, out, 3, 1, 1, bias=False)
            conv.weight.data = torch.randn(conv.weight.shape, generator=g) * math.sqrt(2.0 / (ch * 9))
            convs.append(conv)
            ch = out
        self.convs = nn.ModuleList(convs)
        self.requires_grad_(False)

    def per_image(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Mean squared feature difference per image, summed over levels, shape `(B,)`."""
        total = a.new_zeros(a.shape[0])
        for i, conv in enumerate(self.convs):
            a, b = F.leaky_relu(conv(a), 0.2), F.leaky_relu(conv(b), 0.2)
            total = total + (a - b).pow(2).flatten(1).mean(1)
            if i < len(self.convs) - 1:
                a, b = F.avg_pool2d(a, 2), F.avg_pool2d(b, 2)
        return total


def invert(
    encoder: FeatureStyleEncoder, generator: Generator, x: torch.Tensor, *, noise_mode: str = "const"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Single forward pass: x -> (reconstruction, w+, feature code)."""
    w_plus, feat = encoder(x)
    rec = generator.synthesis(
        w_plus, noise_mode=noise_mode, feature=feat, feature_res=encoder.feature_res, feature_residual=True
    )
    return rec, w_plus, feat


def load_encoder(folder: Path) -> FeatureStyleEncoder:
    """Load an encoder folder written by `train_encoder`, frozen, in eval mode."""
    cfg, state = load_checkpoint(folder, kind=ENCODER_KIND)
    try:
        enc = FeatureStyleEncoder(**cfg)
    except (TypeError, ConfigError) as exc:
        raise ModelLoadError(f"encoder {str(folder)!r} has an invalid config {cfg}: {exc}") from exc
    load_state_into(enc, state, source=str(folder))
    return enc.eval().requires_grad_(False)


# --------------------------------------------------------------------------------------------- training


@dataclass(frozen=True, kw_only=True)
class EncoderTrainConfig:
    """Encoder training settings.

    Args:
        steps (`int`), batch_size (`int`), lr (`float`): Adam optimisation.
        feature_res (`int`, defaults to 8): resolution of the feature code.
        width (`int`, defaults to 32), max_width (`int`, defaults to 128): backbone widths.
        synth_fraction (`float`, defaults to 0.5): share of each batch made of generator samples with known w.
        pixel_weight, latent_weight, perceptual_weight, feature_weight (`float`): loss weights of the
            pixel L2, the w+ L2 on samples, the random-feature perceptual proxy, and the L2 penalty on the
            feature code.
        log_every (`int`, defaults to 10): logging interval in steps.
    """

    steps: int = 2000
    batch_size: int = 32
    lr: float = 0.001
    feature_res: int = 8
    width: int = 32
    max_width: int = 128
    synth_fraction: float = 0.5
    pixel_weight: float = 1.0
    latent_weight: float = 1.0
    perceptual_weight: float = 0.5
    feature_weight: float = 0.01
    log_every: int = 10

    def __post_init__(self) -> None:
        for key in ("steps", "batch_size", "width", "max_width", "log_every"):
            if getattr(self, key) < 1:
                raise ConfigError(f"`encoder.{key}` must be >= 1. Got {getattr(self, key)!r} instead.")
        if self.lr <= 0:
            raise ConfigError(f"`encoder.lr` must be > 0. Got {self.lr!r} instead.")
        if not 0.0 <= self.synth_fraction <= 1.0:
            raise ConfigError(
                f"`encoder.synth_fraction` must be in [0, 1]. Got {self.synth_fraction!r} instead."
            )
        for key in ("pixel_weight", "latent_weight", "perceptual_weight", "feature_weight"):
            if getattr(self, key) < 0:
                raise ConfigError(f"`encoder.{key}` must be >= 0. Got {getattr(self, key)!r} instead.")


@dataclass(frozen=True, kw_only=True)
class EncoderTrainReport:
    steps: int
    params: int
    seconds: float
    s_per_step: float
    first: dict[str, float]
    final: dict[str, float]
    out_dir: str
    history: list[dict[str, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_stylegan_generator(generator_dir: Path) -> Generator:
    """Load a ``stylegan2`` generator folder (the only kind the encoder can invert)."""
    g = load_generator(Path(generator_dir))
    if not isinstance(g, Generator):
        raise ModelLoadError(
            f"generator {str(generator_dir)!r} is a {type(g).__name__}; GAN inversion needs a `stylegan2` "
            f"generator."
        )
    return g


def train_encoder(
    config: EncoderTrainConfig,
    generator_dir: Path,
    images: np.ndarray,
    out_dir: Path,
    *,
    seed: int,
    device: torch.device,
    live_dir: Path | None = None,
) -> EncoderTrainReport:
    """Train a `FeatureStyleEncoder` for the frozen generator in ``generator_dir`` on real ``images``.

    Each batch mixes real faces (pixel L2 + perceptual proxy) with generator samples of known w
    (latent L2 on w+, pixel L2 + proxy). Saves the encoder (kind ``feature_style_encoder``) and
    ``report.json``.
    """
    g = load_stylegan_generator(generator_dir).to(device)
    if images.ndim != 4 or images.shape[1] != 3 or images.dtype != np.uint8:
        raise InputDataError(f"`images` must be uint8 (N, 3, H, W). Got {images.dtype} {images.shape}.")
    if images.shape[2:] != (g.size, g.size):
        raise InputDataError(
            f"`images` are {images.shape[2]}x{images.shape[3]} but generator {str(generator_dir)!r} makes"
            f" {g.size}x{g.size}."
        )
    seed_everything(seed)
    rng = np.random.default_rng(seed)
    enc = FeatureStyleEncoder(
        resolution=g.size,
        n_latent=g.n_latent,
        style_dim=g.style_dim,
        feature_res=config.feature_res,
        feature_channels=g.feature_shape(config.feature_res)[0],
        width=config.width,
        max_width=config.max_width,
        generator_hash=weights_hash(generator_dir),
    ).to(device)
    enc.w_avg.copy_(g.mean_latent(4096, seed=seed)[None])
    perc = RandomFeaturePyramid().to(device)
    opt = torch.optim.Adam(enc.parameters(), lr=config.lr, betas=(0.9, 0.999))
    n_params = sum(p.numel() for p in enc.parameters())
    n_syn = round(config.batch_size * config.synth_fraction)
    n_real = config.batch_size - n_syn
    live = None
    if live_dir is not None:
        from dvclive import Live

        live = Live(dir=str(live_dir), save_dvc_exp=False, dvcyaml=False)
        live.log_params(asdict(config))
    history: list[dict[str, float]] = []
    t0 = time.perf_counter()
    bar = progress(range(config.steps), desc="train encoder", unit="step")
    for step in bar:
        parts, w_true = [], None
        if n_real:
            idx = rng.integers(0, images.shape[0], size=n_real)
            real = to_model(images[idx], device)
            flip = torch.from_numpy(rng.random(n_real) < 0.5).to(device)
            parts.append(torch.where(flip[:, None, None, None], real.flip(3), real))
        if n_syn:
            with torch.no_grad():
                w_true = g.mapping(torch.randn(n_syn, g.style_dim, device=device))
                parts.append(g.synthesis(w_true[:, None].expand(-1, g.n_latent, -1), noise_mode="random"))
        x = torch.cat(parts)
        rec, w_plus, feat = invert(enc, g, x)
        pix = (rec - x).pow(2).flatten(1).mean(1)
        loss_pix = pix.mean()
        loss_perc = perc.per_image(rec, x).mean() if config.perceptual_weight > 0 else x.new_zeros(())
        loss_feat = feat.pow(2).mean()
        loss_lat = (
            (w_plus[n_real:] - w_true[:, None]).pow(2).mean() if w_true is not None else x.new_zeros(())
        )
        loss = (
            config.pixel_weight * loss_pix
            + config.perceptual_weight * loss_perc
            + config.latent_weight * loss_lat
            + config.feature_weight * loss_feat
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % config.log_every == 0 or step == config.steps - 1:
            rec_real = float(pix[:n_real].detach().mean()) if n_real else float("nan")
            row = {
                "step": float(step),
                "loss": float(loss.detach()),
                "pixel": float(loss_pix.detach()),
                "perceptual": float(loss_perc.detach()),
                "latent": float(loss_lat.detach()),
                "feature": float(loss_feat.detach()),
                "mse_real": rec_real,
                "img_per_s": (step + 1) * config.batch_size / max(time.perf_counter() - t0, 1e-9),
            }
            if not math.isfinite(row["loss"]):
                raise TrainingDivergedError(f"encoder training diverged at step {step}: {row}")
            history.append(row)
            bar.set_postfix(loss=f"{row['loss']:.4f}", mse=f"{rec_real:.4f}", ips=f"{row['img_per_s']:.0f}")
            if live is not None:
                live.step = step
                for k, v in row.items():
                    if k != "step":
                        live.log_metric(f"train/{k}", v)
                live.make_summary()
    seconds = time.perf_counter() - t0
    if live is not None:
        live.end()
    out_dir = Path(out_dir)
    save_checkpoint(out_dir, enc.cpu(), kind=ENCODER_KIND, config=enc.arch_config)
    report = EncoderTrainReport(
        steps=config.steps,
        params=n_params,
        seconds=seconds,
        s_per_step=seconds / config.steps,
        first=history[0],
        final=history[-1],
        out_dir=str(out_dir),
        history=history,
    )
    (out_dir / "report.json").write_text(json.dumps(report.to_dict(), indent=2))
    log.info(
        "encoder trained <params=%d> <s_per_step=%.3f> <final=%s>", n_params, report.s_per_step, report.final
    )
    return report


def load_face_folder(faces_dir: Path, resolution: int, *, split: str = "train") -> np.ndarray:
    """Decode the faces of ``split`` listed in ``faces_dir/labels.csv`` (columns path, split) to uint8
    `(N, 3, R, R)`: PIL, bicubic short-side resize to ``resolution``, centre crop."""
    import csv

    from PIL import Image, UnidentifiedImageError

    from pipeline.demo.faces import resize_center_crop

    labels = Path(faces_dir) / "labels.csv"
    if not labels.is_file():
        raise InputDataError(f"{str(labels)!r} not found: the faces folder needs a labels.csv (path, split).")
    with labels.open(newline="") as fh:
        reader = csv.DictReader(fh)
        if not {"path", "split"} <= set(reader.fieldnames or []):
            raise InputDataError(
                f"{str(labels)!r} must have columns `path` and `split`; got {reader.fieldnames}."
            )
        paths = [r["path"] for r in reader if r["split"] == split]
    if not paths:
        raise InputDataError(f"no rows with split == {split!r} in {str(labels)!r}.")
    arrays = []
    for rel in progress(paths, desc="decode faces", unit="img"):
        try:
            with Image.open(Path(faces_dir) / rel) as im:
                arrays.append(np.asarray(resize_center_crop(im, resolution)).transpose(2, 0, 1))
        except (OSError, UnidentifiedImageError) as exc:
            raise InputDataError(f"cannot decode face {rel!r} listed in {str(labels)!r}: {exc}") from exc
    return np.ascontiguousarray(np.stack(arrays))


def train_encoder_from_faces(
    config: EncoderTrainConfig,
    generator_dir: Path,
    faces_dir: Path,
    out_dir: Path,
    *,
    resolution: int,
    seed: int,
    device: torch.device,
    live_dir: Path | None = None,
) -> EncoderTrainReport:
    """`train_encoder` on the ``train`` rows of a faces folder, resized to ``resolution``."""
    images = load_face_folder(faces_dir, resolution, split="train")
    log.info("encoder training faces <n=%d> <resolution=%d>", len(images), resolution)
    return train_encoder(config, generator_dir, images, out_dir, seed=seed, device=device, live_dir=live_dir)
