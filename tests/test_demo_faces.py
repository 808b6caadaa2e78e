"""Demo real faces: reproducible selection, JPEG parity, clear errors on too few faces."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.demo.faces import FacesConfig, export_builtin_faces, load_faces, select_faces, write_faces
from pipeline.errors import ConfigError, InputDataError

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "utkface"


def _config(**kw: object) -> FacesConfig:
    base = {"source": "builtin", "resolution": 16, "n_train": 20, "n_val": 5, "n_test": 10, "seed": 0}
    return FacesConfig(**{**base, **kw})  # type: ignore[arg-type]


def test_builtin_export_and_write(tmp_path: Path) -> None:
    n = export_builtin_faces(tmp_path / "lfw")
    assert n == 100 and len(list((tmp_path / "lfw").glob("*.png"))) == 100
    counts = write_faces(_config(source=str(tmp_path / "lfw")), tmp_path / "faces")
    assert counts == {"train": 20, "val": 5, "test": 10}
    x = load_faces(tmp_path / "faces", "train")
    assert x.shape == (20, 3, 16, 16) and x.dtype == np.uint8
    with Image.open(next((tmp_path / "faces" / "train").glob("*.jpg"))) as im:
        assert im.format == "JPEG"
    with (tmp_path / "faces" / "labels.csv").open() as fh:
        assert {r["split"] for r in csv.DictReader(fh)} == {"train", "val", "test"}


def test_selection_is_seeded_and_disjoint() -> None:
    a, sa = select_faces(_config())
    b, _ = select_faces(_config())
    c, _ = select_faces(_config(seed=1))
    assert a == b and a != c
    assert len(set(a)) == len(a) and sa.count("train") == 20


def test_too_few_faces_names_the_counts() -> None:
    with pytest.raises(InputDataError, match=r"has 100 usable faces.*= 150"):
        select_faces(_config(n_train=100, n_val=20, n_test=30))


def test_bad_config_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="n_val"):
        _config(n_val=-1)
    with pytest.raises(ConfigError, match="does not exist"):
        select_faces(_config(source=str(tmp_path / "nope")))


@pytest.mark.shared
@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data/utkface absent")
def test_utkface_asian_only_drops_duplicates() -> None:
    chosen, _ = select_faces(
        _config(source=str(SHARED), asian_only=True, n_train=1000, n_val=200, n_test=300)
    )
    assert len(chosen) == 1500
    assert all("_2_" in Path(p).name for p in chosen)  # UTKFace names: age_gender_race_...; race 2 = Asian
    with pytest.raises(InputDataError, match=r"1548 usable faces \(Asian only\)"):
        select_faces(_config(source=str(SHARED), asian_only=True, n_train=1500, n_val=40, n_test=10))
