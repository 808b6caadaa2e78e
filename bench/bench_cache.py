"""Benchmark of the cache layout and read paths; writes ``bench/results/cache.json``.

Run from the repo root: ``python bench/bench_cache.py [--n 4096] [--res 64]``.

1. For a few (chunk_images, shard_images) layouts: write an input store and two reconstruction stores
   (``ddim``/``gan``, through ``build_recon_store`` with a cheap blur as the "reconstructor"), then count
   files, and time full reads and random batch-32 reads of image + two recons.
2. Training pattern (one epoch of shuffled batches of 32 of ``image``, ``ddim.recon``, ``gan.recon``):
   ``CacheReader.batches`` in memory mode (load time included), in chunk-window mode, and through
   ``make_loader``, against decoding the same three images per row from PNG files with PIL.
Images are 64x64 crops of scikit-image's sample photos (natural-image statistics, so compression ratios
mean something); the page cache is warm (files were just written), as on a training machine.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data as skdata

from pipeline.cache.loader import make_loader
from pipeline.cache.reader import CacheReader
from pipeline.cache.store import write_input_store
from pipeline.cache.writer import build_recon_store

FIELDS = ["image", "ddim.recon", "gan.recon"]
RECOMMENDED = (256, 1024)  # (chunk_images, shard_images) chosen from these layouts (store.py)


def make_images(n: int, res: int, seed: int = 0) -> np.ndarray:
    """``n`` random ``res``-px crops (random flips) of scikit-image's colour sample photos."""
    srcs = [skdata.astronaut(), skdata.coffee(), skdata.chelsea(), skdata.rocket()]
    rng = np.random.default_rng(seed)
    out = np.empty((n, 3, res, res), np.uint8)
    for i in range(n):
        s = srcs[rng.integers(len(srcs))]
        y, x = rng.integers(0, s.shape[0] - res), rng.integers(0, s.shape[1] - res)
        crop = s[y : y + res, x : x + res]
        out[i] = (crop[:, ::-1] if rng.random() < 0.5 else crop).transpose(2, 0, 1)
    return out


def blur_recon(strength: float):
    """A cheap deterministic stand-in for a reconstructor: a 3x3 box blur mixed with the input."""

    def fn(batch: np.ndarray) -> np.ndarray:
        x = batch.astype(np.float32) / 127.5 - 1.0
        p = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="edge")
        h, w = x.shape[2:]
        blur = sum(p[:, :, dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)) / 9.0
        return (1 - strength) * x + strength * blur

    return fn


def bench_codecs(images: np.ndarray, reps: int = 3) -> list[dict]:
    """Blosc variants on 1,024 images (uint8) and a blur residual (float16): ratio, encode/decode MB/s."""
    from numcodecs import Blosc

    x = images[:1024]
    xf = x.astype(np.float32) / 127.5 - 1.0
    resid = (blur_recon(0.5)(x) - xf).astype(np.float16)
    shuffles = ((Blosc.NOSHUFFLE, "noshuffle"), (Blosc.SHUFFLE, "shuffle"), (Blosc.BITSHUFFLE, "bitshuffle"))
    out = []
    for name, arr in (("uint8 image", x), ("float16 residual", resid)):
        raw = np.ascontiguousarray(arr)  # an array, so Blosc's typesize is the itemsize
        mb = raw.nbytes / 2**20
        for cname in ("zstd", "lz4"):
            for shuffle, label in shuffles:
                codec = Blosc(cname=cname, clevel=5, shuffle=shuffle)
                enc = codec.encode(raw)
                te = median_time(lambda c=codec, r=raw: c.encode(r), reps)
                td = median_time(lambda c=codec, e=enc: c.decode(e), reps)
                out.append({"array": name, "cname": cname, "clevel": 5, "shuffle": label,
                            "ratio": round(raw.nbytes / len(enc), 2),
                            "encode_mb_s": round(mb / te), "decode_mb_s": round(mb / td)})  # fmt: skip
    return out


def dir_stats(root: Path) -> tuple[int, float]:
    files = [p for p in root.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files) / 2**20


def median_time(fn, reps: int) -> float:
    """Median wall time of ``reps`` calls (the machine is shared and noisy: medians, not means)."""
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def epoch_rate(make_batches) -> float:
    """Rows per second of one epoch from a fresh iterator."""
    t, n = time.perf_counter(), 0
    for b in make_batches():
        n += len(b["index"])
    return n / (time.perf_counter() - t)


def build_layout(tmp: Path, images: np.ndarray, ids: list[str], chunk: int, shard: int) -> tuple[dict, Path]:
    """Write input + ddim + gan stores in one layout; file count, size and write speed."""
    root = tmp / f"c{chunk}_s{shard}"
    inp = root / "images.zarr"
    raw_mb = images.nbytes / 2**20
    t = time.perf_counter()
    write_input_store(inp, images, ids, {"kind": "bench"}, chunk_images=chunk, shard_images=shard)
    t_in = time.perf_counter() - t
    t = time.perf_counter()
    for name, strength in (("ddim", 0.5), ("gan", 0.9)):
        build_recon_store(
            inp, root / f"{name}.zarr", reconstruct=blur_recon(strength), provenance={"kind": name},
            work_dir=tmp / "_work" / f"{chunk}_{shard}_{name}", chunk_images=chunk, shard_images=shard,
            progress=False,
        )  # fmt: skip
    t_rec = time.perf_counter() - t
    files, mb = dir_stats(root)
    return {
        "chunk_images": chunk,
        "shard_images": shard,
        "files": files,
        "stored_mb": round(mb, 1),
        "raw_mb": round(raw_mb * 7, 1),  # image + 2 x (recon uint8 + residual float16 = 3x)
        "write_input_mb_s": round(raw_mb / t_in, 1),
        "build_recon_mb_s_incl_blur": round(2 * 3 * raw_mb / t_rec, 1),
    }, root


def read_layout(root: Path, n: int, reps: int) -> dict:
    """Full read, random batch-32 reads and the two training-pattern modes of one layout."""
    recs = {"ddim": root / "ddim.zarr", "gan": root / "gan.zarr"}
    reader = CacheReader(root / "images.zarr", recs, verify=False)
    all5 = [*FIELDS, "ddim.residual", "gan.residual"]
    full_mb = reader.nbytes(all5) / 2**20
    t_full = median_time(lambda: reader.read(np.arange(n), all5), reps)
    rng = np.random.default_rng(0)
    t_rand = median_time(lambda: reader.read(np.sort(rng.choice(n, 32, replace=False)), FIELDS), 5 * reps)

    def memory_epoch0():  # a fresh reader each time: the epoch includes loading the three arrays
        return CacheReader(root / "images.zarr", recs, verify=False).batches(FIELDS, 32, seed=0, epoch=0)

    warm = CacheReader(root / "images.zarr", recs, verify=False)
    warm.load(FIELDS)
    return {
        "full_read_5fields_mb_s": round(full_mb / t_full, 1),
        "random_batch32_3fields_ms": round(1000 * t_rand, 1),
        "train_memory_epoch0_incl_load_img_s": float(
            np.median([epoch_rate(memory_epoch0) for _ in range(reps)])
        ),
        "train_memory_later_epochs_img_s": float(
            np.median(
                [epoch_rate(lambda e=e: warm.batches(FIELDS, 32, seed=0, epoch=e)) for e in range(reps)]
            )
        ),
        "train_chunk_window_img_s": float(
            np.median(
                [epoch_rate(lambda: reader.batches(FIELDS, 32, memory_budget_mb=0.0)) for _ in range(reps)]
            )
        ),
        "train_make_loader_w0_img_s": epoch_rate(
            lambda: make_loader(root / "images.zarr", recs, FIELDS, batch_size=32, verify=False)
        ),
    }


def write_pngs(tmp: Path, arrays: dict[str, np.ndarray]) -> float:
    """Each field's images as PNG files (PIL, default settings); returns files written per second."""
    n = len(arrays["image"])
    t = time.perf_counter()
    for f, arr in arrays.items():
        d = tmp / "png" / f
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(arr[i].transpose(1, 2, 0)).save(d / f"{i:06d}.png")
    return n * len(arrays) / (time.perf_counter() - t)


def png_epoch_rate(tmp: Path, fields: list[str], n: int, seed: int, batch: int = 32) -> float:
    """Rows per second of one shuffled epoch decoding the three PNGs of each row."""
    order = np.random.default_rng(seed).permutation(n)
    t = time.perf_counter()
    for b in range(0, n, batch):
        rows = order[b : b + batch]
        out = {f: np.stack([np.asarray(Image.open(tmp / "png" / f / f"{i:06d}.png")) for i in rows])
               for f in fields}  # fmt: skip
        assert out["image"].shape == (len(rows), *out["image"].shape[1:])
    return n / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4096, help="images per store")
    ap.add_argument("--res", type=int, default=64, help="image side in pixels")
    ap.add_argument("--reps", type=int, default=3, help="repeats per timing (medians are reported)")
    ap.add_argument("--out", type=Path, default=Path("bench/results/cache.json"), help="results JSON")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("pipeline.cache.writer", "pipeline.cache.store"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    images = make_images(args.n, args.res)
    ids = [f"img{i:06d}" for i in range(args.n)]
    tmp = Path(tempfile.mkdtemp(prefix="bench_cache_"))
    try:
        codecs = bench_codecs(images)
        layouts = []
        roots = {}
        for c, s in ((64, 1024), (256, 1024), (1024, 1024), (64, 256)):
            info, roots[(c, s)] = build_layout(tmp, images, ids, c, s)
            layouts.append(info)
        first = CacheReader(
            roots[(64, 1024)] / "images.zarr", {k: roots[(64, 1024)] / f"{k}.zarr" for k in ("ddim", "gan")}
        )
        png_write = write_pngs(tmp, first.load(FIELDS))
        png_rates = []
        for info in layouts:  # interleave PNG epochs with cache reads so both see the same machine load
            png_rates.append(png_epoch_rate(tmp, FIELDS, args.n, seed=len(png_rates)))
            info.update(read_layout(roots[(info["chunk_images"], info["shard_images"])], args.n, args.reps))
            logging.info("layout %s", info)
        png_rate = float(np.median(png_rates))
        for info in layouts:
            for k in [k for k in info if k.startswith("train_")]:
                info[k.replace("train_", "ratio_vs_png_")] = round(info[k] / png_rate, 2)
                info[k] = round(info[k], 1)
        t = time.perf_counter()
        CacheReader(
            roots[(256, 1024)] / "images.zarr", {k: roots[(256, 1024)] / f"{k}.zarr" for k in ("ddim", "gan")}
        )
        verify_s = time.perf_counter() - t
        rec = next(i for i in layouts if (i["chunk_images"], i["shard_images"]) == RECOMMENDED)
        result = {
            "n_images": args.n,
            "resolution": args.res,
            "fields_per_row": FIELDS,
            "load_avg_1min_at_end": os.getloadavg()[0],
            "codecs": codecs,
            "layouts": layouts,
            "png": {
                "write_files_s": round(png_write, 1),
                "decode_epoch_img_s_median": round(png_rate, 1),
                "decode_epoch_img_s_all": [round(r, 1) for r in png_rates],
            },
            "verify_sha256_all_shards_s": round(verify_s, 2),
            "recommended": {
                "chunk_images": RECOMMENDED[0],
                "shard_images": RECOMMENDED[1],
                "path": "CacheReader.batches (memory mode when the fields fit memory_budget_mb)",
            },
            "ratio_recommended_epoch0_vs_png": rec["ratio_vs_png_memory_epoch0_incl_load_img_s"],
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(
        "training-pattern read (epoch 0, load included) vs PNG decode:"
        f" {result['ratio_recommended_epoch0_vs_png']:.1f}x (must be >= 5x)"
    )


if __name__ == "__main__":
    main()
