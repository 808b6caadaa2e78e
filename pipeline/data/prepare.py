"""Ingestion of one dataset: manifest, input cache and format-bias audit (the ``prepare`` stage).

Params (``docs/snippets/prepare.yaml``)::

    datasets:
      <name>:
        layout: asfd | binary | list
        root: <folder>                 # relative to the repo root, or absolute
        list_file: labels.csv          # list layout: CSV/Parquet (path, family, generator [, split]),
                                       #   relative to root or absolute
        columns: {family: label}       # list layout, optional: our column -> the file's column
        families: {stylegan: gan, adm: dm, real: real}  # generator -> family (asfd; binary for 1_fake)
        fake_family: gan               # binary: family of 1_fake when the generator is not in `families`
        split:
          mode: column | protocol | ratio
          seed: 0                      # default base.seed
          ratios: {train: 0.8, val: 0.1, test: 0.1}
          train_generators: [real, stylegan, adm]           # protocol: split by ratios
          test_generators: [stylegan2, vqgan, iddpm, ldm]   # protocol: all to test
          required: [train, val, test] # splits that must not be empty (default: those with ratio > 0,
                                       #   plus test in protocol mode; all three in column mode)
    prepare:
      recode: none                     # none | png | jpeg:Q
      max_pixels: 40000000             # decompression-bomb limit, checked from the header
      min_size: 16                     # smaller width or height -> rejected
      workers: 0                       # decoding processes, 0 = auto (<= 2)
    data.resolution, cache.chunk_images, cache.shard_images, base.seed: shared keys.

Outputs in ``out``: ``manifest.parquet`` (one row per file found, see ``pipeline.data.manifest``),
``images.zarr`` (``pipeline.cache.store`` input store: rows = manifest rows with ``cache_index >= 0``, in
path order), ``audit.json`` and ``audit.md`` (``pipeline.data.audit``).

Failure policy: only configuration errors (`ConfigError`, raised while parsing) and an empty required split
(`InputDataError`, after the manifest and audit are written so they can be inspected) stop the stage. Any bad
file becomes a rejected row. Exact duplicates (same sha256): the first in sorted path order is kept, the
others are rejected as ``duplicate of <path>``, so one content never lands in two splits.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline import __version__
from pipeline.cache.store import write_input_store
from pipeline.data import reasons
from pipeline.data.audit import audit_rows, render_markdown
from pipeline.data.decode import DecodeResult, DecodeSettings, decode_task
from pipeline.data.discover import Candidate, Discovery, discover
from pipeline.data.manifest import manifest_hash, rows_to_table, write_manifest
from pipeline.data.splits import SplitItem, assign_splits, protocol_reject
from pipeline.errors import InputDataError, MultireconWarning
from pipeline.progress import progress

if TYPE_CHECKING:
    from collections.abc import Iterator

    from pipeline.data.config import DatasetConfig, PrepareConfig

__all__ = ["PREPROCESSING", "PrepareResult", "decode_all", "prepare_dataset"]

log = logging.getLogger(__name__)

PREPROCESSING = "resize short side (PIL BICUBIC) + centre crop, RGB uint8"
_POOL_MIN_FILES = 256  # below this a process pool costs more than it saves


@dataclass(frozen=True, kw_only=True)
class PrepareResult:
    """What `prepare_dataset` wrote and a summary of it."""

    manifest: Path
    store: Path
    audit_json: Path
    audit_md: Path
    n_files: int
    n_cached: int
    manifest_hash: str
    format_separable: bool


def _n_workers(requested: int, n_tasks: int) -> int:
    if requested > 0:
        return requested
    if n_tasks < _POOL_MIN_FILES:
        return 1
    return max(1, min(2, os.cpu_count() or 1))


def decode_all(
    tasks: list[tuple[str, DecodeSettings | None]], *, workers: int = 0, desc: str = "decode"
) -> Iterator[DecodeResult]:
    """Decode files in input order, in a ``spawn`` process pool when it pays off (results stay ordered)."""
    n = _n_workers(workers, len(tasks))
    bar = dict(total=len(tasks), desc=desc, unit="file", mininterval=1.0)
    if n <= 1:
        yield from progress(map(decode_task, tasks), **bar)
        return
    ctx = multiprocessing.get_context("spawn")  # no fork of a parent that may hold torch threads
    with ctx.Pool(n) as pool:
        chunksize = max(1, min(64, len(tasks) // (8 * n)))
        yield from progress(pool.imap(decode_task, tasks, chunksize=chunksize), **bar)


def _row(cand: Candidate, dataset: str, res: DecodeResult | None) -> dict[str, Any]:
    res = res or DecodeResult()
    rejected = bool(cand.reject) or res.status == "rejected"
    return {
        "image_id": res.image_id,
        "path": cand.path,
        "dataset": dataset,
        "generator": cand.generator,
        "family": cand.family,
        "split": "",
        "width": res.width,
        "height": res.height,
        "mode": res.mode,
        "format": res.format,
        "jpeg_quality": res.jpeg_quality,
        "bytes": res.bytes,
        "status": "rejected" if rejected else res.status,
        "reason": cand.reject or res.reason,
        "cache_index": -1,
    }


def _scan(dataset: DatasetConfig, settings: PrepareConfig) -> tuple[Discovery, dict[int, DecodeResult]]:
    """Discover the files, apply label/protocol rejections, then hash and decode (results by candidate)."""
    found = discover(dataset)
    for c in found.candidates:
        if not c.reject:
            c.reject = protocol_reject(c.generator, dataset.split, dataset.name)
    decode = DecodeSettings(
        resolution=settings.resolution,
        recode=settings.recode,
        max_pixels=settings.max_pixels,
        min_size=settings.min_size,
    )
    # Label-rejected files are still hashed (image_id, bytes) but not decoded; missing ones are not read.
    todo = [
        i
        for i, c in enumerate(found.candidates)
        if not c.reject.startswith((reasons.LISTED_MISSING, reasons.UNREADABLE))
    ]
    tasks = [
        (str(found.candidates[i].abs_path), None if found.candidates[i].reject else decode) for i in todo
    ]
    decoded = decode_all(tasks, workers=settings.workers, desc=f"prepare {dataset.name}")
    return found, dict(zip(todo, decoded, strict=True))


def _store_attrs(dataset: DatasetConfig, settings: PrepareConfig, m_hash: str) -> dict[str, Any]:
    """Provenance of the input store: what a reader must match (manifest hash, preprocessing)."""
    return {
        "kind": "input",
        "dataset": dataset.name,
        "manifest_hash": m_hash,
        "manifest_hash_method": "sha256 of 'image_id\\tpath\\tsplit\\n' of cached rows in cache order",
        "resolution": settings.resolution,
        "resize": "bicubic",
        "crop": "center",
        "preprocessing": PREPROCESSING,
        "recode": settings.recode,
        "max_pixels": settings.max_pixels,
        "min_size": settings.min_size,
        "split_mode": dataset.split.mode,
        "split_seed": dataset.split.seed,
        "code_version": __version__,
    }


def prepare_dataset(dataset: DatasetConfig, settings: PrepareConfig, out: Path) -> PrepareResult:
    """Ingest ``dataset`` into ``out`` (manifest, input cache, audit); see the module docstring.

    Raises:
        InputDataError: a required split ends up empty (names the split and the dataset).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    found, results = _scan(dataset, settings)
    cands = found.candidates
    rows = [_row(c, dataset.name, results.get(i)) for i, c in enumerate(cands)]
    duplicates = _reject_duplicates(rows, results)
    kept = [i for i, r in enumerate(rows) if r["status"] != "rejected"]
    items = [
        SplitItem(image_id=rows[i]["image_id"], generator=rows[i]["generator"], split=cands[i].split)
        for i in kept
    ]
    for k, (i, split) in enumerate(zip(kept, assign_splits(items, dataset.split), strict=True)):
        rows[i]["split"], rows[i]["cache_index"] = split, k
    table = rows_to_table(rows)
    m_hash = manifest_hash(table)
    manifest_path = write_manifest(table, out / "manifest.parquet")
    audit = audit_rows(
        rows,
        dataset=dataset.name,
        recode=settings.recode,
        duplicates=duplicates,
        hidden_skipped=found.hidden_skipped,
        unlisted=found.unlisted,
    )
    audit_json, audit_md = out / "audit.json", out / "audit.md"
    audit_json.write_text(json.dumps(audit, indent=2) + "\n")
    audit_md.write_text(render_markdown(audit))
    _warn_format_bias(dataset.name, audit["format_separable"])
    _warn_absent_generators(dataset, rows)
    store = out / "images.zarr"
    try:
        _check_required_splits(dataset, audit["split_counts"], audit_md)
    except InputDataError:
        if store.exists():  # a store from an earlier run would no longer match the manifest beside it
            shutil.rmtree(store)
        raise
    r = settings.resolution
    pixels = [results[i].pixels for i in kept]
    images = np.stack(pixels) if pixels else np.zeros((0, 3, r, r), dtype=np.uint8)  # type: ignore[arg-type]
    write_input_store(
        store,
        images,
        [rows[i]["image_id"] for i in kept],
        _store_attrs(dataset, settings, m_hash),
        chunk_images=settings.chunk_images,
        shard_images=settings.shard_images,
        stage=f"prepare@{dataset.name}",
    )
    st = audit["status_counts"]
    log.info(
        "prepared <dataset=%s> <files=%d> <accepted=%d> <converted=%d> <rejected=%d> <manifest_hash=%s>",
        dataset.name,
        len(rows),
        st["accepted"],
        st["converted"],
        st["rejected"],
        m_hash[:12],
    )
    return PrepareResult(
        manifest=manifest_path,
        store=store,
        audit_json=audit_json,
        audit_md=audit_md,
        n_files=len(rows),
        n_cached=len(kept),
        manifest_hash=m_hash,
        format_separable=bool(audit["format_separable"]["separable"]),
    )


# Rejections decided by labels or reading, not by content: such files never claim or lose a content slot.
_LABEL_REASONS = (
    reasons.NO_FAMILY,
    reasons.NOT_IN_PROTOCOL,
    reasons.NOT_LABELLED,
    reasons.UNKNOWN_FAMILY,
    reasons.INVALID_SPLIT,
    reasons.LISTED_MISSING,
    reasons.UNREADABLE,
    reasons.NOT_REGULAR,
)


def _reject_duplicates(rows: list[dict[str, Any]], results: dict[int, DecodeResult]) -> list[dict[str, Any]]:
    """Reject later copies (path order) of the same bytes; return ``{"kept", "duplicates"}`` groups."""
    first: dict[str, int] = {}
    groups: dict[int, list[str]] = {}
    for i, r in enumerate(rows):
        if not r["image_id"] or r["bytes"] <= 0 or r["reason"].startswith(_LABEL_REASONS):
            continue
        j = first.setdefault(r["image_id"], i)
        if j == i:
            continue
        r["status"], r["reason"] = "rejected", f"{reasons.DUPLICATE} {rows[j]['path']}"
        if i in results:
            results[i].pixels = None
        groups.setdefault(j, []).append(r["path"])
    return [{"kept": rows[j]["path"], "duplicates": paths} for j, paths in sorted(groups.items())]


def _warn_format_bias(name: str, verdict: dict[str, Any]) -> None:
    """Loud warning when families are separable by format alone (logging only if recode mitigates it)."""
    if not verdict["separable"]:
        return
    if verdict["mitigated_by_recode"]:
        log.warning(
            "families separable by source format; prepare.recode=%s re-encodes every cached image "
            "<dataset=%s> %s",
            verdict["recode"],
            name,
            verdict["reason"],
        )
        return
    msg = (
        f"dataset {name!r}: families are separable by file format alone ({verdict['reason']}). A detector "
        "can learn the codec instead of the generator; set `prepare.recode` (e.g. jpeg:75) or fix the "
        "sources."
    )
    log.warning(msg)
    warnings.warn(msg, MultireconWarning, stacklevel=3)


def _warn_absent_generators(dataset: DatasetConfig, rows: list[dict[str, Any]]) -> None:
    """Log protocol generators with no cached image (a typo in params, or a folder not there yet)."""
    if dataset.split.mode != "protocol":
        return
    present = {r["generator"] for r in rows if r["status"] != "rejected"}
    absent = [
        g for g in (*dataset.split.train_generators, *dataset.split.test_generators) if g not in present
    ]
    if absent:
        log.warning(
            "protocol generators without any accepted image <dataset=%s> <generators=%s> "
            "<keys=datasets.%s.split.train_generators/test_generators>",
            dataset.name,
            ",".join(absent),
            dataset.name,
        )


def _check_required_splits(
    dataset: DatasetConfig, split_counts: dict[str, dict[str, int]], audit_md: Path
) -> None:
    empty = [s for s in dataset.split.required if not sum(split_counts.get(s, {}).values())]
    if empty:
        raise InputDataError(
            f"split `{empty[0]}` of dataset `{dataset.name}` is empty "
            f"(required: {list(dataset.split.required)}; split mode {dataset.split.mode!r}). "
            f"Add images, change `datasets.{dataset.name}.split`, or see {str(audit_md)!r} for what was "
            "rejected."
        )
