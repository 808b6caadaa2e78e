"""End to end through real DVC: the quick profile reproduces, caches, and re-runs only what changed."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import zarr
from PIL import Image

from pipeline.stage_times import parse_repro_log

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def _run(
    cmd: list[str], cwd: Path, timeout: int = 1800, merged: bool = False
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(cwd), "DVC_NO_ANALYTICS": "1"}
    streams = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT} if merged else {"capture_output": True}
    return subprocess.run(cmd, cwd=cwd, env=env, text=True, timeout=timeout, check=False, **streams)


def _ok(cmd: list[str], cwd: Path, merged: bool = False) -> str:
    """Run a command that must succeed; ``merged`` interleaves stderr into stdout (`dvc repro > log 2>&1`)."""
    res = _run(cmd, cwd, merged=merged)
    assert res.returncode == 0, f"{' '.join(cmd)} failed:\n{res.stdout[-4000:]}\n{(res.stderr or '')[-4000:]}"
    return res.stdout + (res.stderr or "")


def _stages_ran(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def _quick_project(dest: Path) -> Path:
    """A fresh copy of the repo (tracked + new files, no data) on the quick profile, in its own git."""
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    for rel in files:
        if rel.startswith("data/") or not (ROOT / rel).is_file():
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, dest / rel)
    _ok([sys.executable, "-m", "pipeline.cli", "profile", "quick"], dest)
    for cmd in (
        ["git", "init", "-q"],
        ["git", "config", "user.email", "ci@multirecon.invalid"],  # `dvc exp run` commits to refs/exps
        ["git", "config", "user.name", "multirecon tests"],
        ["git", "add", "-A"],
        ["git", "commit", "-qm", "quick profile"],
    ):
        _ok(cmd, dest)
    return dest


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The quick profile, reproduced once."""
    dest = _quick_project(tmp_path_factory.mktemp("proj"))
    out = _ok(["dvc", "repro"], dest, merged=True)
    (dest / "first_repro.log").write_text(out)
    return dest


def test_repro_makes_every_output(project: Path) -> None:
    ran = _stages_ran((project / "first_repro.log").read_text())
    assert {"faces", "assemble", "demo_report", "prepare@demo", "recon_ddim@demo", "recon_gan@demo",
            "summarize"} <= ran  # fmt: skip
    generators = json.loads((project / "data/reports/generators.json").read_text())["generators"]
    assert set(generators) == {"stylegan", "stylegan2", "dcgan", "adm", "iddpm", "ldm"}
    for rel in (
        "data/reports/generators.png",
        "data/prepared/demo/manifest.parquet",
        "data/prepared/demo/images.zarr",
        "data/cache/demo/ddim.zarr",
        "data/cache/demo/gan.zarr",
        "data/reports/table1.md",
        "data/reports/table3.md",
    ):
        assert (project / rel).exists(), rel
    table = (project / "data/reports/table1.md").read_text()
    assert "multirecon" in table and "control" in table


def test_stage_times_reads_the_repro_log(project: Path) -> None:
    """`multirecon stage-times` pairs every stage that ran with its own `stage finished` line."""
    log = (project / "first_repro.log").read_text()
    rows = parse_repro_log(log.splitlines())
    assert {r.stage for r in rows if r.status == "ran"} == _stages_ran(log)
    ran = [r for r in rows if r.status == "ran"]
    # a stage's own line, never the timestamp fallback; a tiny stage on a fast machine can take under 1 ms
    assert all(r.seconds is not None and r.seconds >= 0 and not r.approximate for r in ran)
    assert sum(r.seconds or 0.0 for r in ran) > 1.0  # the profile's generators train for real
    table = _ok([sys.executable, "-m", "pipeline.cli", "stage-times", "first_repro.log"], project)
    assert "| `recon_ddim@demo` | ran |" in table and "| **total** |" in table and "~" not in table


def test_second_repro_has_nothing_to_do(project: Path) -> None:
    out = _ok(["dvc", "repro"], project)
    assert _stages_ran(out) == set(), out
    assert "up to date" in out.lower()


def _changed_stages(project: Path) -> set[str]:
    return set(json.loads(_ok(["dvc", "status", "--json"], project)))


def test_a_code_edit_touches_only_its_own_generator_family(project: Path) -> None:
    """An edit in one family's networks makes only that family's generator stages stale; Python bytecode
    caches in the code folders (absent on a colleague's clone) change nothing."""
    by_family = {"gan": {"stylegan", "stylegan2", "dcgan"}, "dm": {"adm", "iddpm", "ldm"}}
    for family, edited in (("gan", "highpass.py"), ("dm", "unet.py")):
        path = project / "pipeline" / "models" / family / edited
        original = path.read_text()
        try:
            path.write_text(original + "\n# an edit\n")
            stale = _changed_stages(project)
        finally:
            path.write_text(original)
        expected = {f"{stage}@{g}" for g in by_family[family] for stage in ("train_generator", "sample")}
        assert stale == expected, (family, stale)
    pycache = project / "pipeline" / "models" / "gan" / "__pycache__"
    pycache.mkdir(exist_ok=True)
    (pycache / "highpass.cpython-399.pyc").write_bytes(b"\x00bytecode")
    (project / "pipeline" / "cache" / "stray.pyc").write_bytes(b"\x00bytecode")
    assert _changed_stages(project) == set()


def test_recon_steps_reruns_only_ddim_and_dependents(project: Path) -> None:
    """The README's `dvc exp run -S recon.steps=...`: DDIM reconstruction and what reads it, nothing else."""
    original = (project / "params.yaml").read_text()
    steps = int(re.search(r"^\s+steps: (\d+)", original.split("\nrecon:")[1], re.M).group(1))
    out = _ok(["dvc", "exp", "run", "-S", f"recon.steps={steps + 1}"], project)
    ran = _stages_ran(out)
    assert "recon_ddim@demo" in ran, out
    upstream = ("recon_gan", "train_generator", "sample", "faces", "prepare", "train_encoder", "assemble")
    assert not any(s.startswith(upstream) for s in ran), ran
    assert not any("cnnspot" in s or "control" in s for s in ran), ran
    assert any("multirecon" in s for s in ran), ran


def test_more_generator_steps_resume_the_saved_training_state(project: Path) -> None:
    """Raising a DM's `steps` re-runs its stage through DVC, which resumes from data/_work/train/<g>
    instead of step 0 (the same path an interrupted stage takes)."""
    report = project / "data" / "models" / "adm" / "train_report.json"
    steps = json.loads(report.read_text())["config"]["steps"]
    assert (project / "data" / "_work" / "train" / "adm" / "state.pt").is_file()
    more = f"demo.generators.adm.train.steps={steps + 4}"
    out = _ok(["dvc", "exp", "run", "-s", "train_generator@adm", "-S", more], project)
    assert _stages_ran(out) == {"train_generator@adm"}, out
    after = json.loads(report.read_text())
    assert after["config"]["steps"] == steps + 4 and after["resumed_from_step"] == steps


def test_the_whole_pipeline_runs_at_64_px(tmp_path_factory: pytest.TempPathFactory) -> None:
    """64 px is the issue's optional resolution: one `-S data.resolution=64` takes the quick profile's every
    generator, both reconstructions and the detectors there (the quick profile's own is 16 px)."""
    dest = _quick_project(tmp_path_factory.mktemp("proj64"))
    _ok(["dvc", "exp", "run", "-S", "data.resolution=64"], dest)
    for g in ("stylegan", "stylegan2", "dcgan", "adm", "iddpm", "ldm"):
        fakes = dest / "data/demo/fakes" / g
        with Image.open(next(fakes.rglob("*.jpg"))) as im:
            assert im.size == (64, 64), (g, im.size)
        assert json.loads((fakes / "quality.json").read_text())["n_fake"] > 0
    with Image.open(next((dest / "data/demo/faces").rglob("*.jpg"))) as im:
        assert im.size == (64, 64)
    for store in ("data/prepared/demo/images.zarr", "data/cache/demo/ddim.zarr", "data/cache/demo/gan.zarr"):
        group = zarr.open_group(dest / store, mode="r")
        shapes = {group[k].shape[1:] for k in group.array_keys() if group[k].ndim == 4}
        assert shapes == {(3, 64, 64)}, (store, shapes)
    assert "multirecon" in (dest / "data/reports/table1.md").read_text()


def test_make_demo_2lanes_reproduces_everything_with_a_log_per_lane_stage(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """The README's CPU way to run the full demo, on the quick profile: two one-thread lanes train and sample
    the generators, then (after the reconstructions) train the CNN detectors, each into its own log that
    `multirecon stage-times` reads; a final `dvc repro` does the rest and trains nothing again."""
    dest = _quick_project(tmp_path_factory.mktemp("proj2lanes"))
    out = _ok(["make", "demo-2lanes", "PIP=true", f"PYTHON={sys.executable}"], dest, merged=True)
    lanes_dir = dest / "logs/demo-2lanes"
    generators = ("stylegan", "stylegan2", "dcgan", "adm", "iddpm", "ldm")
    expected = {f"{g}.log": [f"train_generator@{g}", f"sample@{g}"] for g in generators}
    stages = _ok(["dvc", "stage", "list", "--name-only"], dest).split()
    detectors = [s for s in stages if s.startswith("train_detector_")]
    assert len(detectors) == 8
    expected |= {f"{d}.log": [d] for d in detectors}
    assert {p.name for p in lanes_dir.iterdir()} == set(expected)
    for name, lane_stages in expected.items():
        rows = [(r.stage, r.status) for r in parse_repro_log((lanes_dir / name).read_text().splitlines())]
        assert rows == [(stage, "ran") for stage in lane_stages], name
        assert f"{name.removesuffix('.log')}: done" in out
    ran_after = _stages_ran(out)  # faces, the reconstructions and the final `dvc repro`: no lane stage again
    assert {"recon_ddim@demo", "recon_gan@demo", "summarize"} <= ran_after
    assert not any(s.startswith(("train_generator@", "sample@", "train_detector_")) for s in ran_after)
    assert _changed_stages(dest) == set()  # every stage locked: nothing left to run
    logs = sorted(map(str, lanes_dir.iterdir()))
    tables = _ok([sys.executable, "-m", "pipeline.cli", "stage-times", *logs], dest)
    assert tables.count("| **total** |") == len(expected) and "| `sample@ldm` | ran |" in tables
