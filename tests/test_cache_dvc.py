"""End to end through real git + DVC: push/pull/clone, incremental push of changed shards, and a killed
``dvc repro`` resuming from the work dir. Slow (many dvc invocations), hence marked."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pipeline.cache.store import open_store

REPO = Path(__file__).resolve().parents[1]

MAKE_INPUT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    import numpy as np, yaml
    from pipeline.cache.store import write_input_store

    n = yaml.safe_load(open("params.yaml"))["n"]
    # image i depends only on i, so growing n appends rows and leaves earlier shards byte-identical
    imgs = np.stack([np.random.default_rng(i).integers(0, 256, (3, 8, 8), dtype=np.uint8) for i in range(n)])
    write_input_store(Path(sys.argv[1]), imgs, [f"img{i:04d}" for i in range(n)], {"kind": "input"},
                      chunk_images=4, shard_images=8, stage="prepare")
    """
)

RECON = textwrap.dedent(
    """
    import json, os, sys, time
    from pathlib import Path
    import numpy as np
    from pipeline.cache.writer import build_recon_store

    def reconstruct(batch):
        time.sleep(float(os.environ.get("RECON_SLEEP", "0")))
        return (batch.astype(np.float32) / 127.5 - 1.0) * 0.75

    rep = build_recon_store(Path(sys.argv[1]), Path(sys.argv[2]), reconstruct=reconstruct,
                            provenance={"kind": "scale", "factor": 0.75}, work_dir=Path(sys.argv[3]),
                            batch_size=4, chunk_images=4, shard_images=8, progress=False, stage="recon")
    with open(os.environ["REPORT_LOG"], "a") as fh:
        fh.write(json.dumps({k: v for k, v in vars(rep).items() if k != "out"}) + "\\n")
    """
)

DVC_YAML = textwrap.dedent(
    """
    stages:
      prepare:
        cmd: python make_input.py data/images.zarr
        deps: [make_input.py]
        params: [n]
        outs: [data/images.zarr]
      recon:
        cmd: python recon.py data/images.zarr data/cache/recon.zarr data/_work/recon
        deps: [recon.py, data/images.zarr]
        outs: [data/cache/recon.zarr]
    """
)


def _run(cwd: Path, *args: str, env: dict[str, str]) -> str:
    p = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, f"{args} failed:\n{p.stdout}\n{p.stderr}"
    return p.stdout + p.stderr


def _objects(remote: Path) -> dict[str, int]:
    return {p.relative_to(remote).as_posix(): p.stat().st_size for p in remote.rglob("*") if p.is_file()}


def _md5s(proj: Path) -> dict[str, str]:
    """md5 (DVC's content address) of every file of both stores."""
    stores = [proj / "data/images.zarr", proj / "data/cache/recon.zarr"]
    return {
        p.relative_to(proj).as_posix(): hashlib.md5(p.read_bytes()).hexdigest()
        for s in stores
        for p in s.rglob("*")
        if p.is_file()
    }


def _reports(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


@pytest.mark.slow
def test_dvc_push_pull_incremental_and_killed_repro_resumes(tmp_path: Path) -> None:
    proj, remote, clone = tmp_path / "proj", tmp_path / "remote", tmp_path / "clone"
    proj.mkdir()
    log = tmp_path / "reports.jsonl"
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "REPORT_LOG": str(log),
        "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com",
        "DVC_NO_ANALYTICS": "1",
    }  # fmt: skip
    (proj / "make_input.py").write_text(MAKE_INPUT)
    (proj / "recon.py").write_text(RECON)
    (proj / "dvc.yaml").write_text(DVC_YAML)
    (proj / "params.yaml").write_text("n: 36\n")
    (proj / ".gitignore").write_text("/data/_work/\n")
    _run(proj, "git", "init", "-q", env=env)
    _run(proj, "dvc", "init", "-q", env=env)
    (proj / ".dvcignore").write_text("/data/_work/\n")
    _run(proj, "dvc", "remote", "add", "-d", "local", str(remote), env=env)
    _run(proj, "dvc", "repro", env=env)
    assert _reports(log)[-1]["shards_computed"] == 5  # 36 images / 8 per shard
    _run(proj, "git", "add", "-A", env=env)
    _run(proj, "git", "commit", "-qm", "first", env=env)
    _run(proj, "dvc", "push", env=env)
    first = _objects(remote)
    md5_before = _md5s(proj)

    # clone -> pull -> nothing to run, store intact
    _run(tmp_path, "git", "clone", "-q", str(proj), str(clone), env=env)
    clone_env = {**env, "REPORT_LOG": str(tmp_path / "clone_reports.jsonl")}
    _run(clone, "dvc", "pull", env=clone_env)
    assert "up to date" in _run(clone, "dvc", "status", env=clone_env)
    out = _run(clone, "dvc", "repro", env=clone_env)
    assert "didn't change, skipping" in out and "Running stage" not in out
    assert not (tmp_path / "clone_reports.jsonl").exists()  # no reconstruction re-ran
    g = open_store(clone / "data/cache/recon.zarr", {"kind": "scale", "factor": 0.75}, verify=True)
    assert g["recon"].shape == (36, 3, 8, 8)

    # add 8 images; a slow `dvc repro` is killed mid-stage (kill -9 of the whole process group)
    (proj / "params.yaml").write_text("n: 44\n")
    slow = subprocess.Popen(
        ["dvc", "repro"], cwd=proj, env={**env, "RECON_SLEEP": "0.5"}, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    done = proj / "data/_work/recon/done"
    deadline = time.monotonic() + 120
    while not (done.is_dir() and len(list(done.glob("shard-*.json"))) >= 2):
        assert slow.poll() is None and time.monotonic() < deadline, "dvc repro ended before the kill"
        time.sleep(0.05)
    os.killpg(slow.pid, signal.SIGKILL)
    slow.wait()
    n_done = len(list(done.glob("shard-*.json")))
    _run(proj, "dvc", "repro", env=env)
    resumed = _reports(log)[-1]
    assert resumed["shards_total"] == 6 and resumed["finalized"]
    assert resumed["shards_done_before"] == n_done >= 2  # completed shards were not recomputed
    assert resumed["shards_computed"] == 6 - n_done
    assert not (proj / "data/_work/recon").exists()

    # second push sends only the changed shards: last (partial -> full) + new shard per array, plus metadata
    _run(proj, "git", "add", "-A", env=env)
    _run(proj, "git", "commit", "-qm", "more images", env=env)
    _run(proj, "dvc", "push", env=env)
    second = _objects(remote)
    new = {k: v for k, v in second.items() if k not in first}
    md5_after = _md5s(proj)
    changed = {f for f, h in md5_after.items() if md5_before.get(f) != h}
    shard_files = sorted(f for f in changed if "/c/" in f)
    # per array: shard 4 (was partial) and the new shard 5; shards 0-3 untouched
    assert all(f.split("/c/")[1].split("/")[0] in {"4", "5"} for f in shard_files), shard_files
    assert len(shard_files) == 2 * (2 + 4)  # input: image, image_id; recon: recon, residual, mse, image_id
    assert not any(f.split("/c/")[1].split("/")[0] in {"0", "1", "2", "3"} for f in changed if "/c/" in f)
    # the remote received exactly the changed contents (DVC dedups identical files, e.g. the image_id
    # shards that both stores share) plus one .dir listing per store
    pushed = {k.replace("/", "")[len("filesmd5") :] for k in new if not k.endswith(".dir")}
    assert pushed == {md5_after[f] for f in changed} - set(md5_before.values())
    assert sum(k.endswith(".dir") for k in new) == 2
    stored = sum(first.values())
    sys.stderr.write(
        f"first push: {len(first)} objects, {stored} bytes; second push: {len(new)} objects,"
        f" {sum(new.values())} bytes\n"
    )
    assert sum(new.values()) < stored
