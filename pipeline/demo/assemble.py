"""Lay the demo's real faces and fakes out as one ordinary list-layout dataset (the mini-ASFD).

``<root>/<generator>/<split>/*.jpg`` with a ``labels.csv`` (path, family, generator, split) that the
``prepare`` stage ingests like any user dataset: the demo exercises the same path as real data. Kept apart
from sampling (`pipeline.demo.synth`) so that the `assemble` stage depends on this file alone.
"""

from __future__ import annotations

import csv
import json
import logging
import shutil
from pathlib import Path

from pipeline.errors import InputDataError

__all__ = ["assemble_dataset"]

log = logging.getLogger(__name__)


def assemble_dataset(faces_dir: Path, fakes: dict[str, Path], out_dir: Path) -> dict[str, dict[str, int]]:
    """Lay out real faces and every generator's fakes as one list-layout dataset in ``out_dir``.

    Files are copied byte for byte (no re-encoding). Returns counts per generator and split.
    """
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    sources: list[tuple[str, str, Path]] = [("real", "real", faces_dir)]
    for name, folder in sorted(fakes.items()):
        sources.append((name, "", folder))
    rows = []
    counts: dict[str, dict[str, int]] = {}
    for generator, family, folder in sources:
        labels = folder / "labels.csv"
        if not labels.is_file():
            raise InputDataError(
                f"{str(labels)!r} not found: run the stage that makes {str(folder)!r} first."
            )
        if not family:
            family = json.loads((folder / "quality.json").read_text())["family"]
        with labels.open(newline="") as fh:
            for r in csv.DictReader(fh):
                rel = f"{generator}/{r['path']}"
                (out_dir / rel).parent.mkdir(parents=True, exist_ok=True)
                try:
                    shutil.copyfile(folder / r["path"], out_dir / rel)
                except FileNotFoundError as exc:
                    raise InputDataError(
                        f"{str(labels)!r} lists {r['path']!r}, which is not in {str(folder)!r}: re-run"
                        " the stage that makes it."
                    ) from exc
                rows.append({"path": rel, "family": family, "generator": generator, "split": r["split"]})
                counts.setdefault(generator, {}).setdefault(r["split"], 0)
                counts[generator][r["split"]] += 1
    with (out_dir / "labels.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["path", "family", "generator", "split"])
        w.writeheader()
        w.writerows(rows)
    log.info("mini-ASFD assembled <out=%s> <counts=%s>", out_dir, counts)
    return counts
