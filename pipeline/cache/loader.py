"""torch ``Dataset``/``DataLoader`` over the cache, for training stages with worker processes.

Each worker opens the zarr stores itself on first use (zarr groups are not shared across processes);
stores are verified once in the parent when the dataset is built.

- `CacheBatches` (an ``IterableDataset`` yielding whole batches) is the fast training path: every epoch
  shuffles whole chunks (``reader.epoch_windows``), worker ``w`` reads windows ``w::num_workers`` (each
  chunk decoded once per epoch) and shuffles rows inside each window. Call ``set_epoch(e)`` before each
  epoch (workers are re-created per epoch unless ``persistent_workers`` is in ``loader_kwargs``).
- `CacheDataset` (map-style, one row per item, ``__getitems__`` batch reads) is for arbitrary samplers
  and evaluation; random access touches one chunk per row per field, so it is the slow path.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, get_worker_info

from pipeline.cache.reader import CacheReader, epoch_windows
from pipeline.errors import ConfigError

__all__ = ["CacheBatches", "CacheDataset", "make_loader"]


class _LazyReader:
    """Holds paths; opens a `CacheReader` once per process (never pickles an open zarr group)."""

    def __init__(
        self,
        input_store: Path,
        recon_stores: Mapping[str, Path] | None,
        fields: Sequence[str],
        verify: bool | Literal["read"],
    ) -> None:
        self.input_store = Path(input_store)
        self.recon_stores = {k: Path(v) for k, v in (recon_stores or {}).items()}
        self.fields = list(fields)
        if "image_id" in self.fields:
            raise ConfigError("field 'image_id' cannot go through torch collation; use CacheReader.read.")
        probe = CacheReader(self.input_store, self.recon_stores, verify=verify)  # checks once, in the parent
        for f in self.fields:
            probe._array(f)
        self.n = len(probe)
        self.chunk_images = probe.chunk_images
        self.worker_verify: bool | Literal["read"] = False if verify is True else verify
        self._reader: CacheReader | None = None
        self._pid = -1

    @property
    def reader(self) -> CacheReader:
        if self._reader is None or self._pid != os.getpid():
            self._reader = CacheReader(self.input_store, self.recon_stores, verify=self.worker_verify)
            self._pid = os.getpid()
        return self._reader

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_reader": None, "_pid": -1}

    def rows(self, indices: Sequence[int] | np.ndarray | None) -> np.ndarray:
        """The store rows a dataset uses: ``indices`` as int64, default all."""
        return np.arange(self.n) if indices is None else np.asarray(indices, dtype=np.int64)


def _to_torch(batch: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in batch.items()}


class CacheDataset(Dataset):
    """Map-style: item ``i`` is row ``indices[i]`` as ``{"index", *fields}`` tensors."""

    def __init__(
        self,
        input_store: Path,
        recon_stores: Mapping[str, Path] | None,
        fields: Sequence[str],
        *,
        indices: Sequence[int] | np.ndarray | None = None,
        verify: bool | Literal["read"] = True,
    ) -> None:
        self.src = _LazyReader(input_store, recon_stores, fields, verify)
        self.indices = self.src.rows(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return self.__getitems__([i])[0]

    def __getitems__(self, items: Sequence[int]) -> list[dict[str, torch.Tensor]]:
        """A sampler batch in one read per field (DataLoader calls this), split into items for collate."""
        rows = self.indices[np.asarray(items, dtype=np.int64)]
        batch = _to_torch({"index": rows, **self.src.reader.read(rows, self.src.fields)})
        return [{k: v[j] for k, v in batch.items()} for j in range(len(rows))]


class CacheBatches(IterableDataset):
    """Yields shuffled batches (dicts of tensors incl. ``"index"``) by chunk windows; see module doc.

    Args:
        input_store / recon_stores: as in `CacheReader`.
        fields (`Sequence[str]`): e.g. ``["image", "ddim.recon", "gan.recon"]``.
        batch_size (`int`): rows per batch (a worker's last batch of an epoch may be short unless
            ``drop_last``).
        indices: rows to use (e.g. the train split), default all.
        shuffle / seed: chunk-window shuffle; call ``set_epoch(e)`` each epoch.
        window_chunks (`int`): chunks per shuffle window (the shuffle buffer, in chunks).
        verify (`bool | "read"`): True sha256-checks every shard once, in this process, before
            workers start; ``"read"`` makes each worker check shards as it first touches them.
    """

    def __init__(
        self,
        input_store: Path,
        recon_stores: Mapping[str, Path] | None,
        fields: Sequence[str],
        *,
        batch_size: int,
        indices: Sequence[int] | np.ndarray | None = None,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        window_chunks: int = 16,
        verify: bool | Literal["read"] = True,
    ) -> None:
        if batch_size < 1 or window_chunks < 1:
            raise ConfigError(
                f"`batch_size` and `window_chunks` must be >= 1, got {batch_size}, {window_chunks}."
            )
        self.src = _LazyReader(input_store, recon_stores, fields, verify)
        self.indices = self.src.rows(indices)
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.drop_last, self.window_chunks, self.epoch = drop_last, window_chunks, 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's shuffle (the order depends only on ``seed`` and ``epoch``)."""
        self.epoch = int(epoch)

    def __iter__(self) -> Any:
        wins = epoch_windows(
            self.indices,
            self.src.chunk_images,
            seed=self.seed,
            epoch=self.epoch,
            window_chunks=self.window_chunks,
            shuffle=self.shuffle,
        )
        info = get_worker_info()
        if info is not None:
            wins = wins[info.id :: info.num_workers]
        for b in self.src.reader.window_batches(
            wins, self.src.fields, self.batch_size, drop_last=self.drop_last
        ):
            yield _to_torch(b)


def make_loader(
    input_store: Path,
    recon_stores: Mapping[str, Path] | None,
    fields: Sequence[str],
    *,
    batch_size: int,
    num_workers: int = 0,
    loader_kwargs: Mapping[str, Any] | None = None,
    **options: Any,
) -> DataLoader:
    """A ``DataLoader`` over `CacheBatches` (batches already formed, so ``batch_size=None`` inside).

    Args:
        input_store, recon_stores, fields, batch_size: as in `CacheBatches`.
        num_workers (`int`): DataLoader worker processes; each opens the stores lazily.
        loader_kwargs (`Mapping`, *optional*): more ``DataLoader`` options (e.g. ``pin_memory``,
            ``persistent_workers``).
        **options: the other `CacheBatches` keywords (``indices``, ``shuffle``, ``seed``, ``drop_last``,
            ``window_chunks``, ``verify``), with its defaults (one place, so they cannot drift apart);
            call ``loader.dataset.set_epoch(e)`` each epoch.
    """
    ds = CacheBatches(input_store, recon_stores, fields, batch_size=batch_size, **options)
    return DataLoader(ds, batch_size=None, num_workers=num_workers, **dict(loader_kwargs or {}))
