"""The generators' lane order for `make demo-2lanes`, and the wall-time model used to choose it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.demo.lanes import lane_order, makespan
from pipeline.errors import ConfigError
from pipeline.profiles import apply_profile

ROOT = Path(__file__).resolve().parents[1]
GENERATORS = {
    "stylegan": {"family": "gan"},
    "adm": {"family": "dm"},
    "dcgan": {"family": "gan"},
    "ldm": {"family": "dm"},
}


def test_default_order_puts_dms_first_in_params_order() -> None:
    assert lane_order({"generators": GENERATORS}) == ["adm", "ldm", "stylegan", "dcgan"]


def test_explicit_order_is_kept() -> None:
    order = ["ldm", "stylegan", "adm", "dcgan"]
    assert lane_order({"generators": GENERATORS, "lane_order": order}) == order


@pytest.mark.parametrize(
    ("order", "named"),
    [
        (["adm", "ldm", "stylegan"], "missing: dcgan"),
        (["adm", "ldm", "stylegan", "dcgan", "biggan"], "unknown: biggan"),
        (["adm", "adm", "ldm", "stylegan", "dcgan"], "repeated: adm"),
        ("adm ldm stylegan dcgan", "must be a list"),
    ],
)
def test_bad_order_names_the_key_and_the_generators(order: object, named: str) -> None:
    with pytest.raises(ConfigError, match=r"demo\.lane_order") as err:
        lane_order({"generators": GENERATORS, "lane_order": order})
    assert named in str(err.value)


def test_makespan_gives_each_job_to_the_lane_that_frees_first() -> None:
    minutes = {"a": 6.0, "b": 6.0, "c": 4.0, "d": 8.0}
    # lane 1: a 0-6, c 6-10; lane 2: b 0-6, d 6-14
    assert makespan(["a", "b", "c", "d"], minutes) == 14.0
    # lane 1: a 0-6, b 6-12; lane 2: d 0-8, c 8-12
    assert makespan(["a", "d", "b", "c"], minutes) == 12.0
    assert makespan(["a", "b", "c", "d"], minutes, lanes=4) == 8.0


def test_full_profile_sets_an_order_naming_every_generator_once(tmp_path: Path) -> None:
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    merged = apply_profile("full", tmp_path / "params.yaml", ROOT / "profiles")
    order = lane_order(merged["demo"])
    assert order == merged["demo"]["lane_order"] and sorted(order) == sorted(merged["demo"]["generators"])


def test_cli_prints_the_order_and_projects_wall_times(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"demo": {"generators": GENERATORS}}, sort_keys=False))
    runner = CliRunner()
    res = runner.invoke(app, ["lane-order", "--params", str(params)])
    assert res.exit_code == 0 and res.stdout.split() == ["adm", "ldm", "stylegan", "dcgan"]
    times = [arg for item in ("adm=90", "ldm=100", "stylegan=40", "dcgan=10") for arg in ("--minutes", item)]
    res = runner.invoke(app, ["lane-order", "--params", str(params), *times])
    # adm 0-90 then stylegan 90-130; ldm 0-100 then dcgan 100-110
    assert res.exit_code == 0 and "130 min in this order, 130 DMs first" in res.stderr
    bad = runner.invoke(app, ["lane-order", "--params", str(params), "--minutes", "biggan=3"])
    assert bad.exit_code == 2 and "biggan=3" in bad.stderr
