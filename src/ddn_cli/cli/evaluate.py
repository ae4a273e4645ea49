"""``ddn eval``: measure denoisers with the standard protocol."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from .common import check_report_path, err, fail, handled, out

app = typer.Typer(help="Measure models.", no_args_is_help=True)


def _parse_sigmas(text: str, example: str) -> list[float]:
    """``--sigma 15,25,50``: one or more numbers 0-255 (finite), or a usage error."""
    import math

    try:
        sigmas = list(dict.fromkeys(float(s) for s in text.split(",") if s.strip()))  # a repeat measured once
    except ValueError:
        raise fail(f"--sigma {text!r}: expected numbers like {example}") from None
    if not sigmas:
        raise fail(f"--sigma {text!r}: no noise level given (e.g. --sigma {example})")
    bad = [s for s in sigmas if not (math.isfinite(s) and 0 <= s <= 255)]
    if bad:
        raise fail(f"--sigma {bad[0]:g}: noise levels are 0-255 (the 8-bit scale)")
    return sigmas


def _finite(obj):
    """``obj`` with non-finite floats as None: JSON has no Infinity (a noisy PSNR at sigma 0)
    or NaN, and strict parsers refuse them."""
    import math

    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def _outputs(net, device) -> int:
    """How many classes a network without a class list scores (one tiny forward pass)."""
    import torch

    with torch.inference_mode():
        return int(net(torch.zeros(1, 3, 32, 32, device=device)).shape[1])


def _check_outputs(json_out: Path | None, plot: Path | None = None, inputs: list[Path] | None = None) -> None:
    """Refuse report paths that cannot be written or would destroy a file. Without ``inputs``
    (first, before anything is loaded or downloaded): a folder, an image's name for --json, a
    --plot that is not a .png. With ``inputs`` (data folders and list files, the models' weight
    files, once resolved): one of them, and a --plot inside a data folder, where it would
    become one of the data set's images. (The two reports cannot name one file: --plot must
    be a .png, which --json refuses.)"""
    from ..errors import UsageError

    check_report_path(str(json_out) if json_out else None, inputs or ())
    if plot is not None:
        if plot.is_dir():
            raise UsageError(f"--plot {plot}: is a folder", "give a .png path")
        if plot.suffix.lower() != ".png":
            raise UsageError(f"--plot {plot}: the plot is a PNG image", "give a .png path, e.g. --plot results.png")
    if not inputs:
        return
    ins = [p.resolve() for p in inputs]
    for opt, t in ([("--json", json_out)] if json_out and str(json_out) != "-" else []) + [("--plot", plot)] * bool(plot):
        r = t.resolve()
        if r in ins:
            raise UsageError(f"{opt} {t}: is one of this run's inputs", "give another path for it")
        folder = next((i for i in ins if i.is_dir() and i in r.parents), None)
        if opt == "--plot" and folder is not None:
            raise UsageError(f"--plot {t}: inside the data folder {folder}, where it would be taken for one of its "
                             "images", "write the plot outside the data")


def _emit_json(json_out: Path, doc: dict) -> None:
    """The JSON report to ``json_out``, or to stdout for ``-`` (whose table then went to stderr)."""
    text = json.dumps(_finite(doc), indent=2)
    if str(json_out) == "-":
        import sys

        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    else:
        from ..io import write_atomic

        write_atomic(json_out, (text + "\n").encode())


def _table_console(json_out: Path | None):
    """stdout, unless the JSON report goes there (``--json -``): then stderr."""
    return err if json_out is not None and str(json_out) == "-" else out


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
    sigmas = _parse_sigmas(sigma, "15,25,50")
    with handled():
        from ..descriptor import Denoiser
        from ..evaluation.denoise_eval import evaluate, load_eval_images
        from ..noise import estimate_sigma
        from ..registry import bundled_manifest, resolve_weights

        _check_outputs(json_out)  # what needs nothing loaded, first
        names = model or [bundled_manifest().default("denoise").name]
        paths = [resolve_weights(name) for name in names]  # every name checked before the first is measured
        _check_outputs(json_out, inputs=[Path(d) for d in data] + [Path(p) for p in paths])
        images = load_eval_images(data, limit, data_root)
        rows = []
        for name, path in zip(names, paths, strict=True):
            den = Denoiser.load(path, name=name, device=device, precision=precision)

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
        _table_console(json_out).print(t)
        if json_out:
            _emit_json(json_out, {"data": data, "images": len(images), "sigmas": sigmas, "clip": clip,
                                  "sigma_auto": sigma_auto, "precision": precision, "models": rows})


def _task_eval(kind: str, data: str, sigma: str, denoiser: list[str], task_net: str | None, split: str, limit: int,
               clip: bool, device: str, precision: str, json_out: Path | None, plot: Path | None) -> None:
    sigmas = _parse_sigmas(sigma, "0,15,30,60")
    with handled():
        from ..descriptor import Denoiser
        from ..devices import resolve_device, resolve_precision
        from ..errors import UsageError
        from ..evaluation.task_eval import evaluate_task, load_task_data, plot_png
        from ..highlevel import load_highlevel
        from ..io import write_atomic
        from ..registry import bundled_manifest, resolve_weights
        from ..weightfile import load_weights

        _check_outputs(json_out, plot)  # what needs nothing loaded (or downloaded), first
        other = {"seg": "cls", "cls": "seg"}[kind]
        if not denoiser:
            man = bundled_manifest()
            denoiser = [man.default("denoise").name] + [man.defaults[t] for t in (kind, other) if t in man.defaults]
        dev = resolve_device(device)
        prec = resolve_precision(precision, dev)
        from ..models.classifier import CIFAR10_CLASSES
        from ..models.segmenter import CAMVID_CLASSES

        n_data = len(CAMVID_CLASSES if kind == "seg" else CIFAR10_CLASSES)
        net = load_highlevel(task_net, "segmenter" if kind == "seg" else "classifier", dev, classes=n_data)
        paths = [resolve_weights(name) for name in denoiser]  # every name checked before any is loaded
        _check_outputs(json_out, plot, [Path(data), *map(Path, paths)]
                       + ([Path(task_net)] if task_net and Path(task_net).is_file() else []))
        dens = []
        for name, path in zip(denoiser, paths, strict=True):
            meta = load_weights(path)[1]
            task = meta.get("task", "denoise")
            role = {"denoise": "reconstruction", kind: "guided", other: "cross-task"}.get(task, task)
            if task in ("seg", "cls") and meta.get("cascade", {}).get("lambda") == 0:
                role = "control"  # fine-tuned on the task's images with the MSE alone (lambda 0)
            dens.append((name, role, Denoiser.load(path, name=name, device=device, precision=precision)))
        n_out = len(net.classes) or _outputs(net, dev)
        if n_out != n_data:  # checked before the data set is read
            raise UsageError(f"{net.name}: {n_out} classes, but {'CamVid' if kind == 'seg' else 'CIFAR-10'} "
                             f"has {n_data}", f"eval {kind} measures a {net.kind} trained on those classes "
                             "(the bundled one, or one trained with ddn)")
        td = load_task_data(kind, data, split, limit)
        err.print(f"{len(td.images)} images; high-level net {net.name}; denoisers: "
                  + ", ".join(f"{n} ({r})" for n, r, _ in dens))
        t0 = time.perf_counter()
        res = evaluate_task(td, net, dens, sigmas, device=dev, precision=prec, clip=clip, on_event=err.print)
        res.update(data=data, split=split if kind == "seg" else "held-out 10%", high_level=net.name,
                   precision=prec.name, seconds=round(time.perf_counter() - t0, 1))
        from rich.table import Table

        metric = res["metric"]
        t = Table(title=f"{metric} (PSNR dB) on {res['images']} images, {'clipped' if clip else 'unclipped'} noise")
        t.add_column("input")
        t.add_column("role")
        for s in res["sigmas"]:
            t.add_column(f"sigma {s}")
        for v in res["variants"]:
            cells = []
            for s in res["sigmas"]:
                p = v["psnr"].get(s)
                cells.append(f"{v['metric'][s]:.4f}" + (f" ({p:.2f})" if p is not None else ""))
            t.add_row(v["label"], v["role"], *cells)
        _table_console(json_out).print(t)
        if json_out:
            _emit_json(json_out, res)
        if plot:
            write_atomic(plot, plot_png(res, "CamVid" if kind == "seg" else "CIFAR-10"))


# options the two task evaluations share, word for word
SigmasOpt = Annotated[str, typer.Option("--sigma", help="Comma-separated noise levels (0-255 scale).")]
ClipOpt = Annotated[bool, typer.Option("--clip/--no-clip", help="Clip and quantise the noisy input like a real file.")]
DeviceOpt = Annotated[str, typer.Option("--device")]
PrecisionOpt = Annotated[str, typer.Option("--precision")]
JsonOpt = Annotated[Path | None, typer.Option("--json", help="Write results as JSON.")]


@app.command("seg", no_args_is_help=True)
def eval_seg(
    data: Annotated[str, typer.Argument(help="CamVid folder (with val/ and valannot/).")],
    sigma: SigmasOpt = "0,15,30,60",
    denoiser: Annotated[list[str], typer.Option("--denoiser", "-m", help="Denoiser NAME|PATH, repeatable (default: "
                                                "the default denoiser, ddn.seg and ddn.cls).")] = [],  # noqa: B006
    segmenter: Annotated[str | None, typer.Option(help="Segmenter NAME|PATH (default: bundled); a torchvision:<model> "
                                                       "must have CamVid's 11 classes, which none of torchvision's has.")] = None,
    split: Annotated[str, typer.Option(help="CamVid split folder.")] = "val",
    limit: Annotated[int, typer.Option(min=0, help="First N images only (0 = all).")] = 0,
    clip: ClipOpt = False,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
    json_out: JsonOpt = None,
    plot: Annotated[Path | None, typer.Option(help="Write a PNG plot of mIoU vs sigma.")] = None,
) -> None:
    """mIoU of the segmenter on clean, noisy and denoised CamVid images at each sigma."""
    _task_eval("seg", data, sigma, denoiser, segmenter, split, limit, clip, device, precision, json_out, plot)


@app.command("cls", no_args_is_help=True)
def eval_cls(
    data: Annotated[str, typer.Argument(help="CIFAR-10 class folders (the held-out 10% of each class is used).")],
    sigma: SigmasOpt = "0,15,30,60",
    denoiser: Annotated[list[str], typer.Option("--denoiser", "-m", help="Denoiser NAME|PATH, repeatable (default: "
                                                "the default denoiser, ddn.cls and ddn.seg).")] = [],  # noqa: B006
    classifier: Annotated[str | None, typer.Option(help="Classifier NAME|PATH (default: bundled); a torchvision:<model> "
                                                        "must have CIFAR-10's 10 classes, which none of torchvision's has.")] = None,
    limit: Annotated[int, typer.Option(min=0, help="A class-balanced subset of N images (0 = all).")] = 0,
    clip: ClipOpt = False,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
    json_out: JsonOpt = None,
    plot: Annotated[Path | None, typer.Option(help="Write a PNG plot of top-1 vs sigma.")] = None,
) -> None:
    """Top-1 accuracy of the classifier on clean, noisy and denoised CIFAR-10 images at each sigma."""
    _task_eval("cls", data, sigma, denoiser, classifier, "val", limit, clip, device, precision, json_out, plot)
