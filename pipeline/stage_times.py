"""Wall time of each stage, read back from a `dvc repro` log.

DVC records what a stage ran on, not how long it took, and the README's stage-time table must come from
real runs. Every stage entry point logs one ``stage finished <seconds=...>`` line when it ends
(``stages._common``); this module pairs those lines with DVC's ``Running stage 'NAME':`` headers. Logs
written before that line existed fall back to log timestamps: the first stamped line of a stage to the first
stamped line of the next one (DVC's own hashing between stages included), marked approximate; the last stage
of such a log has no known end. A stage that runs again later in the same log was killed (training resumes
from its banked state, ``pipeline.demo.resume``): its segment is charged up to its own last sign of life, the
later of its last stamped line and its progress bars' elapsed times, not up to the restart.
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
_BAR = re.compile(r"^(.*?):\s+\d+%\|.*?\[(?:(\d+):)?(\d+):(\d+)<")  # tqdm: "desc:  3%|...| 91/3000 [10:10<"


@dataclass
class StageTime:
    """One stage of a log: ``status`` is ran / failed / killed (run again later in the log) / cached
    (run-cache) / unchanged; ``seconds`` is None when the log does not show the stage's end."""

    stage: str
    status: str
    seconds: float | None = None
    approximate: bool = False


def _stamp(line: str) -> datetime | None:
    m = _STAMP.match(line)
    return datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S") if m else None


def _bar_seconds(parts: list[str]) -> dict[str, float]:
    """Elapsed seconds of each tqdm bar shown on one log line (its ``\\r``-separated refreshes)."""
    out: dict[str, float] = {}
    for part in parts:
        if m := _BAR.match(part.strip()):
            h, mnt, sec = (int(g) if g else 0 for g in m.groups()[1:])
            out[m.group(1)] = max(out.get(m.group(1), 0.0), 3600.0 * h + 60.0 * mnt + sec)
    return out


def parse_repro_log(lines: Iterable[str]) -> list[StageTime]:
    """Stages in the order the log shows them, with their wall time where the stage ran."""
    rows: list[StageTime] = []
    first: dict[int, datetime] = {}  # row index -> first timestamp inside its block
    last: dict[int, datetime] = {}  # row index -> last timestamp inside its block
    bars: dict[int, dict[str, float]] = {}  # row index -> each progress bar's longest elapsed time
    current: int | None = None
    for raw in lines:
        parts = raw.rstrip("\n").split("\r")
        line = parts[-1]
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
        if (t := _stamp(line)) is not None:
            first.setdefault(current, t)
            last[current] = t
        for desc, sec in _bar_seconds(parts).items():
            block = bars.setdefault(current, {})
            block[desc] = max(block.get(desc, 0.0), sec)
    ran = [i for i, r in enumerate(rows) if r.status == "ran" and r.seconds is None]
    for i in ran:
        if any(r.stage == rows[i].stage for r in rows[i + 1 :]):  # killed, then run again
            lived = (last[i] - first[i]).total_seconds() if i in first else 0.0
            rows[i].status, rows[i].approximate = "killed", True
            rows[i].seconds = max(lived, sum(bars.get(i, {}).values()))
            continue
        if i not in first:
            continue
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
