"""What every stage does first: logging, params, device."""

from __future__ import annotations

import logging
import warnings
from typing import Any

from pipeline.device import resolve_device
from pipeline.errors import MultireconWarning
from pipeline.params import get, load_params

__all__ = ["configure_logging", "setup"]


def configure_logging() -> None:
    """INFO logging for a stage process.

    The library both logs and `warnings.warn`s its data warnings (callers of the Python API can catch
    them); a stage's log already holds each one, so the second copy on stderr is silenced here.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    warnings.filterwarnings("ignore", category=MultireconWarning)


def setup(params_file: str = "params.yaml") -> tuple[dict[str, Any], Any]:
    """Configure logging and return ``(params, device)``."""
    configure_logging()
    params = load_params(params_file)
    device = resolve_device(str(get(params, "base.device", "auto")))
    logging.getLogger("stages").info("<device=%s>", device)
    return params, device


def run(app: Any) -> None:
    """Run a stage's typer app; our own errors end the stage with one clear line instead of a traceback.

    The message names the file/key and the reason (see pipeline.errors); DVC shows it and stops the
    pipeline. A bad command line gets typer's usage message (exit 2). Unexpected exceptions keep their
    traceback: they are bugs. Every end logs the stage's wall time (read back by `multirecon stage-times`).
    """
    import sys
    import time

    from pipeline.errors import MultireconError
    from pipeline.stage_times import FINISHED

    t0, status = time.perf_counter(), "failed"
    try:
        app()  # standalone: typer prints usage errors itself and always ends with SystemExit
        status = "ok"
    except SystemExit as exc:
        status = "ok" if exc.code in (0, None) else "failed"
        raise
    except MultireconError as exc:
        logging.getLogger("stages").error("%s: %s", type(exc).__name__, exc)
        sys.exit(1)
    finally:
        seconds = time.perf_counter() - t0
        logging.getLogger("stages").info("%s <seconds=%.3f> <status=%s>", FINISHED, seconds, status)
