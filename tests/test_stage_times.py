"""Stage wall times read back from a `dvc repro` log (the quick profile's real log: tests/test_e2e_dvc.py)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.stage_times import FINISHED, format_markdown, parse_repro_log

LOG = f"""\
Stage 'faces' didn't change, skipping
Running stage 'train_generator@dcgan':
> python -m stages.train_generator dcgan --faces data/demo/faces --out data/models/dcgan
2026-12-04 21:06:22,634 INFO stages: <device=cpu>
train dcgan:  50%|#####     | 1000/2000 [00:40<00:40, 25step/s]\rtrain dcgan: 100%|##########| 2000/2000
2026-12-04 21:07:50,000 INFO stages: {FINISHED} <seconds=88.4> <status=ok>
Stage 'train_generator@stylegan' is cached - skipping run, checking out outputs
Running stage 'sample@dcgan':
> python -m stages.sample dcgan
2026-12-04 21:08:00,000 INFO stages: <device=cpu>
2026-12-04 21:08:09,500 INFO stages: {FINISHED} <seconds=9.5> <status=failed>
"""


def test_pairs_each_stage_with_its_finished_line() -> None:
    rows = parse_repro_log(LOG.splitlines())
    assert [(r.stage, r.status, r.seconds) for r in rows] == [
        ("faces", "unchanged", 0.0),
        ("train_generator@dcgan", "ran", 88.4),
        ("train_generator@stylegan", "cached", 0.0),
        ("sample@dcgan", "failed", 9.5),
    ]
    assert not any(r.approximate for r in rows)
    table = format_markdown(rows)
    assert "| `train_generator@dcgan` | ran | 1 min 28 s |" in table
    assert table.rstrip().endswith("| **total** | | 1 min 38 s |")


def test_older_logs_fall_back_to_timestamps() -> None:
    """No `stage finished` line: first stamped line of a stage to the first of the next, marked with ~."""
    old = "\n".join(line for line in LOG.splitlines() if FINISHED not in line)
    rows = {r.stage: r for r in parse_repro_log(old.splitlines())}
    dcgan, sample = rows["train_generator@dcgan"], rows["sample@dcgan"]
    assert dcgan.approximate and dcgan.seconds == 98.0  # 21:06:22 -> 21:08:00
    assert sample.seconds is None  # the last stage: its end is not in the log
    table = format_markdown(list(rows.values()))
    assert (
        "| `train_generator@dcgan` | ran | ~1 min 38 s |" in table and "| `sample@dcgan` | ran | ? |" in table
    )
    assert table.rstrip().endswith("| **total** | | at least ~1 min 38 s |")


def test_a_killed_segment_is_charged_to_its_last_sign_of_life() -> None:
    """Training killed at a session's end and resumed an hour later: the first segment ends at its last
    progress refresh (the bars' elapsed times, summed over the autoencoder's and the UNet's), not at the
    restart."""
    log = f"""\
Running stage 'train_generator@ldm':
2026-12-05 13:30:25,215 INFO stages: <device=cpu>
autoencoder:   0%|          | 0/3000 [00:00<?, ?step/s]
autoencoder:  50%|##| 1500/3000 [32:10<32:10]\rautoencoder: 100%|###| 3000/3000 [1:04:30<00:00]
train ldm/ldm-f2:   2%|1         | 200/10000 [00:50<41:00,  0.25s/step, loss=0.3]
Running stage 'train_generator@ldm':
2026-12-05 15:30:00,000 INFO stages: <device=cpu>
2026-12-05 16:10:00,000 INFO stages: {FINISHED} <seconds=2400.0> <status=ok>
"""
    first, again = parse_repro_log(log.splitlines())
    assert (first.status, first.seconds, first.approximate) == ("killed", 3870.0 + 50.0, True)
    assert (again.status, again.seconds) == ("ran", 2400.0)
    table = format_markdown([first, again])
    assert "| `train_generator@ldm` | killed | ~1 h 05 min |" in table
    assert table.rstrip().endswith("| **total** | | ~1 h 45 min |")
    # no progress bar: its stamped lines bound it (never the 1 h 59 min to the restart)
    bare = [line for line in log.splitlines() if "%|" not in line]
    bare.insert(2, "2026-12-05 13:41:00,000 INFO stages: resumed at step 91")
    assert parse_repro_log(bare)[0].seconds == 635.0


def test_stage_entry_point_logs_its_wall_time(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`stages._common.run` writes the line the parser reads: success, our error, a bad command line."""
    import typer

    from pipeline.errors import ConfigError
    from stages._common import run

    ok, bad = typer.Typer(), typer.Typer()

    @ok.command()
    def fine(n: int = 1) -> None:
        """A stage that works."""

    @bad.command()
    def fail() -> None:
        raise ConfigError("`x` in params.yaml: not a number")

    codes = []
    with caplog.at_level(logging.INFO, logger="stages"):
        for stage, argv in ((ok, ["stage"]), (bad, ["stage"]), (ok, ["stage", "--bogus"])):
            monkeypatch.setattr("sys.argv", argv)
            with pytest.raises(SystemExit) as exit_info:
                run(stage)
            codes.append(exit_info.value.code)
    assert codes == [0, 1, 2]
    assert "No such option: --bogus" in capsys.readouterr().err  # usage message, not a traceback
    finished = [r.getMessage() for r in caplog.records if FINISHED in r.getMessage()]
    assert [m.split("<status=")[1] for m in finished] == ["ok>", "failed>", "failed>"]
    assert any("ConfigError: `x` in params.yaml" in r.getMessage() for r in caplog.records)
    rows = parse_repro_log(["Running stage 'a':", "2026-01-01 00:00:00,000 INFO stages: " + finished[0]])
    assert rows[0].status == "ran" and rows[0].seconds is not None and not rows[0].approximate


def test_cli_names_a_bad_log(tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["stage-times", str(tmp_path / "missing.log")])
    assert res.exit_code == 2 and "no log file" in res.output
    (tmp_path / "pytest.log").write_text("collected 3 items\n")
    res = runner.invoke(app, ["stage-times", str(tmp_path / "pytest.log")])
    assert res.exit_code == 2 and "not a `dvc repro` log" in res.output
    (tmp_path / "repro.log").write_text(LOG)
    res = runner.invoke(app, ["stage-times", str(tmp_path / "repro.log")])
    assert res.exit_code == 0 and "| `sample@dcgan` | failed | 10 s |" in res.output
