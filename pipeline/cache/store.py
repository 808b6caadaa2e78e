"""Zarr v3 store layout shared by the input cache and the reconstruction stores.

A store is a Zarr v3 group whose arrays are all indexed by image along axis 0 and sharded identically:
``chunk_images`` images per chunk (the unit zarr decodes), ``shard_images`` images per shard (the unit
written to one file, hashed and pushed by DVC, and owned by one writer). Shards keep a 100k-image store to
about a hundred files per array (DVC's cost is per file); chunks keep decoding granular.
The defaults (256 / 1024) come from ``bench/bench_cache.py`` (``bench/results/cache.json``): at 64 px a
1,024-image shard is ~10 MB (uint8) / ~15 MB (float16 residual) on disk, within the 10-100 MB that suits
DVC (at 32 px use 4096-image shards for the same file size). On this loaded machine the layouts' full-read
and training speeds differed by less than run-to-run noise; 256-image chunks mean 4x fewer zarr calls per
shuffled window (``reader``), while 64-image chunks answer single random batches faster, which training
does not need.

Group attributes:
- ``multirecon``: provenance (what made the store). ``open_store(path, expected)`` compares it and
  raises `StaleCacheError` naming the first differing field.
- ``multirecon_cache``: bookkeeping (``format``, ``n_images``, ``chunk_images``, ``shard_images``,
  ``stage``, ``files``: size + sha256 of every shard file), checked by ``open_store``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec

from pipeline.cache.verify import check_files, file_digest, repair_hint
from pipeline.errors import CacheCorruptError, ConfigError, InputDataError, StaleCacheError

__all__ = [
    "CACHE_KEY",
    "DEFAULT_CHUNK_IMAGES",
    "DEFAULT_SHARD_IMAGES",
    "FORMAT_VERSION",
    "PROVENANCE_KEY",
    "compressor_for",
    "create_image_array",
    "create_vector_array",
    "open_store",
    "parse_layout",
    "record_files",
    "replace_dir",
    "shard_files",
    "shard_ranges",
    "store_layout",
    "write_input_store",
]

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
PROVENANCE_KEY = "multirecon"
CACHE_KEY = "multirecon_cache"
DEFAULT_CHUNK_IMAGES = 256
DEFAULT_SHARD_IMAGES = 1024
_MISSING = "<missing>"


def parse_layout(chunk_images: int, shard_images: int) -> tuple[int, int]:
    """Validate chunk/shard sizes: positive ints, shard a multiple of chunk (a zarr sharding rule)."""
    for name, v in (("chunk_images", chunk_images), ("shard_images", shard_images)):
        if isinstance(v, bool) or not isinstance(v, int | np.integer):
            raise ConfigError(f"`cache.{name}` must be an int, got {v!r}.")
        if v < 1:
            raise ConfigError(f"`cache.{name}` must be >= 1, got {v}.")
    if shard_images % chunk_images:
        raise ConfigError(
            f"`cache.shard_images` ({shard_images}) must be a multiple of"
            f" `cache.chunk_images` ({chunk_images})."
        )
    return int(chunk_images), int(shard_images)


def shard_ranges(n_images: int, shard_images: int) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` image ranges of each shard; the last one may be short."""
    return [(s, min(s + shard_images, n_images)) for s in range(0, n_images, shard_images)]


def compressor_for(dtype: np.dtype | str) -> BloscCodec:
    """Blosc codec per dtype, chosen in ``bench/bench_cache.py`` (``bench/results/cache.json``).

    - uint8 (images, reconstructions): lz4 + bitshuffle. Training loads these whole arrays every run;
      lz4 decoded them ~2x faster than zstd (546 vs 281 MB/s in the codec table; 330-420 vs 200-250
      MB/s for whole zarr arrays) for ~16% more bytes on disk (ratio 1.25 vs 1.48 on natural 64 px
      crops). With zstd the first training epoch (load included) was only 3-6x faster than PNG
      decoding on this machine, under the >= 5x the issue asks; with lz4 it measured 13.5x.
    - wider types (float16 residuals, float32 MSE): zstd level 5 + byte shuffle. Residuals are the
      largest arrays; byte shuffle compressed them 1.61x vs 1.15x with bitshuffle (their low mantissa
      bits are noise) at a similar decode speed.
    """
    dt = np.dtype(dtype)
    if dt.itemsize == 1:
        return BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle", typesize=1)
    return BloscCodec(cname="zstd", clevel=5, shuffle="shuffle", typesize=dt.itemsize)


def create_image_array(
    group: zarr.Group,
    name: str,
    n_images: int,
    item_shape: tuple[int, ...],
    dtype: str,
    *,
    chunk_images: int,
    shard_images: int,
) -> zarr.Array:
    """Create ``name`` of shape ``(n_images, *item_shape)`` sharded along images; empty chunks are written.

    ``write_empty_chunks=True`` matters: otherwise an all-zero shard (e.g. a residual of a perfect
    reconstruction) is never written, and a missing file could not be told from a lost one.
    """
    arr = group.create_array(
        name,
        shape=(n_images, *item_shape),
        dtype=dtype,
        chunks=(chunk_images, *item_shape),
        shards=(shard_images, *item_shape),
        compressors=compressor_for(dtype),
        fill_value=0,
        config={"write_empty_chunks": True},
    )
    return arr


def create_vector_array(
    group: zarr.Group, name: str, n_images: int, dtype: Any, *, chunk_images: int, shard_images: int
) -> zarr.Array:
    """Create a per-image 1-D array (``image_id`` strings, ``mse`` floats) sharded like the images."""
    is_str = dtype is str
    return group.create_array(
        name,
        shape=(n_images,),
        dtype=dtype,
        chunks=(chunk_images,),
        shards=(shard_images,),
        compressors=None if is_str else compressor_for(dtype),
        fill_value="" if is_str else 0,
        config={"write_empty_chunks": True},
    )


def shard_files(group: zarr.Group) -> dict[str, list[str]]:
    """Array name -> relative paths of the shard files it must have (one per shard, in order)."""
    out: dict[str, list[str]] = {}
    for name, arr in sorted(group.arrays()):
        shard0 = (arr.shards or arr.chunks)[0]
        n = math.ceil(arr.shape[0] / shard0) if arr.shape[0] else 0
        tail = "/0" * (arr.ndim - 1)
        out[name] = [f"{name}/c/{i}{tail}" for i in range(n)]
    return out


def record_files(root: Path, rel_paths: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``{rel: {"bytes", "sha256"}}`` for the given shard files under ``root``."""
    return {rel: file_digest(root / rel) for rel in rel_paths}


def store_layout(group: zarr.Group) -> dict[str, Any]:
    """The ``multirecon_cache`` bookkeeping dict of an open store (empty if absent)."""
    return dict(group.attrs.get(CACHE_KEY, {}))


def replace_dir(src: Path, dst: Path) -> None:
    """Move the folder ``src`` to ``dst``, replacing ``dst``; the final rename is atomic on one filesystem."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    old = dst.with_name(f"{dst.name}.old-{os.getpid()}")
    if dst.exists():
        os.replace(dst, old)
    try:
        os.replace(src, dst)
    except OSError as e:  # different filesystem: rename is impossible, copy instead
        log.warning("atomic rename failed, copying <src=%s> <dst=%s> <err=%s>", src, dst, e)
        shutil.copytree(src, dst)
        shutil.rmtree(src)
    if old.exists():
        shutil.rmtree(old)


def _validate_images(images: np.ndarray, image_ids: Sequence[str]) -> list[str]:
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8:
        raise InputDataError(
            f"`images` must be a uint8 numpy array, got {type(images).__name__}"
            f" {getattr(images, 'dtype', '')}."
        )
    if images.ndim != 4 or images.shape[1] != 3:
        raise InputDataError(f"`images` must have shape (N, 3, H, W), got {images.shape}.")
    ids = [str(i) for i in image_ids]
    if len(ids) != images.shape[0]:
        raise InputDataError(f"`image_ids` has {len(ids)} entries but `images` has {images.shape[0]} rows.")
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise InputDataError(f"`image_ids` must be unique; {dup!r} appears more than once.")
    return ids


def _jsonable(d: Mapping[str, Any], what: str) -> dict[str, Any]:
    try:
        return json.loads(json.dumps(dict(d), sort_keys=True))
    except TypeError as e:
        raise ConfigError(f"{what} must be JSON-serialisable (str/int/float/bool/list/dict): {e}") from e


def write_input_store(
    path: Path,
    images: np.ndarray,
    image_ids: Sequence[str],
    attrs: dict[str, Any],
    *,
    chunk_images: int = DEFAULT_CHUNK_IMAGES,
    shard_images: int = DEFAULT_SHARD_IMAGES,
    stage: str | None = None,
) -> None:
    """Write the input cache: ``image`` uint8 `(N, 3, H, W)` and ``image_id`` str `(N,)`.

    Written in a sibling temp folder and renamed into place, so a crash never leaves a half store at
    ``path``. Works for ``N == 0``.

    Args:
        path (`Path`): the store folder (e.g. ``data/prepared/<dataset>/images.zarr``); replaced if present.
        images (`np.ndarray`): uint8 `(N, 3, H, W)` RGB.
        image_ids (`Sequence[str]`): N unique ids (manifest ``image_id``), fixing row order.
        attrs (`dict`): provenance stored under ``multirecon`` (JSON-serialisable).
        chunk_images / shard_images (`int`): images per chunk / per shard file.
        stage (`str | None`): the DVC stage writing it, quoted in repair hints.
    """
    chunk_images, shard_images = parse_layout(chunk_images, shard_images)
    ids = _validate_images(images, image_ids)
    prov = _jsonable(attrs, "`attrs`")
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    n, _, h, w = images.shape
    group = zarr.open_group(str(tmp), mode="w")
    img = create_image_array(
        group, "image", n, (3, h, w), "uint8", chunk_images=chunk_images, shard_images=shard_images
    )
    ida = create_vector_array(group, "image_id", n, str, chunk_images=chunk_images, shard_images=shard_images)
    ids_arr = np.array(ids, dtype=str) if ids else np.array([], dtype=str)
    for start, stop in shard_ranges(n, shard_images):  # whole-shard region writes: fastest, one file each
        img[start:stop] = images[start:stop]
        ida[start:stop] = ids_arr[start:stop]
    files = record_files(tmp, [f for fs in shard_files(group).values() for f in fs])
    group.attrs.update(
        {
            PROVENANCE_KEY: prov,
            CACHE_KEY: {
                "format": FORMAT_VERSION,
                "kind": "input",
                "n_images": int(n),
                "chunk_images": chunk_images,
                "shard_images": shard_images,
                "stage": stage,
                "files": files,
            },
        }
    )
    replace_dir(tmp, path)
    log.info("wrote input store <path=%s> <n=%d> <shards=%d>", path, n, len(shard_ranges(n, shard_images)))


def _diff(stored: Any, expected: Any, prefix: str) -> tuple[str, Any, Any] | None:
    """First differing field (dotted path, stored, expected) between two JSON values, or None."""
    if isinstance(stored, dict) and isinstance(expected, dict):
        for k in sorted(expected):
            sub = _diff(stored.get(k, _MISSING), expected[k], f"{prefix}{k}.")
            if sub:
                return sub
        return None
    return None if stored == expected else (prefix.rstrip("."), stored, expected)


def check_provenance(stored: Mapping[str, Any], expected: Mapping[str, Any], *, where: str) -> None:
    """Raise `StaleCacheError` naming the first field of ``expected`` that ``stored`` does not match.

    Only keys present in ``expected`` are compared (nested dicts recursively, dotted names in the message).
    """
    hit = _diff(dict(stored), _jsonable(expected, "`expected` provenance"), "")
    if hit:
        field, have, want = hit
        raise StaleCacheError(
            f"cache store {where} is stale: provenance field `{field}` is {have!r} in the store but"
            f" {want!r} now. Re-run the stage that writes it (e.g. `dvc repro`) instead of reusing it."
        )


def open_store(
    path: Path, expected: dict[str, Any] | None = None, *, verify: bool = False, mode: str = "r"
) -> zarr.Group:
    """Open a store written by ``pipeline.cache`` and check it before anyone reads it.

    Checks: the folder and its metadata exist; every shard file the arrays' shapes imply exists with its
    recorded size (and sha256 when ``verify``); when ``expected`` is given, each of its provenance fields
    equals the stored one.

    Args:
        path (`Path`): store folder.
        expected (`dict | None`): provenance the caller needs (compared key by key).
        verify (`bool`, default False): also hash every shard file (reads the whole store).
        mode (`str`): zarr open mode, ``"r"`` (default) or ``"r+"``.

    Returns:
        `zarr.Group`: the open group (arrays ``image``/``image_id`` or ``recon``/``residual``/``mse``/...).

    Raises:
        CacheCorruptError: missing store, missing/truncated/garbled shard file (named), with a repair hint.
        StaleCacheError: a provenance field differs (named, with both values).
    """
    path = Path(path)
    if not (path / "zarr.json").is_file():
        raise CacheCorruptError(
            f"cache store {str(path)!r} does not exist or has no zarr.json. {repair_hint(path, None)}"
        )
    try:
        group = zarr.open_group(str(path), mode=mode)
    except (ValueError, KeyError, OSError, json.JSONDecodeError) as e:
        raise CacheCorruptError(
            f"cache store {str(path)!r} cannot be opened as a Zarr v3 group ({e}). {repair_hint(path, None)}"
        ) from e
    layout = store_layout(group)
    stage = layout.get("stage")
    if not layout:
        raise CacheCorruptError(
            f"cache store {str(path)!r} has no `{CACHE_KEY}` attributes: not written by pipeline.cache or"
            f" unfinished. {repair_hint(path, stage)}"
        )
    recorded: dict[str, Any] = layout.get("files", {})
    needed = [f for fs in shard_files(group).values() for f in fs]
    unrecorded = [f for f in needed if f not in recorded]
    if unrecorded:
        raise CacheCorruptError(
            f"cache store {str(path)!r}: shard file {unrecorded[0]!r} has no checksum record (store not"
            f" finalized or metadata damaged). {repair_hint(path, stage)}"
        )
    check_files(path, recorded, verify=verify, stage=stage)
    if expected is not None:
        check_provenance(group.attrs.get(PROVENANCE_KEY, {}), expected, where=repr(str(path)))
    return group
