"""The user-facing command: help texts, doctor, profiles."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.profiles import apply_profile, deep_merge

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def test_help_lists_commands() -> None:
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0 and "doctor" in res.output and "profile" in res.output


def test_doctor_reports_versions_and_device() -> None:
    res = runner.invoke(app, ["doctor", "--project", str(ROOT)])
    assert "torch" in res.output and "device      cpu" in res.output
    assert res.exit_code in (0, 1)
    assert ("nothing missing" in res.output) == (res.exit_code == 0)


def test_deep_merge_keeps_untouched_keys() -> None:
    assert deep_merge({"a": {"b": 1, "c": 2}, "d": 3}, {"a": {"b": 5}}) == {"a": {"b": 5, "c": 2}, "d": 3}


def test_profiles_apply_to_params(tmp_path: Path) -> None:
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    for name in ("quick", "full"):
        merged = apply_profile(name, tmp_path / "params.yaml", ROOT / "profiles")
        profile = yaml.safe_load((ROOT / "profiles" / f"{name}.yaml").read_text())
        assert merged["data"]["resolution"] == profile.get("data", {}).get(
            "resolution", merged["data"]["resolution"]
        )
        assert yaml.safe_load((tmp_path / "params.yaml").read_text()) == merged
