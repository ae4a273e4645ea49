import json
import os

import pytest
import torch

from ddn_cli.errors import UnsafeWeights, WeightsNotFound
from ddn_cli.hub import sha256_file
from ddn_cli.models import ARCHS
from ddn_cli.registry import ManifestError, bundled_dir, bundled_manifest, parse_manifest, resolve_weights
from ddn_cli.weightfile import load_weights, save_weights


def test_every_bundled_weight_is_valid_and_loads():
    man = bundled_manifest()
    assert man.specs, "the manifest lists no weights"
    assert man.defaults["denoise"] in man.names()
    for spec in man.specs:
        p = bundled_dir() / spec.file
        assert p.is_file(), spec.name
        assert p.stat().st_size == spec.size and sha256_file(p) == spec.sha256, spec.name
        sd, meta = load_weights(p)
        model = ARCHS[spec.arch](meta["config"])
        model.load_state_dict(sd)
        assert meta["config"] == spec.config
        # trained, measured, honest about where it comes from
        assert spec.training.get("steps", 0) > 0 and spec.training.get("data")
        for url in spec.urls:
            assert url.startswith("https://")
        model.eval()
        if spec.task in ("denoise", "seg", "cls"):
            with torch.no_grad():
                x = torch.rand(1, 3, 16, 16)
                y = model(x, 0.1) if model.config.noise_level else model(x)
            assert y.shape == (1, 3, 16, 16)
            if spec.task == "denoise":
                assert spec.metrics.get("CBSD68", {}).get("unclipped")
            else:  # guided denoisers: measured on their task, trained through a frozen network
                assert spec.metrics.get("psnr") and spec.training.get("lambda") is not None
        elif spec.task == "classifier":
            assert spec.metrics.get("val_acc", 0) > 0 and spec.extra.get("classes")
            with torch.no_grad():
                assert model(torch.rand(1, 3, 32, 32)).shape == (1, len(spec.extra["classes"]))
        else:
            assert spec.task == "segmenter" and spec.metrics["CamVid_val"]["miou"] > 0
            with torch.no_grad():
                assert model(torch.rand(1, 3, 36, 50)).shape == (1, len(spec.extra["classes"]), 36, 50)


def _entry(**kw):
    d = {"name": "ddn.x", "arch": "ddn", "task": "denoise", "file": "x.safetensors", "sha256": "0" * 64, "size": 1,
         "license": "MIT", "config": {}, "training": {}, "metrics": {}, "urls": []}
    d.update(kw)
    return d


@pytest.mark.parametrize("bad", [
    {"file": "../evil.safetensors"}, {"file": "/etc/passwd"}, {"file": "x.pth"}, {"sha256": "abc"},
    {"name": "NoDot"}, {"size": 0}, {"urls": ["ftp://x"]}, {"task": "nope"},
])
def test_manifest_schema_rejects_bad_entries(bad):
    with pytest.raises(ManifestError):
        parse_manifest({"schema": 1, "weights": [_entry(**bad)]})


def test_manifest_rejects_missing_fields_and_unknown_default():
    e = _entry()
    del e["sha256"]
    with pytest.raises(ManifestError):
        parse_manifest({"schema": 1, "weights": [e]})
    with pytest.raises(ManifestError):
        parse_manifest({"schema": 1, "defaults": {"denoise": "ddn.nope"}, "weights": [_entry()]})


def test_unknown_name_suggests_closest():
    with pytest.raises(WeightsNotFound) as e:
        resolve_weights("ddn.colour-sigma")
    assert "did you mean ddn.color-sigma" in str(e.value)


def test_pickle_files_are_refused(tmp_path):
    p = tmp_path / "w.pth"
    torch.save({"a": torch.zeros(1)}, p)
    with pytest.raises(UnsafeWeights) as e:
        load_weights(p)
    assert "pickle" in str(e.value)
    q = tmp_path / "renamed.safetensors"
    q.write_bytes(p.read_bytes())
    with pytest.raises(UnsafeWeights):
        load_weights(q)


def test_safetensors_whose_header_length_looks_like_pickle_still_load(tmp_path):
    # a header length of 0x..80 starts the file with pickle's opening byte; one such
    # file came back from a real training run and was refused before this was fixed
    p = tmp_path / "w.safetensors"
    for pad in range(300):
        save_weights({"a": torch.arange(3.0)}, p, {"arch": "ddn", "note": "x" * pad})
        if p.read_bytes()[:1] == b"\x80":
            break
    assert p.read_bytes()[:1] == b"\x80"
    sd, meta = load_weights(p)
    assert torch.equal(sd["a"], torch.arange(3.0)) and meta["note"].startswith("x")
    legacy = tmp_path / "legacy.safetensors"  # old non-zip torch.save: raw pickle, starts 0x80
    torch.save({"a": torch.zeros(1)}, legacy, _use_new_zipfile_serialization=False)
    assert legacy.read_bytes()[:1] == b"\x80"
    with pytest.raises(UnsafeWeights):
        load_weights(legacy)


def test_save_and_load_roundtrip(tmp_path):
    p = tmp_path / "w.safetensors"
    save_weights({"a": torch.arange(3.0)}, p, {"arch": "ddn", "config": {"k": 1}})
    sd, meta = load_weights(p)
    assert torch.equal(sd["a"], torch.arange(3.0)) and meta["config"] == {"k": 1}


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_weights_and_checkpoints_get_the_umask_permissions(tmp_path, mask):
    """Trained weights and checkpoints (and the user's model list, written by the same
    function) are files to share like any other: 0o666 less the umask (they were 0o600,
    mkstemp's mode, whatever the umask), with no temp file left beside them."""
    from ddn_cli.training.checkpoint import save_checkpoint

    old = os.umask(mask)
    try:
        save_weights({"a": torch.arange(3.0)}, tmp_path / "runs" / "w.safetensors", {"arch": "ddn"})
        save_checkpoint(tmp_path / "runs" / "w.ckpt", {"step": 3})
    finally:
        os.umask(old)
    for name in ("w.safetensors", "w.ckpt"):
        assert (tmp_path / "runs" / name).stat().st_mode & 0o777 == 0o666 & ~mask, name
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["w.ckpt", "w.safetensors"]


def test_local_path_resolution(tmp_path, default_weights):
    assert resolve_weights(str(default_weights)) == default_weights
    with pytest.raises(WeightsNotFound):
        resolve_weights(str(tmp_path / "missing.safetensors"))


def test_manifest_file_is_plain_json():
    json.loads((bundled_dir() / "manifest.json").read_text())


def test_import_pth_converts_trusted_state_dicts(tmp_path, default_weights):
    from typer.testing import CliRunner

    from ddn_cli.cli.app import app

    sd, _ = load_weights(default_weights)
    torch.save(sd, tmp_path / "legacy.pth")
    r = CliRunner().invoke(app, ["models", "import-pth", str(tmp_path / "legacy.pth"), str(tmp_path / "new.safetensors")])
    assert r.exit_code == 0, r.output
    sd2, meta = load_weights(tmp_path / "new.safetensors")
    assert all(torch.equal(sd[k], sd2[k]) for k in sd) and meta["arch"] == "ddn"

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Evil()}, tmp_path / "evil.pth")
    r = CliRunner().invoke(app, ["models", "import-pth", str(tmp_path / "evil.pth"), str(tmp_path / "e.safetensors")])
    assert r.exit_code == 2 and "pwned" not in r.output and not (tmp_path / "e.safetensors").exists()


def test_task_denoiser_follows_the_manifest_defaults(monkeypatch):
    """`ddn segment` / `ddn classify` denoise with their task's default when the manifest names one
    (set by benchmarks/release_manifest.py only for a guided denoiser that measured better than the
    reconstruction-only default), and with the default denoiser otherwise."""
    from ddn_cli import registry

    man = parse_manifest({"schema": 1, "defaults": {"denoise": "ddn.x", "seg": "ddn.s"},
                          "weights": [_entry(), _entry(name="ddn.s", task="seg", file="s.safetensors")]})
    monkeypatch.setattr(registry, "bundled_manifest", lambda: man)
    assert registry.task_denoiser("seg") == "ddn.s"
    assert registry.task_denoiser("cls") == "ddn.x"
