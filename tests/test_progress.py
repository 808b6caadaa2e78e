"""Progress in a log file: plain lines, not carriage-return redraws; a live bar on a terminal."""

from __future__ import annotations

import io
import time

import pytest

from pipeline.demo.resume import step_bar
from pipeline.progress import progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_log_file_gets_one_line_per_interval() -> None:
    log = io.StringIO()
    bar = progress(range(5), desc="train", unit="step", log_interval=0.05, stream=log)
    for _ in bar:
        bar.set_postfix(loss=0.5, img_s=64)
        time.sleep(0.06)
    bar.close()
    text = log.getvalue()
    lines = text.splitlines()
    assert "\r" not in text and text.endswith("\n")
    assert len(lines) >= 3  # start, some updates, end
    assert lines[-1].startswith("train: 100%") and "5/5" in lines[-1] and "loss=0.5" in lines[-1]


def test_log_interval_limits_the_lines() -> None:
    log = io.StringIO()
    bar = progress(range(1000), desc="fast", log_interval=60.0, stream=log)
    for _ in bar:
        bar.set_postfix(loss=0.1)  # a postfix update waits for the next line
    bar.close()
    assert len(log.getvalue().splitlines()) <= 3  # not one per step


def test_terminal_keeps_the_live_bar() -> None:
    term = Terminal()
    for _ in progress(range(3), desc="live", mininterval=0.0, stream=term):
        pass
    assert "\r" in term.getvalue()


def test_step_bar_resumes_at_its_start(capsys: pytest.CaptureFixture[str]) -> None:
    bar = step_bar(7, 10, "train ddpm")
    assert list(bar) == [7, 8, 9] and bar.n == 10
    bar.close()
    err = capsys.readouterr().err
    assert "\r" not in err and "10/10" in err.splitlines()[-1]
