"""Detector data: manifest labels joined with cached arrays, split by split, held in memory.

Detectors never decode image files and never reconstruct: pixels and reconstructions come only from the
Zarr caches through `pipeline.cache.reader.CacheReader`; labels and splits come only from the manifest.
The join is on ``image_id`` through ``cache_index`` and is checked row by row (the store's ``image_id`` at
``cache_index`` must equal the manifest's), so a store of another manifest never meets these labels.
Rejected rows (``status == "rejected"``) never reach the cache and are skipped.

Whole arrays are loaded at once and indexed in memory: CPU-FACTS.md measured random batches straight from Zarr
at ~40-70 ms each, while whole-array reads run at ~500 MB/s; the demo's arrays are tens of MB.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipeline.cache.reader import CacheReader
from pipeline.data.manifest import FAMILIES, FAMILY_INDEX, read_manifest
from pipeline.errors import CacheCorruptError, InputDataError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = ["META_COLUMNS", "SplitData", "load_detector_data", "manifest_rows"]

logger = logging.getLogger(__name__)

META_COLUMNS = ("image_id", "dataset", "generator", "family", "split")


@dataclass(frozen=True)
class SplitData:
    """One split in memory.

    Attributes:
        arrays (`dict[str, np.ndarray]`): field -> `(N, 3, H, W)` (uint8 images/recons, float16 residuals).
        labels (`np.ndarray`): int64 `(N,)` class index (real 0, gan 1, dm 2).
        meta (`dict[str, np.ndarray]`): `META_COLUMNS` -> str `(N,)`, in the same row order.
    """

    arrays: dict[str, np.ndarray]
    labels: np.ndarray
    meta: dict[str, np.ndarray]

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def take(self, index: np.ndarray) -> SplitData:
        """Rows ``index`` of every array (a copy)."""
        return SplitData(
            arrays={k: v[index] for k, v in self.arrays.items()},
            labels=self.labels[index],
            meta={k: v[index] for k, v in self.meta.items()},
        )

    def class_counts(self) -> dict[str, int]:
        """Images per family name."""
        counts = np.bincount(self.labels, minlength=len(FAMILIES))
        return {name: int(counts[i]) for i, name in enumerate(FAMILIES)}


def manifest_rows(manifest_path: str | Path) -> dict[str, np.ndarray]:
    """The cached (non-rejected) manifest rows as numpy columns, with ``label`` and ``cache_index``.

    Raises:
        InputDataError: a cached row has a family outside ``real``/``gan``/``dm`` or no split.
    """
    table = read_manifest(manifest_path)
    cols = {name: np.asarray(table.column(name).to_pylist()) for name in (*META_COLUMNS, "status")}
    cache_index = np.asarray(table.column("cache_index").to_pylist(), dtype=np.int64)
    keep = (cols["status"] != "rejected") & (cache_index >= 0)
    out = {name: cols[name][keep].astype(str) for name in META_COLUMNS}
    out["cache_index"] = cache_index[keep]
    bad = sorted(set(out["family"]) - set(FAMILIES))
    if bad:
        raise InputDataError(
            f"manifest {str(manifest_path)!r}: cached rows with family {bad!r}; detectors need {FAMILIES}."
        )
    bad_split = sorted(set(out["split"]) - {"train", "val", "test"})
    if bad_split:
        raise InputDataError(
            f"manifest {str(manifest_path)!r}: cached rows with split {bad_split!r}; expected train/val/test."
        )
    out["label"] = np.array([FAMILY_INDEX[f] for f in out["family"]], dtype=np.int64)
    return out


def load_detector_data(
    manifest_path: str | Path,
    input_store: str | Path,
    recon_stores: Mapping[str, str | Path] | None,
    fields: Sequence[str],
    splits: Sequence[str] = ("train", "val", "test"),
    *,
    verify: bool = True,
) -> dict[str, SplitData]:
    """Load ``fields`` for the cached rows of each split in ``splits``.

    Args:
        manifest_path (`str | Path`): ``data/prepared/<ds>/manifest.parquet``.
        input_store (`str | Path`): ``data/prepared/<ds>/images.zarr``.
        recon_stores (`Mapping[str, Path] | None`): e.g. ``{"ddim": .../ddim.zarr, "gan": .../gan.zarr}``.
        fields (`Sequence[str]`): cache fields (``image``, ``ddim.recon``, ``gan.residual``, ...).
        splits (`Sequence[str]`): which splits to return (a split with no rows is an empty `SplitData`).
        verify (`bool`): let the reader hash-check the stores.

    Raises:
        CacheCorruptError: the store's ``image_id`` at a row's ``cache_index`` differs from the manifest's.
    """
    rows = manifest_rows(manifest_path)
    stores = {k: Path(v) for k, v in (recon_stores or {}).items()}
    reader = CacheReader(Path(input_store), stores or None, verify=verify)
    store_ids = np.asarray(reader.image_ids).astype(str)
    ci = rows["cache_index"]
    if ci.size and int(ci.max()) >= store_ids.shape[0]:
        raise CacheCorruptError(
            f"manifest {str(manifest_path)!r} points at cache row {int(ci.max())} but {str(input_store)!r}"
            f" holds {store_ids.shape[0]} images: the store is from another manifest; re-run `prepare`."
        )
    mismatch = np.flatnonzero(store_ids[ci] != rows["image_id"])
    if mismatch.size:
        i = int(mismatch[0])
        raise CacheCorruptError(
            f"manifest {str(manifest_path)!r}: image_id {rows['image_id'][i]!r} has cache_index {int(ci[i])},"
            f" but {str(input_store)!r} holds {store_ids[ci[i]]!r} there ({mismatch.size} mismatches):"
            " the store is from another manifest; re-run `prepare`."
        )
    full = reader.load(list(fields))
    out: dict[str, SplitData] = {}
    for split in splits:
        sel = np.flatnonzero(rows["split"] == split)
        idx = ci[sel]
        out[split] = SplitData(
            arrays={f: np.asarray(full[f][idx]) for f in fields},
            labels=rows["label"][sel],
            meta={name: rows[name][sel] for name in META_COLUMNS},
        )
        logger.info("loaded split <split=%s> <n=%d> <counts=%s>", split, sel.size, out[split].class_counts())
    return out
