"""The command-line layer: one small module per command. Parse, call the library
once, render. Heavy imports (torch) happen inside the commands."""


def main() -> None:
    """The ``ddn`` console script. The command modules load first (a fraction of a second): a
    Ctrl-C then ends the process like one later, with exit code 130 and no traceback."""
    import sys

    try:
        from .app import main as run
    except KeyboardInterrupt:
        sys.stderr.write("ddn: interrupted\n")
        raise SystemExit(130) from None
    run()
