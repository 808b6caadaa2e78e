"""dvc.yaml's generator stages depend on their own family's code, all of it, and on nothing of the other one.

Read through DVC's own parser (the resolved ``train_generator@<g>`` / ``sample@<g>`` stages of the default
params), against what the family's modules really import in a fresh interpreter.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from dvc.repo import Repo

ROOT = Path(__file__).resolve().parents[1]

# Project-wide helpers that every stage imports and whose edits are meant to re-run nothing by themselves.
SHARED_HELPERS = {
    "pipeline/__init__.py",
    "pipeline/demo/__init__.py",
    "pipeline/models/__init__.py",
    "pipeline/inversion/__init__.py",
    "pipeline/device.py",
    "pipeline/errors.py",
    "pipeline/imaging.py",
    "pipeline/plots.py",
    "pipeline/progress.py",
    "pipeline/demo/resume.py",  # where a training state is banked, not what is trained
    "pipeline/models/checkpoint.py",
    "pipeline/params.py",
    "stages/__init__.py",
    "stages/_common.py",
}
FAMILIES = ("gan", "dm")


def _generators_by_family() -> dict[str, list[str]]:
    generators = yaml.safe_load((ROOT / "params.yaml").read_text())["demo"]["generators"]
    return {f: sorted(n for n, g in generators.items() if g["family"] == f) for f in FAMILIES}


def _stage_deps(name: str) -> list[str]:
    with Repo(str(ROOT)) as repo:
        (stage,) = repo.stage.collect(name)
        return [d.def_path for d in stage.deps]


def _imported_files(*modules: str) -> set[str]:
    """Repo-relative files of the project modules that importing ``modules`` loads (fresh interpreter)."""
    code = (
        "import importlib, json, sys\n"
        f"for m in {list(modules)!r}: importlib.import_module(m)\n"
        "mine = [m.__file__ for k, m in sys.modules.items() if k.split('.')[0] in ('pipeline', 'stages')]\n"
        "print(json.dumps(mine))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return {Path(f).resolve().relative_to(ROOT).as_posix() for f in json.loads(out.stdout)}


def _covered(path: str, deps: list[str]) -> bool:
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in deps)


@pytest.fixture(scope="module")
def by_family() -> dict[str, list[str]]:
    found = _generators_by_family()
    assert all(found[f] for f in FAMILIES), f"params.yaml needs a generator of each family: {found}"
    return found


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("stage", ["train_generator", "sample"])
def test_stage_covers_everything_its_family_imports(
    by_family: dict[str, list[str]], family: str, stage: str
) -> None:
    # the stage entry point, and the family module that `pipeline.demo.generators` imports lazily
    family_module = f"pipeline.demo.{family}_{'training' if stage == 'train_generator' else 'sampling'}"
    imported = _imported_files(f"stages.{stage}", family_module) - SHARED_HELPERS
    for generator in by_family[family]:
        deps = _stage_deps(f"{stage}@{generator}")
        missing = sorted(p for p in imported if not _covered(p, deps))
        assert not missing, f"{stage}@{generator} imports {missing} but dvc.yaml does not list them"


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("stage", ["train_generator", "sample"])
def test_stage_depends_on_nothing_of_the_other_family(
    by_family: dict[str, list[str]], family: str, stage: str
) -> None:
    (other,) = set(FAMILIES) - {family}
    other_code = [f"pipeline/models/{other}", f"pipeline/demo/{other}_training.py"]
    other_code.append(f"pipeline/demo/{other}_sampling.py")
    for generator in by_family[family]:
        deps = _stage_deps(f"{stage}@{generator}")
        leaked = [d for d in deps if _covered(d, other_code)]
        assert not leaked, f"{stage}@{generator} depends on {other} code {leaked}: an edit there re-runs it"


def test_family_trainers_import_nothing_of_the_other_family() -> None:
    """What the dvc.yaml split relies on: each trainer really runs without the other family's code."""
    for family in FAMILIES:
        (other,) = set(FAMILIES) - {family}
        imported = _imported_files(f"pipeline.demo.{family}_training")
        other_code = (f"pipeline/models/{other}/", f"pipeline/demo/{other}_")
        assert not [p for p in imported if p.startswith(other_code)], family


def test_gan_reconstruction_loads_generators_without_the_training_loop() -> None:
    """`recon_gan` and `train_encoder` depend on `gan_sampling.py`, not `gan_training.py`: a GAN training edit
    whose re-trained generator is byte-identical re-runs no reconstruction."""
    imported = _imported_files("pipeline.inversion.gan", "pipeline.models.encoder")
    assert "pipeline/demo/gan_sampling.py" in imported
    assert "pipeline/demo/gan_training.py" not in imported
    for name in ("recon_gan@demo", "train_encoder"):
        deps = _stage_deps(name)
        assert "pipeline/demo/gan_sampling.py" in deps and "pipeline/demo/gan_training.py" not in deps, name


@pytest.mark.parametrize("stage", ["train_generator", "sample"])
def test_generator_stages_do_not_depend_on_reconstruction_code(
    by_family: dict[str, list[str]], stage: str
) -> None:
    """A DM's saved sampler comes from `pipeline/models/dm/schedulers.py`, not from the DDIM inversion code:
    an edit to reconstruction must not re-train or re-sample a generator."""
    for generator in by_family["gan"] + by_family["dm"]:
        deps = _stage_deps(f"{stage}@{generator}")
        assert not [d for d in deps if d.startswith("pipeline/inversion")], f"{stage}@{generator}: {deps}"
