"""``ddn models``: list, inspect, fetch, verify and remove weights."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from ..errors import UnsafeWeights
from .common import EXIT_FAILED, _escape, err, fail, handled, out

app = typer.Typer(help="Manage model weights.", no_args_is_help=True)


def _where(spec) -> str:
    from ..hub import find_local

    loc = find_local(spec)
    return loc[1] if loc else ("remote" if spec.urls else "missing")


def _headline(spec) -> str:
    """The one metric shown by `ddn models list`; "" when the entry's metrics (a hand-edited
    user manifest) are not in the expected form."""
    try:
        return _headline_of(spec)
    except (TypeError, ValueError, AttributeError, KeyError, IndexError):
        return ""


def _headline_of(spec) -> str:
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


def _warn_unreadable_user_list() -> None:
    """One warning line when the list of the models you pulled cannot be read (they are left out)."""
    from ..hub import user_manifest_problem

    problem = user_manifest_problem()
    if problem is not None:
        err.print(f"ddn: warning: {_escape(problem.message)}; the models you pulled are left out"
                  + (f"; {_escape(problem.hint)}" if problem.hint else ""))


@app.command("list")
def list_models(json_: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False) -> None:
    """All known weights: bundled, cached, user-added."""
    with handled():
        from ..registry import all_specs, bundled_manifest

        defaults = set(bundled_manifest().defaults.values())
        specs = all_specs()
        _warn_unreadable_user_list()
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

        s = lookup(name)  # (an unknown name's error says why the list is unreadable)
        _warn_unreadable_user_list()
        out.print_json(json.dumps({**s.to_dict(), "where": _where(s)}))


@app.command("path")
def path(name: Annotated[str | None, typer.Argument()] = None) -> None:
    """Print the cache folder, or the local file of NAME."""
    with handled():
        from ..hub import cache_dir, local_path

        typer.echo(str(local_path(name)) if name else str(cache_dir()))


@app.command("verify")
def verify(name: Annotated[str | None, typer.Argument()] = None) -> None:
    """Re-hash cached and bundled weights against the manifest. NAME (or any model you pulled)
    with no local file is reported missing; both fail with exit code 1."""
    with handled():
        from ..hub import sha256_file, user_specs, weights_dir
        from ..registry import all_specs, bundled_dir, lookup

        specs = [lookup(name)] if name else all_specs()
        _warn_unreadable_user_list()
        pulled = {s.name for s in user_specs()}
        bad = 0
        for s in specs:
            found = False
            for where, base in (("bundled", bundled_dir()), ("cached", weights_dir())):
                p = base / s.file
                if not p.is_file():
                    continue
                found = True
                got = sha256_file(p)
                ok = got == s.sha256 and p.stat().st_size == s.size
                bad += not ok
                out.print(f"{'ok  ' if ok else 'BAD '} {s.name} ({where}) {_escape(str(p))}"
                          + ("" if ok else f" expected {s.sha256} got {got}"))
            if not found and (name or s.name in pulled):  # a never-downloaded remote model is no fault in a full check
                bad += 1
                out.print(f"MISS {s.name} {weights_dir() / s.file}: no file (not downloaded yet, or deleted); "
                          f"`ddn models pull {s.name}` fetches it", markup=False)
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
        try:
            _pull(target, sha256, name, offline)
        except KeyboardInterrupt:  # not handled()'s line: here a partial file is kept, on purpose
            err.print("ddn: interrupted; the partial download is kept, and the next pull of it resumes it "
                      "(`ddn models rm NAME` deletes it)")
            raise typer.Exit(130) from None


def _pull(target: str, sha256: str | None, name: str | None, offline: bool | None) -> None:
    from ..hub import fetch, pull_url

    progress = _download_progress()
    if "://" not in target:
        with progress:
            task = progress.add_task(target, total=None)
            p = fetch(target, offline=offline, progress=lambda d, t: progress.update(task, completed=d, total=t),
                      on_retry=lambda msg: progress.console.print(f"ddn: {_escape(msg)}"))
        out.print(f"{_escape(target)}: {_escape(str(p))}")
        return
    if not sha256 or not name:
        raise fail("pulling a URL needs --sha256 HASH and --name arch.tag (checksums cannot be skipped)")
    with progress:
        task = progress.add_task(name, total=None)
        dest = pull_url(target, sha256, name, offline=offline,
                        progress=lambda d, t: progress.update(task, completed=d, total=t or None),
                        on_retry=lambda msg: progress.console.print(f"ddn: {_escape(msg)}"))
    out.print(f"{_escape(name)}: {_escape(str(dest))}")


def _download_progress():
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    from .common import show_progress

    return Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                    console=err, transient=True, disable=not show_progress(False))


@app.command("rm")
def rm(name: str) -> None:
    """Remove a cached model (bundled files are never touched)."""
    with handled():
        from ..hub import remove_model

        if remove_model(name):
            out.print(f"removed {_escape(name)}")
        else:
            err.print(f"{_escape(name)}: nothing cached")


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

        from ..errors import OutputError, UsageError
        from ..models import build_denoiser
        from ..weightfile import save_weights

        s, d = Path(src), Path(dst)
        if not s.is_file():
            raise UsageError(f"{src}: no such file")
        if d.is_dir():
            raise UsageError(f"{dst}: is a folder", "give the output file's path, e.g. model.safetensors")
        if d.suffix.lower() != ".safetensors":
            raise UsageError(f"{dst}: the output must be a .safetensors file", "e.g. model.safetensors")
        if d.resolve() == s.resolve():
            raise UsageError(f"{dst}: is the input file", "give another path for the output")
        sd = _read_state_dict(s)
        model = build_denoiser({"noise_level": noise_level})
        try:
            model.load_state_dict(sd)
        except RuntimeError as e:
            raise UnsafeWeights(f"{src}: does not match the ddn architecture ({_load_problem(e)})",
                                "check --noise-level/--no-noise-level") from None
        try:
            save_weights(model.state_dict(), d, {"arch": "ddn", "task": "denoise", "config": model.config.to_dict(),
                                                 "converted_from": s.name})
        except OSError as e:
            raise OutputError(f"{dst}: cannot write ({e.strerror or e})") from None
        out.print(f"wrote {_escape(dst)}")


def _first_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return lines[0][:120] if lines else type(e).__name__


def _read_state_dict(src):
    """A .pth's tensors by name (torch.load with weights_only=True), unwrapping ``state_dict``
    and DataParallel's ``module.`` prefix; anything else is refused with ``UnsafeWeights``."""
    import torch

    if src.stat().st_size == 0:
        raise UnsafeWeights(f"{src}: is empty, not a state_dict")
    try:
        sd = torch.load(src, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - unpickling refused, not a torch file, empty or cut short
        raise UnsafeWeights(f"{src}: not a plain tensor state_dict ({_first_line(e)})") from None
    if isinstance(sd, dict) and isinstance(sd.get("state_dict"), dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise UnsafeWeights(f"{src}: holds a {type(sd).__name__}, not a state_dict (a dict of named tensors)")
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in sd.items()):
        raise UnsafeWeights(f"{src}: not a state_dict: its keys must be names and its values tensors")
    return {k.removeprefix("module."): v for k, v in sd.items()}


def _load_problem(e: RuntimeError) -> str:
    """The useful part of load_state_dict's message: the first missing and unexpected key and
    the first size mismatch, with how many more there are (its first line only says where)."""
    parts = []
    for line in str(e).splitlines()[1:]:
        line = line.strip().rstrip(".").strip()
        head, sep, rest = line.partition(": ")
        if sep and head.endswith("key(s) in state_dict"):
            keys = [k.strip().strip('"') for k in rest.split(",") if k.strip()]
            more = f" (+{len(keys) - 1} more)" if len(keys) > 1 else ""
            line = f"{head.split(' in ')[0].lower()} {keys[0] if keys else '?'}{more}"
        parts.append(line)
    mism = [p for p in parts if p.startswith("size mismatch")]
    keep = [p for p in parts if not p.startswith("size mismatch")] + mism[:1]
    if len(mism) > 1:
        keep.append(f"+{len(mism) - 1} more size mismatches")
    return "; ".join(keep) or _first_line(e)
