"""The weight registry: one frozen ``WeightSpec`` per released weight, read from
``weights/manifest.json`` (bundled with the package), plus the user registry of
weights added with ``ddn models pull URL --name``.

Names are ``arch.tag`` (e.g. ``ddn.color-sigma``).
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from .errors import DdnError, UsageError, WeightsNotFound

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*\.[a-z0-9][a-z0-9_.-]*$")
SHA_RE = re.compile(r"^[0-9a-f]{64}$")
TASKS = ("denoise", "seg", "cls", "segmenter", "classifier")
REQUIRED = ("name", "arch", "task", "file", "sha256", "size", "license", "config", "training", "metrics", "urls")


class ManifestError(DdnError):
    pass


@dataclass(frozen=True)
class WeightSpec:
    """One released weight file and everything a user needs to trust it."""

    name: str
    arch: str
    task: str
    file: str
    sha256: str
    size: int
    license: str
    config: dict[str, Any]
    training: dict[str, Any]
    metrics: dict[str, Any]
    urls: tuple[str, ...] = ()
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "manifest") -> WeightSpec:
        """Validate one manifest entry; every problem is a ``ManifestError``."""
        if not isinstance(d, dict):
            raise ManifestError(f"{where}: an entry is not a JSON object")
        try:
            return cls._from_dict(d, where)
        except (TypeError, AttributeError):  # e.g. a number where a string or list belongs
            raise ManifestError(f"{where}: entry {d.get('name', '?')!r} has a field of the wrong type") from None

    @classmethod
    def _from_dict(cls, d: dict[str, Any], where: str) -> WeightSpec:
        missing = [k for k in REQUIRED if k not in d]
        if missing:
            raise ManifestError(f"{where}: entry {d.get('name', '?')!r} lacks {', '.join(missing)}")
        name = d["name"]
        if not NAME_RE.match(name):
            raise ManifestError(f"{where}: bad weight name {name!r} (expected arch.tag)")
        if not SHA_RE.match(d["sha256"]):
            raise ManifestError(f"{where}: {name}: sha256 must be 64 lowercase hex digits")
        f = d["file"]
        if "/" in f or "\\" in f or f in ("", ".", "..") or f.startswith("."):
            raise ManifestError(f"{where}: {name}: file name {f!r} must be a plain file name")
        if not f.endswith(".safetensors"):
            raise ManifestError(f"{where}: {name}: only .safetensors files are allowed")
        if not isinstance(d["size"], int) or d["size"] <= 0:
            raise ManifestError(f"{where}: {name}: size must be a positive integer")
        if d["task"] not in TASKS:
            raise ManifestError(f"{where}: {name}: task {d['task']!r} not in {TASKS}")
        for k in ("config", "training", "metrics"):
            if not isinstance(d[k], dict):
                raise ManifestError(f"{where}: {name}: {k} must be a JSON object")
        urls = tuple(d["urls"])
        if any(not u.startswith(("https://", "http://")) for u in urls):
            raise ManifestError(f"{where}: {name}: urls must be http(s)")
        known = {k for k in cls.__dataclass_fields__ if k != "extra"}
        return cls(
            **{k: d[k] for k in known if k in d and k != "urls"},
            urls=urls,
            extra={k: v for k, v in d.items() if k not in known},
        )

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "extra"}
        d["urls"] = list(self.urls)
        d.update(self.extra)
        return d


def bundled_dir() -> Path:
    """Folder of the bundled weights: inside the installed package (wheels), or the
    repository's ``weights/`` for source checkouts and editable installs."""
    pkg = Path(__file__).resolve().parent / "weights"
    if (pkg / "manifest.json").is_file():
        return pkg
    return Path(__file__).resolve().parents[2] / "weights"


@dataclass(frozen=True)
class Manifest:
    specs: tuple[WeightSpec, ...]
    defaults: dict[str, str]

    def names(self) -> list[str]:
        return [s.name for s in self.specs]

    def get(self, name: str) -> WeightSpec:
        for s in self.specs:
            if s.name == name:
                return s
        close = difflib.get_close_matches(name, self.names(), n=1)
        hint = f"did you mean {close[0]}?" if close else f"known: {', '.join(self.names()) or 'none'}"
        raise WeightsNotFound(f"unknown model {name!r}", hint)

    def default(self, task: str = "denoise") -> WeightSpec:
        if task not in self.defaults:
            raise WeightsNotFound(f"no default model for task {task!r}")
        return self.get(self.defaults[task])


def parse_manifest(data: dict[str, Any], where: str = "manifest") -> Manifest:
    if not isinstance(data, dict) or data.get("schema") != 1 or not isinstance(data.get("weights"), list):
        raise ManifestError(f"{where}: not a ddn manifest (schema 1 with a weights list)")
    specs = tuple(WeightSpec.from_dict(d, where) for d in data["weights"])
    names = [s.name for s in specs]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ManifestError(f"{where}: duplicate names {sorted(dup)}")
    defaults = dict(data.get("defaults", {}))
    for task, name in defaults.items():
        if name not in names:
            raise ManifestError(f"{where}: default {task} model {name!r} is not in the manifest")
    return Manifest(specs, defaults)


@lru_cache(maxsize=1)
def bundled_manifest() -> Manifest:
    path = bundled_dir() / "manifest.json"
    try:
        return parse_manifest(json.loads(path.read_text()), str(path))
    except FileNotFoundError:
        return Manifest((), {})


def resolve_weights(model: str | None, task: str = "denoise", *, offline: bool | None = None) -> Path:
    """Resolve ``--model``: a local file path; a name in the user cache; a bundled
    name; else a verified download (unless offline). Returns a local file path."""
    from . import hub

    man = bundled_manifest()
    if model is None:
        model = man.default(task).name
    p = Path(model).expanduser()
    if p.suffix and (p.is_file() or "/" in model or "\\" in model or p.suffix in (".safetensors", ".pth", ".pt")):
        if not p.is_file():
            raise WeightsNotFound(f"{p}: weight file not found")
        return p
    return hub.fetch(model, offline=offline)


def task_denoiser(task: str) -> str:
    """The bundled denoiser guided by ``task`` (seg/cls), else the default denoiser."""
    man = bundled_manifest()
    return man.defaults.get(task) or man.default("denoise").name


def all_specs() -> list[WeightSpec]:
    """Bundled specs followed by the user registry's."""
    from . import hub

    return list(bundled_manifest().specs) + list(hub.user_specs())


def lookup(name: str) -> WeightSpec:
    for s in all_specs():
        if s.name == name:
            return s
    from . import hub

    problem = hub.user_manifest_problem()  # the models you pulled are unknown then: say why
    if problem is not None:
        raise WeightsNotFound(f"unknown model {name!r}: {problem.message}", problem.hint)
    names = [s.name for s in all_specs()]
    close = difflib.get_close_matches(name, names, n=1)
    hint = f"did you mean {close[0]}?" if close else f"known: {', '.join(names) or 'none'}; see `ddn models list`"
    raise WeightsNotFound(f"unknown model {name!r}", hint)


def check_name(name: str) -> None:
    """A name the user may register their own weights under: arch.tag, and not a bundled
    model's (a user entry under that name would never be used, and list/verify showed both)."""
    if not NAME_RE.match(name):
        raise UsageError(f"model name {name!r} must look like arch.tag (lowercase letters, digits, - _ .)")
    if name in bundled_manifest().names():
        raise UsageError(f"model name {name!r} is taken by a bundled model", "choose another name, e.g. ddn.mine")
