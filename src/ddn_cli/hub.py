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
import errno
import glob
import hashlib
import http.client
import json
import os
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

from .errors import ChecksumMismatch, DdnError, OutputError, UnsafeWeights, UsageError, WeightsNotFound

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


@contextlib.contextmanager
def _cache_write(path: Path) -> Iterator[None]:
    """Turn an OSError of a write in the cache (a read-only DDN_HOME, a full disk) into one
    ``OutputError`` naming the path, instead of a traceback."""
    try:
        yield
    except OSError as e:
        raise OutputError(f"{path}: cannot write to the model cache ({e.strerror or e})",
                          "check that DDN_HOME, or the default cache folder, is writable; or point DDN_HOME "
                          "at a writable folder") from None


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


def _user_entries(p: Path) -> list:
    """The raw entries of the user manifest at ``p`` ([] if there is none). Raises
    ``ManifestError`` when the file cannot be read or is not a manifest, so that nothing
    rewrites (and so empties) a file it could not read."""
    from .registry import ManifestError

    try:
        if not p.is_file():
            return []
        data = json.loads(p.read_text())
    except PermissionError as e:  # a cache folder (or list) of mode 000, another user's
        raise ManifestError(f"{p.parent}: the model cache cannot be read ({e.strerror}: {p.name})",
                            "make that folder and its files readable and writable by you (chmod -R u+rwX), or "
                            "point DDN_HOME at another folder") from None
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as e:
        raise ManifestError(f"{p}: cannot read the list of your models ({e})",
                            "fix or delete that file (it lists the weights added with `ddn models pull URL`)") from None
    if not isinstance(data, dict) or not isinstance(data.get("weights"), list):
        raise ManifestError(f"{p}: not a ddn manifest (schema 1 with a weights list)",
                            "fix or delete that file (it lists the weights added with `ddn models pull URL`)")
    return data["weights"]


def user_manifest_problem() -> DdnError | None:
    """Why the user registry cannot be read (which ``user_specs`` passes over), or None."""
    try:
        _user_entries(_user_manifest_path())
    except DdnError as e:
        return e
    return None


def user_specs() -> list:
    """The valid entries of the user registry. An invalid entry, one under a bundled model's
    name or a repeated name is left out on its own; an unreadable file gives [] (and
    ``user_manifest_problem`` says why)."""
    from .registry import WeightSpec, bundled_manifest

    p = _user_manifest_path()
    try:
        entries = _user_entries(p)
    except DdnError:
        return []
    taken = set(bundled_manifest().names())
    specs = []
    for d in entries:
        try:
            s = WeightSpec.from_dict(d, str(p))
        except DdnError:
            continue
        if s.name not in taken:
            taken.add(s.name)
            specs.append(s)
    return specs


def _write_user_entries(p: Path, entries: list) -> None:
    from .atomic import write_bytes as atomic_write_bytes

    with _cache_write(p):
        atomic_write_bytes(p, json.dumps({"schema": 1, "weights": entries}, indent=2).encode())


def _named(d, name: str) -> bool:
    return isinstance(d, dict) and d.get("name") == name


def add_user_spec(spec) -> None:
    """Add ``spec`` to the user registry (replacing an entry of the same name). Every other
    entry is kept as it is, an invalid one included (it may be a hand edit to fix)."""
    p = _user_manifest_path()
    with file_lock(p.with_suffix(".lock")):
        entries = [d for d in _user_entries(p) if not _named(d, spec.name)]
        _write_user_entries(p, entries + [spec.to_dict()])


def remove_user_spec(name: str) -> bool:
    """Remove ``name``'s entries from the user registry (valid or not); True if there were any."""
    p = _user_manifest_path()
    with file_lock(p.with_suffix(".lock")):
        entries = _user_entries(p)
        keep = [d for d in entries if not _named(d, name)]
        if len(keep) == len(entries):
            return False
        _write_user_entries(p, keep)
        return True


def remove_model(name: str) -> bool:
    """``ddn models rm``: delete NAME's cached file and its user-registry entry (bundled files
    are never touched). True if anything was removed. An entry of the user registry that is
    invalid (so unknown to ``lookup``) can be removed by name too, and so can what an
    interrupted ``pull URL --name NAME`` left under a name never registered."""
    from .registry import NAME_RE, lookup

    try:
        spec = lookup(name)
    except WeightsNotFound:
        try:
            raw = _user_entries(_user_manifest_path())
        except DdnError:
            raw = []
        left = NAME_RE.match(name) is not None and _remove_partials(safe_cache_path(name + ".safetensors"))
        if any(_named(d, name) for d in raw):
            return remove_user_spec(name) or left
        if left:
            return True
        raise
    p = safe_cache_path(spec.file)
    existed = p.is_file()
    with _cache_write(p):
        p.unlink(missing_ok=True)
    existed = _remove_partials(p) or existed
    listed = any(s.name == name for s in user_specs())
    return remove_user_spec(name) if listed else existed


def _remove_partials(p: Path) -> bool:
    """Delete the interrupted downloads of cache file ``p``: its ``.part`` files and those of
    a ``pull URL`` (``.incoming.``), and a staged file that a pull completed but did not
    register (stopped in between). True if there were any."""
    found = False
    with _cache_write(p):
        for part in [*p.parent.glob(f"{glob.escape(p.name)}.*.part"),
                     *p.parent.glob(f".incoming.{glob.escape(p.name)}.*.part"),
                     *p.parent.glob(f".incoming.{glob.escape(p.name)}")]:
            part.unlink(missing_ok=True)
            found = True
    return found


_PULL_HINT = "ddn models pull URL takes weights saved by ddn: by ddn train or ddn models import-pth"


def pull_url(url: str, sha256: str, name: str, *, offline: bool | None = None,
             progress: Progress | None = None, on_retry: Callable[[str], None] | None = None) -> Path:
    """``ddn models pull URL --sha256 H --name arch.tag``: check the name and the hash's form,
    download (verified), check that the file is ddn weights whose metadata makes a valid
    registry entry, then add it to the user registry. Returns the cached file. Raises
    ``UsageError`` (name, hash, offline), ``DownloadError``/``ChecksumMismatch``, and
    ``UnsafeWeights`` for a file that is refused (it is deleted)."""
    from .registry import SHA_RE, check_name

    check_name(name)
    sha = sha256.strip().lower()
    if not SHA_RE.match(sha):
        raise UsageError(f"--sha256 {sha256!r} is not a sha256 (64 hex digits)",
                         "copy the hash published with the file, or compute it with `sha256sum FILE`")
    problem = _url_problem(url)
    if problem:
        raise UsageError(problem, "give the http:// or https:// URL of a .safetensors file")
    if is_offline(offline):
        raise UsageError(f"{url}: offline mode is on; cannot download", "drop --offline / DDN_OFFLINE to pull")
    _user_entries(_user_manifest_path())  # a list that cannot take the new entry fails now, not after the download
    fname = name + ".safetensors"
    dest = safe_cache_path(fname)
    # downloaded and checked under a staging name: a refused file must not replace a good one
    # pulled earlier under the same name; the whole pull holds the name's lock, so that two
    # pulls of one name at once end with one file and both succeed
    staged = safe_cache_path(f".incoming.{fname}")
    with file_lock(dest.with_name(dest.name + ".lock")):
        if dest.is_file() and sha256_file(dest) == sha:
            candidate = dest  # already here (pulled by another process meanwhile, or before)
        else:
            download([url], staged, sha, None, progress=progress, on_retry=on_retry)
            candidate = staged
        spec = _pulled_spec(candidate, url, sha, name, fname)
        if candidate == staged:
            with _cache_write(dest):
                os.replace(staged, dest)
        add_user_spec(spec)
    return dest


def _pulled_spec(candidate: Path, url: str, sha: str, name: str, fname: str):
    """The registry entry for a pulled file, or ``UnsafeWeights`` (a staged file is then
    deleted) when its metadata does not make a valid one."""
    from .registry import WeightSpec
    from .weightfile import build_model, load_weights

    try:
        sd, meta = load_weights(candidate)
        if "arch" not in meta:
            raise UnsafeWeights(f"{url}: refused: its metadata names no arch (not weights saved by ddn)", _PULL_HINT)
        try:  # the network its metadata describes must build and take its tensors
            build_model(sd, meta, url)
        except UnsafeWeights as e:
            raise UnsafeWeights(f"{url}: refused: {e.message.removeprefix(f'{url}: ')}", _PULL_HINT) from None
        d = {"name": name, "arch": meta["arch"], "task": str(meta.get("task", "denoise")), "file": fname, "sha256": sha,
             "size": candidate.stat().st_size, "license": "user-supplied", "config": meta.get("config", {}),
             "training": {"source": url}, "metrics": {}, "urls": [url]}
        try:
            spec = WeightSpec.from_dict(d, "metadata")
        except DdnError as e:
            raise UnsafeWeights(f"{url}: refused: its metadata makes an invalid model entry "
                                f"({e.message.removeprefix('metadata: ')})", _PULL_HINT) from None
        if (spec.arch == "ddn") != (spec.task in ("denoise", "seg", "cls")):  # as ddn's commands read them
            raise UnsafeWeights(f"{url}: refused: its metadata names task {spec.task!r} for arch {spec.arch!r}",
                                _PULL_HINT)
    except DdnError:
        if candidate.name.startswith(".incoming."):  # never the file already in place
            with contextlib.suppress(OSError):
                candidate.unlink(missing_ok=True)
        raise
    return spec


# ---------------------------------------------------------------- resolution


def find_local(spec) -> tuple[Path, str] | None:
    """(path, 'cached'|'bundled') of a verified local copy, else None."""
    from .registry import bundled_dir

    for where, base in (("cached", weights_dir()), ("bundled", bundled_dir())):
        p = base / spec.file
        try:
            if p.is_file() and p.stat().st_size == spec.size and sha256_file(p) == spec.sha256:
                return p, where
        except PermissionError:  # an unreadable cache: the bundled copy may still do
            continue
    return None


def mirror_urls(spec) -> list[str]:
    urls = []
    mirror = os.environ.get("DDN_MIRROR", "").strip()
    if mirror:
        urls.append(mirror.rstrip("/") + "/" + spec.file)
    urls.extend(spec.urls)
    return urls


def local_path(name: str) -> Path:
    """The verified local file of a registered model; never downloads."""
    from .registry import lookup

    spec = lookup(name)
    local = find_local(spec)
    if local:
        return local[0]
    raise WeightsNotFound(f"{name}: no verified local copy (not downloaded yet, or the file was deleted or changed)",
                          f"fetch it with `ddn models pull {name}`" if mirror_urls(spec) else
                          "no download URL is known for it: set DDN_MIRROR, or pass a local file with --model PATH")


def fetch(name: str, *, offline: bool | None = None, progress: Progress | None = None,
          on_retry: Callable[[str], None] | None = None) -> Path:
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
    return download(urls, dest, spec.sha256, spec.size, progress=progress, on_retry=on_retry)


# ---------------------------------------------------------------- download


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock held on ``path`` (created if needed, deleted on release). Deleting it
    is safe because a waiter that gets the lock re-checks that ``path`` is still the file it
    locked, and starts over if the holder deleted it meanwhile (else it and a newcomer locking
    a fresh file at ``path`` could both go ahead). A lock that cannot be deleted (read-only
    folder) is left; it is empty and harmless."""
    import fcntl

    while True:
        with _cache_write(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            f = open(path, "a+")  # noqa: SIM115 - stays open (and locked) until the block ends
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                same = os.path.samestat(os.fstat(f.fileno()), os.stat(path))
            except FileNotFoundError:
                same = False
        except BaseException:
            f.close()
            raise
        if same:
            break
        f.close()  # the holder deleted the file we waited on: lock the current one
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            path.unlink()  # while still holding it: see above
        f.close()  # releases the lock


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
    on_retry: Callable[[str], None] | None = None,
) -> Path:
    """Download to ``dest`` atomically and verified. A partial download (``dest.SHA.part``,
    named after the hash it must have) is resumed with Range; one of ``dest`` under another
    hash (an interrupted pull of another file under the same name) is deleted, not resumed,
    which failed the first try with a checksum mismatch. ``urls`` are tried in turn: one that
    is not a valid http(s) URL is skipped, and one that sends bytes of the wrong size or sha256
    (a stale mirror) has its temp file deleted and the next URL is tried; the error names
    the URLs that sent bad bytes. ``on_retry`` is told (one line) of each failed attempt that
    will be retried and of each URL given up for the next: a server that does not answer
    otherwise costs minutes of silence."""
    with _cache_write(dest.parent):
        dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(f"{dest.name}.{(sha256 or 'any')[:16]}.part")
    with file_lock(dest.with_name(dest.name + ".lock")):
        if dest.is_file() and (sha256 is None or sha256_file(dest) == sha256):
            return dest  # another process finished it while we waited
        for other in dest.parent.glob(f"{glob.escape(dest.name)}.*.part"):  # (under the name's lock)
            if other != part:
                with contextlib.suppress(OSError):
                    other.unlink()
        failures: list[str] = []  # one per URL given up
        bad_bytes: list[str] = []  # those of URLs that sent a file of the wrong size or hash
        for i, url in enumerate(urls):
            problem = _url_problem(url)
            if problem is None:
                problem, bad = _try_url(url, part, sha256, size, retries, timeout, backoff, progress, on_retry)
                if problem is None:
                    _check_not_html(part)
                    with _cache_write(dest):
                        os.replace(part, dest)
                    return dest
                if bad:
                    bad_bytes.append(problem)
            failures.append(problem)
            if on_retry is not None and i + 1 < len(urls):
                on_retry(f"{problem}; trying the next URL")
        if bad_bytes:  # (named with the other URLs' failures, if any)
            raise ChecksumMismatch(f"{dest.name}: {'; '.join(failures)}",
                                   "the downloaded temp file was deleted; the cache is unchanged; check the URL "
                                   "or the mirror (DDN_MIRROR)")
        raise DownloadError(f"download failed: {'; '.join(failures)}",
                            "check the URL / network, or set DDN_MIRROR") from None


def _url_problem(url: str) -> str | None:
    """Why ``url`` cannot be downloaded from (not http(s), malformed), or None."""
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as e:
        return f"{url}: not a valid URL ({e})"
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return f"{url}: not an http(s) URL"
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        return f"{url}: a URL cannot contain spaces or control characters; write a space as %20"
    return None


def _try_url(url: str, part: Path, sha256: str | None, size: int | None, retries: int, timeout: float,
             backoff: float, progress: Progress | None,
             on_retry: Callable[[str], None] | None) -> tuple[str | None, bool]:
    """Fetch ``url`` into ``part`` (retrying, resuming) and check its size and sha256. Returns
    (None, False) when ``part`` is complete and good, else (why, whether the URL sent bytes of
    the wrong size or hash, in which case ``part`` is deleted)."""
    for attempt in range(retries):
        try:
            _fetch_into(url, part, size, timeout, progress)
            break
        except _Permanent as e:
            return str(e), isinstance(e, _WrongSize)
        except (TimeoutError, urllib.error.URLError, OSError, http.client.IncompleteRead, _Retry) as e:
            if isinstance(e, OSError) and e.errno in _DISK_ERRNOS:  # the cache's disk, not the network
                with contextlib.suppress(OSError):
                    part.unlink(missing_ok=True)
                raise OutputError(f"{part.parent}: cannot write to the model cache ({e.strerror})",
                                  "free space there, or point DDN_HOME at another disk") from None
            if attempt + 1 == retries:
                return f"{url}: {str(e) or type(e).__name__}", False
            if on_retry is not None:
                on_retry(f"{url}: {str(e) or type(e).__name__}; trying again ({attempt + 2} of {retries})")
            time.sleep(backoff * (2**attempt))
    got_size = part.stat().st_size
    if size is not None and got_size != size:
        part.unlink(missing_ok=True)
        return f"size mismatch: expected {size} bytes, got {got_size} from {url}", True
    if sha256 is not None:
        got = sha256_file(part)
        if got != sha256:
            part.unlink(missing_ok=True)
            return f"sha256 mismatch: expected {sha256}, got {got} from {url}", True
    return None, False


_DISK_ERRNOS = {errno.ENOSPC, errno.EROFS, getattr(errno, "EDQUOT", errno.ENOSPC)}


class _Retry(Exception):
    pass


class _Permanent(Exception):
    pass


class _WrongSize(_Permanent):
    """The server sent more bytes than the file has (the temp file is deleted)."""


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
    except ValueError as e:  # http.client.InvalidURL and the like: trying again cannot help
        raise _Permanent(f"{url}: not a valid URL ({e})") from None
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
        # with no size from a manifest, the server's Content-Length tells a cut-off transfer
        # (retried, resumed with Range) from a complete one
        expected = size if size is not None else (total if resp.headers.get("Content-Length") else None)
        with _cache_write(part):  # not retried: a read-only cache stays read-only
            f = open(part, mode)  # noqa: SIM115 - opened apart: network errors below are retried
        with f:
            while True:  # with a known size, no more than one byte past it is read
                chunk = resp.read(1 << 16 if size is None else min(1 << 16, size + 1 - have))
                if not chunk:
                    break
                f.write(chunk)
                have += len(chunk)
                if progress:
                    progress(have, total)
                if size is not None and have > size:
                    break
            f.flush()
            os.fsync(f.fileno())
    if size is not None and have > size:
        part.unlink(missing_ok=True)
        raise _WrongSize(f"size mismatch: {url} sent more than the {size} bytes expected")
    if expected is not None and have < expected:
        raise _Retry(f"connection closed after {have} of {expected} bytes")
