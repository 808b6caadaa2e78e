"""Integrity of a cache store on disk: every shard file present, right size, and (optionally) right sha256.

Why this exists: zarr silently returns the fill value (zeros) for a missing chunk or shard file, and Blosc
has no content checksum, so a truncated ``dvc pull`` or a bit-flipped disk would otherwise feed zeros or
garbage to training. Every store written through ``pipeline.cache`` records the size and sha256 of each
shard file in its attributes (``multirecon_cache.files``); this module checks them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline.errors import CacheCorruptError

__all__ = ["check_files", "file_digest", "repair_hint", "sha256_file"]


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_digest(path: Path) -> dict[str, Any]:
    """``{"bytes": size, "sha256": hex}`` of one file: the record kept per shard file."""
    return {"bytes": path.stat().st_size, "sha256": sha256_file(path)}


def repair_hint(store: Path, stage: str | None) -> str:
    """How to get a good copy back: re-run the stage that writes the store, or pull it from the remote."""
    stage_txt = f"`dvc repro -f -s {stage}`" if stage else "`dvc repro -f -s <stage that writes it>`"
    return f"Repair: re-run the stage with {stage_txt}, or restore the store with `dvc pull {store}`."


def check_files(
    store: Path, files: Mapping[str, Mapping[str, Any]], *, verify: bool, stage: str | None = None
) -> None:
    """Check that every recorded shard file exists with its recorded size, and its sha256 when ``verify``.

    Args:
        store (`Path`): the store's root folder.
        files (`Mapping[str, Mapping]`): relative posix path -> ``{"bytes", "sha256"}``.
        verify (`bool`): also hash every file (reads the whole store once).
        stage (`str | None`): stage name for the repair hint.

    Raises:
        CacheCorruptError: naming the first bad shard file and how to repair.
    """
    for rel in sorted(files):
        rec = files[rel]
        p = store / rel
        if not p.is_file():
            raise CacheCorruptError(
                f"cache store {str(store)!r} is missing shard file {rel!r}. {repair_hint(store, stage)}"
            )
        size = p.stat().st_size
        if size != rec["bytes"]:
            raise CacheCorruptError(
                f"cache store {str(store)!r}: shard file {rel!r} has {size} bytes, expected {rec['bytes']}"
                f" (truncated or overwritten). {repair_hint(store, stage)}"
            )
        if verify and sha256_file(p) != rec["sha256"]:
            raise CacheCorruptError(
                f"cache store {str(store)!r}: shard file {rel!r} fails its sha256 check (garbled bytes)."
                f" {repair_hint(store, stage)}"
            )
