"""dvc.yaml lists, for every stage, the project code the stage runs; generator stages list their own family's
code and nothing of the other one.

Read through DVC's own parser (the stages resolved from the default params), against the project modules
each stage's entry point imports: statically, following every `import` inside functions too (the lazy ones a
fresh interpreter would not load until called), and, for the family split, in a fresh interpreter.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from dvc.repo import Repo

ROOT = Path(__file__).resolve().parents[1]

# Project-wide helpers whose edits are meant to re-run nothing by themselves: where and how a stage runs and
# reports, not what it computes (pixel scaling, `pipeline/imaging.py`, is a dep of every stage using it).
SHARED_HELPERS = {
    "pipeline/device.py",
    "pipeline/errors.py",
    "pipeline/plots.py",
    "pipeline/progress.py",
    "pipeline/stage_times.py",
    "pipeline/demo/resume.py",  # where a training state is banked, not what is trained
    "pipeline/models/checkpoint.py",
    "pipeline/params.py",
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


def _module_file(module: str) -> Path | None:
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None  # a name imported from a module, not a module


def _is_type_checking(test: ast.expr) -> bool:
    return getattr(test, "id", getattr(test, "attr", None)) == "TYPE_CHECKING"


def _project_imports(path: Path) -> set[str]:
    """Project modules (and their parent packages) that ``path`` imports anywhere, `TYPE_CHECKING` aside."""
    names: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    parts = [n.split(".") for n in names if n.split(".")[0] in ("pipeline", "stages")]
    return {".".join(p[:i]) for p in parts for i in range(1, len(p) + 1)}


def _static_closure(module: str, skip: tuple[str, ...] = ()) -> set[str]:
    """Repo-relative files of every project module ``module`` can import, transitively (modules under a
    ``skip`` prefix are not followed)."""
    seen: set[str] = set()
    files: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen or any(name == s or name.startswith(s + ".") for s in skip):
            continue
        seen.add(name)
        if (path := _module_file(name)) is not None:
            files.add(path.relative_to(ROOT).as_posix())
            todo.extend(_project_imports(path))
    return files


def _is_package_marker(path: str) -> bool:
    """An `__init__.py` that only documents and re-exports: what it imports is followed on its own."""
    if not path.endswith("__init__.py"):
        return False
    tree = ast.parse((ROOT / path).read_text())
    return all(isinstance(n, ast.Import | ast.ImportFrom | ast.Expr | ast.Assign) for n in tree.body)


def _covered(path: str, deps: list[str]) -> bool:
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in deps)


@pytest.fixture(scope="module")
def by_family() -> dict[str, list[str]]:
    found = _generators_by_family()
    assert all(found[f] for f in FAMILIES), f"params.yaml needs a generator of each family: {found}"
    return found


def _not_followed(stage: str, generators: dict) -> tuple[str, ...]:
    """Modules a stage imports but never runs, by design of the family split."""
    kind, _, generator = stage.partition("@")
    if kind not in ("train_generator", "sample"):
        return ()
    family = generators[generator]["family"]
    (other,) = set(FAMILIES) - {family}
    skip = (f"pipeline.demo.{other}_training", f"pipeline.demo.{other}_sampling", f"pipeline.models.{other}")
    if kind == "sample":
        # generators.py dispatches both training and sampling; `sample` runs only the sampler, and the trained
        # weights (a dependency) carry whatever training did
        skip += (f"pipeline.demo.{family}_training",)
    return skip


def test_every_stage_lists_the_project_code_it_imports() -> None:
    """An edit to any module a stage can run re-runs the stage: e.g. `assemble` once missed the module that
    lays out the dataset, `prepare` the cache writer, `demo_report` the face loader, and the detectors the
    manifest reader and metrics."""
    generators = yaml.safe_load((ROOT / "params.yaml").read_text())["demo"]["generators"]
    missing: dict[str, list[str]] = {}
    with Repo(str(ROOT)) as repo:
        stages = [st for st in repo.index.stages if st.cmd]
        assert len(stages) > 20, [st.addressing for st in stages]
        for st in stages:
            entry = re.search(r"python -m (stages\.\w+)", st.cmd)
            assert entry, f"stage {st.addressing} does not run a `python -m stages.<name>` entry point"
            files = _static_closure(entry.group(1), _not_followed(st.addressing, generators))
            entry_file = f"{entry.group(1).replace('.', '/')}.py"
            assert entry_file in files and any(f.startswith("pipeline/") for f in files), st.addressing
            deps = [d.def_path for d in st.deps]
            lacking = sorted(
                f for f in files - SHARED_HELPERS if not _is_package_marker(f) and not _covered(f, deps)
            )
            if lacking:
                missing[st.addressing] = lacking
    assert not missing, f"dvc.yaml stages import code they do not list as deps: {missing}"


def test_the_static_walk_sees_imports_inside_functions() -> None:
    """The walk above must follow lazy imports (a fresh interpreter would miss them until called)."""
    lazy = "pipeline/demo/faces.py"  # imported inside `pipeline.models.encoder.load_face_folder`
    assert lazy not in _imported_files("pipeline.models.encoder")
    assert lazy in _static_closure("pipeline.models.encoder")


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
