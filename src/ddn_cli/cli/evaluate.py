"""``ddn eval``: measure denoisers with the standard protocol."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from .common import err, fail, handled, out

app = typer.Typer(help="Measure models.", no_args_is_help=True)


@app.command("denoise", no_args_is_help=True)
def eval_denoise(
    data: Annotated[list[str], typer.Argument(help="Folder(s) or list file(s) of clean images.")],
    sigma: Annotated[str, typer.Option(help="Comma-separated noise levels (0-255 scale).")] = "15,25,50",
    model: Annotated[list[str], typer.Option("--model", "-m", help="Model name or path; repeatable (default: the default model).")] = [],  # noqa: B006
    data_root: Annotated[str | None, typer.Option(help="Root for relative entries in list files.")] = None,
    clip: Annotated[bool, typer.Option("--clip/--no-clip", help="Clip and quantise the noisy input like a real file (default: the papers' unclipped protocol).")] = False,
    ssim: Annotated[bool, typer.Option("--ssim/--no-ssim", help="Also compute SSIM.")] = True,
    sigma_auto: Annotated[bool, typer.Option("--sigma-auto/--sigma-known", help="Give the model the estimated sigma instead of the true one.")] = False,
    limit: Annotated[int, typer.Option(min=0, help="Use only the first N images (0 = all).")] = 0,
    device: Annotated[str, typer.Option()] = "auto",
    precision: Annotated[str, typer.Option()] = "fp32",
    json_out: Annotated[Path | None, typer.Option("--json", help="Write results as JSON.")] = None,
) -> None:
    """PSNR/SSIM of denoisers: clean -> +N(0, sigma/255) (seeded per image) -> denoise -> round -> compare."""
    try:
        sigmas = [float(s) for s in sigma.split(",") if s.strip()]
    except ValueError:
        raise fail(f"--sigma {sigma!r}: expected numbers like 15,25,50") from None
    with handled():
        from ..descriptor import Denoiser
        from ..evaluation.denoise_eval import evaluate, load_eval_images
        from ..noise import estimate_sigma
        from ..registry import bundled_manifest, resolve_weights

        images = load_eval_images(data, limit, data_root)
        names = model or [bundled_manifest().default("denoise").name]
        rows = []
        for name in names:
            den = Denoiser.load(resolve_weights(name), name=name, device=device, precision=precision)

            def fn(noisy, s, den=den):
                import numpy as np

                return den(np.clip(noisy, -1, 2)[None].astype("float32"), s)[0]

            t0 = time.perf_counter()
            res = evaluate(fn, images, sigmas, clip=clip, with_ssim=ssim,
                           sigma_for_model=(lambda n, s: estimate_sigma(n)) if sigma_auto else None)
            secs = time.perf_counter() - t0
            rows.append({"model": name, "seconds": round(secs, 2), "results": {f"{k:g}": v for k, v in res.items()}})
            err.print(f"{name}: done in {secs:.1f} s")
        from rich.table import Table

        t = Table(title=f"PSNR{'/SSIM' if ssim else ''} on {len(images)} images ({'clipped' if clip else 'unclipped'} noise"
                        f"{', sigma estimated' if sigma_auto else ''})")
        t.add_column("model")
        for s in sigmas:
            t.add_column(f"sigma {s:g}")
        t.add_row("noisy input", *[f"{rows[0]['results'][f'{s:g}']['noisy_psnr']:.2f}" for s in sigmas])
        for r in rows:
            cells = []
            for s in sigmas:
                v = r["results"][f"{s:g}"]
                cells.append(f"{v['psnr']:.2f}" + (f" / {v['ssim']:.4f}" if ssim else ""))
            t.add_row(r["model"], *cells)
        out.print(t)
        if json_out:
            from ..io import write_atomic

            doc = {"data": data, "images": len(images), "sigmas": sigmas, "clip": clip, "sigma_auto": sigma_auto,
                   "precision": precision, "models": rows}
            write_atomic(json_out, json.dumps(doc, indent=2).encode())
