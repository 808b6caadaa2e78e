"""CacheReader alignment/fields/integrity, training-pattern batches, and the torch DataLoader with workers."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.cache.loader import CacheDataset, make_loader
from pipeline.cache.reader import CacheReader, epoch_windows
from pipeline.cache.store import write_input_store
from pipeline.cache.writer import build_recon_store
from pipeline.errors import CacheCorruptError, ConfigError, StaleCacheError

LAYOUT = {"chunk_images": 4, "shard_images": 8}
N = 36


def _build(tmp: Path, name: str, inp: Path, scale: float) -> Path:
    out = tmp / f"{name}.zarr"
    build_recon_store(
        inp, out, reconstruct=lambda b: (b.astype(np.float32) / 127.5 - 1) * scale, provenance={"kind": name},
        work_dir=tmp / "_work" / name, progress=False, **LAYOUT,
    )  # fmt: skip
    return out


@pytest.fixture
def stores(tmp_path: Path) -> tuple[Path, dict[str, Path], np.ndarray]:
    imgs = np.random.default_rng(2).integers(0, 256, (N, 3, 8, 8), dtype=np.uint8)
    inp = tmp_path / "images.zarr"
    write_input_store(inp, imgs, [f"id{i:02d}" for i in range(N)], {"kind": "input"}, **LAYOUT)
    recs = {"ddim": _build(tmp_path, "ddim", inp, 0.5), "gan": _build(tmp_path, "gan", inp, 0.8)}
    return inp, recs, imgs


def test_read_fields_in_requested_order(stores) -> None:
    inp, recs, imgs = stores
    r = CacheReader(inp, recs, expected={"ddim": {"kind": "ddim"}})
    assert len(r) == N and r.image_ids[:2] == ["id00", "id01"]
    assert set(r.fields) >= {"image", "image_id", "ddim.recon", "ddim.residual", "ddim.mse", "gan.recon"}
    idx = [17, 3, 3, 30]
    out = r.read(idx, ["image", "image_id", "ddim.recon", "gan.residual", "ddim.mse"])
    np.testing.assert_array_equal(out["image"], imgs[idx])
    assert list(out["image_id"]) == ["id17", "id03", "id03", "id30"]
    x = imgs[idx].astype(np.float32) / 127.5 - 1
    np.testing.assert_array_equal(out["gan.residual"], (x * 0.8 - x).astype(np.float16))
    assert out["ddim.mse"].shape == (4,) and out["ddim.recon"].dtype == np.uint8
    whole = r.load(["image", "ddim.recon"])
    np.testing.assert_array_equal(whole["image"], imgs)
    with pytest.raises(ConfigError, match=r"unknown field 'vae\.recon'"):
        r.read([0], ["vae.recon"])
    with pytest.raises(StaleCacheError, match="`kind` is 'gan'"):
        CacheReader(inp, recs, expected={"gan": {"kind": "ddim"}})


def test_misaligned_recon_store_is_refused(stores, tmp_path: Path) -> None:
    inp, _, imgs = stores
    other = tmp_path / "other.zarr"
    ids = [f"id{i:02d}" for i in range(N)]
    ids[5], ids[6] = ids[6], ids[5]
    write_input_store(other, imgs, ids, {"kind": "input"}, **LAYOUT)
    swapped = tmp_path / "swapped"
    swapped.mkdir()
    bad = _build(swapped, "ddim", other, 0.5)
    with pytest.raises(StaleCacheError, match=r"row 5 has image_id 'id06' there but 'id05' in the input"):
        CacheReader(inp, {"ddim": bad})
    short = tmp_path / "short.zarr"
    write_input_store(short, imgs[:10], ids[:10], {}, **LAYOUT)
    (tmp_path / "s").mkdir()
    with pytest.raises(StaleCacheError, match="has 10 rows but the input store"):
        CacheReader(inp, {"gan": _build(tmp_path / "s", "gan", short, 0.8)})


def test_corruption_detected_on_open_and_on_read(stores) -> None:
    inp, recs, _ = stores
    shard = recs["ddim"] / "recon" / "c" / "2" / "0" / "0" / "0"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(CacheCorruptError, match=r"'recon/c/2/0/0/0' fails its sha256"):
        CacheReader(inp, recs)  # verify=True: on open
    lazy = CacheReader(inp, recs, verify="read")  # opens fine, catches it on first touch
    lazy.read([0, 1], ["ddim.recon"])
    with pytest.raises(CacheCorruptError, match=r"'recon/c/2/0/0/0'.*dvc repro -f -s"):
        lazy.read([17], ["ddim.recon"])
    trusting = CacheReader(inp, {"gan": recs["gan"]}, verify=False)
    shutil.rmtree(recs["gan"] / "residual" / "c" / "1")
    with pytest.raises(CacheCorruptError, match=r"missing shard file 'residual/c/1/0/0/0'.*dvc pull"):
        trusting.read([9], ["gan.residual"])


def test_batches_memory_and_chunk_modes_cover_each_row_once(stores) -> None:
    inp, recs, imgs = stores
    r = CacheReader(inp, recs)
    fields = ["image", "ddim.recon", "gan.recon"]
    for budget, mode in ((64.0, "memory"), (0.0, "chunks")):
        epochs = []
        for epoch in (0, 1):
            batches = list(
                r.batches(fields, 5, seed=3, epoch=epoch, memory_budget_mb=budget, window_chunks=2)
            )
            assert r.mode == mode
            rows = np.concatenate([b["index"] for b in batches])
            assert sorted(rows.tolist()) == list(range(N))
            for b in batches:
                np.testing.assert_array_equal(b["image"], imgs[b["index"]])
            epochs.append(rows)
        assert not np.array_equal(epochs[0], epochs[1])  # a new order each epoch
        again = np.concatenate(
            [b["index"] for b in r.batches(fields, 5, seed=3, epoch=1, memory_budget_mb=budget)]
        )
        if mode == "memory":
            np.testing.assert_array_equal(again, epochs[1])  # seedable
    split = np.arange(0, N, 3)
    got = np.concatenate([b["index"] for b in r.batches(["image"], 4, indices=split, memory_budget_mb=0.0)])
    assert sorted(got.tolist()) == split.tolist()


def test_epoch_windows_are_whole_chunks() -> None:
    wins = epoch_windows(np.arange(20), 4, seed=0, epoch=0, window_chunks=2)
    assert [len(w) for w in wins] == [8, 8, 4]
    assert all(len(set((w // 4).tolist())) <= 2 for w in wins)


def test_dataloader_with_two_workers(stores) -> None:
    inp, recs, imgs = stores
    fields = ["image", "ddim.recon", "gan.residual"]
    loader = make_loader(inp, recs, fields, batch_size=4, num_workers=2, window_chunks=2, seed=1)
    seen = []
    for epoch in (0, 1):
        loader.dataset.set_epoch(epoch)
        rows = []
        for b in loader:
            assert isinstance(b["image"], torch.Tensor) and b["gan.residual"].dtype == torch.float16
            np.testing.assert_array_equal(b["image"].numpy(), imgs[b["index"].numpy()])
            rows.append(b["index"].numpy())
        rows = np.concatenate(rows)
        assert sorted(rows.tolist()) == list(range(N))
        seen.append(rows)
    assert not np.array_equal(seen[0], seen[1])
    with pytest.raises(TypeError, match="pin_memory"):  # DataLoader options go in loader_kwargs
        make_loader(inp, recs, fields, batch_size=4, pin_memory=False)
    ds = CacheDataset(inp, recs, fields)
    dl = torch.utils.data.DataLoader(ds, batch_size=6, shuffle=True, num_workers=2)
    total = 0
    for b in dl:
        np.testing.assert_array_equal(b["ddim.recon"].shape, (len(b["index"]), 3, 8, 8))
        total += len(b["index"])
    assert total == N
