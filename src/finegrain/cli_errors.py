"""How the command line reports expected failures: one `error:` line and an exit code, never a traceback.

The map from exception to exit code is explicit and ordered; the ordering hazard is written down where it is.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import click
import typer

from finegrain.config import ConfigError


def one_line(exc: BaseException) -> str:
    """The exception as one line naming the file or URI (OSError's own filename when it has one)."""
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        text = f"{exc.filename}: {exc.strerror}"
    else:
        text = str(exc) or type(exc).__name__
    head, *rest = [line.strip() for line in text.splitlines() if line.strip()] or [type(exc).__name__]
    return " ".join([head, "; ".join(rest)]) if rest else head


@contextlib.contextmanager
def reported_errors(refusals: tuple[type[Exception], ...] = (ValueError,)) -> Iterator[None]:
    """Turn expected failures into `error: <one line>` and an exit code (2: input/storage, 1: step refused).

    refusals: how a step says it refuses its input (exit 1); anything else unexpected keeps its traceback.
    """
    try:
        yield
    except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
        raise
    # UnicodeDecodeError and ConfigError are ValueErrors: they must be caught before the step's ValueError.
    except (ConfigError, UnicodeDecodeError, OSError) as exc:
        typer.echo(f"error: {one_line(exc)}", err=True)
        raise typer.Exit(2) from None
    except refusals as exc:
        typer.echo(f"error: {one_line(exc)}", err=True)
        raise typer.Exit(1) from None
