"""Wall time of each stage, read back from a `dvc repro` log.

DVC records what a stage ran on, not how long it took, and the README's stage-time table must come from
real runs. Every stage entry point logs one ``stage finished <seconds=...>`` line when it ends
(``stages._common``); this module pairs those lines with DVC's ``Running stage 'NAME':`` headers. Logs
written before that line existed fall back to log timestamps: the first stamped line of a stage to the first
stamped line of the next one (DVC's own hashing between stages included), marked approximate; the last stage
of such a log has no known end.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

__all__ = ["FINISHED", "StageTime", "format_markdown", "parse_repro_log"]

FINISHED = "stage finished"
"""The message `stages._common.run` logs at the end of every stage (with ``<seconds=...>``)."""

_RUNNING = re.compile(r"^Running stage '([^']+)':")
_CACHED = re.compile(r"^Stage '([^']+)' is cached - skipping run")
_UNCHANGED = re.compile(r"^Stage '([^']+)' didn't change, skipping")
_STAMP = re.compile(r"^(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}),\d{3} ")
_FINISHED = re.compile(re.escape(FINISHED) + r" <seconds=([0-9.]+)> <status=(\w+)>")


@dataclass
class StageTime:
    """One stage of a log: ``status`` is ran / failed / cached (run-cache) / unchanged; ``seconds`` is None
    when the log does not show the stage's end."""

    stage: str
    status: str
    seconds: float | None = None
    approximate: bool = False


def _stamp(line: str) -> datetime | None:
    m = _STAMP.match(line)
    return datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S") if m else None


def parse_repro_log(lines: Iterable[str]) -> list[StageTime]:
    """Stages in the order the log shows them, with their wall time where the stage ran."""
    rows: list[StageTime] = []
    first: dict[int, datetime] = {}  # row index -> first timestamp inside its block
    current: int | None = None
    for raw in lines:
        line = raw.rstrip("\n").split("\r")[-1]
        if m := _RUNNING.match(line):
            rows.append(StageTime(m.group(1), "ran"))
            current = len(rows) - 1
            continue
        if m := _CACHED.match(line):
            rows.append(StageTime(m.group(1), "cached", 0.0))
            current = None
            continue
        if m := _UNCHANGED.match(line):
            rows.append(StageTime(m.group(1), "unchanged", 0.0))
            current = None
            continue
        if current is None:
            continue
        if m := _FINISHED.search(line):
            rows[current].seconds = float(m.group(1))
            rows[current].status = "ran" if m.group(2) == "ok" else "failed"
            continue
        if current not in first and (t := _stamp(line)) is not None:
            first[current] = t
    ran = [i for i, r in enumerate(rows) if r.status == "ran" and r.seconds is None and i in first]
    for i in ran:
        later = [first[j] for j in first if j > i]
        if later:  # the last stage without its line has no known end (still running, killed, or old code)
            rows[i].seconds = (min(later) - first[i]).total_seconds()
            rows[i].approximate = True
    return rows


def _clock(seconds: float) -> str:
    minutes, s = divmod(round(seconds), 60)
    h, m = divmod(minutes, 60)
    return f"{h} h {m:02d} min" if h else (f"{m} min {s:02d} s" if m else f"{s} s")


def format_markdown(rows: list[StageTime]) -> str:
    """A Markdown table (stage, status, wall time) with the total of the stages that ran."""
    out = ["| stage | status | wall time |", "|---|---|---|"]
    total, approx, unknown = 0.0, False, False
    for r in rows:
        if r.seconds is None:
            shown, unknown = "?", True
        else:
            shown = ("~" if r.approximate else "") + _clock(r.seconds)
            total += r.seconds
            approx |= r.approximate
        out.append(f"| `{r.stage}` | {r.status} | {shown} |")
    out.append(f"| **total** | | {'at least ' if unknown else ''}{'~' if approx else ''}{_clock(total)} |")
    return "\n".join(out) + "\n"
