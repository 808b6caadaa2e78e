"""End-to-end ingestion: bad-input corpus, input cache content, splits, recode, audit warning, the stage."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from pipeline.cache.store import PROVENANCE_KEY, open_store
from pipeline.data import reasons
from pipeline.data.config import PrepareConfig, parse_dataset_config
from pipeline.data.manifest import SCHEMA, manifest_hash, read_manifest
from pipeline.data.prepare import prepare_dataset
from pipeline.errors import ConfigError, InputDataError, MultireconWarning
from tests.badcorpus import FAMILY_MAP, MAX_PIXELS, MIN_SIZE, build_bad_corpus, rgb_image

RES = 16
SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def _settings(**kw: Any) -> PrepareConfig:
    base = dict(resolution=RES, max_pixels=MAX_PIXELS, min_size=MIN_SIZE, chunk_images=4, shard_images=8)
    return PrepareConfig(**{**base, **kw})


def _dataset(root: Path, name: str = "ds", **section: Any) -> Any:
    return parse_dataset_config(name, {"root": str(root), **section}, base_dir=root.parent)


def _save(path: Path, im: Image.Image, fmt: str, **kw: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, format=fmt, **kw)


def _rows(out: Path) -> dict[str, dict[str, Any]]:
    return {r["path"]: r for r in read_manifest(out / "manifest.parquet").to_pylist()}


def _store(out: Path) -> tuple[np.ndarray, list[str], dict[str, Any]]:
    group = open_store(out / "images.zarr", verify=True)
    return group["image"][:], [str(i) for i in group["image_id"][:]], dict(group.attrs[PROVENANCE_KEY])


def _expected_pixels(path: Path) -> np.ndarray:
    """The documented recipe, written independently: RGB, short side -> RES (BICUBIC), centre crop."""
    with Image.open(path) as im:
        rgb = im.convert("RGB")
    w, h = rgb.size
    s = RES / min(w, h)
    nw, nh = round(w * s), round(h * s)
    resized = rgb.resize((nw, nh), Image.Resampling.BICUBIC)
    left, top = (nw - RES) // 2, (nh - RES) // 2
    return np.asarray(resized.crop((left, top, left + RES, top + RES))).transpose(2, 0, 1)


@pytest.fixture(scope="module")
def bad_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, Any]]:
    base = tmp_path_factory.mktemp("bad")
    root = base / "corpus"
    expected = build_bad_corpus(root)
    ds = _dataset(
        root,
        name="bad",
        layout="asfd",
        families=FAMILY_MAP,
        split={"mode": "ratio", "ratios": {"train": 0.5, "val": 0.25, "test": 0.25}},
    )
    prepare_dataset(ds, _settings(), base / "out")
    return root, base / "out", expected


def test_every_bad_file_has_a_row_with_the_right_reason(bad_run: tuple[Path, Path, dict[str, Any]]) -> None:
    _, out, expected = bad_run
    rows = _rows(out)
    assert set(rows) == set(expected)  # nothing dropped, hidden files (.DS_Store, .git/) not listed
    for path, exp in expected.items():
        row = rows[path]
        assert row["status"] == exp.status, (path, row["reason"])
        if exp.status == "rejected":
            assert row["reason"].startswith(exp.reason), (path, row["reason"])
            assert row["split"] == "" and row["cache_index"] == -1
        else:
            assert exp.reason in row["reason"], (path, row["reason"])
            assert row["split"] in ("train", "val", "test") and row["cache_index"] >= 0
    assert rows["real/png_named.jpg"]["format"] == "PNG"  # by content, not extension
    assert rows["adm/image.webp"]["format"] == "WEBP" and rows["adm/image.tiff"]["format"] == "TIFF"
    assert rows["real/good.jpg"]["jpeg_quality"] == 90 and rows["adm/image.bmp"]["jpeg_quality"] == -1
    assert rows["real/cmyk.jpg"]["mode"] == "CMYK" and rows["stylegan/bomb.png"]["width"] == 30000
    assert "`datasets.bad.families`" in rows["mystery/face.png"]["reason"]
    assert rows["stylegan/z_copy.jpg"]["image_id"] == rows["adm/a_face.jpg"]["image_id"]
    audit = json.loads((out / "audit.json").read_text())
    assert audit["hidden_skipped"] == 2 and audit["n_files"] == len(expected)
    assert audit["duplicates"]["groups"] == [
        {"kept": "adm/a_face.jpg", "duplicates": ["stylegan/z_copy.jpg"]}
    ]
    assert audit["rejection_reasons"][reasons.TOO_LARGE] == 2
    assert "Ingestion audit" in (out / "audit.md").read_text()


def test_manifest_schema_and_store_alignment(bad_run: tuple[Path, Path, dict[str, Any]]) -> None:
    root, out, _ = bad_run
    table = pq.read_table(out / "manifest.parquet")
    assert table.schema.equals(SCHEMA, check_metadata=False)
    rows = table.to_pylist()
    assert [r["path"] for r in rows] == sorted(r["path"] for r in rows)
    images, ids, attrs = _store(out)
    cached = sorted((r for r in rows if r["cache_index"] >= 0), key=lambda r: r["cache_index"])
    assert [r["cache_index"] for r in cached] == list(range(len(cached)))
    assert ids == [r["image_id"] for r in cached] and images.shape == (len(cached), 3, RES, RES)
    assert attrs["manifest_hash"] == manifest_hash(out / "manifest.parquet")
    assert attrs["resolution"] == RES and attrs["resize"] == "bicubic" and attrs["recode"] == "none"
    by_path = {r["path"]: r for r in rows}
    for rel in ("real/good.jpg", "adm/nested/deeper/face.png", "adm/image.webp", "real/png_named.jpg"):
        np.testing.assert_array_equal(
            images[by_path[rel]["cache_index"]], _expected_pixels(root / rel), err_msg=rel
        )


def _faces_tree(root: Path, n_per: int, fmt: dict[str, str], quality: int = 75) -> None:
    """``<generator>/<i>.<ext>`` images of distinct content, format per generator."""
    for g_i, (generator, f) in enumerate(fmt.items()):
        for i in range(n_per):
            ext = "jpg" if f == "JPEG" else f.lower()
            kw = {"quality": quality} if f == "JPEG" else {}
            _save(root / generator / f"{i:03d}.{ext}", rgb_image(24, 20, 1000 * g_i + i), f, **kw)


def test_duplicates_never_land_in_two_splits_and_runs_are_deterministic(tmp_path: Path) -> None:
    root = tmp_path / "d"
    _faces_tree(root, 12, {"real": "JPEG", "sg": "JPEG", "adm": "JPEG"})
    for i in range(6):  # the same bytes under another generator and in a nested folder
        (root / "sg" / "copies").mkdir(parents=True, exist_ok=True)
        (root / "sg" / "copies" / f"c{i}.jpg").write_bytes((root / "real" / f"{i:03d}.jpg").read_bytes())
        (root / "adm" / f"zz{i}.jpg").write_bytes((root / "real" / f"{i:03d}.jpg").read_bytes())
    ds = _dataset(root, layout="asfd", families={"real": "real", "sg": "gan", "adm": "dm"}, split={"seed": 5})
    prepare_dataset(ds, _settings(), tmp_path / "a")
    rows = _rows(tmp_path / "a")
    kept = [r for r in rows.values() if r["status"] != "rejected"]
    assert len({r["image_id"] for r in kept}) == len(kept) == 36
    dups = [r for r in rows.values() if r["reason"].startswith(reasons.DUPLICATE)]
    assert len(dups) == 12
    for r in dups:  # "adm/..." sorts first, so the adm copy is kept and the real one is the duplicate
        assert r["split"] == ""
        kept_path = r["reason"].removeprefix(f"{reasons.DUPLICATE} ")
        assert rows[kept_path]["image_id"] == r["image_id"] and rows[kept_path]["status"] == "accepted"
    prepare_dataset(ds, _settings(workers=2, chunk_images=2, shard_images=16), tmp_path / "b")
    assert read_manifest(tmp_path / "a" / "manifest.parquet").equals(
        read_manifest(tmp_path / "b" / "manifest.parquet")
    )
    img_a, ids_a, attrs_a = _store(tmp_path / "a")
    img_b, ids_b, attrs_b = _store(tmp_path / "b")
    np.testing.assert_array_equal(img_a, img_b)
    assert ids_a == ids_b and attrs_a["manifest_hash"] == attrs_b["manifest_hash"]
    other = _dataset(
        root, layout="asfd", families={"real": "real", "sg": "gan", "adm": "dm"}, split={"seed": 6}
    )
    prepare_dataset(other, _settings(), tmp_path / "c")
    splits_a = {p: r["split"] for p, r in rows.items()}
    splits_c = {p: r["split"] for p, r in _rows(tmp_path / "c").items()}
    assert splits_a != splits_c


def test_empty_split_is_an_error_naming_split_and_dataset(tmp_path: Path) -> None:
    root = tmp_path / "few"
    _faces_tree(root, 2, {"real": "PNG"})
    ds = _dataset(root, name="few", layout="asfd", families={"real": "real"})
    with pytest.raises(InputDataError, match=r"split `val` of dataset `few` is empty"):
        prepare_dataset(ds, _settings(), tmp_path / "out")
    assert (tmp_path / "out" / "manifest.parquet").is_file()  # written first, to inspect
    assert not (tmp_path / "out" / "images.zarr").exists()
    ok = _dataset(root, name="few", layout="asfd", families={"real": "real"}, split={"required": ["train"]})
    assert prepare_dataset(ok, _settings(), tmp_path / "out").n_cached == 2
    with pytest.raises(InputDataError, match=r"split `val` of dataset `few`"):  # a stale store is removed
        prepare_dataset(ds, _settings(), tmp_path / "out")
    assert not (tmp_path / "out" / "images.zarr").exists()


def test_protocol_split_end_to_end(tmp_path: Path) -> None:
    root = tmp_path / "asfd"
    gens = {
        "real": "JPEG",
        "stylegan": "JPEG",
        "adm": "JPEG",
        "stylegan2": "JPEG",
        "ldm": "JPEG",
        "sde": "JPEG",
    }
    _faces_tree(root, 10, gens)
    split = {
        "mode": "protocol",
        "train_generators": ["real", "stylegan", "adm"],
        "test_generators": ["stylegan2", "vqgan", "iddpm", "ldm"],
    }
    families = {"real": "real", "stylegan": "gan", "adm": "dm", "stylegan2": "gan", "ldm": "dm", "sde": "dm"}
    prepare_dataset(
        _dataset(root, name="asfd", layout="asfd", families=families, split=split),
        _settings(),
        tmp_path / "o",
    )
    rows = list(_rows(tmp_path / "o").values())
    by = {(r["generator"], r["split"]) for r in rows if r["status"] != "rejected"}
    assert {s for g, s in by if g in ("stylegan2", "ldm")} == {"test"}
    assert {s for g, s in by if g == "real"} == {"train", "val", "test"}
    sde = [r for r in rows if r["generator"] == "sde"]
    assert len(sde) == 10 and all(r["reason"].startswith(reasons.NOT_IN_PROTOCOL) for r in sde)


def test_list_layout_with_column_split(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = tmp_path / "lst"
    _faces_tree(root, 4, {"real": "JPEG", "fake": "PNG"})
    with (root / "labels.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "family", "generator", "split"])
        for i, s in enumerate(["train", "val", "test", "train"]):
            w.writerow([f"real/{i:03d}.jpg", "real", "ffhq", s])
            w.writerow([f"fake/{i:03d}.png", "dm", "ldm", s])
        w.writerow(["fake/missing.png", "dm", "ldm", "train"])
    ds = _dataset(root, name="lst", layout="list", list_file="labels.csv", split={"mode": "column"})
    with pytest.warns(MultireconWarning, match="separable by file format"):
        prepare_dataset(ds, _settings(recode="none"), tmp_path / "o")
    loud = [r for r in caplog.records if r.levelname == "WARNING" and "separable by file format" in r.message]
    assert len(loud) == 1 and "'lst'" in loud[0].message
    rows = _rows(tmp_path / "o")
    assert rows["real/001.jpg"]["split"] == "val" and rows["fake/002.png"]["split"] == "test"
    assert rows["fake/missing.png"]["reason"].startswith(reasons.LISTED_MISSING)
    assert "labels.csv" not in rows
    audit = json.loads((tmp_path / "o" / "audit.json").read_text())
    verdict = audit["format_separable"]
    assert verdict["separable"] and verdict["pairs"][0]["by"] == "format"
    assert "WARNING" in (tmp_path / "o" / "audit.md").read_text()


def test_recode_puts_every_image_through_one_codec(tmp_path: Path) -> None:
    root = tmp_path / "mix"
    _faces_tree(root, 3, {"real": "JPEG", "sg": "PNG"})
    families = {"real": "real", "sg": "gan"}
    ds = _dataset(root, layout="asfd", families=families, split={"ratios": {"train": 1.0}})
    with pytest.warns(MultireconWarning):
        prepare_dataset(ds, _settings(), tmp_path / "plain")
    # With recode the verdict is still reported (sources differ) but only logged, not warned.
    result = prepare_dataset(ds, _settings(recode="jpeg:60"), tmp_path / "recoded")
    assert result.format_separable
    plain, ids, _ = _store(tmp_path / "plain")
    recoded, ids_r, attrs = _store(tmp_path / "recoded")
    assert ids == ids_r and attrs["recode"] == "jpeg:60"
    for k in range(len(ids)):
        buf = io.BytesIO()
        Image.fromarray(plain[k].transpose(1, 2, 0)).save(buf, format="JPEG", quality=60, subsampling="4:2:0")
        expected = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")).transpose(2, 0, 1)
        np.testing.assert_array_equal(recoded[k], expected)
    assert not np.array_equal(plain, recoded)
    verdict = json.loads((tmp_path / "recoded" / "audit.json").read_text())["format_separable"]
    assert verdict["mitigated_by_recode"] is True


def test_all_jpeg_q75_dataset_is_clean(tmp_path: Path) -> None:
    root = tmp_path / "clean"
    _faces_tree(root, 4, {"real": "JPEG", "sg": "JPEG", "adm": "JPEG"}, quality=75)
    ds = _dataset(
        root,
        layout="asfd",
        families={"real": "real", "sg": "gan", "adm": "dm"},
        split={"ratios": {"train": 0.5, "test": 0.5}},
    )
    result = prepare_dataset(ds, _settings(), tmp_path / "o")  # MultireconWarning is an error in tests
    assert not result.format_separable
    audit = json.loads((tmp_path / "o" / "audit.json").read_text())
    assert audit["families"]["gan"]["jpeg_quality"] == {"75": 4}
    assert audit["split_counts"]["train"] == {"dm": 2, "gan": 2, "real": 2}


def test_stage_cli_reads_params_and_writes_outputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from stages.prepare import app

    _faces_tree(tmp_path / "data" / "faces", 4, {"real": "JPEG", "sg": "JPEG"})
    params = {
        "base": {"seed": 0},
        "data": {"resolution": 8},
        "cache": {"chunk_images": 2, "shard_images": 4},
        "prepare": {"recode": "none", "max_pixels": 1000000, "min_size": 8},
        "datasets": {
            "tiny": {
                "layout": "asfd",
                "root": "data/faces",
                "families": {"real": "real", "sg": "gan"},
                "split": {"ratios": {"train": 0.5, "val": 0.25, "test": 0.25}},
            }
        },
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    res = runner.invoke(app, ["tiny", "--out", "data/prepared/tiny"])
    assert res.exit_code == 0, res.output
    out = tmp_path / "data" / "prepared" / "tiny"
    assert {p.name for p in out.iterdir()} >= {"manifest.parquet", "images.zarr", "audit.json", "audit.md"}
    images, _, attrs = _store(out)
    assert images.shape == (8, 3, 8, 8) and attrs["resolution"] == 8
    res = runner.invoke(app, ["nope", "--out", "x"])
    assert isinstance(res.exception, ConfigError) and "`datasets.nope`" in str(res.exception)
    help_text = runner.invoke(app, ["--help"]).output
    assert "--out" in help_text and "--params" in help_text


@pytest.mark.shared
def test_utkface_subset_via_labels_csv(tmp_path: Path) -> None:
    utk = SHARED / "data" / "utkface"
    if not (utk / "labels.csv").is_file():
        pytest.skip(f"{utk} is absent")
    with (utk / "labels.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    dup = next(r for r in rows[40:] if r["duplicate_of"])  # 105 files are exact copies of another
    subset = [*rows[:40], *(r for r in rows[40:] if r["md5"] == dup["md5"])]
    with (tmp_path / "subset.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(subset)
    ds = parse_dataset_config(
        "utk",
        {
            "layout": "list",
            "root": str(utk),
            "list_file": str(tmp_path / "subset.csv"),
            "columns": {"family": "label"},
            "split": {"ratios": {"train": 0.5, "val": 0.25, "test": 0.25}},
        },
        base_dir=tmp_path,
    )
    result = prepare_dataset(ds, _settings(), tmp_path / "out")
    got = _rows(tmp_path / "out")
    assert set(got) == {r["path"] for r in subset}
    dups = [r for r in got.values() if r["reason"].startswith(reasons.DUPLICATE)]
    assert len(dups) == len(subset) - len({r["md5"] for r in subset}) >= 1
    assert all(r["format"] == "JPEG" and r["jpeg_quality"] == 75 for r in got.values())
    assert result.n_cached == len(got) - len(dups) and not result.format_separable
    audit = json.loads((tmp_path / "out" / "audit.json").read_text())
    assert audit["unlisted"] > 9000  # the rest of the folder is counted, not ingested
