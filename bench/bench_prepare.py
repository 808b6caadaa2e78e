"""Benchmark of ingestion (``prepare_dataset``); writes ``bench/results/prepare.json``.

Run from the repo root: ``python bench/bench_prepare.py [--limit N] [--workers 1 2]``.

Ingests UTKFace (``../shared/data/utkface``: 200x200 JPEG q75, listed by ``labels.csv``) at
``data.resolution`` 32, once per worker count, and reports wall time and files/s. Each run reads, hashes,
decodes, resizes and caches every listed file and writes the manifest, audit and Zarr store. The first run
also warms the page cache, so later runs measure decoding, not the disk.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import platform
import tempfile
import time
from pathlib import Path

from pipeline.data.config import PrepareConfig, parse_dataset_config
from pipeline.data.prepare import prepare_dataset

UTK = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "utkface"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--limit", type=int, default=0, help="ingest only the first N listed files (0 = all)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--out", type=Path, default=Path("bench/results/prepare.json"))
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if not (UTK / "labels.csv").is_file():
        raise SystemExit(f"{UTK} is absent: nothing to benchmark")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        list_file = UTK / "labels.csv"
        if args.limit:
            rows = list(csv.reader((UTK / "labels.csv").open()))
            list_file = Path(tmp) / "subset.csv"
            with list_file.open("w", newline="") as fh:
                csv.writer(fh).writerows(rows[: args.limit + 1])
        ds = parse_dataset_config(
            "utk",
            {"layout": "list", "root": str(UTK), "list_file": str(list_file), "columns": {"family": "label"}},
            base_dir=Path.cwd(),
        )
        for workers in [args.workers[0], *args.workers]:  # first run warms the page cache, not reported
            settings = PrepareConfig(resolution=32, workers=workers)
            t0 = time.perf_counter()
            res = prepare_dataset(ds, settings, Path(tmp) / f"out{workers}")
            dt = time.perf_counter() - t0
            results.append({"workers": workers, "files": res.n_files, "cached": res.n_cached, "seconds": dt})
        results = results[1:]
    for r in results:
        r["files_per_s"] = round(r["files"] / r["seconds"], 1)
        r["seconds"] = round(r["seconds"], 2)
    report = {
        "what": "prepare_dataset on UTKFace (200x200 JPEG q75) -> 32 px input cache, warm page cache",
        "machine": platform.processor() or platform.machine(),
        "runs": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
