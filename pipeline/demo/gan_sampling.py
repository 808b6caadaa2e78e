"""Load a trained demo GAN folder and sample it: what the sample, encoder and GAN-reconstruction stages need.

Kept apart from `pipeline.demo.gan_training` (as `pipeline.demo.dm_sampling` is from `dm_training`): those
stages depend on this file, not on the training loop, so a change to how GANs train does not re-run them
unless the re-trained generator itself changes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pipeline.errors import ConfigError, ModelLoadError
from pipeline.imaging import from_model
from pipeline.models.checkpoint import CONFIG_NAME, load_checkpoint, load_state_into
from pipeline.models.gan.dcgan import DCGANGenerator
from pipeline.models.gan.stylegan2 import Generator

__all__ = ["GAN_ARCHS", "load_generator", "sample_gan"]

GAN_ARCHS = ("stylegan2", "dcgan")


def load_generator(model_dir: Path) -> nn.Module:
    """Load a generator folder written by `train_gan` (kind ``stylegan2`` or ``dcgan``), frozen, in eval
    mode."""
    meta_path = Path(model_dir) / CONFIG_NAME
    if not meta_path.is_file():
        raise ModelLoadError(f"generator folder {str(model_dir)!r} has no {CONFIG_NAME}.")
    kind = json.loads(meta_path.read_text()).get("kind")
    if kind not in GAN_ARCHS:
        raise ModelLoadError(f"{str(meta_path)!r} holds a {kind!r} model; expected one of {GAN_ARCHS}.")
    cfg, state = load_checkpoint(model_dir, kind=kind)
    try:
        g: nn.Module = Generator(**cfg) if kind == "stylegan2" else DCGANGenerator(**cfg)
    except (TypeError, ConfigError) as exc:
        raise ModelLoadError(f"{str(meta_path)!r} has an invalid {kind} config {cfg}: {exc}") from exc
    load_state_into(g, state, source=str(model_dir))
    return g.eval().requires_grad_(False)


@torch.no_grad()
def sample_gan(
    model_dir: Path, n: int, *, seed: int, batch_size: int = 256, device: torch.device | None = None
) -> np.ndarray:
    """Draw ``n`` samples (truncation psi = 1) as uint8 `(n, 3, H, W)`; identical for identical ``seed``."""
    if n < 1 or batch_size < 1:
        raise ConfigError(f"`n` and `batch_size` must be >= 1. Got {n!r}, {batch_size!r}.")
    device = device or torch.device("cpu")
    g = load_generator(model_dir).to(device)
    z_all = torch.randn(n, g.style_dim, generator=torch.Generator().manual_seed(seed))
    out = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for i in range(0, n, batch_size):
            z = z_all[i : i + batch_size].to(device)
            x = g(z, noise_mode="random") if isinstance(g, Generator) else g(z)
            out.append(from_model(x))
    return np.concatenate(out)
