"""Downloads against a real HTTP server on 127.0.0.1 (no network needed)."""

import hashlib
import http.server
import json
import threading
import time

import pytest
from typer.testing import CliRunner

from ddn_cli import hub
from ddn_cli.cli.app import app
from ddn_cli.errors import ChecksumMismatch, WeightsNotFound
from ddn_cli.weightfile import save_weights


@pytest.fixture(scope="module")
def payload(tmp_path_factory) -> bytes:
    p = tmp_path_factory.mktemp("w") / "w.safetensors"
    from ddn_cli.models import build_denoiser

    m = build_denoiser()
    save_weights(m.state_dict(), p, {"arch": "ddn", "task": "denoise", "config": m.config.to_dict()})
    return p.read_bytes()


class Server:
    """Serves ``files`` with scripted behaviours per path."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.behaviour: dict[str, list[str]] = {}  # path -> queue of: ok, 500, drop, html, slow, norange
        self.requests: list[tuple[str, str | None]] = []
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                outer.requests.append((self.path, self.headers.get("Range")))
                q = outer.behaviour.get(self.path, [])
                mode = q.pop(0) if q else "ok"
                data = outer.files.get(self.path)
                if data is None or mode == "404":
                    self.send_error(404)
                    return
                if mode == "500":
                    self.send_error(500)
                    return
                if mode == "html":
                    body = b"<!DOCTYPE html><html><body>login</body></html>"
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                start = 0
                rng = self.headers.get("Range")
                if rng and mode != "norange":
                    start = int(rng.split("=")[1].split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                body = data[start:]
                if mode == "drop":
                    self.wfile.write(body[: len(body) // 3])
                    self.wfile.flush()
                    self.connection.shutdown(2)
                    return
                if mode == "slow":
                    time.sleep(3)
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


def cache_listing() -> list[str]:
    d = hub.weights_dir()
    return sorted(p.name for p in d.iterdir()) if d.is_dir() else []


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def fast(**kw):
    return dict(retries=3, timeout=kw.pop("timeout", 5.0), backoff=0.01, **kw)


def test_good_download(server, payload):
    server.files["/w.safetensors"] = payload
    dest = hub.weights_dir() / "w.safetensors"
    p = hub.download([server.url + "/w.safetensors"], dest, sha(payload), len(payload), **fast())
    assert p.read_bytes() == payload
    assert [n for n in cache_listing() if not n.endswith(".lock")] == ["w.safetensors"]


def test_wrong_hash_deletes_temp_and_leaves_cache(server, payload):
    server.files["/w.safetensors"] = payload
    dest = hub.weights_dir() / "w.safetensors"
    with pytest.raises(ChecksumMismatch) as e:
        hub.download([server.url + "/w.safetensors"], dest, "0" * 64, len(payload), **fast())
    assert "expected" in str(e.value) and "got" in str(e.value)
    assert [n for n in cache_listing() if not n.endswith(".lock")] == []


def test_truncated_body_is_not_cached(server, payload):
    server.files["/w.safetensors"] = payload[:100]
    dest = hub.weights_dir() / "w.safetensors"
    with pytest.raises(hub.DownloadError):  # a clean, user-facing error, not a crash
        hub.download([server.url + "/w.safetensors"], dest, sha(payload), len(payload), **fast())
    assert not dest.exists()


def test_html_is_never_cached(server, payload):
    server.files["/w.safetensors"] = payload
    server.behaviour["/w.safetensors"] = ["html"] * 5
    dest = hub.weights_dir() / "w.safetensors"
    with pytest.raises(hub.DownloadError) as e:
        hub.download([server.url + "/w.safetensors"], dest, sha(payload), len(payload), **fast())
    assert "HTML" in str(e.value)
    assert not dest.exists()


def test_404_is_a_clear_error(server):
    dest = hub.weights_dir() / "w.safetensors"
    with pytest.raises(hub.DownloadError) as e:
        hub.download([server.url + "/missing"], dest, "0" * 64, 10, **fast())
    assert "404" in str(e.value)
    assert len([r for r in server.requests if r[0] == "/missing"]) == 1  # not retried


def test_500_then_success_retries(server, payload):
    server.files["/w.safetensors"] = payload
    server.behaviour["/w.safetensors"] = ["500", "500"]
    dest = hub.weights_dir() / "w.safetensors"
    hub.download([server.url + "/w.safetensors"], dest, sha(payload), len(payload), **fast())
    assert dest.read_bytes() == payload and len(server.requests) == 3


def test_dropped_connection_resumes_with_range(server, payload):
    server.files["/w.safetensors"] = payload
    server.behaviour["/w.safetensors"] = ["drop"]
    dest = hub.weights_dir() / "w.safetensors"
    hub.download([server.url + "/w.safetensors"], dest, sha(payload), len(payload), **fast())
    assert dest.read_bytes() == payload
    assert server.requests[1][1] is not None and server.requests[1][1].startswith("bytes=")


def test_server_without_range_restarts_cleanly(server, payload):
    server.files["/w.safetensors"] = payload
    server.behaviour["/w.safetensors"] = ["drop", "norange"]
    dest = hub.weights_dir() / "w.safetensors"
    hub.download([server.url + "/w.safetensors"], dest, sha(payload), len(payload), **fast())
    assert dest.read_bytes() == payload


def test_slow_server_times_out(server, payload):
    server.files["/w.safetensors"] = payload
    server.behaviour["/w.safetensors"] = ["slow"] * 5
    dest = hub.weights_dir() / "w.safetensors"
    t = time.time()
    with pytest.raises(hub.DownloadError):
        hub.download([server.url + "/w.safetensors"], dest, sha(payload), len(payload), retries=2, timeout=0.5,
                     backoff=0.01)
    assert time.time() - t < 10 and not dest.exists()


def test_two_concurrent_pulls_end_with_one_good_file(server, payload):
    server.files["/w.safetensors"] = payload
    dest = hub.weights_dir() / "w.safetensors"
    errors = []

    def pull():
        try:
            hub.download([server.url + "/w.safetensors"], dest, sha(payload), len(payload), **fast())
        except Exception as e:  # pragma: no cover
            errors.append(e)

    ts = [threading.Thread(target=pull) for _ in range(2)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    assert not errors and dest.read_bytes() == payload
    assert [n for n in cache_listing() if not n.endswith(".lock")] == ["w.safetensors"]
    assert len(server.requests) == 1  # the second waited for the lock and found the file


def test_path_traversal_in_file_names_is_refused():
    with pytest.raises(hub.DownloadError):
        hub.safe_cache_path("../../etc/passwd")
    with pytest.raises(hub.DownloadError):
        hub.safe_cache_path("a/b.safetensors")


def test_pull_url_registers_user_model_and_offline_mode(server, payload, tmp_path, monkeypatch):
    server.files["/mine.safetensors"] = payload
    r = CliRunner().invoke(app, ["models", "pull", server.url + "/mine.safetensors", "--sha256", sha(payload),
                                 "--name", "ddn.mine"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["models", "list", "--json"])
    names = {m["name"]: m for m in json.loads(r.output)}
    assert names["ddn.mine"]["where"] == "cached"
    # offline with the file cached: works; the cached model denoises
    monkeypatch.setenv("DDN_OFFLINE", "1")
    assert hub.fetch("ddn.mine").read_bytes() == payload
    assert CliRunner().invoke(app, ["models", "verify", "ddn.mine"]).exit_code == 0
    # offline without the file: a clear message, nothing fetched
    (hub.weights_dir() / "ddn.mine.safetensors").unlink()
    n = len(server.requests)
    with pytest.raises(WeightsNotFound) as e:
        hub.fetch("ddn.mine")
    assert "offline" in str(e.value) and len(server.requests) == n
    r = CliRunner().invoke(app, ["models", "rm", "ddn.mine"])
    assert r.exit_code == 0


def test_pull_url_requires_checksum(server):
    r = CliRunner().invoke(app, ["models", "pull", server.url + "/x.safetensors", "--name", "ddn.x"])
    assert r.exit_code == 2 and "sha256" in r.output


def test_mirror_is_used_for_registered_models(server, payload, monkeypatch):
    from ddn_cli.registry import WeightSpec

    spec = WeightSpec(name="ddn.m", arch="ddn", task="denoise", file="m.safetensors", sha256=sha(payload),
                      size=len(payload), license="MIT", config={}, training={}, metrics={})
    hub.add_user_spec(spec)
    server.files["/mirror/m.safetensors"] = payload
    monkeypatch.setenv("DDN_MIRROR", server.url + "/mirror")
    assert hub.fetch("ddn.m").read_bytes() == payload


def test_bundled_models_need_no_network(monkeypatch):
    monkeypatch.setenv("DDN_OFFLINE", "1")
    from ddn_cli.registry import resolve_weights

    assert resolve_weights(None).is_file()


def test_a_transfer_cut_off_without_a_known_size_is_resumed(server, payload):
    """A URL pull has no size from a manifest: a connection closed early used to end as a
    checksum mismatch, not retried; the server's Content-Length now tells, and the rest is
    fetched with Range."""
    server.files["/w.safetensors"] = payload
    server.behaviour["/w.safetensors"] = ["drop"]
    dest = hub.weights_dir() / "w.safetensors"
    p = hub.download([server.url + "/w.safetensors"], dest, sha(payload), None, **fast())
    assert p.read_bytes() == payload
    assert [r for _, r in server.requests][1:] == [f"bytes={len(payload) // 3}-"]


def test_each_retry_is_told_so_a_silent_server_is_not_minutes_of_silence(server, payload):
    server.files["/w.safetensors"] = payload
    server.behaviour["/w.safetensors"] = ["500", "500"]
    told = []
    dest = hub.weights_dir() / "w.safetensors"
    hub.download([server.url + "/w.safetensors"], dest, sha(payload), len(payload), on_retry=told.append, **fast())
    assert len(told) == 2 and all("HTTP 500" in m and "trying again" in m for m in told), told
    assert told[0].endswith("(2 of 3)") and told[1].endswith("(3 of 3)")


def test_models_pull_prints_the_retries_even_without_a_terminal(server, payload):
    from typer.testing import CliRunner

    server.files["/w.safetensors"] = payload
    server.behaviour["/w.safetensors"] = ["500"]
    r = CliRunner().invoke(app, ["models", "pull", server.url + "/w.safetensors", "--sha256", sha(payload),
                                 "--name", "ddn.retried"])
    assert r.exit_code == 0, r.output
    assert "HTTP 500; trying again (2 of 4)" in r.output


def test_two_pulls_of_one_name_at_once_both_succeed(server, payload):
    """The second pull found the first's staged file, returned it as done, and then failed to
    read it once the first had renamed it (3 runs in 4)."""
    from concurrent.futures import ThreadPoolExecutor

    server.files["/w.safetensors"] = payload
    server.behaviour["/w.safetensors"] = ["slow"]  # the first transfer takes a while
    with ThreadPoolExecutor(2) as ex:
        results = list(ex.map(lambda _: hub.pull_url(server.url + "/w.safetensors", sha(payload), "ddn.twice"),
                              range(2)))
    assert results[0] == results[1] and results[0].read_bytes() == payload
    assert [n for n in cache_listing() if not n.endswith(".lock")] == ["ddn.twice.safetensors"]
    assert [s.name for s in hub.user_specs()] == ["ddn.twice"]


def test_a_full_cache_disk_is_not_retried_as_a_network_error(server, payload, monkeypatch):
    import errno

    server.files["/w.safetensors"] = payload
    real_open = open
    calls = []

    class Full:
        def __init__(self, f):
            self.f = f

        def write(self, b):
            calls.append(1)
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, k):
            return getattr(self.f, k)

        def __enter__(self):
            return self

        def __exit__(self, *a):
            self.f.close()

    def fake_open(p, mode="r", *a, **k):
        f = real_open(p, mode, *a, **k)
        return Full(f) if str(p).endswith(".part") else f

    monkeypatch.setattr("builtins.open", fake_open)
    told = []
    with pytest.raises(hub.OutputError, match="No space left on device") as e:
        hub.download([server.url + "/w.safetensors"], hub.weights_dir() / "w.safetensors", sha(payload), len(payload),
                     on_retry=told.append, **fast())
    assert "DDN_HOME" in str(e.value) and told == [] and len(calls) == 1
    assert [n for n in cache_listing() if not n.endswith(".lock")] == []


def test_a_partial_download_of_another_file_is_not_resumed(server, payload):
    """An interrupted pull of file A under a name, then a pull of file B under that name: B's
    download resumed A's partial file, failed its checksum although the user's hash was right,
    and only the third try worked. Partial files are named after their hash now."""
    other = payload[::-1]
    dest = hub.weights_dir() / "w.safetensors"
    dest.parent.mkdir(parents=True, exist_ok=True)
    stale = dest.with_name(f"w.safetensors.{sha(other)[:16]}.part")
    stale.write_bytes(other[: len(other) // 2])  # what an interrupted download of the other file left
    server.files["/w.safetensors"] = payload
    p = hub.download([server.url + "/w.safetensors"], dest, sha(payload), len(payload), **fast())
    assert p.read_bytes() == payload and not stale.exists()
    assert all(r[1] is None for r in server.requests)  # nothing of the other file was resumed
    # its own partial download is still resumed
    p.unlink()
    own = dest.with_name(f"w.safetensors.{sha(payload)[:16]}.part")
    own.write_bytes(payload[:100])
    hub.download([server.url + "/w.safetensors"], dest, sha(payload), len(payload), **fast())
    assert dest.read_bytes() == payload and server.requests[-1][1] == "bytes=100-"


def test_models_rm_deletes_partial_downloads_too(server, payload):
    server.files["/mine.safetensors"] = payload
    r = CliRunner().invoke(app, ["models", "pull", server.url + "/mine.safetensors", "--sha256", sha(payload),
                                 "--name", "ddn.mine"])
    assert r.exit_code == 0, r.output
    d = hub.weights_dir()
    (d / "ddn.mine.safetensors.0123456789abcdef.part").write_bytes(b"x")
    (d / ".incoming.ddn.mine.safetensors.0123456789abcdef.part").write_bytes(b"x")
    assert CliRunner().invoke(app, ["models", "rm", "ddn.mine"]).exit_code == 0
    assert [n for n in cache_listing() if not n.endswith(".lock")] == []
