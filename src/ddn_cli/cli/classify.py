"""``ddn classify``: denoise (classification-guided by default), then classify."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import EXIT_FAILED, _escape, check_report_path, err, handled, out, write_records


def classify(
    paths: Annotated[list[Path], typer.Argument(help="Images or folders.")],
    denoise: Annotated[bool, typer.Option("--denoise/--no-denoise", help="Denoise before classifying.")] = True,
    denoiser: Annotated[str | None, typer.Option(help="Denoiser NAME|PATH (default: the classification-guided "
                                                      "ddn.cls).")] = None,
    classifier: Annotated[str | None, typer.Option(help="Classifier NAME|PATH or torchvision:<model> (default: "
                                                        "the bundled CIFAR-10 ResNet-9).")] = None,
    sigma: Annotated[str, typer.Option(help="auto or N (0-255 scale).")] = "auto",
    top_k: Annotated[int, typer.Option("--top-k", min=1, help="Labels to show per image.")] = 5,
    recursive: Annotated[bool, typer.Option("--recursive/--no-recursive")] = True,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
    json_out: Annotated[str | None, typer.Option("--json", help="Write results as JSON to PATH or - .")] = None,
    max_pixels: Annotated[int, typer.Option(min=1, help="Refuse images with more pixels than this (decompression-bomb guard).")] = 200_000_000,
) -> None:
    """Top-k labels with probabilities for each image."""
    from .denoise import parse_task_denoising

    sig = parse_task_denoising(sigma, denoise, denoiser)
    with handled():
        from ..classify import classify_files
        from ..descriptor import Denoiser
        from ..devices import resolve_device
        from ..highlevel import load_highlevel
        from ..io import discover
        from ..registry import resolve_weights, task_denoiser

        files, skipped = discover(paths, recursive)
        check_report_path(json_out, files + list(skipped))  # a skipped file is the user's too
        dev = resolve_device(device)
        clf = load_highlevel(classifier, "classifier", dev)
        den = None
        if denoise:
            name = denoiser or task_denoiser("cls")
            den = Denoiser.load(resolve_weights(name), name=name, device=device)
        res = classify_files(files, denoiser=den, classifier=clf, sigma=sig, k=top_k, max_pixels=max_pixels)
        report(res, json_out)
        for p in skipped:
            err.print(f"skipped (not a supported image): {_escape(str(p))}")
    if any(r.status == "failed" for r in res):
        raise typer.Exit(EXIT_FAILED)


def report(res, json_out: str | None, console=None) -> None:
    """``--json`` records, and the table (on ``console``: stdout unless given) unless the
    records went to stdout."""
    write_records(res, json_out)
    if json_out != "-":
        from rich.table import Table

        t = Table(title="ddn classify")
        for c in ("input", "top labels", "sigma"):  # whole paths, folded: IMG_0001.png of two folders told apart
            t.add_column(c, overflow="fold")
        for r in res:
            labels = ", ".join(f"{n} {p:.2f}" for n, p in r.top) if r.status == "ok" else f"failed: {_escape(r.error or '')}"
            t.add_row(_escape(r.input), labels, "" if r.sigma is None else f"{r.sigma:.1f}")
        (console or out).print(t)
    for r in res:
        if r.status == "failed":
            err.print(f"ddn: {_escape(r.error or '')}")
