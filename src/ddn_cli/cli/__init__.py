"""The command-line layer: one small module per command. Parse, call the library
once, render. Heavy imports (torch) happen inside the commands."""

import signal


def _startup_signal(signum, frame) -> None:
    """Ctrl-C / SIGTERM before a command's own handling starts (while the modules load, while
    the options are parsed): unwinds like Ctrl-C, so the process ends with one line and 130
    (said here: typer turns an interrupt while it parses into a silent exit 130)."""
    import sys

    for s in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(s) is _startup_signal:
            signal.signal(s, _ignore_signal)  # a second one: the first one's unwinding goes on
    _said.append(True)
    sys.stderr.write("ddn: interrupted\n")
    raise KeyboardInterrupt


_said: list = []  # the startup handler's line was written


_startup_signal.ddn_startup = True  # ``common.handled`` leaves signals ignored after it, not this


def _ignore_signal(signum, frame) -> None:
    """After the work: the process is only exiting (torch's exit handlers), nothing to stop."""


def main() -> None:
    """The ``ddn`` console script. SIGINT and SIGTERM are taken from the first moment (the
    command modules load first, a fraction of a second): a signal then ends the process like
    one later, exit code 130 and one line, never a traceback, a silent 143 or an abort; once
    the command is over, a signal is ignored while the process exits."""
    handled = [s for s in (signal.SIGINT, signal.SIGTERM) if signal.getsignal(s) is not signal.SIG_IGN]
    for s in handled:  # a signal the process was started with ignored (`ddn ... &` in a script) stays so
        signal.signal(s, _startup_signal)
    try:
        from .app import main as run

        run()
    except KeyboardInterrupt:  # (not through the handler: a KeyboardInterrupt raised as such)
        if not _said:
            import sys

            sys.stderr.write("ddn: interrupted\n")
        raise SystemExit(130) from None
    finally:
        for s in handled:
            signal.signal(s, _ignore_signal)
