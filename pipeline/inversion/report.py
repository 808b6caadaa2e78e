"""Reconstruction reports shared by the DDIM and GAN recon stages: per-group error and the premise verdict.

Both stages ask the same question of a finished recon store (paper Sec. III-A): do the images a model's own
generator made reconstruct with the lowest error? Errors are reported raw (MSE in model units), as PSNR, and
divided by each image's pixel variance: the contrast control of DEMO-SCIENCE.md (a washed-out fake
reconstructs "better" for lack of contrast alone).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import StaleCacheError

__all__ = [
    "VARIANCE_FLOOR",
    "manifest_groups",
    "pixel_variance",
    "reconstruction_summary",
    "summarize_recon_store",
]


# Floor of the per-image pixel variance (model units; real 32 px faces average ~0.18) in MSE / variance:
# a saturated or flat fake (variance ~0) would otherwise dominate its group's mean.
VARIANCE_FLOOR = 1e-2


def _stats(values: np.ndarray) -> dict[str, float | int]:
    return {
        "n": int(values.size),
        "mean": float(values.mean()),
        "median": float(np.median(values)),
        "std": float(values.std()),
    }


def reconstruction_summary(
    mse: np.ndarray, pixel_var: np.ndarray, groups: dict[str, np.ndarray], *, own_generator: str | None
) -> dict[str, Any]:
    """Mean MSE, PSNR and MSE / pixel variance per group (MSE in model units, PSNR on the [0, 1] pixel scale).

    The variance is floored at `VARIANCE_FLOOR`; each group also reports its median, robust to outliers.

    ``premise_holds_<mse|mse_over_var>`` (only when ``generator=<own_generator>`` is a group) says whether
    the own generator's images have the lowest mean of all ``generator=`` groups; False with no other group.
    """
    psnr = 10 * np.log10(4.0 / np.maximum(mse, 1e-12))  # peak-to-peak 2 in model units
    norm = mse / np.maximum(pixel_var, VARIANCE_FLOOR)
    out: dict[str, Any] = {"mse": {}, "psnr": {}, "mse_over_var": {}}
    for name, mask in groups.items():
        if mask.any():
            out["mse"][name] = _stats(mse[mask])
            out["psnr"][name] = _stats(psnr[mask])
            out["mse_over_var"][name] = _stats(norm[mask])
    key = f"generator={own_generator}"
    if own_generator is not None and key in out["mse"]:
        others = [k for k in out["mse"] if k.startswith("generator=") and k != key]
        for metric in ("mse", "mse_over_var"):
            own = out[metric][key]["mean"]
            out[f"premise_holds_{metric}"] = bool(others) and all(
                own < out[metric][k]["mean"] for k in others
            )
    return out


def manifest_groups(manifest: Path, image_ids: np.ndarray) -> dict[str, np.ndarray]:
    """Boolean row masks ``family=<f>`` / ``generator=<g>`` over store rows, joined on ``cache_index``.

    Raises `StaleCacheError` when a manifest row's ``cache_index`` does not hold its ``image_id`` in the
    store (manifest and images.zarr from different prepare runs). Empty family/generator values form no group.
    """
    import pyarrow.parquet as pq

    table = pq.read_table(manifest, columns=["image_id", "family", "generator", "cache_index"]).to_pydict()
    fam = np.full(len(image_ids), "", dtype=object)
    gen = np.full(len(image_ids), "", dtype=object)
    for iid, f, g, ci in zip(
        table["image_id"], table["family"], table["generator"], table["cache_index"], strict=True
    ):
        if ci is None or ci < 0:
            continue
        if ci >= len(image_ids) or str(image_ids[ci]) != iid:
            raise StaleCacheError(
                f"manifest {str(manifest)!r} row with cache_index {ci} does not match the cache's image_id "
                "(manifest and images.zarr are from different prepare runs)."
            )
        fam[ci], gen[ci] = f, g
    groups = {f"family={f}": fam == f for f in sorted(set(fam)) if f}
    groups.update({f"generator={g}": gen == g for g in sorted(set(gen)) if g})
    return groups


def pixel_variance(images: Any, chunk: int = 1024) -> np.ndarray:
    """Per-image pixel variance in model units ([-1, 1]) of a uint8 `(N, 3, H, W)` array, read in chunks."""
    n = int(images.shape[0])
    var = np.empty(n, dtype=np.float64)
    for s in range(0, n, chunk):
        x = np.asarray(images[s : s + chunk], dtype=np.float64) / 127.5 - 1.0
        var[s : s + chunk] = x.reshape(len(x), -1).var(axis=1)
    return var


def summarize_recon_store(
    input_store: Path, recon_store: Path, *, manifest: Path | None, own_generator: str | None
) -> dict[str, Any]:
    """``images`` plus `reconstruction_summary` of a finished recon store over groups ``all`` and, with a
    manifest, ``family=`` / ``generator=``."""
    from pipeline.cache.store import open_store

    rec, inp = open_store(Path(recon_store)), open_store(Path(input_store))
    mse = np.asarray(rec["mse"][:], dtype=np.float64)
    groups = {"all": np.ones(len(mse), dtype=bool)}
    if manifest is not None:
        groups.update(manifest_groups(Path(manifest), np.asarray(rec["image_id"][:])))
    summary = reconstruction_summary(mse, pixel_variance(inp["image"]), groups, own_generator=own_generator)
    return {"images": len(mse), **summary}
