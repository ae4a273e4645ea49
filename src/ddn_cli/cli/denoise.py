"""``ddn denoise``: denoise files or folders."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from .common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, _escape, check_report_path, err, fail, handled, show_progress

FORMAT_CHOICES = ("png", "jpeg", "tiff", "webp", "bmp")
AUTO_TILE_PX = 512  # pipeline.AUTO_TILE (not imported here: this module stays cheap to import)
DEFAULT_OVERLAP = 48
MODEL_SIGMA_MAX = 75  # the bundled denoisers were trained on noise levels 0-75


def _parse_sigma(text: str) -> float | None:
    if text.strip().lower() == "auto":
        return None
    try:
        v = float(text)
    except ValueError:
        raise fail(f"--sigma {text!r}: use auto or a number 0-255 (noise std on the 8-bit scale)") from None
    if not 0 <= v <= 255:
        raise fail(f"--sigma {v:g}: outside 0-255 (noise std on the 8-bit scale)")
    return v


def note_high_sigma(sig: float | None) -> None:
    if sig is not None and sig > MODEL_SIGMA_MAX:
        err.print(f"ddn: note: --sigma {sig:g} is above the noise levels the models were trained on "
                  f"(0-{MODEL_SIGMA_MAX}); expect weaker results")


def parse_task_denoising(sigma: str, denoise: bool, denoiser: str | None) -> float | None:
    """segment's and classify's --sigma, checked against --no-denoise, which would ignore it
    and --denoiser (a run that silently did not do what was asked)."""
    sig = _parse_sigma(sigma)
    if not denoise and (denoiser is not None or sigma.strip().lower() != "auto"):
        raise fail(f"--no-denoise with {'--denoiser' if denoiser is not None else '--sigma'}: nothing is denoised, "
                   "so it would be ignored (leave one of them out)")
    note_high_sigma(sig)
    return sig


def _parse_tile(text: str) -> int | None:
    if text.strip().lower() == "auto":
        return None
    try:
        v = int(text)
    except ValueError:
        raise fail(f"--tile {text!r}: use auto or a tile size in pixels (>= 32)") from None
    if v < 32:
        raise fail(f"--tile {v}: tiles must be at least 32 pixels")
    return v


def denoise(
    paths: Annotated[list[Path], typer.Argument(help="Input files/folders, then the output (file or folder). "
                                                     "With one input and no output, writes NAME_denoised.EXT beside it.",
                                                show_default=False)],
    model: Annotated[str | None, typer.Option("--model", "-m", help="Model name (see `ddn models list`) or a .safetensors path. Default: the manifest's default.")] = None,
    sigma: Annotated[str, typer.Option(help="Noise level: auto (estimated per image) or N on the 0-255 scale.")] = "auto",
    tile: Annotated[str, typer.Option(help="Tile size in pixels, or auto (512; on a GPU in batches of 16).")] = "auto",
    overlap: Annotated[int, typer.Option(min=0, help="Tile overlap in pixels (blended with a smooth window; 48 keeps tiled output within 1/255 of untiled).")] = DEFAULT_OVERLAP,
    batch_size: Annotated[int, typer.Option(min=0, help="Tiles per batch (0 = auto).")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
    precision: Annotated[str, typer.Option(help="auto, fp32, bf16 or fp16 (fp16: GPUs only).")] = "auto",
    format: Annotated[str | None, typer.Option("--format", help=f"Output format: {', '.join(FORMAT_CHOICES)} (default: as the input).")] = None,
    quality: Annotated[int, typer.Option(min=1, max=100, help="JPEG/WebP quality.")] = 95,
    overwrite: Annotated[bool, typer.Option("--overwrite/--no-overwrite", help="Replace existing outputs (default: skip them).")] = False,
    reuse_shapes: Annotated[bool, typer.Option("--reuse-shapes/--no-reuse-shapes", help="On a CPU, run a small image at the size of an earlier, slightly larger one in the same run (edge-mirrored, cropped back) to reuse its compiled kernels: folders of mixed sizes ran 1.5x faster. Only pixels near the bottom and right edges can differ from running each image at its own size.")] = True,
    recursive: Annotated[bool, typer.Option("--recursive/--no-recursive", help="Descend into sub-folders.")] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary.")] = False,
    json_out: Annotated[str | None, typer.Option("--json", help="Write a JSON report to PATH, or - for stdout.")] = None,
    max_pixels: Annotated[int, typer.Option(min=1, help="Refuse images with more pixels than this (decompression-bomb guard).")] = 200_000_000,
    offline: Annotated[bool | None, typer.Option("--offline/--online", help="Never touch the network (default: DDN_OFFLINE).", show_default=False)] = None,
    then: Annotated[str | None, typer.Option("--then", help="Then run segment (masks + overlays beside the outputs) or "
                                                          "classify (top-5 table) on the denoised images; the default "
                                                          "model becomes that task's guided denoiser.")] = None,
) -> None:
    """Denoise images: `ddn denoise in/ out/`, `ddn denoise noisy.png clean.png`, `ddn denoise a.jpg b.png out/`."""
    sig = _parse_sigma(sigma)
    tile_px = _parse_tile(tile)
    if format is not None and format.lower() not in FORMAT_CHOICES:
        raise fail(f"--format {format!r}: use one of {', '.join(FORMAT_CHOICES)}", EXIT_USAGE)
    if overlap >= (tile_px or AUTO_TILE_PX):
        raise fail(f"--overlap {overlap}{' (the default)' if overlap == DEFAULT_OVERLAP else ''} must be smaller "
                   f"than --tile {tile_px or f'(auto: {AUTO_TILE_PX})'}", EXIT_USAGE)
    if then is not None and then not in ("segment", "classify"):
        raise fail(f"--then {then!r}: use segment or classify", EXIT_USAGE)
    inputs, output = (paths[:-1], paths[-1]) if len(paths) >= 2 else (paths, None)
    with handled():
        from ..io import check_writable, plan_jobs

        if then and model is None:
            from ..registry import task_denoiser

            model = task_denoiser("seg" if then == "segment" else "cls")

        jobs, non_images = plan_jobs(inputs, output, recursive=recursive, out_format=format.lower() if format else None)
        check_report_path(json_out, [p for j in jobs for p in (j.src, j.dst)] + list(non_images))
        check_writable(j.dst for j in jobs if overwrite or not os.path.lexists(j.dst))  # (existing: skipped)
        if then == "segment":  # masks of outputs that would collide (x.png, x.jpg): refused before the work
            from ..segment import check_outputs, output_paths

            check_outputs([(j.dst, *output_paths(j.dst, None, j.dst.parent)) for j in jobs],
                          taken=[p for j in jobs for p in (j.src, j.dst)])
        note_high_sigma(sig)
        code = _run(jobs, non_images, model=model, sig=sig, tile=tile_px, overlap=overlap, batch_size=batch_size,
                    device=device, precision=precision, fmt=format.lower() if format else None, quality=quality,
                    overwrite=overwrite, quiet=quiet, json_out=json_out, max_pixels=max_pixels, offline=offline,
                    reuse_shapes=reuse_shapes)
        if then:
            done = [Path(j.dst) for j in jobs if Path(j.dst).is_file()]
            code = max(code, _then(then, done, device=device, precision=precision, overwrite=overwrite,
                                   max_pixels=max_pixels,
                                   table_to_stderr=json_out == "-"))
    raise typer.Exit(code)


def _then(then: str, outputs: list[Path], *, device: str, precision: str, overwrite: bool, max_pixels: int,
          table_to_stderr: bool = False) -> int:
    """Run the high-level task on denoised outputs (no second denoising). Its table goes to
    stderr when stdout carries the denoise report's JSON (``--json -``), which must stay parseable."""
    console = err if table_to_stderr else None
    if then == "segment":
        from ..errors import RunStopped
        from .segment import report, run

        try:
            res = run([(p, None, p.parent) for p in outputs], denoise=False, denoiser=None, segmenter=None,
                      sigma=None, overwrite=overwrite, device=device, precision=precision, max_pixels=max_pixels)
        except RunStopped as e:  # the storage refuses writes: what was done is reported
            report(e.results, None, console)
            raise
        report(res, None, console)
    else:
        from ..classify import classify_files
        from ..devices import resolve_device
        from ..highlevel import load_highlevel
        from .classify import report

        res = classify_files(outputs, classifier=load_highlevel(None, "classifier", resolve_device(device)),
                             max_pixels=max_pixels)
        report(res, None, console)
    return EXIT_FAILED if any(r.status == "failed" for r in res) else EXIT_OK


def _run(jobs, non_images, *, model, sig, tile, overlap, batch_size, device, precision, fmt, quality, overwrite,
         quiet, json_out, max_pixels, offline, reuse_shapes=True) -> int:
    from ..pipeline import first_to_do, read_ahead

    # the first input is decoded while torch is imported and the model loaded (one core each)
    first = first_to_do(jobs, overwrite)
    ahead = read_ahead(first, max_pixels) if first is not None else None
    try:
        return _run_model(jobs, non_images, ahead, model=model, sig=sig, tile=tile, overlap=overlap,
                          batch_size=batch_size, device=device, precision=precision, fmt=fmt, quality=quality,
                          overwrite=overwrite, quiet=quiet, json_out=json_out, max_pixels=max_pixels,
                          reuse_shapes=reuse_shapes, offline=offline)
    finally:  # the read-ahead thread ends before the process does (an interrupt during the model load)
        if ahead is not None:
            ahead.finish()


def _run_model(jobs, non_images, ahead, *, model, sig, tile, overlap, batch_size, device, precision, fmt, quality,
               overwrite, quiet, json_out, max_pixels, offline, reuse_shapes) -> int:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from ..descriptor import Denoiser
    from ..errors import RunStopped
    from ..pipeline import DenoiseOptions, Result, process
    from ..registry import resolve_weights

    weights = resolve_weights(model, "denoise", offline=offline)
    name = model if (model and not Path(model).suffix) else (Path(model).name if model else None)
    from ..registry import bundled_manifest

    if name is None:
        name = bundled_manifest().default("denoise").name
    den = Denoiser.load(weights, name=name, device=device, precision=precision)
    opts = DenoiseOptions(sigma=sig, tile=tile, overlap=overlap, batch_size=batch_size, overwrite=overwrite,
                          out_format=fmt, quality=quality, max_pixels=max_pixels, reuse_shapes=reuse_shapes)
    results: list[Result] = [Result(str(p), None, "skipped", _skip_reason(p)) for p in non_images]
    total_mp = 0.0
    t0 = time.perf_counter()
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        TimeRemainingColumn(), console=err, transient=True, disable=not show_progress(quiet))
    with progress:
        files_task = progress.add_task("files", total=len(jobs))
        tiles_task = progress.add_task("tiles", total=1)

        def on_event(kind: str, data: dict) -> None:
            if kind == "file_start":
                progress.update(files_task, description=f"files ({Path(data['input']).name})")
                progress.reset(tiles_task, total=1)
            elif kind == "tiles":
                progress.update(tiles_task, total=data["total"], completed=data["done"])

        sink: list[Result] = []
        gen = process(jobs, den, opts, on_event, sink, ahead)
        stopped: RunStopped | None = None
        try:
            for r in gen:
                progress.advance(files_task)
                if r.status == "ok":
                    total_mp += r.megapixels
                    for note in (() if quiet else r.notes):  # e.g. a multi-page file: only the first page
                        progress.console.print(f"[yellow]note[/]: {_escape(r.input)}: {_escape(note)}", markup=True)
                elif r.status == "failed":
                    progress.console.print(f"[red]failed[/]: {_escape(r.error or '')}", markup=True)
        except KeyboardInterrupt:
            gen.close()  # completes and records the write in flight
            results += sink
            total_mp = sum(r.megapixels for r in sink if r.status == "ok")
            _report(results, json_out, quiet, total_mp, time.perf_counter() - t0, den, interrupted=True)
            raise
        except RunStopped as e:  # the storage refuses writes: the rest is not attempted
            stopped = e
    results += sink
    try:
        _report(results, json_out, quiet, total_mp, time.perf_counter() - t0, den,
                stopped=str(stopped) if stopped else None)
    finally:  # said even when the report cannot be written either (the same full disk)
        if stopped:
            fail(_escape(str(stopped)), EXIT_FAILED)
    if stopped:
        raise typer.Exit(EXIT_FAILED)
    return EXIT_FAILED if any(r.status == "failed" for r in results) else EXIT_OK


def _skip_reason(p: Path) -> str:
    if p.suffix.lower() in (".gif", ".heic", ".heif", ".avif", ".jxl", ".ico", ".psd", ".raw", ".dng", ".cr2", ".nef"):
        return f"{p.suffix.lower()} images are not supported (convert to PNG, JPEG, TIFF, WebP or BMP)"
    return "not an image file"


def _names(results, key: str = "input") -> str:
    """The first five files' names, for a one-line summary."""
    names = [Path(getattr(r, key)).name for r in results]
    return ", ".join(names[:5]) + (" ..." if len(names) > 5 else "")


def _report(results, json_out, quiet, total_mp, seconds, den, interrupted: bool = False,
            stopped: str | None = None) -> None:
    ok = sum(r.status == "ok" for r in results)
    skipped = [r for r in results if r.status == "skipped"]
    failed = sum(r.status == "failed" for r in results)
    if json_out:
        doc = {"model": den.name, "device": str(den.device), "precision": den.precision.name,
               "interrupted": interrupted, "stopped": stopped, "seconds": round(seconds, 3),
               "summary": {"ok": ok, "skipped": len(skipped), "failed": failed, "megapixels": round(total_mp, 3)},
               "files": [r.to_dict() for r in results]}
        text = json.dumps(doc, indent=2)
        if json_out == "-":
            sys.stdout.write(text + "\n")
            sys.stdout.flush()
        else:
            from ..io import write_atomic

            write_atomic(Path(json_out), (text + "\n").encode())
    if quiet:
        return
    from rich.table import Table

    non_images = [r for r in skipped if r.output is None]
    if non_images:
        err.print(f"skipped {len(non_images)} file(s) that are not supported images: {_escape(_names(non_images))}")
    existing = [r for r in skipped if r.output is not None]
    if existing:
        err.print(f"skipped {len(existing)} file(s) whose output exists (use --overwrite to redo them): "
                  f"{_escape(_names(existing, 'output'))}")
    title = "ddn denoise" + (" (interrupted)" if interrupted else " (stopped)" if stopped else "")
    cols = ("done", "skipped", "failed", "MP", "seconds", "MP/s", "model", "device")
    mps = total_mp / seconds if seconds > 0 else 0.0
    row = (str(ok), str(len(skipped)), str(failed), f"{total_mp:.2f}", f"{seconds:.1f}", f"{mps:.3f}", den.name,
           f"{den.device} {den.precision.name}")
    if err.width < 72:  # too narrow for the table's columns (rich squeezed them to "…"): one line each
        err.print(_escape(title) + ": " + ", ".join(f"{c} {_escape(v)}" for c, v in zip(cols, row, strict=True)))
        return
    t = Table(title=title, show_header=True)
    for col in cols:
        t.add_column(col)
    t.add_row(*row)
    err.print(t)
