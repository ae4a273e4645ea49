"""``ddn segment``: denoise (segmentation-guided by default), then segment."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from .common import EXIT_FAILED, _escape, check_report_path, err, fail, handled, out, write_records


def segment(
    paths: Annotated[list[Path], typer.Argument(help="Images or folders, then optionally an output folder "
                                                     "(default: the current folder).", show_default=False)],
    denoise: Annotated[bool, typer.Option("--denoise/--no-denoise", help="Denoise before segmenting.")] = True,
    denoiser: Annotated[str | None, typer.Option(help="Denoiser NAME|PATH (default: the manifest's "
                                                      "segmentation default, ddn.seg; for photos unlike CamVid's "
                                                      "street scenes ddn.color-sigma denoises 0.2 dB better).")] = None,
    segmenter: Annotated[str | None, typer.Option(help="Segmenter NAME|PATH or torchvision:<model> (default: the "
                                                       "manifest's, resnet9_unet.camvid; resunet_s.camvid is "
                                                       "the earlier, faster one).")] = None,
    sigma: Annotated[str, typer.Option(help="auto or N (0-255 scale).")] = "auto",
    overwrite: Annotated[bool, typer.Option("--overwrite/--no-overwrite", help="Replace existing outputs.")] = False,
    recursive: Annotated[bool, typer.Option("--recursive/--no-recursive")] = True,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
    precision: Annotated[str, typer.Option(help="auto, fp32, bf16 or fp16 (fp16: GPUs only).")] = "auto",
    json_out: Annotated[str | None, typer.Option("--json", help="Write results as JSON to PATH or - .")] = None,
    max_pixels: Annotated[int, typer.Option(min=1, help="Refuse images with more pixels than this (decompression-bomb guard).")] = 200_000_000,
) -> None:
    """Per-pixel classes: writes NAME.mask.png (palette PNG, pixel value = class id) and
    NAME.overlay.png, and prints each class's pixel coverage."""
    from .denoise import parse_task_denoising

    sig = parse_task_denoising(sigma, denoise, denoiser)
    with handled():
        items, skipped = plan(paths, recursive)
        from ..segment import output_paths

        check_report_path(json_out, [p for f, root, out_dir in items for p in (f, *output_paths(f, root, out_dir))]
                          + list(skipped))  # a skipped file is the user's too
        from ..errors import RunStopped

        stopped = None
        try:
            res = run(items, denoise=denoise, denoiser=denoiser, segmenter=segmenter, sigma=sig, overwrite=overwrite,
                      device=device, precision=precision, max_pixels=max_pixels)
        except RunStopped as e:  # the storage refuses writes: what was done is reported
            res, stopped = e.results, e
        try:
            report(res, json_out)
        finally:  # said even when the report cannot be written either (the same full disk)
            if stopped:
                fail(_escape(str(stopped)), EXIT_FAILED)
        for p in skipped:
            err.print(f"skipped (not a supported image): {_escape(str(p))}")
    if stopped or any(r.status == "failed" for r in res):
        raise typer.Exit(EXIT_FAILED)


def plan(paths: list[Path], recursive: bool = True) -> tuple[list[tuple[Path, Path | None, Path]], list[Path]]:
    """([(image, the folder argument it was found under or None, output folder)], skipped
    non-image files): with two or more arguments the last one is the output folder unless it
    is an existing file; otherwise outputs go to the current folder."""
    from ..io import discover

    if not paths:
        raise fail("no inputs given")
    from ..io import is_image_name

    out_dir, given = Path("."), False
    if len(paths) > 1 and not paths[-1].is_file():
        if not paths[-1].exists() and is_image_name(paths[-1]):  # a mistyped input, not a folder to make
            raise fail(f"{paths[-1]}: no such file (the last argument is the output folder, which "
                       "cannot have an image's name)")
        out_dir, paths, given = paths[-1], paths[:-1], True
    items, skipped, seen = [], [], set()
    for p in paths:
        files, other = discover([p], recursive, exclude=out_dir if given else None)
        for f in files:
            if f.resolve() not in seen:  # a file named twice is segmented once
                seen.add(f.resolve())
                items.append((f, p if p.is_dir() else None, out_dir))
        skipped += other
    return items, skipped


def run(items, *, denoise: bool, denoiser, segmenter, sigma, overwrite: bool, device: str, precision: str,
        max_pixels: int = 200_000_000):
    """Segment ``items`` ((image, its folder argument or None, output folder), as ``plan``
    gives them), denoising first unless ``denoise`` is off."""
    from ..descriptor import Denoiser
    from ..devices import resolve_device, resolve_precision
    from ..highlevel import load_highlevel
    from ..io import check_writable
    from ..registry import resolve_weights, task_denoiser
    from ..segment import check_outputs, output_paths, segment_files

    jobs = [(f, *output_paths(f, root, out_dir)) for f, root, out_dir in items]
    check_outputs(jobs)
    check_writable(m for _, m, o in jobs if overwrite or not (os.path.exists(m) and os.path.exists(o)))  # (done: skipped)
    dev = resolve_device(device)
    seg = load_highlevel(segmenter, "segmenter", dev)
    den = None
    if denoise:
        name = denoiser or task_denoiser("seg")
        den = Denoiser.load(resolve_weights(name), name=name, device=device, precision=precision)
    return segment_files(jobs, segmenter=seg, denoiser=den, sigma=sigma, overwrite=overwrite,
                         precision=resolve_precision(precision, dev), max_pixels=max_pixels)


def report(res, json_out: str | None, console=None) -> None:
    """``--json`` records, and the table (on ``console``: stdout unless given) unless the
    records went to stdout."""
    write_records(res, json_out)
    if json_out != "-":
        from rich.table import Table

        t = Table(title="ddn segment: pixel coverage")
        for c in ("input", "status", "classes (share of pixels)", "mask"):  # whole paths, folded
            t.add_column(c, overflow="fold")
        for r in res:
            cov = ", ".join(f"{k} {v:.1%}" for k, v in sorted(r.coverage.items(), key=lambda kv: -kv[1]) if v >= 0.001)
            t.add_row(_escape(r.input), r.status, cov if r.status == "ok" else _escape(r.error or ""),
                      _escape(r.mask or ""))
        (console or out).print(t)
    for r in res:
        if r.status == "failed":
            err.print(f"ddn: {_escape(r.error or '')}")
