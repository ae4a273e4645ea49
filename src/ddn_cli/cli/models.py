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

        if "://" not in target:
            p = fetch(target, offline=offline)
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
        download([target], dest, sha256.lower(), None)
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
