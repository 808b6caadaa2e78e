"""GAN inversion + reconstruction (paper section III-B1): encoder forward pass, optional latent optimisation.

`GanReconstructor` is the ``reconstruct`` callable of `pipeline.cache.writer.build_recon_store`: uint8 images
in, float32 reconstructions in model units out. A frozen StyleGAN2 generator renders the encoder's w+ and
feature code with its stored (constant) noise buffers, so the output depends on the batch only. With
``opt_steps > 0`` the w+ and feature code of every image are refined by Adam on pixel L2 (+ the random-feature
perceptual proxy), paper Eq. (1). Adam is element-wise and the loss is a sum of per-image terms, so the
batched optimisation is exactly the per-image optimisation.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.errors import ConfigError, InputDataError, ModelLoadError
from pipeline.imaging import to_model
from pipeline.inversion.report import summarize_recon_store
from pipeline.models.checkpoint import weights_hash
from pipeline.models.encoder import RandomFeaturePyramid, invert, load_encoder, load_stylegan_generator

__all__ = ["GanReconstructor", "run_recon_gan"]

log = logging.getLogger(__name__)


class GanReconstructor:
    """Encoder-based GAN inversion + reconstruction.

    Args:
        generator_dir (`Path`): a ``stylegan2`` generator folder (`pipeline.demo.gan_training.train_gan`).
        encoder_dir (`Path`): a ``feature_style_encoder`` folder trained for that generator.
        resolution (`int`): required image side (``data.resolution``).
        opt_steps (`int`, defaults to 0): Adam steps of per-image latent optimisation
        (``recon.gan.opt_steps``).
        opt_lr (`float`, defaults to 0.01): their learning rate (``recon.gan.opt_lr``).
        perceptual_weight (`float`, defaults to 0.5): weight of the perceptual proxy during optimisation.
        seed (`int`, defaults to 0): recorded; the output draws no random numbers.
        device (`torch.device`, *optional*): defaults to the CPU.

    All checks (folders, kinds, NaN weights, missing keys, resolution, encoder/generator pairing) run in the
    constructor, before any image is touched.
    """

    def __init__(
        self,
        generator_dir: Path,
        encoder_dir: Path,
        *,
        resolution: int,
        opt_steps: int = 0,
        opt_lr: float = 0.01,
        perceptual_weight: float = 0.5,
        seed: int = 0,
        device: torch.device | None = None,
    ) -> None:
        if not isinstance(opt_steps, int) or opt_steps < 0:
            raise ConfigError(f"`recon.gan.opt_steps` must be an int >= 0. Got {opt_steps!r} instead.")
        if opt_lr <= 0 or perceptual_weight < 0:
            raise ConfigError(
                f"`recon.gan.opt_lr` must be > 0 and `perceptual_weight` >= 0. Got {opt_lr!r}, "
                f"{perceptual_weight!r}."
            )
        self.generator_dir, self.encoder_dir = Path(generator_dir), Path(encoder_dir)
        self.device = device or torch.device("cpu")
        self.generator = load_stylegan_generator(self.generator_dir)
        self.encoder = load_encoder(self.encoder_dir)
        if self.generator.size != resolution:
            raise ModelLoadError(
                f"generator {str(self.generator_dir)!r} makes {self.generator.size} px images but"
                f" `data.resolution` is {resolution}."
            )
        if self.encoder.resolution != resolution:
            raise ModelLoadError(
                f"encoder {str(self.encoder_dir)!r} takes {self.encoder.resolution} px images but"
                f" `data.resolution` is {resolution}."
            )
        self.generator_hash = weights_hash(self.generator_dir)
        self.encoder_hash = weights_hash(self.encoder_dir)
        trained_for = self.encoder.arch_config.get("generator_hash", "")
        if trained_for != self.generator_hash:
            raise ModelLoadError(
                f"encoder {str(self.encoder_dir)!r} was trained for generator hash {trained_for[:12]!r}, but"
                f" {str(self.generator_dir)!r} has hash {self.generator_hash[:12]!r}: retrain the encoder."
            )
        g, e = self.generator, self.encoder
        if (e.n_latent, e.style_dim) != (g.n_latent, g.style_dim) or e.arch_config["feature_channels"] != (
            g.feature_shape(e.feature_res)[0]
        ):
            raise ModelLoadError(
                f"encoder {str(self.encoder_dir)!r} outputs w+ ({e.n_latent}, {e.style_dim}) and"
                f" {e.arch_config['feature_channels']} feature channels; the generator needs"
                f" ({g.n_latent}, {g.style_dim}) and {g.feature_shape(e.feature_res)[0]}."
            )
        self.generator.to(self.device)
        self.encoder.to(self.device)
        self.perceptual = RandomFeaturePyramid().to(self.device)
        self.resolution, self.opt_steps, self.opt_lr = resolution, opt_steps, float(opt_lr)
        self.perceptual_weight, self.seed = float(perceptual_weight), seed

    def _render(self, w_plus: torch.Tensor, feat: torch.Tensor) -> torch.Tensor:
        return self.generator.synthesis(
            w_plus,
            noise_mode="const",
            feature=feat,
            feature_res=self.encoder.feature_res,
            feature_residual=True,
        )

    def _optimise(self, x: torch.Tensor, w_plus: torch.Tensor, feat: torch.Tensor) -> torch.Tensor:
        """Eq. (1): argmin over (w+, feature) of ||G(w+, f) - x||^2 + lambda * P(G(w+, f), x), per image."""
        w = w_plus.detach().clone().requires_grad_(True)
        f = feat.detach().clone().requires_grad_(True)
        opt = torch.optim.Adam([w, f], lr=self.opt_lr)
        with torch.enable_grad():
            for _ in range(self.opt_steps):
                rec = self._render(w, f)
                per_image = (rec - x).pow(2).flatten(1).mean(1)
                if self.perceptual_weight > 0:
                    per_image = per_image + self.perceptual_weight * self.perceptual.per_image(rec, x)
                opt.zero_grad(set_to_none=True)
                per_image.sum().backward()
                opt.step()
        with torch.no_grad():
            return self._render(w, f)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """uint8 `(B, 3, H, W)` -> float32 `(B, 3, H, W)` reconstruction in model units [-1, 1]
        (unclipped)."""
        arr = np.asarray(batch)
        if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[1] != 3:
            raise InputDataError(
                f"GAN reconstructor input must be uint8 (B, 3, H, W). Got {arr.dtype} {arr.shape}."
            )
        if arr.shape[2:] != (self.resolution, self.resolution):
            raise InputDataError(
                f"image size {arr.shape[2:]} does not match the generator's {self.resolution} px."
            )
        x = to_model(arr, self.device)
        with torch.no_grad():
            rec, w_plus, feat = invert(self.encoder, self.generator, x)
        if self.opt_steps > 0:
            rec = self._optimise(x, w_plus, feat)
        return rec.detach().float().cpu().numpy()

    def provenance(self) -> dict[str, Any]:
        """What determines the output: stored in the recon store's attributes, compared on reopen."""
        return {
            "kind": "gan",
            "generator": str(self.generator_dir),
            "generator_hash": self.generator_hash,
            "encoder": str(self.encoder_dir),
            "encoder_hash": self.encoder_hash,
            "feature_res": self.encoder.feature_res,
            "noise": "const",
            "opt_steps": self.opt_steps,
            "opt_lr": self.opt_lr if self.opt_steps else None,
            "perceptual_weight": self.perceptual_weight if self.opt_steps else None,
            "resolution": self.resolution,
            "seed": self.seed,
        }


def run_recon_gan(
    *,
    input_store: Path,
    out: Path,
    work_dir: Path,
    reconstructor: GanReconstructor,
    batch_size: int,
    chunk_images: int,
    shard_images: int,
    manifest: Path | None = None,
    own_generator: str | None = None,
    report_path: Path | None = None,
) -> dict[str, Any]:
    """Build the GAN recon store and a report (throughput, MSE/PSNR per family and generator, premise
    check)."""
    from pipeline.cache.writer import build_recon_store

    t0 = time.perf_counter()
    res = build_recon_store(
        Path(input_store),
        Path(out),
        reconstruct=reconstructor,
        provenance=reconstructor.provenance(),
        work_dir=Path(work_dir),
        batch_size=batch_size,
        chunk_images=chunk_images,
        shard_images=shard_images,
        progress=True,
        stage="recon_gan",
    )
    seconds = time.perf_counter() - t0
    summary = summarize_recon_store(
        Path(input_store), Path(out), manifest=manifest, own_generator=own_generator
    )
    report = {
        "images": summary["images"],
        "seconds": round(seconds, 3),
        "images_computed": res.images_computed,
        "images_per_s": res.images_per_s,
        "provenance": reconstructor.provenance(),
        "own_generator": own_generator,
        **summary,  # mse, psnr, mse_over_var, premise_holds_* (pipeline.inversion.report)
    }
    if report_path is not None:
        report_path.parent.mkdir(parents=True, exist_ok=True)
        report_path.write_text(json.dumps(report, indent=2))
    log.info(
        "gan reconstruction done <images=%d> <seconds=%.1f> <mse=%s>",
        summary["images"],
        seconds,
        report["mse"].get("all"),
    )
    return report
