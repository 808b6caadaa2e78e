"""A tiny synthetic dataset in the real on-disk format (manifest + input store + recon stores).

For tests and smoke benchmarks of the detector stages: it goes through the same writers
(`write_input_store`, `build_recon_store`, `write_manifest`) as the real pipeline, so everything downstream
reads genuine Zarr stores. The classes are separable by brightness (real dark, GAN mid, DM bright) so a
few training steps beat chance. The "reconstructions" are fixed pixel maps (GAN: contrast halved, DDIM:
box-blurred), deterministic as the reconstructor contract requires; they are not models of anything.

Generators: real ``real``; GAN ``stylegan`` (train/val/test) and ``stylegan2`` (test only, unseen);
DM ``adm`` (train/val/test) and ``ldm`` (test only, unseen). One extra manifest row is ``rejected``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.cache.store import write_input_store
from pipeline.cache.writer import build_recon_store
from pipeline.data.manifest import rows_to_table, write_manifest

__all__ = ["SyntheticCache", "make_synthetic_cache"]

_PLAN = (  # (generator, family, split, count per unit of `n_per_cell`)
    ("real", "real", "train", 2),
    ("stylegan", "gan", "train", 2),
    ("adm", "dm", "train", 2),
    ("real", "real", "val", 1),
    ("stylegan", "gan", "val", 1),
    ("adm", "dm", "val", 1),
    ("real", "real", "test", 2),
    ("stylegan", "gan", "test", 1),
    ("stylegan2", "gan", "test", 1),
    ("adm", "dm", "test", 1),
    ("ldm", "dm", "test", 1),
)
_LEVEL = {"real": 40, "gan": 110, "dm": 180}


@dataclass(frozen=True)
class SyntheticCache:
    """Paths of the written dataset."""

    manifest: Path
    images: Path
    ddim: Path
    gan: Path


def _gan_recon(batch: np.ndarray) -> np.ndarray:
    x = batch.astype(np.float32) / 127.5 - 1.0
    return 0.5 * x


def _ddim_recon(batch: np.ndarray) -> np.ndarray:
    x = batch.astype(np.float32) / 127.5 - 1.0
    p = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="edge")
    return sum(p[:, :, i : i + x.shape[2], j : j + x.shape[3]] for i in range(3) for j in range(3)) / 9.0


def make_synthetic_cache(
    root: str | Path, *, n_per_cell: int = 4, res: int = 16, seed: int = 0
) -> SyntheticCache:
    """Write manifest.parquet, images.zarr, ddim.zarr and gan.zarr under ``root``; returns their paths."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    rows, images = [], []
    for generator, family, split, mult in _PLAN:
        for _ in range(mult * n_per_cell):
            img = rng.integers(0, 60, (3, res, res)) + _LEVEL[family]
            img = np.clip(img, 0, 255).astype(np.uint8)
            image_id = hashlib.sha256(img.tobytes() + generator.encode()).hexdigest()
            rows.append(
                {
                    "image_id": image_id,
                    "path": f"{generator}/{image_id[:12]}.png",
                    "dataset": "synthetic",
                    "generator": generator,
                    "family": family,
                    "split": split,
                    "width": res,
                    "height": res,
                    "mode": "RGB",
                    "format": "PNG",
                    "jpeg_quality": -1,
                    "bytes": int(img.nbytes),
                    "status": "accepted",
                    "reason": "",
                    "cache_index": len(images),
                }
            )
            images.append(img)
    rows.append(
        {**rows[0], "image_id": "0" * 64, "path": "bad/broken.png", "split": "", "status": "rejected"}
    )
    rows[-1].update({"reason": "decode_error", "cache_index": -1})
    order = rng.permutation(len(images))  # cache order differs from plan order: the join must use cache_index
    stack = np.stack(images)[order]
    inverse = np.argsort(order)
    for r in rows[:-1]:
        r["cache_index"] = int(inverse[r["cache_index"]])
    ids = [""] * len(images)
    for r in rows[:-1]:
        ids[r["cache_index"]] = r["image_id"]
    paths = SyntheticCache(
        manifest=root / "prepared" / "manifest.parquet",
        images=root / "prepared" / "images.zarr",
        ddim=root / "cache" / "ddim.zarr",
        gan=root / "cache" / "gan.zarr",
    )
    write_manifest(rows_to_table(rows), paths.manifest)
    write_input_store(
        paths.images, stack, ids, {"kind": "input", "synthetic": True}, chunk_images=16, shard_images=32
    )
    for name, fn, out in (("ddim", _ddim_recon, paths.ddim), ("gan", _gan_recon, paths.gan)):
        build_recon_store(
            paths.images,
            out,
            reconstruct=fn,
            provenance={"kind": name, "synthetic": True},
            work_dir=root / "_work" / name,
            batch_size=32,
            chunk_images=16,
            shard_images=32,
            progress=False,
        )
    return paths
