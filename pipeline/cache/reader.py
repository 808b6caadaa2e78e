"""Aligned reads from the input cache and any set of reconstruction stores.

Field names: ``image`` / ``image_id`` (input store) and ``<name>.<array>`` for a reconstruction store
registered under ``name`` (``ddim.recon``, ``gan.residual``, ``ddim.mse``, ...).

Access patterns, from ``bench/bench_cache.py`` (``bench/results/cache.json``; 4,096 images at 64 px,
fields ``image`` + two ``recon``, chunk 256 / shard 1024, shared 2-core machine). zarr-python costs
~1-2 ms or more per call and per chunk touched, so random access is slow and whole-chunk access is fast:
- random batch of 32 rows x 3 fields via ``read``: ~0.35 s (one chunk decoded per row per field);
- one shuffled epoch via ``batches``: ~9,400 rows/s in memory mode including the initial load (later
  epochs ~130,000 rows/s), ~7,300 rows/s in chunk-window mode, vs ~700 rows/s decoding the same three
  images per row from PNG with PIL (13x, 10x);
- integer-array ``get_orthogonal_selection`` on sharded arrays was ~100x slower than slices, so reads
  are done as one slice per run of adjacent chunks.

Which to use:
- ``read(indices)`` of a random batch touches up to one chunk per image per field: fine for evaluation
  and inspection, slow for training.
- ``batches(...)`` is the training path. If the requested fields fit ``memory_budget_mb`` they are loaded
  once (sequential reads run at hundreds of MB/s) and each epoch is a permutation in memory. Otherwise
  each epoch shuffles whole chunks, reads ``window_chunks`` chunks at a time (every chunk decoded once per
  epoch) and shuffles rows inside that window (a shuffle buffer), so the sample order is random at chunk
  granularity and within windows, never fully i.i.d. The order depends only on ``(seed, epoch)``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import zarr

from pipeline.cache.store import open_store, shard_files, store_layout
from pipeline.cache.verify import check_files, repair_hint
from pipeline.errors import CacheCorruptError, ConfigError, StaleCacheError

__all__ = ["CacheReader", "epoch_windows"]

log = logging.getLogger(__name__)

INPUT_FIELDS = ("image", "image_id")


def epoch_windows(
    indices: np.ndarray, chunk_images: int, *, seed: int, epoch: int, window_chunks: int, shuffle: bool = True
) -> list[np.ndarray]:
    """Split ``indices`` into windows of whole chunks, in the (shuffled) order one epoch visits them.

    Returns a list of row-index arrays; each window's rows are already permuted (shuffle buffer) when
    ``shuffle``. Deterministic in ``(seed, epoch)``.
    """
    idx = np.asarray(indices, dtype=np.int64)
    if idx.size == 0:
        return []
    chunk_of = idx // chunk_images
    chunks = np.unique(chunk_of)
    order = np.argsort(chunk_of, kind="stable")
    groups = np.split(idx[order], np.searchsorted(chunk_of[order], chunks)[1:])
    rng = np.random.default_rng([int(seed), int(epoch)])
    seq = rng.permutation(len(groups)) if shuffle else np.arange(len(groups))
    windows = []
    for w in range(0, len(seq), window_chunks):
        rows = np.concatenate([groups[g] for g in seq[w : w + window_chunks]])
        windows.append(rng.permutation(rows) if shuffle else np.sort(rows))
    return windows


class CacheReader:
    """Row-aligned reader over an input store and named reconstruction stores.

    Args:
        input_store (`Path`): the input cache (``image``, ``image_id``).
        recon_stores (`Mapping[str, Path] | None`): name -> reconstruction store, e.g. ``{"ddim": ...}``.
        verify (`bool | "read"`, default True): True sha256-checks every shard file on open (one extra
            full read of the stores); ``"read"`` checks each shard file the first time a read touches it
            (cheap start, same guarantee); False checks only existence and sizes (for worker processes
            of a parent that verified). Blosc has no checksum of its own: garbled bytes can decode
            silently into wrong pixels, so only the sha256 check catches them.
        expected (`Mapping[str, dict] | None`): provenance to require per store name (``"input"`` or a
            recon name); a mismatch raises `StaleCacheError` naming the field.

    Raises:
        StaleCacheError: a recon store's ``image_id`` rows differ from the input's (not aligned).
    """

    def __init__(
        self,
        input_store: Path,
        recon_stores: Mapping[str, Path] | None = None,
        *,
        verify: bool | Literal["read"] = True,
        expected: Mapping[str, dict[str, Any]] | None = None,
    ) -> None:
        if verify not in (True, False, "read"):
            raise ConfigError(f"`verify` must be True, False or 'read', got {verify!r}.")
        self.verify = verify
        self._verified: set[tuple[str, str]] = set()
        expected = dict(expected or {})
        self.paths: dict[str, Path] = {"input": Path(input_store)}
        self.groups: dict[str, zarr.Group] = {
            "input": open_store(Path(input_store), expected.get("input"), verify=verify is True)
        }
        for name, p in (recon_stores or {}).items():
            if name == "input" or "." in name or not name:
                raise ConfigError(f"recon store name {name!r} is reserved or contains '.'; use e.g. 'ddim'.")
            self.paths[name] = Path(p)
            self.groups[name] = open_store(Path(p), expected.get(name), verify=verify is True)
        self._ids = [str(s) for s in self.groups["input"]["image_id"][:]]
        for name, g in self.groups.items():
            if name != "input":
                self._check_aligned(name, g)
        self.chunk_images = int(self.groups["input"]["image"].chunks[0])
        self._mem: dict[str, np.ndarray] = {}
        self.mode: str | None = None  # "memory" or "chunks": what the last `batches` call used

    # ------------------------------------------------------------------ basics
    @property
    def image_ids(self) -> list[str]:
        """Row order shared by all stores (the input store's ``image_id``)."""
        return list(self._ids)

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def fields(self) -> list[str]:
        """Every readable field name."""
        out = [f for f in INPUT_FIELDS if f in self.groups["input"]]
        for name, g in self.groups.items():
            if name != "input":
                out += [f"{name}.{a}" for a, _ in sorted(g.arrays()) if a != "image_id"]
        return out

    def _check_aligned(self, name: str, g: zarr.Group) -> None:
        ids = [str(s) for s in g["image_id"][:]]
        where = f"recon store {name!r} ({str(self.paths[name])!r})"
        if len(ids) != len(self._ids):
            raise StaleCacheError(
                f"{where} has {len(ids)} rows but the input store {str(self.paths['input'])!r} has"
                f" {len(self._ids)}: it was built from another input. Re-run its stage (`dvc repro`)."
            )
        for i, (a, b) in enumerate(zip(ids, self._ids, strict=True)):
            if a != b:
                raise StaleCacheError(
                    f"{where} is not aligned with the input store: row {i} has image_id {a!r} there but"
                    f" {b!r} in the input. Re-run its stage (`dvc repro`)."
                )

    def _array(self, field: str) -> tuple[str, zarr.Array]:
        store, _, arr = field.partition(".") if "." in field else ("input", "", field)
        g = self.groups.get(store)
        if g is None or arr not in g or (store == "input" and arr not in INPUT_FIELDS):
            raise ConfigError(f"unknown field {field!r}; available: {self.fields}.")
        return store, g[arr]

    def nbytes(self, fields: Sequence[str]) -> int:
        """Uncompressed bytes of whole arrays of ``fields`` (what ``load`` would hold in memory)."""
        total = 0
        for f in fields:
            _, a = self._array(f)
            total += int(np.prod(a.shape)) * (a.dtype.itemsize if a.dtype.kind != "T" else 64)
        return total

    # ------------------------------------------------------------------ reads
    def _read_rows(self, field: str, rows: np.ndarray) -> np.ndarray:
        """Rows (sorted, unique) of one field; decode failures become `CacheCorruptError` naming the shard."""
        store, arr = self._array(field)
        if field in self._mem:
            return self._mem[field][rows]
        shard0 = (arr.shards or arr.chunks)[0]
        root = self.paths[store]
        names = shard_files(self.groups[store])[arr.basename]
        touched = [names[s] for s in np.unique(rows // shard0)] if rows.size else []
        layout = store_layout(self.groups[store])
        stage, recorded = layout.get("stage"), layout.get("files", {})
        for rel in touched:  # zarr would return zeros for a shard deleted after open
            if not (root / rel).is_file():
                raise CacheCorruptError(
                    f"cache store {str(root)!r} is missing shard file {rel!r}. {repair_hint(root, stage)}"
                )
            if self.verify == "read" and (store, rel) not in self._verified:
                check_files(root, {rel: recorded[rel]}, verify=True, stage=stage)
                self._verified.add((store, rel))
        try:
            if rows.size and rows[-1] - rows[0] + 1 == rows.size:  # contiguous: one slice
                return np.asarray(arr[int(rows[0]) : int(rows[-1]) + 1])
            # One slice per run of adjacent chunks: each needed chunk is decoded once and no other.
            # (zarr's integer-array `get_orthogonal_selection` measured ~100x slower on sharded arrays.)
            chunk0 = arr.chunks[0]
            runs = np.split(rows, np.flatnonzero(np.diff(rows // chunk0) > 1) + 1) if rows.size else []
            parts = [np.asarray(arr[int(r[0]) : int(r[-1]) + 1])[r - r[0]] for r in runs]
            return np.concatenate(parts) if parts else np.asarray(arr[0:0])
        except (ValueError, RuntimeError, OSError, TypeError, IndexError) as e:
            check_files(root, {r: recorded[r] for r in touched if r in recorded}, verify=True, stage=stage)
            raise CacheCorruptError(
                f"cache store {str(root)!r}: decoding {field!r} from shard file(s) {touched} failed ({e})."
                f" {repair_hint(root, stage)}"
            ) from e

    def read(self, indices: Sequence[int] | np.ndarray, fields: Sequence[str]) -> dict[str, np.ndarray]:
        """Rows ``indices`` (any order, repeats allowed) of each field, as numpy arrays in that order.

        Each distinct chunk is decoded once per field. ``image_id`` comes back as a numpy str array.
        """
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"indices must be in [0, {len(self)}), got min {idx.min()} max {idx.max()}.")
        uniq, inverse = np.unique(idx, return_inverse=True)
        out = {}
        for f in fields:
            data = self._read_rows(f, uniq)
            out[f] = data[inverse] if not np.array_equal(uniq, idx) else data
        return out

    def load(self, fields: Sequence[str]) -> dict[str, np.ndarray]:
        """Whole arrays of ``fields`` in memory (kept for later ``read``/``batches`` calls)."""
        every = np.arange(len(self), dtype=np.int64)
        for f in fields:
            if f not in self._mem:
                self._mem[f] = self._read_rows(f, every)
        return {f: self._mem[f] for f in fields}

    def batches(
        self,
        fields: Sequence[str],
        batch_size: int,
        *,
        seed: int = 0,
        epoch: int = 0,
        indices: Sequence[int] | np.ndarray | None = None,
        shuffle: bool = True,
        drop_last: bool = False,
        memory_budget_mb: float = 2048.0,
        window_chunks: int = 16,
    ) -> Iterator[dict[str, np.ndarray]]:
        """Training-pattern batches: dicts of ``fields`` + ``"index"`` (rows); order fixed by (seed, epoch).

        Uses memory mode when ``nbytes(fields) <= memory_budget_mb`` (full i.i.d. shuffle), else
        chunk-window mode (see module doc). Restrict to a split with ``indices``.
        """
        if batch_size < 1:
            raise ConfigError(f"`batch_size` must be >= 1, got {batch_size}.")
        idx = np.arange(len(self)) if indices is None else np.asarray(indices, dtype=np.int64)
        if self.nbytes(fields) <= memory_budget_mb * 2**20:
            self.mode = "memory"
            self.load(fields)
            rng = np.random.default_rng([int(seed), int(epoch)])
            order = rng.permutation(idx) if shuffle else idx
            stop = len(order) - (len(order) % batch_size if drop_last else 0)
            for b in range(0, stop, batch_size):
                rows = order[b : b + batch_size]
                yield {"index": rows, **{f: self._mem[f][rows] for f in fields}}
            return
        self.mode = "chunks"
        wins = epoch_windows(
            idx, self.chunk_images, seed=seed, epoch=epoch, window_chunks=window_chunks, shuffle=shuffle
        )
        yield from self.window_batches(wins, fields, batch_size, drop_last=drop_last)

    def window_batches(
        self, windows: Sequence[np.ndarray], fields: Sequence[str], batch_size: int, *, drop_last: bool
    ) -> Iterator[dict[str, np.ndarray]]:
        """Read each window once and cut it into batches; leftover rows carry into the next window."""
        carry: dict[str, np.ndarray] | None = None
        for rows in windows:
            part = {"index": rows, **self.read(rows, fields)}
            if carry is not None:
                part = {k: np.concatenate([carry[k], v]) for k, v in part.items()}
            n = len(part["index"])
            full = n - n % batch_size
            for b in range(0, full, batch_size):
                yield {k: v[b : b + batch_size] for k, v in part.items()}
            carry = {k: v[full:] for k, v in part.items()} if full < n else None
        if carry is not None and not drop_last:
            yield carry
