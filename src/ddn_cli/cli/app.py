"""The ``ddn`` Typer application. Importing this module must stay cheap (no torch)."""

from __future__ import annotations

import contextlib
import errno
import os
import sys
import warnings
from typing import Annotated

import typer

from .. import __version__
from . import classify as _classify
from . import demo as _demo
from . import denoise as _denoise
from . import evaluate as _evaluate
from . import models as _models
from . import segment as _segment
from . import train as _train

app = typer.Typer(
    name="ddn",
    help="Denoise images with a multi-scale CNN (Liu et al., TIP 2020) and keep recognition working on noisy images.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ddn {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")] = False,
) -> None:
    """ddn: image denoising for people and for recognition networks."""


app.command("denoise", no_args_is_help=True)(_denoise.denoise)
app.command("train", no_args_is_help=True)(_train.train)
app.command("demo")(_demo.demo)
app.command("segment", no_args_is_help=True)(_segment.segment)
app.command("classify", no_args_is_help=True)(_classify.classify)
app.add_typer(_evaluate.app, name="eval")
app.add_typer(_models.app, name="models")


def main() -> None:
    # OpenCV (16-bit decoding) and the libtiff/libpng inside it print their own [ERROR] and
    # [WARN] lines for a damaged file before ddn reports it in one line; the command line
    # keeps to ddn's line (set OPENCV_LOG_LEVEL to see them). Library use is unaffected.
    os.environ.setdefault("OPENCV_LOG_LEVEL", "SILENT")
    # numpy's OpenBLAS (only the noise estimator's PCA uses it) would start a thread per core
    # that spins against ddn's own busy threads: on 2 cores an 8715 x 192 product took 176 ms
    # that way against 7.5 ms on one thread, and `--sigma auto` made a folder of small crops
    # 4.6x slower than a given sigma. Read when numpy is first imported, i.e. after this.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    # Pillow warns (UserWarning: "Corrupt EXIF data", "Truncated File Read", ...) on the
    # damaged files whose failure ddn then reports in its own line
    warnings.filterwarnings("ignore", module=r"PIL(\.|$)")
    try:
        app()
    except OSError as e:  # ddn's own errors are one line already; this is the terminal's side: writing
        # the table or the JSON to a full or failing standard output (`> /dev/full`). (A closed
        # pipe, `| head`, typer ends quietly itself.)
        if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EBADF):
            line = f"{e.filename or 'standard output'}: cannot write ({e.strerror})"
        else:
            line = " ".join(str(e).split()) or type(e).__name__
        with contextlib.suppress(Exception):
            print(f"ddn: error: {line}", file=sys.stderr)
        sys.stdout = None  # what could not be written is not tried again at the exit
        sys.exit(1)
