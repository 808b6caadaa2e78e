"""Progress bars that also read well in a log file.

Generator training runs for hours under ``dvc repro``, often with its output sent to a file or a CI log. A
tqdm bar redraws itself with carriage returns: on a terminal that is a live bar, in a file it is one line
megabytes long, and tqdm's ``disable=None`` (off when not a terminal) shows nothing at all for hours. So off a
terminal the same bar is written as one plain line per ``log_interval`` seconds (loss, images/s and ETA
included, as the caller's postfix sets them).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any, TextIO

from tqdm import tqdm as plain_tqdm
from tqdm.auto import tqdm

__all__ = ["progress"]


class _Lines:
    """A stream for tqdm that turns each carriage-return redraw into one newline-terminated line."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> None:
        line = text.replace("\r", "").strip()
        if line:
            self.stream.write(line + "\n")

    def flush(self) -> None:
        self.stream.flush()


class _LogBar(plain_tqdm):
    """A bar whose postfix and description changes wait for the next timed line instead of drawing one."""

    def set_postfix(self, ordered_dict: Any = None, refresh: bool = True, **kwargs: Any) -> None:
        super().set_postfix(ordered_dict, refresh=False, **kwargs)

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        super().set_postfix_str(s, refresh=False)

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        super().set_description(desc, refresh=False)


def progress(
    iterable: Iterable[Any] | None = None,
    *,
    mininterval: float = 2.0,
    log_interval: float = 60.0,
    stream: TextIO | None = None,
    **kwargs: Any,
) -> tqdm:
    """A tqdm bar on a terminal; one line every ``log_interval`` seconds (and at start and end) otherwise.

    Args:
        iterable: what to iterate over, as for tqdm.
        mininterval (`float`, defaults to 2): seconds between redraws on a terminal.
        log_interval (`float`, defaults to 60): seconds between lines when ``stream`` is not a terminal.
        stream (`TextIO`, *optional*): where to write; default ``sys.stderr`` (tqdm's).
        kwargs: passed to tqdm (``desc``, ``total``, ``initial``, ``unit``, ...).
    """
    out = stream if stream is not None else sys.stderr
    isatty = getattr(out, "isatty", None)
    if callable(isatty) and isatty():
        return tqdm(iterable, mininterval=mininterval, file=out, **kwargs)
    lines = _Lines(out)
    every = {"mininterval": log_interval, "maxinterval": log_interval}
    return _LogBar(iterable, file=lines, ascii=True, **every, **kwargs)
