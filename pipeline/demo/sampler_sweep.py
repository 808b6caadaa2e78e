"""How a trained demo DM's fakes depend on its sampler: the quality gate per (steps, eta, eps_scale).

The gate (`pipeline.demo.quality`) judges fakes drawn with one sampler setting. When a DM fails it, the
next question is whether the model or the sampler is at fault: a deterministic DDIM sampler with few steps
jumps from a noisy x_t straight to the model's posterior-mean estimate of x0, which is smoother than a sample.
This module draws the same noise through several settings of the model's saved scheduler and gates each
(README "Results": the DDIM step count moved the `adm`'s high-frequency gap from -61% to -23%).

With ``recon_steps`` it also asks the paper's question of each setting's fakes: does DDIM inversion +
reconstruction with this model give them a lower error than held-out reals, raw and after contrast
normalisation (MSE / pixel variance, as the recon reports)? A sampler that makes smoother fakes wins raw MSE
for the wrong reason; the normalised column shows it (README "Results", night run).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from pipeline.cache.writer import recon_outputs
from pipeline.demo.dm_sampling import sample_dm
from pipeline.demo.faces import jpeg_roundtrip
from pipeline.demo.quality import quality_report
from pipeline.errors import ConfigError
from pipeline.inversion.ddim import DDIMReconstructor
from pipeline.inversion.report import VARIANCE_FLOOR, pixel_variance

__all__ = ["SweepRow", "recon_error", "sweep_sampler"]


@dataclass(frozen=True)
class SweepRow:
    """One sampler setting's gate. ``signed_gap[k]`` = `QualityReport.relative_gap` with the sign of
    fake - real (negative = the fakes have less of ``k``); ``best_auc`` = the single statistic that separates
    these fakes from the held-out reals best, and its AUC. ``recon`` / ``recon_real``: per reconstruction step
    count (a string key, as in JSON), the mean DDIM reconstruction ``mse`` and ``norm`` (MSE / pixel variance)
    of these fakes / of the same number of held-out reals; empty without ``recon_steps``."""

    steps: int
    eta: float
    eps_scale: float
    seconds: float
    stats_ok: bool
    signed_gap: dict[str, float]
    best_auc: tuple[str, float]
    recon: dict[str, dict[str, float]] = field(default_factory=dict)
    recon_real: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def recon_error(reconstruct: DDIMReconstructor, images: np.ndarray, batch_size: int) -> dict[str, float]:
    """Mean MSE (model units) and MSE / pixel variance of uint8 images, per image exactly as the recon cache
    stores it (`recon_outputs`, which also refuses non-finite output) and floored as the recon reports do."""
    out = np.concatenate([reconstruct(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])
    _, _, mse = recon_outputs(images, out)
    norm = mse / np.maximum(pixel_variance(images), VARIANCE_FLOOR)
    return {"mse": float(mse.mean()), "norm": float(norm.mean())}


def sweep_sampler(
    model_dir: str | Path,
    real_train: np.ndarray,
    real_test: np.ndarray,
    *,
    steps: Iterable[int],
    etas: Iterable[float] = (0.0,),
    eps_scales: Iterable[float] = (1.0,),
    n: int = 256,
    seed: int = 1,
    batch_size: int = 64,
    device: str = "auto",
    jpeg_quality: int = 75,
    tolerance: float = 0.15,
    recon_steps: Iterable[int] = (),
) -> list[SweepRow]:
    """Sample ``n`` fakes per (steps, eta, eps_scale) with one seed, JPEG them as the demo does, gate each.

    Args:
        model_dir (`str | Path`): a folder written by `train_dm`.
        real_train, real_test (`np.ndarray`): uint8 `(N, 3, H, W)` real faces (copy check / statistics).
        steps (`Iterable[int]`): sampling step counts to try.
        etas (`Iterable[float]`, defaults to `(0.0,)`): DDIM stochasticity values (DDIM models only).
        eps_scales (`Iterable[float]`, defaults to `(1.0,)`): epsilon-scaling lambdas
            (`pipeline.demo.dm_sampling`; 1 = the plain sampler).
        n, seed, batch_size, device: as `sample_dm`.
        jpeg_quality (`int`, defaults to 75): the demo's codec (``demo.jpeg_quality``).
        tolerance (`float`, defaults to 0.15): the gate's tolerance (``demo.sample.tolerance``).
        recon_steps (`Iterable[int]`, defaults to none): DDIM reconstruction step counts (``recon.steps``) at
            which to reconstruct each setting's JPEG'd fakes and ``n`` held-out reals with this model (pixel
            DMs only: it is the DDIM reconstruction's model).
    """
    grid = [(int(s), float(e), float(lam)) for s in steps for e in etas for lam in eps_scales]
    if not grid:
        raise ConfigError("`steps`, `etas` and `eps_scales` must each name at least one value.")
    recon_steps = [int(r) for r in recon_steps]
    if recon_steps and (Path(model_dir) / "vae").is_dir():
        raise ConfigError(
            f"`recon_steps` needs a pixel-space DM (DDIM reconstruction's model); {str(model_dir)!r} is "
            "a latent one."
        )
    reconstructors = {
        str(r): DDIMReconstructor(model_dir, steps=r, batch_size=batch_size, device=device)
        for r in recon_steps
    }
    reals = real_test[:n]
    recon_real = {r: recon_error(rec, reals, batch_size) for r, rec in reconstructors.items()}
    rows = []
    for s, e, lam in tqdm(grid, desc="sampler settings", unit="setting"):
        t0 = time.perf_counter()
        fakes = sample_dm(
            model_dir, n, seed=seed, batch_size=batch_size, device=device, steps=s, eta=e, eps_scale=lam
        )
        seconds = time.perf_counter() - t0
        jpeg = jpeg_roundtrip(fakes, jpeg_quality)
        rep = quality_report(jpeg, real_train, real_test, tolerance=tolerance)
        signed = {k: float(np.sign(rep.fake[k] - rep.real[k]) * g) for k, g in rep.relative_gap.items()}
        best = max(rep.auc.items(), key=lambda kv: kv[1])
        recon = {r: recon_error(rec, jpeg, batch_size) for r, rec in reconstructors.items()}
        row = SweepRow(
            s, e, lam, round(seconds, 2), rep.stats_ok, signed, (best[0], float(best[1])), recon, recon_real
        )
        rows.append(row)
    return rows
