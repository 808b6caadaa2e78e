"""build_recon_store: contract arithmetic, resume, stale work, real kill -9 and two real worker processes."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from pipeline.cache.reader import CacheReader
from pipeline.cache.store import open_store, write_input_store
from pipeline.cache.writer import ReconstructorOutputError, build_recon_store

REPO = Path(__file__).resolve().parents[1]
LAYOUT = {"chunk_images": 4, "shard_images": 8}

# A deliberately slow, deterministic reconstructor (fixed-seed conv) run in a separate process.
HELPER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    import torch
    from pipeline.cache.writer import build_recon_store
    from pipeline.imaging import to_model

    inp, out, work, worker, nw, sleep = sys.argv[1:7]
    torch.set_num_threads(1)
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 3, 3, padding=1)

    def reconstruct(batch):
        time.sleep(float(sleep))
        with torch.no_grad():
            return (1.2 * torch.tanh(conv(to_model(batch)))).numpy()

    rep = build_recon_store(
        Path(inp), Path(out), reconstruct=reconstruct, provenance={"kind": "conv", "seed": 0},
        work_dir=Path(work), batch_size=4, chunk_images=4, shard_images=8,
        worker=int(worker), num_workers=int(nw), progress=False,
    )
    print(json.dumps({k: (str(v) if isinstance(v, Path) else v) for k, v in vars(rep).items()}))
    """
)


def _input(tmp: Path, n: int = 40) -> Path:
    imgs = np.random.default_rng(1).integers(0, 256, (n, 3, 8, 8), dtype=np.uint8)
    path = tmp / "images.zarr"
    write_input_store(path, imgs, [f"img{i:03d}" for i in range(n)], {"kind": "input"}, **LAYOUT)
    return path


def _affine(batch: np.ndarray) -> np.ndarray:
    return (batch.astype(np.float32) / 127.5 - 1.0) * 0.9 + 0.05


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _run_helper(
    tmp: Path, inp: Path, out: Path, work: Path, worker: int = 0, nw: int = 1, sleep: float = 0.0
):
    script = tmp / "helper.py"
    script.write_text(HELPER)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    args = [sys.executable, str(script), str(inp), str(out), str(work), str(worker), str(nw), str(sleep)]
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _report(proc: subprocess.Popen) -> dict:
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    return json.loads(stdout.strip().splitlines()[-1])


def test_arrays_follow_the_contract(tmp_path: Path) -> None:
    inp = _input(tmp_path, 20)
    rep = build_recon_store(
        inp, tmp_path / "r.zarr", reconstruct=_affine, provenance={"kind": "affine"},
        work_dir=tmp_path / "_work" / "r", batch_size=3, progress=False, stage="recon_x@demo", **LAYOUT,
    )  # fmt: skip
    assert (rep.n_images, rep.shards_total, rep.shards_computed, rep.finalized) == (20, 3, 3, True)
    assert not (tmp_path / "_work" / "r").exists()
    g = open_store(tmp_path / "r.zarr", {"kind": "affine"}, verify=True)
    x = open_store(inp)["image"][:].astype(np.float32) / 127.5 - 1.0
    xr = _affine(open_store(inp)["image"][:])
    np.testing.assert_array_equal(g["residual"][:], (xr - x).astype(np.float16))
    np.testing.assert_allclose(g["mse"][:], ((xr - x) ** 2).reshape(20, -1).mean(1), rtol=1e-6)
    np.testing.assert_array_equal(g["recon"][:], np.rint((np.clip(xr, -1, 1) + 1) * 127.5).astype(np.uint8))
    assert rep.mse_mean == pytest.approx(float(g["mse"][:].mean()))
    assert list(g["image_id"][:]) == [f"img{i:03d}" for i in range(20)]
    assert g.attrs["multirecon_cache"]["stage"] == "recon_x@demo"


def test_empty_input(tmp_path: Path) -> None:
    write_input_store(tmp_path / "e.zarr", np.zeros((0, 3, 8, 8), np.uint8), [], {}, **LAYOUT)
    rep = build_recon_store(
        tmp_path / "e.zarr", tmp_path / "r.zarr", reconstruct=_affine, provenance={},
        work_dir=tmp_path / "w", progress=False, **LAYOUT,
    )  # fmt: skip
    assert rep.finalized and rep.n_images == 0 and rep.mse_mean is None
    assert open_store(tmp_path / "r.zarr")["recon"].shape == (0, 3, 8, 8)


def test_non_finite_raises_and_writes_nothing(tmp_path: Path) -> None:
    inp = _input(tmp_path, 16)

    def bad(batch: np.ndarray) -> np.ndarray:
        out = _affine(batch)
        out[1, 0, 0, 0] = np.nan
        return out

    with pytest.raises(ReconstructorOutputError, match=r"NaN/Inf for 1 of 4 images \(e.g. \['img001'\]\)"):
        build_recon_store(
            inp, tmp_path / "r.zarr", reconstruct=bad, provenance={}, work_dir=tmp_path / "w",
            batch_size=4, progress=False, **LAYOUT,
        )  # fmt: skip
    assert not (tmp_path / "r.zarr").exists()
    assert list((tmp_path / "w" / "done").iterdir()) == []
    with pytest.raises(ReconstructorOutputError, match="shape"):
        build_recon_store(
            inp, tmp_path / "r.zarr", reconstruct=lambda b: _affine(b)[:, :1], provenance={},
            work_dir=tmp_path / "w", progress=False, **LAYOUT,
        )  # fmt: skip


def test_resume_skips_done_shards_and_stale_work_is_discarded(tmp_path: Path, caplog) -> None:
    inp = _input(tmp_path, 40)  # 5 shards
    calls: list[int] = []

    def counted(batch: np.ndarray) -> np.ndarray:
        calls.append(len(batch))
        return _affine(batch)

    kw = {"reconstruct": counted, "work_dir": tmp_path / "w", "batch_size": 4, "progress": False, **LAYOUT}
    part = build_recon_store(inp, tmp_path / "r.zarr", provenance={"v": 1}, worker=1, num_workers=2, **kw)
    assert (part.shards_computed, part.finalized, sum(calls)) == (2, False, 16)  # shards 1 and 3
    assert not (tmp_path / "r.zarr").exists()
    calls.clear()
    full = build_recon_store(inp, tmp_path / "r.zarr", provenance={"v": 1}, **kw)
    assert (full.shards_done_before, full.shards_computed, sum(calls)) == (2, 3, 24)
    ref = build_recon_store(
        inp, tmp_path / "ref.zarr", provenance={"v": 1}, **{**kw, "work_dir": tmp_path / "w2"}
    )
    assert ref.shards_computed == 5
    assert _tree_bytes(tmp_path / "r.zarr") == _tree_bytes(tmp_path / "ref.zarr")

    # partial work under another provenance is discarded, with a log line naming why
    calls.clear()
    build_recon_store(inp, tmp_path / "s.zarr", provenance={"v": 1}, worker=0, num_workers=2, **kw)
    with caplog.at_level(logging.WARNING, logger="pipeline.cache.writer"):
        rep = build_recon_store(inp, tmp_path / "s.zarr", provenance={"v": 2}, **kw)
    assert rep.shards_done_before == 0 and rep.shards_computed == 5
    assert "discarding stale work dir" in caplog.text and "'provenance'" in caplog.text


def test_kill_9_then_resume_is_bitwise_identical(tmp_path: Path) -> None:
    inp = _input(tmp_path, 40)  # 5 shards of 8, 2 batches each
    ref = _run_helper(tmp_path, inp, tmp_path / "ref.zarr", tmp_path / "w_ref")
    slow = _run_helper(tmp_path, inp, tmp_path / "r.zarr", tmp_path / "w", sleep=0.4)
    done = tmp_path / "w" / "done"
    deadline = time.monotonic() + 90
    while not (done.is_dir() and len(list(done.glob("shard-*.json"))) >= 2):
        assert slow.poll() is None and time.monotonic() < deadline, "helper ended before it could be killed"
        time.sleep(0.05)
    os.kill(slow.pid, signal.SIGKILL)  # mid-shard: a third shard is being computed
    slow.wait()
    assert slow.returncode == -signal.SIGKILL
    assert not (tmp_path / "r.zarr").exists()
    n_done = len(list(done.glob("shard-*.json")))
    rep = _report(_run_helper(tmp_path, inp, tmp_path / "r.zarr", tmp_path / "w"))
    assert rep["shards_done_before"] == n_done >= 2
    assert rep["shards_computed"] == 5 - n_done and rep["finalized"]
    assert _report(ref)["shards_computed"] == 5
    assert _tree_bytes(tmp_path / "r.zarr") == _tree_bytes(tmp_path / "ref.zarr")


def test_two_worker_processes_equal_single_worker(tmp_path: Path) -> None:
    inp = _input(tmp_path, 40)
    single = _run_helper(tmp_path, inp, tmp_path / "one.zarr", tmp_path / "w1")
    w0 = _run_helper(tmp_path, inp, tmp_path / "two.zarr", tmp_path / "w2", worker=0, nw=2)
    w1 = _run_helper(tmp_path, inp, tmp_path / "two.zarr", tmp_path / "w2", worker=1, nw=2)
    r0, r1 = _report(w0), _report(w1)
    assert (r0["shards_owned"], r1["shards_owned"]) == (3, 2)
    assert r0["shards_computed"] + r1["shards_computed"] == 5
    assert r0["finalized"] or r1["finalized"]
    _report(single)
    assert _tree_bytes(tmp_path / "one.zarr") == _tree_bytes(tmp_path / "two.zarr")
    reader = CacheReader(inp, {"conv": tmp_path / "two.zarr"})
    assert reader.read([0], ["conv.recon"])["conv.recon"].shape == (1, 3, 8, 8)
