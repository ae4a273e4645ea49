"""`ddn models` on awkward inputs: one clear stderr line and an exit code, never a traceback,
never a user's file or model list lost. Downloads use a server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
import time

import pytest
import torch
from safetensors.torch import save
from typer.testing import CliRunner

from ddn_cli import hub
from ddn_cli.cli.app import app
from ddn_cli.errors import DdnError
from ddn_cli.registry import WeightSpec, bundled_manifest


def run(*args: str):
    return CliRunner().invoke(app, list(args))


def one_error_line(r, code: int) -> str:
    """The run failed cleanly: the exit code, no traceback, one 'ddn: error:' line."""
    assert isinstance(r.exception, SystemExit), repr(r.exception)
    assert r.exit_code == code, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ddn: error:"), r.output
    return lines[0]


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


TINY_CONFIG = {"width": 4, "mid": 4, "up_mid": 4, "fuse": 4}


def tiny(**metadata: str) -> bytes:
    """A small valid ddn denoiser file (a few kB); ``metadata`` overrides its metadata."""
    from ddn_cli.models import build_denoiser

    m = build_denoiser(TINY_CONFIG)
    meta = {"arch": "ddn", "task": "denoise", "config": json.dumps(m.config.to_dict()), **metadata}
    return save({k: v.contiguous() for k, v in m.state_dict().items()}, metadata=meta)


@pytest.fixture
def server():
    files: dict[str, bytes] = {}
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
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    httpd.files, httpd.requests = files, requests
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield httpd
    httpd.shutdown()


def serve(server, path: str, data: bytes) -> str:
    server.files[path] = data
    return server.url + path


def pull(url: str, data: bytes, name: str):
    return run("models", "pull", url, "--sha256", sha(data), "--name", name)


def user_names() -> list[str]:
    entries = json.loads((hub.cache_dir() / "user-manifest.json").read_text())["weights"]
    return [d["name"] for d in entries if isinstance(d, dict)]


# ---------------------------------------------------------------- 1. import-pth


@pytest.fixture
def state_dict():
    from ddn_cli.models import build_denoiser

    return build_denoiser({"noise_level": True}).state_dict()


@pytest.mark.parametrize("content", ["tensor", "list", "int_keys", "empty"])
def test_import_pth_refuses_what_is_not_a_state_dict(tmp_path, content):
    src = tmp_path / "in.pth"
    if content == "empty":
        src.write_bytes(b"")
    else:
        obj = {"tensor": torch.zeros(3), "list": [torch.zeros(3)], "int_keys": {1: torch.zeros(3)}}[content]
        torch.save(obj, src)
    line = one_error_line(run("models", "import-pth", str(src), str(tmp_path / "out.safetensors")), 2)
    assert str(src) in line
    assert not (tmp_path / "out.safetensors").exists()


def test_import_pth_never_overwrites_its_input_or_a_folder(tmp_path, state_dict):
    src = tmp_path / "s.pth"
    torch.save(state_dict, src)
    before = src.read_bytes()
    for dst in (str(src), f"{tmp_path}/./s.pth", str(tmp_path / "out.pth")):
        one_error_line(run("models", "import-pth", str(src), dst), 2)
    same = tmp_path / "same.safetensors"  # a .safetensors-named input given as its own output
    torch.save(state_dict, same)
    one_error_line(run("models", "import-pth", str(same), str(same)), 2)
    folder = tmp_path / "dir.safetensors"
    folder.mkdir()
    assert "folder" in one_error_line(run("models", "import-pth", str(src), str(folder)), 2)
    assert src.read_bytes() == before and folder.is_dir() and not any(folder.iterdir())
    r = run("models", "import-pth", str(src), str(tmp_path / "ok.safetensors"))
    assert r.exit_code == 0 and (tmp_path / "ok.safetensors").is_file()


def test_import_pth_mismatch_keeps_the_useful_part(tmp_path, state_dict):
    src = tmp_path / "s.pth"
    torch.save(state_dict, src)
    line = one_error_line(run("models", "import-pth", str(src), str(tmp_path / "o.safetensors"), "--no-noise-level"), 2)
    assert "size mismatch for head.weight" in line and "--no-noise-level" in line
    sd = dict(state_dict)
    gone = list(sd)[3]
    del sd[gone]
    sd["extra.w"] = torch.zeros(1)
    torch.save(sd, src)
    line = one_error_line(run("models", "import-pth", str(src), str(tmp_path / "o.safetensors")), 2)
    assert gone in line and "extra.w" in line


# ---------------------------------------------------------------- 2. one odd model


def test_an_odd_pulled_file_is_refused_and_hides_nothing(server, tmp_path):
    good = tiny()
    assert pull(serve(server, "/good.safetensors", good), good, "ddn.first").exit_code == 0
    odd = tiny(task="detect")
    line = one_error_line(pull(serve(server, "/odd.safetensors", odd), odd, "yolo.odd"), 2)
    assert "detect" in line
    strange = tiny(arch="yolo")
    one_error_line(pull(serve(server, "/strange.safetensors", strange), strange, "yolo.strange"), 2)
    assert run("models", "info", "ddn.first").exit_code == 0
    assert user_names() == ["ddn.first"]
    assert not (hub.weights_dir() / "yolo.odd.safetensors").exists()


BAD_METADATA = {
    "no_metadata": None,
    "unknown_key": {"config": json.dumps({"foo": 1})},
    "negative_width": {"config": json.dumps({"width": -1})},
    "bad_sigma_gain": {"config": json.dumps({"sigma_gain": [[1, -1]]})},
    "non_numeric_gain": {"config": json.dumps({"sigma_gain": [["a", "b"]]})},
    "config_not_a_dict": {"config": json.dumps([1, 2])},
    "tensors_of_another_config": {"config": json.dumps({"width": 8})},
}


def bad_file(kind: str) -> bytes:
    meta = BAD_METADATA[kind]
    return save({"x": torch.zeros(3)}) if meta is None else tiny(**meta)


@pytest.mark.parametrize("kind", BAD_METADATA)
def test_a_file_that_is_not_a_ddn_model_is_refused_at_pull(server, kind):
    """A plain safetensors (no arch) was registered as a ddn denoiser, and any config was
    taken; `ddn denoise -m NAME` then crashed with a traceback."""
    data = bad_file(kind)
    line = one_error_line(pull(serve(server, "/x.safetensors", data), data, "ddn.bad"), 2)
    assert "refused" in line and server.url in line
    assert not (hub.cache_dir() / "user-manifest.json").exists()
    assert not [p.name for p in hub.weights_dir().iterdir() if "ddn.bad" in p.name and not p.name.endswith(".lock")]


@pytest.mark.parametrize("kind", [k for k in BAD_METADATA if k != "no_metadata"])
def test_denoise_with_a_bad_config_in_the_file_is_one_line(tmp_path, kind):
    from PIL import Image

    w = tmp_path / "w.safetensors"
    w.write_bytes(bad_file(kind))
    img = tmp_path / "in.png"
    Image.new("RGB", (8, 8)).save(img)
    r = run("denoise", str(img), str(tmp_path / "out.png"), "-m", str(w), "--sigma", "25")
    assert str(w) in one_error_line(r, 2)


def test_high_level_networks_can_still_be_pulled(server):
    from ddn_cli.models import build_resnet9, build_resunet_s

    for arch, task, build in (("resnet9", "classifier", build_resnet9), ("resunet_s", "segmenter", build_resunet_s)):
        cfg = {"width": 4, "num_classes": 3}
        data = save({k: v.contiguous() for k, v in build(cfg).state_dict().items()},
                    metadata={"arch": arch, "task": task, "config": json.dumps(cfg)})
        r = pull(serve(server, f"/{arch}.safetensors", data), data, f"{arch}.mine")
        assert r.exit_code == 0, r.output
    assert user_names() == ["resnet9.mine", "resunet_s.mine"]
    wrong = tiny(task="classifier")  # a denoiser that calls itself a classifier
    assert "task 'classifier'" in one_error_line(pull(serve(server, "/w.safetensors", wrong), wrong, "ddn.cls2"), 2)


def test_one_bad_entry_hides_and_erases_nothing():
    spec = WeightSpec(name="ddn.first", arch="ddn", task="denoise", file="ddn.first.safetensors", sha256="1" * 64,
                      size=3, license="MIT", config={}, training={}, metrics={})
    bad = {**spec.to_dict(), "name": "yolo.odd", "file": "yolo.odd.safetensors", "task": "detect"}
    wrong_type = {**spec.to_dict(), "name": "ddn.typo", "urls": 5}
    shadow = {**spec.to_dict(), "name": bundled_manifest().defaults["denoise"]}
    p = hub.cache_dir() / "user-manifest.json"
    p.write_text(json.dumps({"schema": 1, "weights": [spec.to_dict(), bad, wrong_type, shadow, "junk"]}))
    assert [s.name for s in hub.user_specs()] == ["ddn.first"]
    assert run("models", "info", "ddn.first").exit_code == 0
    hub.add_user_spec(WeightSpec(**{**spec.__dict__, "name": "ddn.second"}))
    assert "ddn.first" in user_names() and "ddn.second" in user_names() and "yolo.odd" in user_names()
    assert hub.remove_user_spec("ddn.second") and "ddn.first" in user_names()
    r = run("models", "rm", "yolo.odd")  # an invalid entry can still be removed by name
    assert r.exit_code == 0 and "yolo.odd" not in user_names() and "ddn.first" in user_names()


def test_an_unreadable_user_manifest_is_never_overwritten():
    p = hub.cache_dir() / "user-manifest.json"
    p.write_text('{"schema": 1, "weights": [')
    assert hub.user_specs() == []
    spec = WeightSpec(name="ddn.new", arch="ddn", task="denoise", file="ddn.new.safetensors", sha256="1" * 64,
                      size=3, license="MIT", config={}, training={}, metrics={})
    with pytest.raises(DdnError) as e:
        hub.add_user_spec(spec)
    assert "user-manifest.json" in str(e.value)
    assert p.read_text() == '{"schema": 1, "weights": ['


# ---------------------------------------------------------------- 3. bundled names


def test_pull_refuses_a_bundled_models_name(server):
    data = tiny()
    taken = bundled_manifest().defaults["denoise"]
    line = one_error_line(pull(serve(server, "/w.safetensors", data), data, taken), 2)
    assert "bundled" in line and server.requests == []
    r = run("models", "list", "--json")
    assert [m["name"] for m in json.loads(r.output)].count(taken) == 1


# ---------------------------------------------------------------- 4. verify a missing file


def test_verify_reports_a_missing_file(server):
    data = tiny()
    assert pull(serve(server, "/w.safetensors", data), data, "ddn.mine").exit_code == 0
    assert run("models", "verify", "ddn.mine").exit_code == 0
    (hub.weights_dir() / "ddn.mine.safetensors").unlink()
    for args in (("models", "verify", "ddn.mine"), ("models", "verify")):
        r = run(*args)
        assert r.exit_code == 1 and "MISS ddn.mine" in r.output and "pull ddn.mine" in r.output, r.output


# ---------------------------------------------------------------- 5. read-only cache


def test_rm_in_a_read_only_cache_is_one_line(server, monkeypatch):
    data = tiny()
    assert pull(serve(server, "/w.safetensors", data), data, "ddn.mine").exit_code == 0

    def refuse(self, missing_ok=False):
        raise PermissionError(13, "Permission denied", str(self))

    with monkeypatch.context() as m:
        m.setattr(type(hub.cache_dir()), "unlink", refuse)
        line = one_error_line(run("models", "rm", "ddn.mine"), 1)
    assert "DDN_HOME" in line and "ddn.mine.safetensors" in line
    assert user_names() == ["ddn.mine"] and (hub.weights_dir() / "ddn.mine.safetensors").is_file()


def test_pull_in_a_read_only_cache_is_one_line(server, monkeypatch):
    data = tiny()
    url = serve(server, "/w.safetensors", data)

    def no_new_files(path, mode="r", *a, **kw):
        if "r" not in mode or "+" in mode:
            raise PermissionError(13, "Permission denied", str(path))
        return open(path, mode, *a, **kw)

    with monkeypatch.context() as m:
        m.setattr(hub, "open", no_new_files, raising=False)  # the lock file, the temp file
        line = one_error_line(pull(url, data, "ddn.new"), 1)
    assert "DDN_HOME" in line and str(hub.weights_dir()) in line
    assert pull(url, data, "ddn.new").exit_code == 0

    import ddn_cli.atomic

    def refuse(path, data):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(ddn_cli.atomic, "write_bytes", refuse)  # already cached: only the list is written
    line = one_error_line(pull(url, data, "ddn.new"), 1)
    assert "DDN_HOME" in line and "user-manifest.json" in line


def test_a_really_read_only_cache(server):
    data = tiny()
    url = serve(server, "/w.safetensors", data)
    assert pull(url, data, "ddn.mine").exit_code == 0
    for d in (hub.weights_dir(), hub.cache_dir()):
        d.chmod(0o555)
    try:
        try:
            (hub.cache_dir() / "probe").touch()
        except PermissionError:
            pass
        else:
            pytest.skip("file modes are not enforced here (root with CAP_DAC_OVERRIDE)")
        for args in (("models", "rm", "ddn.mine"), ("models", "pull", url, "--sha256", sha(data), "--name", "ddn.x"),
                     ("models", "pull", url, "--sha256", sha(data), "--name", "ddn.mine")):
            assert "DDN_HOME" in one_error_line(run(*args), 1)
    finally:
        for d in (hub.weights_dir(), hub.cache_dir()):
            d.chmod(0o755)


# ---------------------------------------------------------------- 6. minor


def test_a_malformed_sha256_is_refused_before_downloading(server):
    url = serve(server, "/w.safetensors", tiny())
    line = one_error_line(run("models", "pull", url, "--sha256", "xyz", "--name", "ddn.x"), 2)
    assert "64 hex" in line and server.requests == []


def test_path_of_an_uncached_model_does_not_blame_offline_mode(server):
    data = tiny()
    assert pull(serve(server, "/w.safetensors", data), data, "ddn.mine").exit_code == 0
    (hub.weights_dir() / "ddn.mine.safetensors").unlink()
    line = one_error_line(run("models", "path", "ddn.mine"), 2)
    assert "offline" not in line and "ddn models pull ddn.mine" in line


def test_locks_are_exclusive_and_leave_no_files(server, tmp_path):
    data = tiny()
    assert pull(serve(server, "/w.safetensors", data), data, "ddn.mine").exit_code == 0
    assert not [p.name for p in hub.cache_dir().rglob("*.lock")]
    lock, inside, seen, errors = tmp_path / "x.lock", [], [], []

    def worker():
        try:
            for _ in range(30):
                with hub.file_lock(lock):
                    inside.append(1)
                    seen.append(len(inside))
                    time.sleep(0.0005)
                    inside.pop()
        except Exception as e:  # noqa: BLE001 - reported by the assert below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors and len(seen) == 120 and max(seen) == 1 and not lock.exists()


def test_a_refused_pull_keeps_the_good_file_pulled_earlier_under_that_name(tmp_path):
    """The refused file used to be downloaded over NAME.safetensors and then deleted, taking
    the earlier, good file with it (`verify` then said MISS)."""
    import hashlib
    import threading
    from functools import partial
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    import torch
    from safetensors.torch import save_file

    from ddn_cli import hub
    from ddn_cli.errors import UnsafeWeights
    from ddn_cli.registry import resolve_weights

    srv_dir = tmp_path / "srv"
    srv_dir.mkdir()
    good = srv_dir / "good.safetensors"
    good.write_bytes(resolve_weights(None).read_bytes())  # the bundled denoiser, a valid model file
    odd = srv_dir / "odd.safetensors"
    save_file({"x": torch.zeros(3)}, odd, metadata={"task": "detect"})
    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *a):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(srv_dir)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        sha = hashlib.sha256(good.read_bytes()).hexdigest()
        dest = hub.pull_url(f"{base}/good.safetensors", sha, "ddn.mine")
        before = dest.read_bytes()
        with pytest.raises(UnsafeWeights):
            hub.pull_url(f"{base}/odd.safetensors", hashlib.sha256(odd.read_bytes()).hexdigest(), "ddn.mine")
        assert dest.read_bytes() == before
        assert not [p for p in dest.parent.iterdir() if p.name.startswith(".incoming")]
    finally:
        server.shutdown()
