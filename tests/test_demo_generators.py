"""Generator specs from params, and the code each generator's DVC stage depends on."""

from __future__ import annotations

from pathlib import Path

import pytest

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
