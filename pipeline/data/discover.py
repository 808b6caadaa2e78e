"""Finding a dataset's files and their labels in the three supported layouts.

- ``asfd``: ``<root>/<generator>/**/<file>``; the generator is the first folder under the root and its family
  comes from ``families``. A generator missing from the map: each of its files is rejected, naming the
  generator and the params key. Files directly in the root have no generator and are rejected.
- ``binary`` (CNNDetection / UnivFD): any path with a ``0_real`` or ``1_fake`` folder. The generator is the
  first path component under the root, or the dataset name when ``0_real`` / ``1_fake`` sit at the root.
  ``0_real`` is family real; ``1_fake`` takes ``families[generator]``, else ``fake_family``.
- ``list``: a CSV or Parquet file with columns ``path`` (relative to the root), ``family``, ``generator`` and,
  for split mode ``column``, ``split`` (renamed through ``columns`` when the file uses other names).
  Listed paths that do not exist become rejected rows.

Folder layouts are walked recursively (following symbolic links, each real folder once). Hidden files and
folders (name starting with ``.``, e.g. ``.DS_Store``, ``.git``) are skipped and only counted; a folder that
cannot be listed becomes a rejected row. In the list layout the listed entries are the dataset: files under
the root that are not listed are only counted (``unlisted``), since list files usually pick a subset.
Every candidate is returned in sorted path order, which is the order that decides which duplicate is kept.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from pipeline.data import reasons
from pipeline.data.manifest import FAMILIES, SPLITS
from pipeline.errors import ConfigError

if TYPE_CHECKING:
    from pipeline.data.config import DatasetConfig

__all__ = ["Candidate", "Discovery", "discover", "read_list_file"]

log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class Candidate:
    """One source file (or unreadable folder) with the labels its location gives it.

    Args:
        path (`str`): posix path relative to the dataset root (as listed, for the list layout).
        abs_path (`Path`): where to read it.
        generator, family (`str`): labels ("" when unknown).
        split (`str`): the list file's split (column mode), else "".
        reject (`str`): a reason known before reading the file, "" when none.
    """

    path: str
    abs_path: Path
    generator: str = ""
    family: str = ""
    split: str = ""
    reject: str = ""


@dataclass(kw_only=True)
class Discovery:
    """All candidates in sorted path order plus what was skipped on purpose (counted, not listed)."""

    candidates: list[Candidate]
    hidden_skipped: int = 0
    unlisted: int = 0


def _walk(root: Path) -> tuple[list[tuple[str, Path]], list[tuple[str, str]], int]:
    """Files (rel, abs), unreadable folders (rel, error) and the hidden-entry count under ``root``."""
    files: list[tuple[str, Path]] = []
    bad_dirs: list[tuple[str, str]] = []
    hidden = 0
    seen: set[str] = set()

    def onerror(err: OSError) -> None:
        where = Path(err.filename) if err.filename else root
        rel = where.relative_to(root).as_posix() if where != root else "."
        bad_dirs.append((rel, f"{type(err).__name__}: {err.strerror or err}"))

    for dirpath, dirnames, filenames in os.walk(root, onerror=onerror, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:  # a symlink loop or a second link to the same folder
            dirnames[:] = []
            continue
        seen.add(real)
        kept = [d for d in dirnames if not d.startswith(".")]
        hidden += len(dirnames) - len(kept)
        dirnames[:] = sorted(kept)
        base = Path(dirpath)
        for name in filenames:
            if name.startswith("."):
                hidden += 1
                continue
            p = base / name
            files.append((p.relative_to(root).as_posix(), p))
    return files, bad_dirs, hidden


def _asfd_labels(cfg: DatasetConfig, rel: str) -> tuple[str, str, str]:
    parts = PurePosixPath(rel).parts
    if len(parts) < 2:
        return (
            "",
            "",
            reasons.with_detail(reasons.NOT_LABELLED, "file in the root, not in a <generator>/ folder"),
        )
    generator = parts[0]
    family = cfg.families.get(generator)
    if family is None:
        detail = f"generator {generator!r} is not in `datasets.{cfg.name}.families`"
        return generator, "", reasons.with_detail(reasons.NO_FAMILY, detail)
    return generator, family, ""


def _binary_labels(cfg: DatasetConfig, rel: str) -> tuple[str, str, str]:
    parts = PurePosixPath(rel).parts
    folders = parts[:-1]
    idx = next((i for i, p in enumerate(folders) if p in ("0_real", "1_fake")), None)
    if idx is None:
        return "", "", reasons.with_detail(reasons.NOT_LABELLED, "no 0_real or 1_fake folder in the path")
    generator = parts[0] if idx > 0 else cfg.name
    if folders[idx] == "0_real":
        return generator, "real", ""
    family = cfg.families.get(generator, cfg.fake_family)
    if family is None:
        detail = (
            f"generator {generator!r} is not in `datasets.{cfg.name}.families` "
            f"and `datasets.{cfg.name}.fake_family` is not set"
        )
        return generator, "", reasons.with_detail(reasons.NO_FAMILY, detail)
    return generator, family, ""


def read_list_file(path: Path, columns: dict[str, str], *, need_split: bool) -> list[dict[str, str]]:
    """Rows of a CSV/Parquet list file as strings, keyed by our column names.

    Raises:
        ConfigError: unreadable file or missing columns (names the file and the columns).
    """
    wanted = ["path", "family", "generator"] + (["split"] if need_split else [])
    source = {c: columns.get(c, c) for c in wanted}
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            table = pq.read_table(path)
        else:
            types = {name: pa.string() for name in source.values()}
            table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(column_types=types))
    except (OSError, pa.ArrowInvalid) as exc:
        raise ConfigError(f"list file {str(path)!r} cannot be read as CSV/Parquet: {exc}") from exc
    missing = [
        c if source[c] == c else f"{c} (as {source[c]!r})"
        for c in wanted
        if source[c] not in table.column_names
    ]
    if missing:
        raise ConfigError(
            f"list file {str(path)!r} lacks columns {missing} (has {table.column_names}); "
            "rename them in the file or map them with `datasets.<name>.columns`."
        )
    data = {c: table.column(source[c]).to_pylist() for c in wanted}
    return [
        {c: ("" if data[c][i] is None else str(data[c][i])) for c in wanted} for i in range(table.num_rows)
    ]


def _discover_list(cfg: DatasetConfig) -> Discovery:
    assert cfg.list_file is not None
    need_split = cfg.split.mode == "column"
    rows = read_list_file(cfg.list_file, cfg.columns, need_split=need_split)
    candidates: list[Candidate] = []
    listed: set[str] = set()
    for row in rows:
        rel = PurePosixPath(row["path"].replace("\\", "/")).as_posix()
        abs_path = cfg.root / rel
        listed.add(os.path.normpath(abs_path))
        family, split, reject = row["family"], row.get("split", ""), ""
        if not os.path.lexists(abs_path):
            reject = reasons.with_detail(reasons.LISTED_MISSING, f"{rel!r} not found under {str(cfg.root)!r}")
        elif family not in FAMILIES:
            reject = reasons.with_detail(
                reasons.UNKNOWN_FAMILY, f"{family!r} (allowed: {', '.join(FAMILIES)})"
            )
        elif need_split and split not in SPLITS:
            reject = reasons.with_detail(reasons.INVALID_SPLIT, f"{split!r} (allowed: {', '.join(SPLITS)})")
        candidates.append(
            Candidate(
                path=rel,
                abs_path=abs_path,
                generator=row["generator"],
                family=family if family in FAMILIES else "",
                split=split if need_split and split in SPLITS else "",
                reject=reject,
            )
        )
    files, _, hidden = _walk(cfg.root)
    skip = {os.path.normpath(cfg.list_file)}
    unlisted = sum(
        1 for _, p in files if os.path.normpath(p) not in listed and os.path.normpath(p) not in skip
    )
    if unlisted:
        log.info(
            "files under the root not in the list file are not part of the dataset <unlisted=%d>", unlisted
        )
    candidates.sort(key=lambda c: c.path)
    return Discovery(candidates=candidates, hidden_skipped=hidden, unlisted=unlisted)


def discover(cfg: DatasetConfig) -> Discovery:
    """Every file of the dataset with its generator/family labels, in sorted path order."""
    if cfg.layout == "list":
        return _discover_list(cfg)
    labeller = _asfd_labels if cfg.layout == "asfd" else _binary_labels
    files, bad_dirs, hidden = _walk(cfg.root)
    candidates: list[Candidate] = []
    for rel, err in bad_dirs:
        reject = reasons.with_detail(reasons.UNREADABLE, f"directory cannot be listed ({err})")
        candidates.append(Candidate(path=rel, abs_path=cfg.root / rel, reject=reject))
    for rel, abs_path in files:
        generator, family, reject = labeller(cfg, rel)
        candidates.append(
            Candidate(path=rel, abs_path=abs_path, generator=generator, family=family, reject=reject)
        )
    candidates.sort(key=lambda c: c.path)
    missing = sorted({c.generator for c in candidates if c.reject.startswith(reasons.NO_FAMILY)})
    if missing:
        log.warning(
            "generators without a family are rejected <dataset=%s> <generators=%s> "
            "<key=datasets.%s.families>",
            cfg.name,
            ",".join(missing),
            cfg.name,
        )
    return Discovery(candidates=candidates, hidden_skipped=hidden)
