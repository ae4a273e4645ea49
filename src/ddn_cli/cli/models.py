"""``ddn models``: list, inspect, fetch, verify and remove weights."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from .common import EXIT_FAILED, err, fail, handled, out

app = typer.Typer(help="Manage model weights.", no_args_is_help=True)


def _where(spec) -> str:
    from ..hub import find_local

    loc = find_local(spec)
    return loc[1] if loc else ("remote" if spec.urls else "missing")


def _headline(spec) -> str:
    m = spec.metrics.get("CBSD68", {}).get("unclipped", {}) if isinstance(spec.metrics, dict) else {}
    if m:
        return " / ".join(f"{float(v):.2f}" for v in m.values()) + " dB (CBSD68 " + "/".join(m.keys()) + ")"
    if not isinstance(spec.metrics, dict):
        return ""
    if "val_acc" in spec.metrics:
        return f"{100 * float(spec.metrics['val_acc']):.1f}% top-1 (held-out)"
    if "CamVid_val" in spec.metrics:
        return f"{100 * float(spec.metrics['CamVid_val']['miou']):.1f}% mIoU (CamVid val)"
    for key, unit in (("mIoU", "mIoU"), ("top-1", "top-1")):
        if key in spec.metrics and "60" in spec.metrics[key]:
            return f"{100 * float(spec.metrics[key]['60']):.1f}% {unit} at sigma 60"
    return ""


@app.command("list")
def list_models(json_: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False) -> None:
    """All known weights: bundled, cached, user-added."""
    with handled():
        from ..registry import all_specs, bundled_manifest

        defaults = set(bundled_manifest().defaults.values())
        specs = all_specs()
        if json_:
            out.print_json(json.dumps([{**s.to_dict(), "where": _where(s), "default": s.name in defaults} for s in specs]))
            return
        from rich.table import Table

        t = Table(title="ddn models")
        for c in ("name", "task", "size", "metric", "where", "default"):
            t.add_column(c)
        for s in specs:
            t.add_row(s.name, s.task, f"{s.size / 1e6:.1f} MB", _headline(s), _where(s), "*" if s.name in defaults else "")
        out.print(t)


@app.command("info")
def info(name: str) -> None:
    """Everything the registry knows about one model."""
    with handled():
        from ..registry import lookup

        s = lookup(name)
        out.print_json(json.dumps({**s.to_dict(), "where": _where(s)}))


@app.command("path")
def path(name: Annotated[str | None, typer.Argument()] = None) -> None:
    """Print the cache folder, or the local file of NAME."""
    with handled():
        from ..hub import cache_dir, fetch

        typer.echo(str(fetch(name, offline=True)) if name else str(cache_dir()))


@app.command("verify")
def verify(name: Annotated[str | None, typer.Argument()] = None) -> None:
    """Re-hash cached and bundled weights against the manifest."""
    with handled():
        from ..hub import sha256_file, weights_dir
        from ..registry import all_specs, bundled_dir, lookup

        specs = [lookup(name)] if name else all_specs()
        bad = 0
        for s in specs:
            for where, base in (("bundled", bundled_dir()), ("cached", weights_dir())):
                p = base / s.file
                if not p.is_file():
                    continue
                got = sha256_file(p)
                ok = got == s.sha256 and p.stat().st_size == s.size
                bad += not ok
                out.print(f"{'ok  ' if ok else 'BAD '} {s.name} ({where}) {p}" + ("" if ok else f" expected {s.sha256} got {got}"))
        if bad:
            raise typer.Exit(EXIT_FAILED)


@app.command("pull")
def pull(
    target: Annotated[str, typer.Argument(help="A registered model name, or a URL of a .safetensors file.")],
    sha256: Annotated[str | None, typer.Option(help="Expected sha256 (required for URLs).")] = None,
    name: Annotated[str | None, typer.Option(help="Name (arch.tag) to register a URL under.")] = None,
    offline: Annotated[bool | None, typer.Option("--offline/--online", show_default=False)] = None,
) -> None:
    """Download (verified) into the cache; a URL is added to the user registry."""
    with handled():
        from ..hub import download, fetch, is_offline, safe_cache_path

        progress = _download_progress()
        if "://" not in target:
            with progress:
                task = progress.add_task(target, total=None)
                p = fetch(target, offline=offline, progress=lambda d, t: progress.update(task, completed=d, total=t))
            out.print(f"{target}: {p}")
            return
        if not sha256 or not name:
            raise fail("pulling a URL needs --sha256 HASH and --name arch.tag (checksums cannot be skipped)")
        from ..registry import check_name

        check_name(name)
        if is_offline(offline):
            raise fail(f"{target}: offline mode is on; cannot download")
        fname = name + ".safetensors"
        dest = safe_cache_path(fname)
        with progress:
            task = progress.add_task(name, total=None)
            download([target], dest, sha256.lower(), None,
                     progress=lambda d, t: progress.update(task, completed=d, total=t or None))
        from ..registry import WeightSpec
        from ..weightfile import load_weights

        try:
            _, meta = load_weights(dest)
        except Exception:
            dest.unlink(missing_ok=True)
            raise
        from ..hub import add_user_spec

        spec = WeightSpec(name=name, arch=str(meta.get("arch", "ddn")), task=str(meta.get("task", "denoise")),
                          file=fname, sha256=sha256.lower(), size=dest.stat().st_size, license="user-supplied",
                          config=meta.get("config", {}), training={"source": target}, metrics={}, urls=(target,))
        add_user_spec(spec)
        out.print(f"{name}: {dest}")


def _download_progress():
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    from .common import show_progress

    return Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                    console=err, transient=True, disable=not show_progress(False))


@app.command("rm")
def rm(name: str) -> None:
    """Remove a cached model (bundled files are never touched)."""
    with handled():
        from ..hub import remove_user_spec, safe_cache_path
        from ..registry import lookup

        s = lookup(name)
        p = safe_cache_path(s.file)
        existed = p.is_file()
        p.unlink(missing_ok=True)
        removed = remove_user_spec(name)
        if not existed and not removed:
            err.print(f"{name}: nothing cached")
        else:
            out.print(f"removed {name}")


@app.command("import-pth")
def import_pth(
    src: Annotated[str, typer.Argument(help="A TRUSTED legacy PyTorch state_dict (.pth/.pt) of a ddn denoiser.")],
    dst: Annotated[str, typer.Argument(help="Output .safetensors file.")],
    noise_level: Annotated[bool, typer.Option("--noise-level/--no-noise-level", help="Whether the network has the sigma-map input.")] = True,
) -> None:
    """Convert a trusted .pth state_dict into safetensors (loaded with torch.load(weights_only=True):
    tensors only, no code runs). ddn itself never loads .pth files otherwise."""
    with handled():
        from pathlib import Path

        import torch

        from ..errors import UnsafeWeights
        from ..models import build_denoiser
        from ..weightfile import save_weights

        try:
            sd = torch.load(src, map_location="cpu", weights_only=True)
        except Exception as e:  # unpickling refused or not a torch file
            raise UnsafeWeights(f"{src}: not a plain tensor state_dict ({str(e).splitlines()[0][:120]})") from None
        if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
            sd = sd["state_dict"]
        sd = {k.removeprefix("module."): v for k, v in sd.items()}
        model = build_denoiser({"noise_level": noise_level})
        try:
            model.load_state_dict(sd)
        except RuntimeError as e:
            raise UnsafeWeights(f"{src}: does not match the ddn architecture ({str(e).splitlines()[0][:120]})",
                                "check --noise-level/--no-noise-level") from None
        save_weights(model.state_dict(), Path(dst), {"arch": "ddn", "task": "denoise", "config": model.config.to_dict(),
                                                     "converted_from": Path(src).name})
        out.print(f"wrote {dst}")
