"""Shared CLI plumbing: consoles, error rendering, exit codes, signal handling."""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import typer
from rich.console import Console

err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    err.print(f"[bold red]ddn: error:[/] {message}", markup=True, highlight=False)
    return typer.Exit(code)


def _on_signal(signum, frame) -> None:
    """The first Ctrl-C or SIGTERM unwinds like Ctrl-C (the write in flight completes, temp
    files are removed, the report is written); any later one is ignored, so that nothing cuts
    that short or breaks the exit (a second Ctrl-C during torch's exit handlers aborted the
    process with "terminate called without an active exception")."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        # a Python handler that does nothing, not SIG_IGN: with SIG_IGN installed while the other
        # signal was already pending (both sent at once), CPython reported "OSError: Signal 15
        # ignored due to race condition" with a traceback
        signal.signal(sig, _ignore)
    raise KeyboardInterrupt


def _ignore(signum, frame) -> None:
    """A signal after the first: the first one's unwinding goes on undisturbed."""


@contextlib.contextmanager
def handled() -> Iterator[None]:
    """Turn DdnError into one stderr line + exit code; Ctrl-C/SIGTERM into 130."""
    from ..errors import DdnError

    # a signal the process was started with ignored (a background job of a shell without job
    # control: `ddn ... &` in a script) stays ignored, as Python itself leaves it
    old = {sig: h for sig in (signal.SIGINT, signal.SIGTERM) if (h := signal.getsignal(sig)) is not signal.SIG_IGN}
    with contextlib.suppress(ValueError):  # not in the main thread
        for sig in old:
            signal.signal(sig, _on_signal)
    try:
        yield
    except DdnError as e:
        raise fail(_escape(str(e)), e.exit_code) from None
    except KeyboardInterrupt:
        err.print("ddn: interrupted; finished outputs are kept, no partial files were left")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    finally:
        with contextlib.suppress(ValueError):
            for sig, handler in old.items():
                if signal.getsignal(sig) is _on_signal:  # after an interrupt (_ignore): stay ignored to the exit
                    # the console script's startup handler: the work is over, what follows is the
                    # exit, which a signal must not turn into a traceback in torch's exit handlers
                    signal.signal(sig, _ignore if getattr(handler, "ddn_startup", False) else handler)


def check_report_path(json_out: str | None, taken: Iterable[Path] = ()) -> None:
    """Refuse, before any work, a ``--json PATH`` that would destroy something: a folder, an
    image's name (``--json a.png b.png`` taken for a switch made the report replace a.png),
    or one of the run's inputs or outputs (``taken``)."""
    from ..errors import UsageError
    from ..io import is_image_name

    if json_out == "-" and sys.stdout is None:  # started with stdout closed (`>&-`): found out only at the end
        raise UsageError("--json -: standard output is closed", "give --json a file path")
    if not json_out or json_out == "-":
        return
    p = Path(json_out)
    if p.is_dir():
        raise UsageError(f"--json {p}: is a folder", "give a file path for the report, e.g. report.json")
    if is_image_name(p):
        raise UsageError(f"--json {p}: an image's name, but the report is JSON (--json takes a path)",
                         "give a .json path, e.g. --json report.json")
    r = p.resolve()
    taken = [q.resolve() for q in taken]
    if r in taken:
        raise UsageError(f"--json {p}: is one of this run's inputs or outputs", "give another path for the report")
    if r in {a for q in taken for a in q.parents}:  # an output folder the run is about to create, say
        raise UsageError(f"--json {p}: is a folder this run reads or writes", "give a file path for the report")


# control characters (a newline in a file name) would split ddn's one-line messages
_CONTROL = {c: f"\\x{c:02x}" for c in range(32)} | {10: "\\n", 13: "\\r", 9: "\\t", 127: "\\x7f"}


def _escape(s: str) -> str:
    """``s`` for the console: rich markup escaped, control characters written as escapes."""
    from rich.markup import escape

    return escape(s.translate(_CONTROL))


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
