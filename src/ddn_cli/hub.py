"""The weight cache and verified downloads.

Cache: ``$DDN_HOME`` or ``platformdirs.user_cache_dir("ddn")``; weights live in
``<cache>/weights/<file>``; the user registry (weights added with
``ddn models pull URL --name``) in ``<cache>/user-manifest.json``.

Downloads go to a temp file in the cache folder, resume with HTTP Range, retry with
backoff, are checked for size and sha256 and only then renamed into place; a lock
file makes concurrent pulls of one model end with one good file. Standard library
only (urllib honours http(s)_proxy / no_proxy; SSL_CERT_FILE / REQUESTS_CA_BUNDLE
give a CA bundle). There is deliberately no switch that disables checksums.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

from .errors import ChecksumMismatch, DdnError, WeightsNotFound

Progress = Callable[[int, int], None]  # (bytes done, total)


class DownloadError(DdnError):
    pass


def cache_dir() -> Path:
    env = os.environ.get("DDN_HOME")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("ddn"))


def weights_dir() -> Path:
    return cache_dir() / "weights"


def is_offline(flag: bool | None = None) -> bool:
    if flag is not None:
        return flag
    return os.environ.get("DDN_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def safe_cache_path(file: str) -> Path:
    """The cache path for a manifest file name; refuses names that escape the cache."""
    base = weights_dir().resolve()
    p = (base / file).resolve()
    if p.parent != base or file != p.name:
        raise DownloadError(f"refusing weight file name {file!r}: it would escape the cache folder")
    return p


# ---------------------------------------------------------------- user registry


def _user_manifest_path() -> Path:
    return cache_dir() / "user-manifest.json"


def user_specs() -> list:
    from .registry import WeightSpec

    p = _user_manifest_path()
    if not p.is_file():
        return []
    try:
        data = json.loads(p.read_text())
        return [WeightSpec.from_dict(d, str(p)) for d in data.get("weights", [])]
    except (json.JSONDecodeError, DdnError, OSError):
        return []


def add_user_spec(spec) -> None:
    from .atomic import write_bytes as atomic_write_bytes

    p = _user_manifest_path()
    with file_lock(p.with_suffix(".lock")):
        current = [s for s in user_specs() if s.name != spec.name]
        current.append(spec)
        atomic_write_bytes(p, json.dumps({"schema": 1, "weights": [s.to_dict() for s in current]}, indent=2).encode())


def remove_user_spec(name: str) -> bool:
    from .atomic import write_bytes as atomic_write_bytes

    p = _user_manifest_path()
    with file_lock(p.with_suffix(".lock")):
        current = user_specs()
        keep = [s for s in current if s.name != name]
        if len(keep) == len(current):
            return False
        atomic_write_bytes(p, json.dumps({"schema": 1, "weights": [s.to_dict() for s in keep]}, indent=2).encode())
        return True


# ---------------------------------------------------------------- resolution


def find_local(spec) -> tuple[Path, str] | None:
    """(path, 'cached'|'bundled') of a verified local copy, else None."""
    from .registry import bundled_dir

    for where, base in (("cached", weights_dir()), ("bundled", bundled_dir())):
        p = base / spec.file
        if p.is_file() and p.stat().st_size == spec.size and sha256_file(p) == spec.sha256:
            return p, where
    return None


def mirror_urls(spec) -> list[str]:
    urls = []
    mirror = os.environ.get("DDN_MIRROR", "").strip()
    if mirror:
        urls.append(mirror.rstrip("/") + "/" + spec.file)
    urls.extend(spec.urls)
    return urls


def fetch(name: str, *, offline: bool | None = None, progress: Progress | None = None) -> Path:
    """Local verified path for a registered model name, downloading if needed."""
    from .registry import lookup

    spec = lookup(name)
    local = find_local(spec)
    if local:
        return local[0]
    if is_offline(offline):
        raise WeightsNotFound(
            f"{name}: not cached and offline mode is on (DDN_OFFLINE / --offline)",
            f"pre-fetch it with `ddn models pull {name}` on a connected machine, then copy {weights_dir()}",
        )
    urls = mirror_urls(spec)
    if not urls:
        raise WeightsNotFound(f"{name}: no download URL is known for this model",
                              "set DDN_MIRROR to a server that hosts it, or pass a local file with --model PATH")
    dest = safe_cache_path(spec.file)
    return download(urls, dest, spec.sha256, spec.size, progress=progress)


# ---------------------------------------------------------------- download


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _ssl_context() -> ssl.SSLContext:
    ca = os.environ.get("SSL_CERT_FILE") or os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    return ssl.create_default_context(cafile=ca) if ca else ssl.create_default_context()


def download(
    urls: list[str],
    dest: Path,
    sha256: str | None,
    size: int | None,
    *,
    retries: int = 4,
    timeout: float = 30.0,
    backoff: float = 0.5,
    progress: Progress | None = None,
) -> Path:
    """Download to ``dest`` atomically and verified. A partial ``dest + .part`` is
    resumed with Range. On a checksum mismatch the temp file is deleted."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    with file_lock(dest.with_name(dest.name + ".lock")):
        if dest.is_file() and (sha256 is None or sha256_file(dest) == sha256):
            return dest  # another process finished it while we waited
        last_err: Exception | None = None
        for url in urls:
            for attempt in range(retries):
                try:
                    _fetch_into(url, part, size, timeout, progress)
                    break
                except _Permanent as e:
                    last_err = e
                    break
                except (TimeoutError, urllib.error.URLError, OSError, _Retry) as e:
                    last_err = e
                    time.sleep(backoff * (2**attempt))
            else:
                continue
            if part.is_file() and (size is None or part.stat().st_size == size):
                break
        else:
            raise DownloadError(f"download failed from {', '.join(urls)}: {last_err}",
                                "check the URL / network, or set DDN_MIRROR") from None
        got_size = part.stat().st_size
        if size is not None and got_size != size:
            part.unlink(missing_ok=True)
            raise ChecksumMismatch(f"{dest.name}: size mismatch: expected {size} bytes, got {got_size}",
                                   "the temp file was deleted; try again or check the mirror")
        if sha256 is not None:
            got = sha256_file(part)
            if got != sha256:
                part.unlink(missing_ok=True)
                raise ChecksumMismatch(f"{dest.name}: sha256 mismatch: expected {sha256}, got {got}",
                                       "the downloaded temp file was deleted; the cache is unchanged")
        _check_not_html(part)
        os.replace(part, dest)
        return dest


class _Retry(Exception):
    pass


class _Permanent(Exception):
    pass


def _check_not_html(path: Path) -> None:
    with open(path, "rb") as f:
        head = f.read(512).lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html", b"<?xml", b"<head", b"<body")):
        path.unlink(missing_ok=True)
        raise DownloadError(f"{path.name}: the server sent an HTML page, not weights", "check the URL")


def _fetch_into(url: str, part: Path, size: int | None, timeout: float, progress: Progress | None) -> None:
    have = part.stat().st_size if part.is_file() else 0
    if size is not None and have > size:
        part.unlink()
        have = 0
    if size is not None and have == size:
        return
    req = urllib.request.Request(url, headers={"User-Agent": "ddn", "Accept-Encoding": "identity"})
    if have:
        req.add_header("Range", f"bytes={have}-")
    try:
        resp = urllib.request.urlopen(req, timeout=timeout, context=_ssl_context() if url.startswith("https") else None)
    except urllib.error.HTTPError as e:
        if e.code == 416:  # range not satisfiable: start over
            part.unlink(missing_ok=True)
            raise _Retry("range not satisfiable") from None
        if e.code in (408, 425, 429) or e.code >= 500:
            raise _Retry(f"HTTP {e.code}") from None
        raise _Permanent(f"HTTP {e.code} {e.reason} for {url}") from None
    with resp:
        ctype = resp.headers.get("Content-Type", "")
        if "text/html" in ctype:
            raise _Permanent(f"{url} returned an HTML page (Content-Type {ctype}), not weights")
        mode = "ab" if (have and resp.status == 206) else "wb"
        if mode == "wb":
            have = 0
        total = size or (have + int(resp.headers.get("Content-Length") or 0))
        with open(part, mode) as f:
            while True:
                chunk = resp.read(1 << 16)
                if not chunk:
                    break
                f.write(chunk)
                have += len(chunk)
                if progress:
                    progress(have, total)
            f.flush()
            os.fsync(f.fileno())
    if size is not None and have < size:
        raise _Retry(f"connection closed after {have} of {size} bytes")
