"""The three dataset layouts and the configuration errors of ``datasets.<name>``."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.data import reasons
from pipeline.data.config import parse_dataset_config, parse_prepare_config
from pipeline.data.discover import discover
from pipeline.errors import ConfigError


def _touch(root: Path, *rels: str) -> None:
    for rel in rels:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(rel.encode())


def _cfg(root: Path, name: str = "ds", **section: Any) -> Any:
    return parse_dataset_config(name, {"root": str(root), **section}, base_dir=root.parent)


def _labels(cfg: Any) -> dict[str, tuple[str, str, str]]:
    return {c.path: (c.generator, c.family, reasons.category(c.reject)) for c in discover(cfg).candidates}


def test_asfd_layout_generator_is_first_folder(tmp_path: Path) -> None:
    root = tmp_path / "asfd"
    _touch(
        root, "real/a.jpg", "stylegan/x/y/b.png", "adm/c.webp", "vqgan/d.png", "notes.txt", ".hidden/e.png"
    )
    (root / "real" / ".DS_Store").write_bytes(b"")
    cfg = _cfg(root, layout="asfd", families={"real": "real", "stylegan": "gan", "adm": "dm"})
    found = discover(cfg)
    assert [c.path for c in found.candidates] == sorted(
        ["real/a.jpg", "stylegan/x/y/b.png", "adm/c.webp", "vqgan/d.png", "notes.txt"]
    )
    assert found.hidden_skipped == 2  # .hidden/ and .DS_Store: counted, not listed
    labels = _labels(cfg)
    assert labels["real/a.jpg"] == ("real", "real", "")
    assert labels["stylegan/x/y/b.png"] == ("stylegan", "gan", "")
    assert labels["adm/c.webp"] == ("adm", "dm", "")
    assert labels["vqgan/d.png"] == ("vqgan", "", reasons.NO_FAMILY)
    assert labels["notes.txt"][2] == reasons.NOT_LABELLED
    vq = next(c for c in found.candidates if c.path == "vqgan/d.png")
    assert "'vqgan'" in vq.reject and "`datasets.ds.families`" in vq.reject


def test_binary_layout_nested_and_at_root(tmp_path: Path) -> None:
    nested = tmp_path / "cnndet"
    _touch(
        nested,
        "progan/airplane/0_real/a.png",
        "progan/airplane/1_fake/b.png",
        "ldm/1_fake/c.png",
        "biggan/1_fake/d.png",
        "misc/e.png",
    )
    cfg = _cfg(nested, layout="binary", families={"ldm": "dm"}, fake_family="gan")
    labels = _labels(cfg)
    assert labels["progan/airplane/0_real/a.png"] == ("progan", "real", "")
    assert labels["progan/airplane/1_fake/b.png"] == ("progan", "gan", "")
    assert labels["ldm/1_fake/c.png"] == ("ldm", "dm", "")
    assert labels["misc/e.png"][2] == reasons.NOT_LABELLED
    no_default = _labels(_cfg(nested, layout="binary", families={"ldm": "dm"}))
    assert no_default["biggan/1_fake/d.png"] == ("biggan", "", reasons.NO_FAMILY)
    flat = tmp_path / "flat"
    _touch(flat, "0_real/a.png", "1_fake/b.png")
    labels = _labels(_cfg(flat, name="mine", layout="binary", fake_family="dm"))
    assert labels == {"0_real/a.png": ("mine", "real", ""), "1_fake/b.png": ("mine", "dm", "")}


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_list_layout_reads_csv_and_parquet(tmp_path: Path, kind: str) -> None:
    root = tmp_path / "listed"
    _touch(root, "imgs/a.jpg", "imgs/b.png", "imgs/extra.png")
    rows = {
        "path": ["imgs/b.png", "imgs/a.jpg", "imgs/gone.jpg", "imgs/a.jpg"],
        "family": ["gan", "real", "dm", "alien"],
        "generator": ["sg", "real", "ldm", "real"],
        "split": ["test", "train", "val", "train"],
    }
    if kind == "csv":
        lines = ["path,family,generator,split"] + [",".join(r) for r in zip(*rows.values(), strict=True)]
        (root / "labels.csv").write_text("\n".join(lines) + "\n")
        list_file = "labels.csv"
    else:
        pq.write_table(pa.table(rows), tmp_path / "list.parquet")
        list_file = str(tmp_path / "list.parquet")
    cfg = _cfg(root, layout="list", list_file=list_file, split={"mode": "column"})
    found = discover(cfg)
    assert [c.path for c in found.candidates] == ["imgs/a.jpg", "imgs/a.jpg", "imgs/b.png", "imgs/gone.jpg"]
    assert found.unlisted == 1  # imgs/extra.png (the list file itself is not counted)
    by = {(c.path, c.family, c.split, reasons.category(c.reject)) for c in found.candidates}
    assert ("imgs/b.png", "gan", "test", "") in by
    assert ("imgs/a.jpg", "real", "train", "") in by
    assert ("imgs/a.jpg", "", "train", reasons.UNKNOWN_FAMILY) in by
    assert ("imgs/gone.jpg", "dm", "val", reasons.LISTED_MISSING) in by


def test_list_file_missing_columns_is_config_error(tmp_path: Path) -> None:
    root = tmp_path / "listed"
    _touch(root, "a.jpg")
    (root / "labels.csv").write_text("path,label\na.jpg,real\n")
    cfg = _cfg(root, layout="list", list_file="labels.csv")
    with pytest.raises(ConfigError, match=r"labels\.csv.*\['family', 'generator'\]"):
        discover(cfg)
    mapped = _cfg(
        root, layout="list", list_file="labels.csv", columns={"family": "label", "generator": "label"}
    )
    assert [(c.family, c.generator) for c in discover(mapped).candidates] == [("real", "real")]
    needs_split = _cfg(
        root,
        layout="list",
        list_file="labels.csv",
        columns={"family": "label", "generator": "label"},
        split={"mode": "column"},
    )
    with pytest.raises(ConfigError, match=r"\['split'\]"):
        discover(needs_split)


def _discover_paths_and_reasons(cfg: Any, queue: Any, uid: int | None) -> None:
    if uid is not None:  # root reads any folder: drop to an unprivileged user to make "locked" mean locked
        os.setgid(uid)
        os.setuid(uid)
    queue.put([(c.path, c.reject) for c in discover(cfg).candidates])


def test_unreadable_directory_gets_a_row() -> None:
    base = Path(tempfile.mkdtemp(prefix="mr-locked-"))  # world-traversable, unlike pytest's tmp_path
    try:
        base.chmod(0o755)
        root = base / "asfd"
        _touch(root, "real/a.jpg", "real/locked/b.jpg")
        for p in (root, root / "real", root / "real" / "a.jpg"):
            p.chmod(0o755)
        (root / "real" / "locked").chmod(0)
        cfg = _cfg(root, layout="asfd", families={"real": "real"})
        ctx = multiprocessing.get_context("fork")
        queue = ctx.Queue()
        proc = ctx.Process(
            target=_discover_paths_and_reasons, args=(cfg, queue, 65534 if os.geteuid() == 0 else None)
        )
        proc.start()
        rows = dict(queue.get(timeout=30))
        proc.join(timeout=30)
    finally:
        (base / "asfd" / "real" / "locked").chmod(0o755)
        shutil.rmtree(base)
    assert rows["real/a.jpg"] == ""
    assert "real/locked/b.jpg" not in rows
    assert rows["real/locked"].startswith(reasons.UNREADABLE) and "PermissionError" in rows["real/locked"]


def test_symlink_loop_is_walked_once(tmp_path: Path) -> None:
    root = tmp_path / "asfd"
    _touch(root, "real/a.jpg")
    os.symlink(root / "real", root / "real" / "loop")
    paths = [c.path for c in discover(_cfg(root, layout="asfd", families={"real": "real"})).candidates]
    assert paths == ["real/a.jpg"]


@pytest.mark.parametrize(
    ("section", "match"),
    [
        ({"layout": "folder"}, r"`datasets\.ds\.layout` must be one of"),
        ({"layout": "asfd", "root": "nope"}, r"`datasets\.ds\.root` folder .*nope.* does not exist"),
        (
            {"layout": "asfd", "split": {"ratios": {"train": 0.9, "test": 0.2}}},
            r"`datasets\.ds\.split\.ratios`",
        ),
        ({"layout": "asfd", "split": {"ratios": {"train": 1.2, "test": -0.2}}}, r"non-negative"),
        ({"layout": "asfd", "split": {"ratios": {"training": 1.0}}}, r"`datasets\.ds\.split\.ratios`"),
        ({"layout": "asfd", "split": {"mode": "random"}}, r"`datasets\.ds\.split\.mode`"),
        ({"layout": "asfd", "split": {"mode": "column"}}, r"only the list layout"),
        ({"layout": "asfd", "families": {"sg": "fake"}}, r"`datasets\.ds\.families\.sg` must be one of"),
        ({"layout": "list"}, r"`datasets\.ds\.list_file` is required"),
        ({"layout": "list", "list_file": "x.csv"}, r"`datasets\.ds\.list_file` .*x\.csv.* does not exist"),
        ({"layout": "asfd", "split": {"mode": "protocol"}}, r"train_generators` must list"),
        (
            {
                "layout": "asfd",
                "split": {"mode": "protocol", "train_generators": ["a"], "test_generators": ["a"]},
            },
            r"overlap: \['a'\]",
        ),
        ({"layout": "asfd", "colour": 1}, r"unknown keys \['colour'\] under `datasets\.ds`"),
    ],
)
def test_config_errors_name_the_key(tmp_path: Path, section: dict[str, Any], match: str) -> None:
    section = {"root": str(tmp_path), **section}
    with pytest.raises(ConfigError, match=match):
        parse_dataset_config("ds", section, base_dir=tmp_path)


def test_relative_root_resolves_against_base_dir(tmp_path: Path) -> None:
    (tmp_path / "data" / "faces").mkdir(parents=True)
    cfg = parse_dataset_config(
        "d", {"layout": "asfd", "root": "data/faces"}, base_dir=tmp_path, default_seed=7
    )
    assert cfg.root == (tmp_path / "data" / "faces").resolve() and cfg.split.seed == 7
    assert cfg.split.required == ("train", "val", "test")


@pytest.mark.parametrize(
    ("section", "match"),
    [
        ({"recode": "jpeg:0"}, r"`prepare\.recode`"),
        ({"recode": "webp"}, r"`prepare\.recode`"),
        ({"max_pixels": 0}, r"`prepare\.max_pixels`"),
        ({"min_size": "16"}, r"`prepare\.min_size`"),
        ({"resize": "lanczos"}, r"unknown keys \['resize'\] under `prepare`"),
    ],
)
def test_prepare_section_errors(section: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_prepare_config(section, resolution=32, chunk_images=64, shard_images=1024)


def test_prepare_section_defaults() -> None:
    cfg = parse_prepare_config(None, resolution=32, chunk_images=64, shard_images=1024)
    assert (cfg.recode, cfg.max_pixels, cfg.min_size, cfg.workers) == ("none", 40_000_000, 16, 0)
    assert (
        parse_prepare_config({"recode": "JPEG:75"}, resolution=8, chunk_images=1, shard_images=1).recode
        == "jpeg:75"
    )
