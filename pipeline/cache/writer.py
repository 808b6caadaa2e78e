"""Build a reconstruction store shard by shard: resumable after a crash, safe with several workers.

How a build runs (``build_recon_store``):
1. The store is built in ``work_dir`` (e.g. ``data/_work/<dataset>-<recon>``, git/dvc-ignored), not in the
   DVC output ``out``. ``work_dir/identity.json`` holds what the partial work was made from (provenance,
   input store checksums, layout); if it differs from the current call the work dir is discarded with a
   log line: stale partial work is never reused.
2. The unit of work is a shard (``shard_images`` rows, one file per array). Worker ``w`` of
   ``num_workers`` owns shards ``w::num_workers``, so two writers never touch one file (zarr has no
   locking). A shard is reconstructed whole, in batches of ``batch_size`` whose boundaries depend only on
   the shard (so a resumed or multi-worker build is bitwise identical to a single uninterrupted one),
   written with one region write per array, and only then marked done by an atomic marker file
   (``done/shard-<i>.json``, written to a temp name then moved with ``os.replace``) that records the
   shard files' sizes and sha256. A re-run skips shards whose marker and files check out and
   recomputes the rest.
3. When every shard is done, one worker (under an ``flock``) records all checksums in the attributes,
   removes the markers and renames the store to ``out`` (atomic on one filesystem).

Why a work dir and not ``persist: true``: DVC deletes a stage's outputs before running it, so partial
work inside ``out`` is lost unless the output is declared ``persist: true``. But a persisted output
disables DVC's run-cache for that stage (no ``dvc repro`` restore of a previously-seen run, and
``dvc push --run-cache`` has nothing to send), and makes a half-written output look like a normal one.
A work dir outside the output keeps the run-cache and ordinary ``dvc push``/``pull`` semantics; the price
is a promote step (a rename) and a folder to ignore (``/data/_work/`` is in ``.gitignore``/``.dvcignore``).

Limits: crash safety covers a killed process (kill -9, OOM, Ctrl-C), not a power cut: files are not
fsynced. A ``<work_dir>.lock`` file (for ``flock``) stays beside the work dir after a build; it is empty.
Multiple workers must share one filesystem with working ``flock`` (local disk or NFSv4), and run the
same ``reconstruct`` on the same kind of hardware if the store is to be bitwise identical.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from pipeline.cache.store import (
    CACHE_KEY,
    DEFAULT_CHUNK_IMAGES,
    DEFAULT_SHARD_IMAGES,
    FORMAT_VERSION,
    PROVENANCE_KEY,
    _jsonable,
    create_image_array,
    create_vector_array,
    open_store,
    parse_layout,
    replace_dir,
    shard_files,
    shard_ranges,
    store_layout,
)
from pipeline.cache.verify import file_digest
from pipeline.errors import ConfigError, MultireconError
from pipeline.progress import progress as progress_bar

__all__ = ["ReconStoreReport", "ReconstructorOutputError", "build_recon_store", "recon_outputs"]

log = logging.getLogger(__name__)

Reconstructor = Callable[[np.ndarray], np.ndarray]
RECON_ARRAYS = ("image_id", "mse", "recon", "residual")


class ReconstructorOutputError(MultireconError, ValueError):
    """A reconstructor returned the wrong shape/dtype or non-finite values; nothing was written."""


@dataclass(frozen=True, kw_only=True)
class ReconStoreReport:
    """What one ``build_recon_store`` call did.

    Attributes:
        out (`Path`): the final store path (exists when ``finalized``).
        n_images (`int`): rows in the input (and output) store.
        shards_total (`int`): shards in the store.
        shards_owned (`int`): shards this worker is responsible for.
        shards_done_before (`int`): owned shards found complete and skipped (resume).
        shards_computed (`int`): owned shards reconstructed by this call.
        images_computed (`int`): images reconstructed by this call.
        finalized (`bool`): the store was promoted to ``out`` by this call (or was already there).
        seconds (`float`): wall time of the call.
        images_per_s (`float`): ``images_computed`` / compute time (0 if nothing computed).
        mse_mean (`float | None`): mean per-image MSE over the whole store if finalized, else over the
            images computed by this call (None if none).
    """

    out: Path
    n_images: int
    shards_total: int
    shards_owned: int
    shards_done_before: int
    shards_computed: int
    images_computed: int
    finalized: bool
    seconds: float
    images_per_s: float
    mse_mean: float | None


def recon_outputs(
    images: np.ndarray, x_rec: np.ndarray, *, ids: list[str] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(recon uint8, residual float16, mse float32)`` from uint8 inputs and a float reconstruction.

    ``x_rec`` is in model units (``[-1, 1]``, unclipped). The residual ``x_rec - x`` and the MSE are
    computed in float32 before any quantisation (same arithmetic as ``pipeline.imaging.to_model``).
    """
    if x_rec.shape != images.shape:
        raise ReconstructorOutputError(
            f"reconstructor returned shape {x_rec.shape} for a batch of shape {images.shape}; must match."
        )
    if not np.issubdtype(x_rec.dtype, np.floating):
        raise ReconstructorOutputError(f"reconstructor must return floats, got dtype {x_rec.dtype}.")
    x_rec = x_rec.astype(np.float32, copy=False)
    finite = np.isfinite(x_rec).reshape(len(x_rec), -1).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        names = [ids[i] for i in bad[:3]] if ids else bad[:3].tolist()
        raise ReconstructorOutputError(
            f"reconstructor returned NaN/Inf for {len(bad)} of {len(x_rec)} images (e.g. {names});"
            " nothing was written for this shard."
        )
    x = images.astype(np.float32) / np.float32(127.5) - np.float32(1.0)
    res32 = x_rec - x
    mse = (res32.reshape(len(res32), -1) ** 2).mean(axis=1, dtype=np.float32)
    recon = np.rint((np.clip(x_rec, -1.0, 1.0) + np.float32(1.0)) * np.float32(127.5)).astype(np.uint8)
    return recon, res32.astype(np.float16), mse.astype(np.float32)


@contextmanager
def _flock(path: Path) -> Iterator[None]:
    """Exclusive advisory lock (released by the kernel if the process dies, so no stale locks)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, sort_keys=True, indent=1))
    os.replace(tmp, path)


def _marker(work_dir: Path, shard: int) -> Path:
    return work_dir / "done" / f"shard-{shard:06d}.json"


def _marker_ok(work_dir: Path, store: Path, shard: int) -> dict[str, Any] | None:
    """The marker's file records if the marker exists and its shard files match them, else None."""
    m = _marker(work_dir, shard)
    if not m.is_file():
        return None
    files: dict[str, Any] = json.loads(m.read_text())["files"]
    for rel, rec in files.items():
        p = store / rel
        if not p.is_file() or file_digest(p) != rec:
            log.warning(
                "shard marked done but its file differs; recomputing <shard=%d> <file=%s>", shard, rel
            )
            m.unlink()
            return None
    return files


def _identity(provenance: dict[str, Any], input_layout: dict[str, Any], chunk: int, shard: int) -> dict:
    files_json = json.dumps(input_layout.get("files", {}), sort_keys=True).encode()
    return {
        "format": FORMAT_VERSION,
        "provenance": provenance,
        "input_files_sha256": hashlib.sha256(files_json).hexdigest(),
        "n_images": int(input_layout["n_images"]),
        "chunk_images": chunk,
        "shard_images": shard,
    }


def _first_diff(a: dict[str, Any], b: dict[str, Any]) -> str:
    for k in sorted(set(a) | set(b)):
        if a.get(k) != b.get(k):
            return k
    return "?"


def _prepare_work(
    work_dir: Path, ident: dict[str, Any], shape: tuple[int, ...], chunk: int, shard: int
) -> Path:
    """Create (or validate and reuse) the work store; discard it when its identity differs."""
    store = work_dir / "store.zarr"
    id_path = work_dir / "identity.json"
    if work_dir.exists():
        old = json.loads(id_path.read_text()) if id_path.is_file() else None
        if old == ident:
            return store
        why = "no identity.json (interrupted set-up)" if old is None else f"field {_first_diff(old, ident)!r}"
        log.warning("discarding stale work dir <work_dir=%s> <reason=%s>", work_dir, why)
        shutil.rmtree(work_dir)
    (work_dir / "done").mkdir(parents=True)
    n, c, h, w = shape
    group = zarr.open_group(str(store), mode="w")
    kw = {"chunk_images": chunk, "shard_images": shard}
    create_image_array(group, "recon", n, (c, h, w), "uint8", **kw)
    create_image_array(group, "residual", n, (c, h, w), "float16", **kw)
    create_vector_array(group, "mse", n, "float32", **kw)
    create_vector_array(group, "image_id", n, str, **kw)
    _write_json_atomic(id_path, ident)  # last: its presence means the skeleton is complete
    return store


def _compute_shard(
    inp: zarr.Group,
    group: Mapping[str, zarr.Array],
    start: int,
    stop: int,
    reconstruct: Reconstructor,
    batch_size: int,
) -> np.ndarray:
    """Reconstruct rows ``[start, stop)`` in fixed batches and write each array's shard in one go."""
    images = np.asarray(inp["image"][start:stop])
    ids = [str(s) for s in inp["image_id"][start:stop]]
    recs, ress, mses = [], [], []
    for b in range(0, len(images), batch_size):  # boundaries depend only on the shard: reproducible
        batch = np.ascontiguousarray(images[b : b + batch_size])
        r, res, m = recon_outputs(batch, np.asarray(reconstruct(batch)), ids=ids[b : b + batch_size])
        recs.append(r)
        ress.append(res)
        mses.append(m)
    mse = np.concatenate(mses)
    group["recon"][start:stop] = np.concatenate(recs)
    group["residual"][start:stop] = np.concatenate(ress)
    group["mse"][start:stop] = mse
    group["image_id"][start:stop] = np.array(ids, dtype=str)
    return mse


def build_recon_store(
    input_store: Path,
    out: Path,
    *,
    reconstruct: Reconstructor,
    provenance: dict[str, Any],
    work_dir: Path,
    batch_size: int = 32,
    chunk_images: int = DEFAULT_CHUNK_IMAGES,
    shard_images: int = DEFAULT_SHARD_IMAGES,
    worker: int = 0,
    num_workers: int = 1,
    progress: bool = True,
    stage: str | None = None,
) -> ReconStoreReport:
    """Reconstruct every image of ``input_store`` into the store ``out`` (resumable; see module doc).

    Args:
        input_store (`Path`): the input cache (``image``, ``image_id``).
        out (`Path`): final store path, e.g. ``data/cache/<dataset>/ddim.zarr`` (the DVC output).
        reconstruct (`Callable`): uint8 `(B, 3, H, W)` -> float32 `(B, 3, H, W)` in ``[-1, 1]``
            (unclipped); deterministic per batch.
        provenance (`dict`): JSON-serialisable record stored under ``multirecon`` (kind, model hash,
            scheduler config, steps, seed, ...). Changing it discards partial work.
        work_dir (`Path`): where partial work lives, outside ``out`` (e.g. ``data/_work/<dataset>-ddim``).
        batch_size (`int`): images per ``reconstruct`` call.
        chunk_images / shard_images (`int`): store layout (``cache.chunk_images`` / ``cache.shard_images``).
        worker / num_workers (`int`): this process owns shards ``worker::num_workers``.
        progress (`bool`): tqdm bar over shards.
        stage (`str | None`): DVC stage name quoted in repair hints of the finished store.

    Returns:
        `ReconStoreReport`.

    Raises:
        ConfigError: bad worker/batch/layout values.
        ReconstructorOutputError: wrong shape/dtype or NaN/Inf from ``reconstruct`` (shard not written).
        CacheCorruptError / StaleCacheError: from opening the input store.
    """
    t0 = time.perf_counter()
    chunk_images, shard_images = parse_layout(chunk_images, shard_images)
    if not (isinstance(num_workers, int) and num_workers >= 1 and 0 <= worker < num_workers):
        raise ConfigError(
            f"`worker` must be in [0, num_workers) with `num_workers` >= 1, got {worker}/{num_workers}."
        )
    if batch_size < 1:
        raise ConfigError(f"`batch_size` must be >= 1, got {batch_size}.")
    input_store, out, work_dir = Path(input_store), Path(out), Path(work_dir)
    inp = open_store(input_store)
    in_layout = store_layout(inp)
    prov = _jsonable(provenance, "`provenance`")
    ident = _identity(prov, in_layout, chunk_images, shard_images)
    n = int(inp["image"].shape[0])
    shards = shard_ranges(n, shard_images)
    owned = list(range(worker, len(shards), num_workers))

    def report(**kw: Any) -> ReconStoreReport:
        base = {"out": out, "n_images": n, "shards_total": len(shards), "shards_owned": len(owned)}
        return ReconStoreReport(**base, seconds=time.perf_counter() - t0, **kw)

    if not work_dir.exists() and _already_built(out, ident):
        log.info("store already built, nothing to do <out=%s>", out)
        return report(
            shards_done_before=len(owned), shards_computed=0, images_computed=0, finalized=True,
            images_per_s=0.0, mse_mean=float(np.mean(open_store(out)["mse"][:])) if n else None,
        )  # fmt: skip

    lock = work_dir.with_name(work_dir.name + ".lock")
    with _flock(lock):  # one worker sets up (or discards) the work dir at a time
        store = _prepare_work(work_dir, ident, tuple(inp["image"].shape), chunk_images, shard_images)
    group = zarr.open_group(str(store), mode="r+")
    # write_empty_chunks is a runtime setting, not stored metadata: re-apply it on every reopen
    arrays = {name: group[name].with_config({"write_empty_chunks": True}) for name in RECON_ARRAYS}
    files_of = shard_files(group)

    done_before = [s for s in owned if _marker_ok(work_dir, store, s) is not None]
    todo = [s for s in owned if s not in set(done_before)]
    log.info(
        "building recon store <out=%s> <worker=%d/%d> <shards_total=%d> <done_before=%d> <todo=%d>",
        out, worker, num_workers, len(shards), len(done_before), len(todo),
    )  # fmt: skip
    compute_s, n_computed, mses = 0.0, 0, []
    for s in progress_bar(todo, desc=f"recon shards w{worker}", unit="shard", disable=not progress):
        start, stop = shards[s]
        t = time.perf_counter()
        mses.append(_compute_shard(inp, arrays, start, stop, reconstruct, batch_size))
        files = {rel: file_digest(store / rel) for name in RECON_ARRAYS for rel in [files_of[name][s]]}
        _write_json_atomic(_marker(work_dir, s), {"shard": s, "start": start, "stop": stop, "files": files})
        compute_s += time.perf_counter() - t
        n_computed += stop - start

    finalized = _finalize_if_complete(work_dir, store, out, lock, len(shards), prov, ident, stage)
    if finalized and n:
        mse_mean: float | None = float(np.mean(open_store(out)["mse"][:]))
    else:
        mse_mean = float(np.mean(np.concatenate(mses))) if mses else None
    rep = report(
        shards_done_before=len(done_before), shards_computed=len(todo), images_computed=n_computed,
        finalized=finalized, images_per_s=n_computed / compute_s if compute_s else 0.0, mse_mean=mse_mean,
    )  # fmt: skip
    log.info("recon store build done <report=%s>", rep)
    return rep


def _already_built(out: Path, ident: dict[str, Any]) -> bool:
    if not (out / "zarr.json").is_file():
        return False
    try:
        g = open_store(out, ident["provenance"])
    except MultireconError:  # missing, corrupt or stale: rebuild
        return False
    return store_layout(g).get("identity") == ident


def _finalize_if_complete(
    work_dir: Path,
    store: Path,
    out: Path,
    lock: Path,
    n_shards: int,
    prov: dict[str, Any],
    ident: dict[str, Any],
    stage: str | None,
) -> bool:
    """If every shard is done, record checksums, drop markers and promote the store to ``out``."""
    with _flock(lock):
        if not work_dir.exists():  # another worker finalized while we waited
            return _already_built(out, ident)
        records = [_marker_ok(work_dir, store, s) for s in range(n_shards)]
        if any(r is None for r in records):
            missing = sum(r is None for r in records)
            log.info("not finalizing yet <shards_missing=%d> <work_dir=%s>", missing, work_dir)
            return False
        files = {rel: rec for r in records if r for rel, rec in sorted(r.items())}
        group = zarr.open_group(str(store), mode="r+")
        group.attrs.update(
            {
                PROVENANCE_KEY: prov,
                CACHE_KEY: {
                    "format": FORMAT_VERSION,
                    "kind": "recon",
                    "n_images": ident["n_images"],
                    "chunk_images": ident["chunk_images"],
                    "shard_images": ident["shard_images"],
                    "stage": stage,
                    "identity": ident,
                    "files": dict(sorted(files.items())),
                },
            }
        )
        replace_dir(store, out)
        shutil.rmtree(work_dir)
        log.info("promoted recon store <out=%s> <shards=%d>", out, n_shards)
        return True
