"""The Parquet manifest: one row per source file found, so nothing a dataset holds is silently dropped.

The columns are fixed by ``docs/architecture.md``. Readers join on ``image_id`` (sha256 of the file bytes) and
find pixels through ``cache_index`` (the row in ``images.zarr``, -1 for rejected files).

`manifest_hash` identifies what the input cache holds and how it is split. It is the sha256 of the text
``"{image_id}\\t{path}\\t{split}\\n"`` for every cached row (``cache_index >= 0``) in cache order; it does not
depend on Parquet's byte layout (which changes with the pyarrow version) nor on rejected rows (which never
reach the cache).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.errors import InputDataError

__all__ = [
    "FAMILIES",
    "FAMILY_INDEX",
    "SCHEMA",
    "SPLITS",
    "STATUSES",
    "manifest_hash",
    "read_manifest",
    "rows_to_table",
    "write_manifest",
]

FAMILIES: tuple[str, ...] = ("real", "gan", "dm")
"""Family labels; the position is the class index of every ternary head (real = 0, gan = 1, dm = 2)."""
FAMILY_INDEX: dict[str, int] = {name: i for i, name in enumerate(FAMILIES)}
SPLITS: tuple[str, ...] = ("train", "val", "test")
STATUSES: tuple[str, ...] = ("accepted", "converted", "rejected")

SCHEMA = pa.schema(
    [
        ("image_id", pa.string()),
        ("path", pa.string()),
        ("dataset", pa.string()),
        ("generator", pa.string()),
        ("family", pa.string()),
        ("split", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("mode", pa.string()),
        ("format", pa.string()),
        ("jpeg_quality", pa.int16()),
        ("bytes", pa.int64()),
        ("status", pa.string()),
        ("reason", pa.string()),
        ("cache_index", pa.int64()),
    ]
)


def rows_to_table(rows: list[dict[str, Any]]) -> pa.Table:
    """Build a manifest table from row dicts (keys = `SCHEMA` names); a missing key is a `KeyError`."""
    columns = {name: [row[name] for row in rows] for name in SCHEMA.names}
    return pa.Table.from_pydict(columns, schema=SCHEMA)


def write_manifest(table: pa.Table, path: str | Path) -> Path:
    """Write ``table`` (cast to `SCHEMA`) as Parquet at ``path``; returns the path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table.select(SCHEMA.names).cast(SCHEMA), p)
    return p


def read_manifest(path: str | Path) -> pa.Table:
    """Read a manifest; a missing file or missing columns is an `InputDataError` naming them."""
    p = Path(path)
    if not p.is_file():
        raise InputDataError(f"manifest {str(p)!r} not found (run the `prepare` stage first).")
    table = pq.read_table(p)
    missing = [name for name in SCHEMA.names if name not in table.column_names]
    if missing:
        raise InputDataError(f"manifest {str(p)!r} lacks columns {missing}; re-run the `prepare` stage.")
    return table.select(SCHEMA.names).cast(SCHEMA)


def manifest_hash(manifest: pa.Table | str | Path) -> str:
    """sha256 of ``image_id\\tpath\\tsplit`` lines of the cached rows in cache order (module docstring)."""
    table = manifest if isinstance(manifest, pa.Table) else read_manifest(manifest)
    data = table.select(["image_id", "path", "split", "cache_index"]).to_pylist()
    cached = sorted((r for r in data if r["cache_index"] >= 0), key=lambda r: r["cache_index"])
    h = hashlib.sha256()
    for r in cached:
        h.update(f"{r['image_id']}\t{r['path']}\t{r['split']}\n".encode())
    return h.hexdigest()
