"""Generator specs from params, and the code each generator's DVC stage depends on."""

from __future__ import annotations

from pathlib import Path

import pytest
from dvc.repo import Repo

from pipeline.demo.generators import GeneratorSpec
from pipeline.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_spec_from_params_reads_a_generator() -> None:
    spec = GeneratorSpec.from_params(
        "adm", {"kind": "ddpm", "family": "dm", "role": "train", "train": {"steps": 5}}
    )
    assert (spec.kind, spec.family, spec.role, spec.train) == ("ddpm", "dm", "train", {"steps": 5})


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"kind": "ddpm", "role": "train"}, r"`demo\.generators\.g\.family` is missing: set it to 'dm'"),
        (
            {"kind": "dcgan", "family": "dm", "role": "test"},
            r"`demo\.generators\.g\.family` is 'dm' but",
        ),
        ({"kind": "vqgan", "family": "gan", "role": "test"}, r"`demo\.generators\.g\.kind` must be one of"),
        ({"kind": "ldm", "family": "dm", "role": "val"}, r"`demo\.generators\.g\.role` must be 'train' or"),
        ({"kind": "ldm", "family": "dm", "role": "test", "steps": 3}, r"unknown keys \['steps'\]"),
    ],
)
def test_bad_spec_names_its_key(spec: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        GeneratorSpec.from_params("g", spec)


def test_each_generator_stage_depends_on_its_own_familys_trainer_only() -> None:
    """DVC resolves ``${item.family}``: a change to the DM trainer re-trains DMs, never the GANs, and back."""
    with Repo(str(ROOT)) as repo:
        for stage_name, own, other in [
            ("train_generator@stylegan", "gan_training.py", "dm_training.py"),
            ("train_generator@dcgan", "gan_training.py", "dm_training.py"),
            ("train_generator@adm", "dm_training.py", "gan_training.py"),
            ("train_generator@ldm", "dm_training.py", "gan_training.py"),
        ]:
            (stage,) = repo.stage.collect(stage_name)
            deps = {dep.def_path for dep in stage.deps}
            assert f"pipeline/demo/{own}" in deps and f"pipeline/demo/{other}" not in deps, stage_name
            assert "pipeline/models/patch_discriminator.py" in deps  # the LDM autoencoder's discriminator
            # A DM's saved sampler comes from the scheduler module, not from the reconstruction code.
            assert "pipeline/inversion/schedulers.py" in deps and "pipeline/inversion/ddim.py" not in deps
        (gan_sample,) = repo.stage.collect("sample@stylegan")
        assert "pipeline/demo/gan_training.py" in {dep.def_path for dep in gan_sample.deps}  # has sample_gan
