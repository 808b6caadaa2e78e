"""Sharded Zarr v3 caches: the input image cache and per-reconstructor stores, written once and read often.

- ``store``: layout, ``write_input_store``, ``open_store`` (integrity + provenance checks).
- ``verify``: shard-file size/sha256 checks behind `CacheCorruptError`.
"""

from __future__ import annotations

from pipeline.cache.store import open_store, write_input_store

__all__ = ["open_store", "write_input_store"]
