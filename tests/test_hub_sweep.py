"""`ddn models` and downloads on what a bug sweep found: malformed URLs and mirrors, stale
mirrors, servers that send too much, odd user model lists, unreadable caches, paths with
markup, interrupted pulls. Downloads use a server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
import time

import pytest
from typer.testing import CliRunner

from ddn_cli import hub
from ddn_cli.cli.app import app
from ddn_cli.errors import ChecksumMismatch, DdnError
from ddn_cli.registry import WeightSpec, bundled_manifest


def run(*args: str):
    return CliRunner().invoke(app, list(args))


def one_error_line(r, code: int) -> str:
    assert isinstance(r.exception, SystemExit), repr(r.exception)
    assert r.exit_code == code, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ddn: error:"), r.output
    return lines[0]


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def tiny() -> bytes:
    """A small valid ddn denoiser file."""
    from safetensors.torch import save

    from ddn_cli.models import build_denoiser

    m = build_denoiser({"width": 4, "mid": 4, "up_mid": 4, "fuse": 4})
    meta = {"arch": "ddn", "task": "denoise", "config": json.dumps(m.config.to_dict())}
    return save({k: v.contiguous() for k, v in m.state_dict().items()}, metadata=meta)


@pytest.fixture
def server():
    """``files``: path -> bytes; ``extra``: path -> junk bytes sent after the file (counted
    in Content-Length), a server that sends more than the file."""
    files: dict[str, bytes] = {}
    extra: dict[str, int] = {}
    requests: list[str] = []

    class H(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            requests.append(self.path)
            data = files.get(self.path)
            if data is None:
                self.send_error(404)
                return
            body = data + b"\0" * extra.get(self.path, 0)
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                self.wfile.write(body)
            except OSError:  # the client stopped reading
                pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    httpd.files, httpd.extra, httpd.requests = files, extra, requests
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield httpd
    httpd.shutdown()


def register(data: bytes, urls: list[str], name: str = "ddn.m", metrics: dict | None = None) -> WeightSpec:
    spec = WeightSpec(name=name, arch="ddn", task="denoise", file=f"{name}.safetensors", sha256=sha(data),
                      size=len(data), license="MIT", config={}, training={}, metrics=metrics or {}, urls=tuple(urls))
    hub.add_user_spec(spec)
    return spec


# ---------------------------------------------------------------- malformed URLs


@pytest.mark.parametrize("url", ["http://[bad/x", "http://127.0.0.1:abc/x", "{base}/a b.safetensors",
                                 "ftp://127.0.0.1/x", "htp://x/y", "file:///etc/passwd"])
def test_pull_refuses_malformed_and_non_http_urls_up_front(server, url):
    """They gave tracebacks (ValueError, InvalidURL), were retried for 7.5 s (ftp://), or
    were read before being refused (file://)."""
    url = url.format(base=server.url)
    t = time.monotonic()
    line = one_error_line(run("models", "pull", url, "--sha256", "0" * 64, "--name", "ddn.u"), 2)
    assert time.monotonic() - t < 2 and server.requests == []
    assert "URL" in line and not (hub.cache_dir() / "user-manifest.json").exists()


@pytest.mark.parametrize("mirror", ["127.0.0.1:1/m", "http://[bad", "ftp://127.0.0.1/m", "http://127.0.0.1:abc/m"])
def test_a_malformed_mirror_is_skipped_quickly(server, monkeypatch, mirror):
    data = tiny()
    server.files["/real/ddn.m.safetensors"] = data
    register(data, [server.url + "/real/ddn.m.safetensors"])
    monkeypatch.setenv("DDN_MIRROR", mirror)
    told: list[str] = []
    t = time.monotonic()
    assert hub.fetch("ddn.m", on_retry=told.append).read_bytes() == data
    assert time.monotonic() - t < 2
    assert len(told) == 1 and "trying the next URL" in told[0], told


# ---------------------------------------------------------------- bad bytes from one URL


def test_a_stale_mirror_of_the_right_size_falls_back_to_the_manifest_url(server, monkeypatch):
    """The wrong sha256 was found only after the URL loop: the manifest's own URL was never tried."""
    data = tiny()
    stale = bytes([data[0] ^ 1]) + data[1:]
    server.files["/mirror/ddn.m.safetensors"] = stale
    server.files["/real/ddn.m.safetensors"] = data
    register(data, [server.url + "/real/ddn.m.safetensors"])
    monkeypatch.setenv("DDN_MIRROR", server.url + "/mirror")
    told: list[str] = []
    assert hub.fetch("ddn.m", on_retry=told.append).read_bytes() == data
    assert server.requests == ["/mirror/ddn.m.safetensors", "/real/ddn.m.safetensors"]
    assert len(told) == 1 and "sha256 mismatch" in told[0] and "/mirror/" in told[0]
    assert not list(hub.weights_dir().glob("*.part"))


def test_every_url_that_sent_bad_bytes_is_named(server, monkeypatch):
    data = tiny()
    stale = bytes([data[0] ^ 1]) + data[1:]
    server.files["/mirror/ddn.m.safetensors"] = stale
    server.files["/real/ddn.m.safetensors"] = stale
    register(data, [server.url + "/real/ddn.m.safetensors"])
    monkeypatch.setenv("DDN_MIRROR", server.url + "/mirror")
    with pytest.raises(ChecksumMismatch) as e:
        hub.fetch("ddn.m")
    assert "/mirror/ddn.m.safetensors" in str(e.value) and "/real/ddn.m.safetensors" in str(e.value)
    assert not list(hub.weights_dir().glob("*.part"))


def test_a_server_sending_more_than_the_size_is_cut_off_and_the_next_url_tried(server, monkeypatch):
    data = tiny()
    server.files["/mirror/ddn.m.safetensors"] = data
    server.extra["/mirror/ddn.m.safetensors"] = 5_000_000
    server.files["/real/ddn.m.safetensors"] = data
    register(data, [server.url + "/real/ddn.m.safetensors"])
    monkeypatch.setenv("DDN_MIRROR", server.url + "/mirror")
    seen: list[int] = []
    assert hub.fetch("ddn.m", progress=lambda done, total: seen.append(done)).read_bytes() == data
    assert max(seen) <= len(data) + 1  # no more than one byte past the size was read
    assert server.requests[-1] == "/real/ddn.m.safetensors"


# ---------------------------------------------------------------- odd user model lists


@pytest.mark.parametrize("metrics", [{"CBSD68": 5}, {"val_acc": "n/a"}, {"CamVid_val": [1]}, {"mIoU": 5},
                                     {"CBSD68": {"unclipped": {"25": "x"}}}])
def test_one_bad_metric_does_not_break_models_list(metrics):
    register(b"x", [], name="ddn.m1", metrics=metrics)
    r = run("models", "list")
    assert r.exit_code == 0 and r.exception is None, r.output
    assert "ddn.m1" in r.output


def test_a_corrupt_user_list_is_warned_about_and_checked_before_a_pull(server):
    data = tiny()
    server.files["/w.safetensors"] = data
    assert run("models", "pull", server.url + "/w.safetensors", "--sha256", sha(data), "--name", "ddn.mine").exit_code == 0
    p = hub.cache_dir() / "user-manifest.json"
    p.write_text('{"schema":1,"weights":[')
    for args in (("models", "list"), ("models", "verify"), ("models", "info", bundled_manifest().defaults["denoise"])):
        r = run(*args)
        warnings = [ln for ln in r.output.splitlines() if ln.startswith("ddn: warning:")]
        assert len(warnings) == 1 and str(p) in warnings[0], (args, r.output)
    assert str(p) in one_error_line(run("models", "info", "ddn.mine"), 2)
    n = len(server.requests)
    line = one_error_line(run("models", "pull", server.url + "/w.safetensors", "--sha256", sha(data),
                              "--name", "ddn.other"), 1)
    assert str(p) in line and len(server.requests) == n  # refused before downloading
    assert p.read_text() == '{"schema":1,"weights":['


# ---------------------------------------------------------------- an unreadable cache


def test_an_unreadable_cache_still_lets_bundled_models_work(server, monkeypatch):
    """DDN_HOME of mode 000 broke even the bundled model with a bare "[Errno 13] Permission denied"."""
    import pathlib

    data = tiny()
    server.files["/w.safetensors"] = data
    assert run("models", "pull", server.url + "/w.safetensors", "--sha256", sha(data), "--name", "ddn.mine").exit_code == 0
    home = str(hub.cache_dir())
    real_stat = pathlib.Path.stat

    def stat(self, *a, **kw):  # what a folder of mode 000 does (root ignores modes, so they are faked)
        if str(self).startswith(home + "/"):
            raise PermissionError(13, "Permission denied", str(self))
        return real_stat(self, *a, **kw)

    monkeypatch.setattr(pathlib.Path, "stat", stat)
    from ddn_cli.registry import resolve_weights

    assert resolve_weights(None).is_file()  # the bundled default
    assert run("models", "list").exit_code == 0
    line = one_error_line(run("models", "info", "ddn.mine"), 2)
    assert home in line and "DDN_HOME" in line and "Permission denied" in line


# ---------------------------------------------------------------- paths with markup


def test_paths_with_brackets_are_printed_whole(server, monkeypatch, tmp_path):
    home = tmp_path / "cache[old]"
    monkeypatch.setenv("DDN_HOME", str(home))
    data = tiny()
    server.files["/w.safetensors"] = data
    r = run("models", "pull", server.url + "/w.safetensors", "--sha256", sha(data), "--name", "ddn.uni")
    assert r.exit_code == 0 and "cache[old]" in r.output, r.output
    r = run("models", "verify", "ddn.uni")
    assert r.exit_code == 0 and "cache[old]" in r.output, r.output


def test_weights_under_a_path_that_is_not_utf8_load(tmp_path):
    import os

    from ddn_cli.weightfile import load_weights

    d = tmp_path / os.fsdecode(b"h\xff")
    d.mkdir()
    (d / "w.safetensors").write_bytes(tiny())
    sd, meta = load_weights(d / "w.safetensors")
    assert meta["arch"] == "ddn" and sd


# ---------------------------------------------------------------- interrupted pulls


def test_a_404_after_an_interrupted_pull_keeps_the_partial_file(server):
    """It was reported as a sha256 mismatch, and the partial file deleted."""
    data = tiny()
    d = hub.weights_dir()
    d.mkdir(parents=True)
    part = d / f".incoming.ddn.slow.safetensors.{sha(data)[:16]}.part"
    part.write_bytes(data[:100])  # what a Ctrl-C left
    with pytest.raises(hub.DownloadError) as e:
        hub.pull_url(server.url + "/gone.safetensors", sha(data), "ddn.slow")
    assert "404" in str(e.value) and "sha256" not in str(e.value)
    assert part.read_bytes() == data[:100]


def test_rm_deletes_what_an_interrupted_pull_of_a_new_name_left(server):
    d = hub.weights_dir()
    d.mkdir(parents=True)
    left = [d / ".incoming.ddn.slow.safetensors.0123456789abcdef.part", d / ".incoming.ddn.slow.safetensors"]
    for p in left:
        p.write_bytes(b"x")  # a partial download; a complete one stopped before it was registered
    r = run("models", "rm", "ddn.slow")
    assert r.exit_code == 0 and "removed ddn.slow" in r.output, r.output
    assert not any(p.exists() for p in left)
    with pytest.raises(DdnError):
        hub.remove_model("ddn.slow")  # nothing left: unknown, as before
