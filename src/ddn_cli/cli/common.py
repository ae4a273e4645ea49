"""Shared CLI plumbing: consoles, error rendering, exit codes, signal handling."""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Iterator

import typer
from rich.console import Console

err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    err.print(f"[bold red]ddn: error:[/] {message}", markup=True, highlight=False)
    return typer.Exit(code)


@contextlib.contextmanager
def handled() -> Iterator[None]:
    """Turn DdnError into one stderr line + exit code; Ctrl-C/SIGTERM into 130."""
    from ..errors import DdnError

    old = signal.getsignal(signal.SIGTERM)

    def on_term(signum, frame):  # make SIGTERM unwind like Ctrl-C (temp files cleaned)
        raise KeyboardInterrupt

    with contextlib.suppress(ValueError):  # not in the main thread
        signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    except DdnError as e:
        raise fail(_escape(str(e)), e.exit_code) from None
    except KeyboardInterrupt:
        err.print("ddn: interrupted; finished outputs are kept, no partial files were left")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    finally:
        with contextlib.suppress(ValueError):
            signal.signal(signal.SIGTERM, old)


def _escape(s: str) -> str:
    from rich.markup import escape

    return escape(s)


def show_progress(quiet: bool) -> bool:
    return not quiet and err.is_terminal and sys.stderr.isatty()


def write_records(records: list, json_out: str | None) -> None:
    """``--json PATH|-``: dataclass records as a JSON list, to stdout or atomically to PATH."""
    if not json_out:
        return
    import json
    from dataclasses import asdict
    from pathlib import Path

    text = json.dumps([asdict(r) for r in records], indent=2)
    if json_out == "-":
        typer.echo(text)
    else:
        from ..io import write_atomic

        write_atomic(Path(json_out), (text + "\n").encode())
