"""`assemble_dataset`: the mini-ASFD as an ordinary list-layout dataset, files copied byte for byte."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from pipeline.demo.assemble import assemble_dataset
from pipeline.errors import InputDataError


def _folder(root: Path, rows: list[tuple[str, str]], *, family: str | None = None) -> Path:
    """A faces or fakes folder: `<split>/<name>.jpg` files (distinct bytes), labels.csv, quality.json."""
    root.mkdir(parents=True)
    with (root / "labels.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "split"])
        for path, split in rows:
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            (root / path).write_bytes(f"{root.name}:{path}".encode())
            w.writerow([path, split])
    if family is not None:
        (root / "quality.json").write_text(json.dumps({"family": family}))
    return root


@pytest.fixture
def sources(tmp_path: Path) -> tuple[Path, dict[str, Path]]:
    faces = _folder(
        tmp_path / "faces", [("train/0.jpg", "train"), ("val/1.jpg", "val"), ("test/2.jpg", "test")]
    )
    fakes = {
        "stylegan": _folder(
            tmp_path / "stylegan", [("train/0.jpg", "train"), ("test/1.jpg", "test")], family="gan"
        ),
        "ldm": _folder(tmp_path / "ldm", [("test/0.jpg", "test")], family="dm"),
    }
    return faces, fakes


def test_every_image_is_copied_unchanged_and_labelled(tmp_path: Path, sources) -> None:
    faces, fakes = sources
    out = tmp_path / "asfd"
    counts = assemble_dataset(faces, fakes, out)
    assert counts == {
        "real": {"train": 1, "val": 1, "test": 1},
        "ldm": {"test": 1},
        "stylegan": {"train": 1, "test": 1},
    }
    with (out / "labels.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 6
    family_of = {"real": "real", "stylegan": "gan", "ldm": "dm"}
    source_of = {"real": faces, **fakes}
    for r in rows:
        assert r["family"] == family_of[r["generator"]]
        generator, rel = r["path"].split("/", 1)
        assert generator == r["generator"] and rel.split("/")[0] == r["split"]
        assert (out / r["path"]).read_bytes() == (source_of[generator] / rel).read_bytes()


def test_a_rerun_replaces_the_previous_layout(tmp_path: Path, sources) -> None:
    faces, fakes = sources
    out = tmp_path / "asfd"
    assemble_dataset(faces, fakes, out)
    assemble_dataset(faces, {"ldm": fakes["ldm"]}, out)
    assert not (out / "stylegan").exists()
    assert sorted(p.name for p in out.iterdir()) == ["labels.csv", "ldm", "real"]


def test_a_fakes_folder_without_labels_is_named(tmp_path: Path, sources) -> None:
    faces, fakes = sources
    (fakes["ldm"] / "labels.csv").unlink()
    with pytest.raises(InputDataError, match=r"ldm/labels.csv' not found: run the stage that makes"):
        assemble_dataset(faces, fakes, tmp_path / "asfd")


def test_a_listed_file_that_is_missing_is_named(tmp_path: Path, sources) -> None:
    faces, fakes = sources
    (fakes["stylegan"] / "test/1.jpg").unlink()
    with pytest.raises(InputDataError, match=r"lists 'test/1.jpg', which is not in .*stylegan"):
        assemble_dataset(faces, fakes, tmp_path / "asfd")
