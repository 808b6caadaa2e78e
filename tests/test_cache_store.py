"""Input store round-trip, provenance checks and on-open integrity checks (real zarr, tiny arrays)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.cache.store import open_store, write_input_store
from pipeline.errors import CacheCorruptError, ConfigError, InputDataError, StaleCacheError


def _images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 3, 8, 8), dtype=np.uint8)


def _write(path: Path, n: int = 40, **kw: object) -> np.ndarray:
    imgs = _images(n)
    attrs = {"kind": "input", "resolution": 8, "prep": {"resize": "lanczos"}}
    write_input_store(
        path, imgs, [f"id{i:03d}" for i in range(n)], attrs, chunk_images=4, shard_images=16, **kw
    )
    return imgs


def test_round_trip_and_shard_files(tmp_path: Path) -> None:
    imgs = _write(tmp_path / "in.zarr")
    g = open_store(tmp_path / "in.zarr", {"resolution": 8}, verify=True)
    np.testing.assert_array_equal(g["image"][:], imgs)
    assert list(g["image_id"][:]) == [f"id{i:03d}" for i in range(40)]
    # 40 images / 16 per shard -> 3 shard files per array, nothing else but metadata
    files = sorted(
        p.relative_to(tmp_path / "in.zarr").as_posix() for p in (tmp_path / "in.zarr").rglob("c/*")
    )
    assert len([f for f in files if f.startswith("image/c/")]) == 3


def test_empty_store(tmp_path: Path) -> None:
    write_input_store(tmp_path / "e.zarr", np.zeros((0, 3, 8, 8), np.uint8), [], {"kind": "input"})
    g = open_store(tmp_path / "e.zarr", {"kind": "input"}, verify=True)
    assert g["image"].shape == (0, 3, 8, 8)
    assert g["image_id"].shape == (0,)


def test_all_zero_shard_is_still_written(tmp_path: Path) -> None:
    write_input_store(tmp_path / "z.zarr", np.zeros((5, 3, 8, 8), np.uint8), list("abcde"), {})
    assert (tmp_path / "z.zarr" / "image" / "c" / "0" / "0" / "0" / "0").is_file()
    open_store(tmp_path / "z.zarr", verify=True)


def test_provenance_mismatch_names_field(tmp_path: Path) -> None:
    _write(tmp_path / "in.zarr")
    with pytest.raises(StaleCacheError, match=r"`resolution` is 8 in the store but 16 now"):
        open_store(tmp_path / "in.zarr", {"resolution": 16})
    with pytest.raises(StaleCacheError, match=r"`prep.resize` is 'lanczos' in the store but 'bicubic'"):
        open_store(tmp_path / "in.zarr", {"prep": {"resize": "bicubic"}})
    with pytest.raises(StaleCacheError, match=r"`seed` is '<missing>'"):
        open_store(tmp_path / "in.zarr", {"seed": 1})


def test_missing_and_garbled_shard_named(tmp_path: Path) -> None:
    _write(tmp_path / "in.zarr", stage="prepare@demo")
    shard = tmp_path / "in.zarr" / "image" / "c" / "1" / "0" / "0" / "0"
    data = bytearray(shard.read_bytes())
    data[len(data) // 3] ^= 0xFF  # same size, garbled byte: only the checksum sees it
    shard.write_bytes(bytes(data))
    open_store(tmp_path / "in.zarr")  # size-only check passes
    with pytest.raises(
        CacheCorruptError, match=r"'image/c/1/0/0/0' fails its sha256.*dvc repro -f -s prepare@demo"
    ):
        open_store(tmp_path / "in.zarr", verify=True)
    shard.unlink()
    with pytest.raises(CacheCorruptError, match=r"missing shard file 'image/c/1/0/0/0'.*dvc pull"):
        open_store(tmp_path / "in.zarr")
    with pytest.raises(CacheCorruptError, match="does not exist"):
        open_store(tmp_path / "nope.zarr")


def test_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(InputDataError, match="unique"):
        write_input_store(tmp_path / "a.zarr", _images(2), ["x", "x"], {})
    with pytest.raises(InputDataError, match="uint8"):
        write_input_store(tmp_path / "a.zarr", _images(2).astype(np.float32), ["x", "y"], {})
    with pytest.raises(ConfigError, match="multiple"):
        write_input_store(tmp_path / "a.zarr", _images(2), ["x", "y"], {}, chunk_images=3, shard_images=8)
