"""What every stage does first: logging, params, device."""

from __future__ import annotations

import logging
from typing import Any

from pipeline.device import resolve_device
from pipeline.params import get, load_params

__all__ = ["setup"]


def setup(params_file: str = "params.yaml") -> tuple[dict[str, Any], Any]:
    """Configure logging and return ``(params, device)``."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    params = load_params(params_file)
    device = resolve_device(str(get(params, "base.device", "auto")))
    logging.getLogger("stages").info("<device=%s>", device)
    return params, device


def run(app: Any) -> None:
    """Run a stage's typer app; our own errors end the stage with one clear line instead of a traceback.

    The message names the file/key and the reason (see pipeline.errors); DVC shows it and stops the
    pipeline. Unexpected exceptions keep their traceback: they are bugs.
    """
    import sys

    import click

    from pipeline.errors import MultireconError

    try:
        app(standalone_mode=False)
    except click.ClickException as exc:  # bad command line: click's own usage message
        exc.show()
        sys.exit(exc.exit_code)
    except MultireconError as exc:
        logging.getLogger("stages").error("%s: %s", type(exc).__name__, exc)
        sys.exit(1)
