"""Sharded Zarr v3 caches: the input image cache and per-reconstructor stores, written once and read often.

- ``store``: layout, ``write_input_store``, ``open_store`` (integrity + provenance checks).
- ``writer``: ``build_recon_store`` (resumable, multi-worker, promoted from a work dir).
- ``reader``: ``CacheReader`` (aligned reads, training-pattern ``batches``).
- ``loader``: torch ``CacheBatches``/``CacheDataset``/``make_loader`` (imports torch; import it directly).
- ``verify``: shard-file size/sha256 checks behind `CacheCorruptError`.
"""

from __future__ import annotations

from pipeline.cache.reader import CacheReader
from pipeline.cache.store import open_store, write_input_store
from pipeline.cache.writer import ReconStoreReport, ReconstructorOutputError, build_recon_store

__all__ = [
    "CacheReader",
    "ReconStoreReport",
    "ReconstructorOutputError",
    "build_recon_store",
    "open_store",
    "write_input_store",
]
