"""Sample a demo generator's share of the mini-ASFD's fakes.

Every fake goes through exactly the codec the real faces went through (JPEG at the same quality,
same encoder settings); `pipeline.demo.assemble` then lays real and fake images out as one dataset.
"""

from __future__ import annotations

import csv
import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm.auto import tqdm

from pipeline.demo.faces import decode_jpeg, encode_jpeg, load_faces
from pipeline.demo.generators import read_spec, sample_generator
from pipeline.demo.quality import quality_report
from pipeline.errors import ConfigError, MultireconWarning
from pipeline.plots import save_image_grid

if TYPE_CHECKING:
    import torch

__all__ = ["FakeCounts", "write_fakes"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class FakeCounts:
    """How many fakes per split: training-protocol generators fill train/val/test (in-distribution
    test); unseen generators only test."""

    n_train: int
    n_val: int
    n_test_id: int
    n_test: int

    def splits_for(self, role: str) -> list[str]:
        if role == "train":
            return ["train"] * self.n_train + ["val"] * self.n_val + ["test"] * self.n_test_id
        if role == "test":
            return ["test"] * self.n_test
        raise ConfigError(f"generator role must be 'train' or 'test'. Got {role!r} instead.")


def write_fakes(
    model_dir: Path,
    faces_dir: Path,
    out_dir: Path,
    counts: FakeCounts,
    *,
    seed: int,
    batch_size: int,
    device: torch.device,
    jpeg_quality: int = 75,
    tolerance: float = 0.15,
) -> dict:
    """Sample a generator's share of fakes, JPEG them, and write a quality report and grid."""
    spec = read_spec(model_dir)
    splits = counts.splits_for(spec.role)
    images = sample_generator(model_dir, len(splits), seed=seed, batch_size=batch_size, device=device)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, decoded = [], []
    for i, (img, split) in enumerate(tqdm(list(zip(images, splits, strict=True)), desc=f"jpeg {spec.name}")):
        data = encode_jpeg(np.ascontiguousarray(img.transpose(1, 2, 0)), jpeg_quality)
        rel = f"{split}/{i:06d}.jpg"
        (out_dir / split).mkdir(exist_ok=True)
        (out_dir / rel).write_bytes(data)
        rows.append({"path": rel, "split": split})
        decoded.append(decode_jpeg(data))
    with (out_dir / "labels.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["path", "split"])
        w.writeheader()
        w.writerows(rows)
    fakes = np.stack(decoded)
    save_image_grid(fakes[:64], out_dir / "samples.png")
    report = quality_report(
        fakes, load_faces(faces_dir, "train"), load_faces(faces_dir, "test"), tolerance=tolerance
    ).to_dict()
    report.update(generator=spec.name, kind=spec.kind, family=spec.family, role=spec.role)
    (out_dir / "quality.json").write_text(json.dumps(report, indent=2, sort_keys=True))
    if not report["ok"]:
        msg = (
            f"generator {spec.name!r}: samples differ from real faces beyond tolerance {tolerance}"
            f" (relative gaps {report['relative_gap']}, copies {report['copies']}): detectors may learn these"
            " statistics instead of the generator. Train it longer (see README, demo sizes)."
        )
        log.warning(msg)
        warnings.warn(msg, MultireconWarning, stacklevel=2)
    return report
