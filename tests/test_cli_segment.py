"""ddn segment / ddn classify / ddn denoise --then / ddn eval seg|cls, with tiny networks."""

import json

import numpy as np
import pytest
import torch
from conftest import file_hash, no_partial_files, noisy, smooth_image
from PIL import Image
from test_cascade import tiny_camvid, tiny_cifar, tiny_classifier, tiny_segmenter
from typer.testing import CliRunner

from ddn_cli.cli.app import app
from ddn_cli.highlevel import load_highlevel
from ddn_cli.registry import bundled_manifest
from ddn_cli.segment import segment_array

runner = CliRunner()


@pytest.fixture
def seg_net(tmp_path):
    return tiny_segmenter(tmp_path / "tiny-seg.safetensors")


def test_segment_writes_mask_overlay_and_coverage(tmp_path, seg_net):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    Image.fromarray(noisy(smooth_image(45, 61), 25)).save(src / "a.png")
    Image.fromarray(noisy(smooth_image(30, 40, seed=3), 25)).convert("L").save(src / "sub" / "g.png")
    (src / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    (src / "sub" / "notes[red].txt").write_text("not an image")  # brackets: rich markup must not eat them
    before = {p: file_hash(p) for p in src.rglob("*") if p.is_file()}
    out = tmp_path / "out"
    r = runner.invoke(app, ["segment", str(src), str(out), "--segmenter", str(seg_net), "--sigma", "25",
                            "--json", str(tmp_path / "r.json")])
    assert r.exit_code == 1, r.output  # bad.png failed, the others were segmented
    assert f"skipped (not a supported image): {src / 'sub' / 'notes[red].txt'}" in r.output  # said, as classify does
    recs = {rec["input"].split("/")[-1]: rec for rec in json.loads((tmp_path / "r.json").read_text())}
    assert recs["bad.png"]["status"] == "failed" and "bad.png" in recs["bad.png"]["error"]
    for name, shape, mask in (("a.png", (45, 61), out / "a.mask.png"), ("g.png", (30, 40), out / "sub" / "g.mask.png")):
        rec = recs[name]
        assert rec["status"] == "ok" and rec["sigma"] == 25 and rec["mask"] == str(mask)
        m = Image.open(mask)
        assert m.mode == "P" and m.size == shape[::-1]
        assert int(np.asarray(m).max()) < 11
        assert abs(sum(rec["coverage"].values()) - 1) < 1e-3
        assert Image.open(rec["overlay"]).size == shape[::-1]
    assert {p: file_hash(p) for p in before} == before  # inputs untouched
    assert no_partial_files(out)
    # a rerun skips finished outputs; --no-denoise skips the denoiser
    r = runner.invoke(app, ["segment", str(src / "a.png"), str(out), "--segmenter", str(seg_net), "--json", "-"])
    assert r.exit_code == 0 and json.loads(r.stdout)[0]["status"] == "skipped"
    r = runner.invoke(app, ["segment", str(src / "a.png"), str(out), "--segmenter", str(seg_net), "--no-denoise",
                            "--overwrite", "--json", "-"])
    assert r.exit_code == 0 and json.loads(r.stdout)[0]["sigma"] is None


def test_segment_wrong_weights_is_one_clear_line(tmp_path, default_weights):
    Image.fromarray(smooth_image(32, 32)).save(tmp_path / "a.png")
    r = runner.invoke(app, ["segment", str(tmp_path / "a.png"), str(tmp_path / "o"), "--segmenter", str(default_weights)])
    assert r.exit_code != 0 and "not a segmenter" in r.output and "Traceback" not in r.output


def test_large_images_are_tiled_and_rescaled(seg_net):
    net = load_highlevel(str(seg_net), "segmenter", torch.device("cpu"))
    img = np.random.default_rng(0).random((70, 1300, 3), dtype=np.float32)
    lab = segment_array(net, img, tile=256, overlap=32)  # 1 x 6 tiles
    assert lab.shape == (70, 1300) and lab.dtype == np.uint8
    whole = segment_array(net, img, tile=2048, overlap=32)
    assert (lab == whole).mean() > 0.95  # blended tiles agree with the untiled result
    net.input_size = (36, 48)  # trained at short side 36: a 72-px image is segmented at half scale
    lab = segment_array(net, np.random.default_rng(1).random((72, 96, 3), dtype=np.float32))
    assert lab.shape == (72, 96)
    assert net.work_scale(72, 96) == 0.5 and net.work_scale(30, 40) == 1.0


def test_classify_with_a_given_classifier(tmp_path):
    clf = tiny_classifier(tmp_path / "tiny-cls.safetensors")
    Image.fromarray(noisy(smooth_image(64, 48), 30)).save(tmp_path / "a.png")
    (tmp_path / "bad.png").write_bytes(b"nope")
    r = runner.invoke(app, ["classify", str(tmp_path), "--classifier", str(clf), "--top-k", "3", "--json", "-"])
    assert r.exit_code == 1
    recs = {rec["input"].split("/")[-1]: rec for rec in json.loads(r.stdout)}
    top = recs["a.png"]["top"]
    assert len(top) == 3 and sum(p for _, p in top) <= 1 + 1e-6 and top[0][1] >= top[1][1] >= top[2][1]
    assert recs["a.png"]["sigma"] > 10 and recs["bad.png"]["status"] == "failed"
    r = runner.invoke(app, ["classify", str(tmp_path / "a.png"), "--classifier", str(clf), "--no-denoise", "--json", "-"])
    assert r.exit_code == 0 and json.loads(r.stdout)[0]["sigma"] is None


def test_torchvision_classifier_from_its_cache(tmp_path, monkeypatch):
    """torchvision:<model> uses torchvision's weights and class names; here the cache is
    pre-filled (no network), as an offline machine would have it."""
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    w = torchvision.models.get_model_weights("resnet18").DEFAULT
    ckpt = tmp_path / "torch" / "hub" / "checkpoints" / w.url.rsplit("/", 1)[1]
    ckpt.parent.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18().state_dict(), ckpt)
    monkeypatch.setenv("DDN_OFFLINE", "1")
    Image.fromarray(smooth_image(300, 260)).save(tmp_path / "a.png")
    r = runner.invoke(app, ["classify", str(tmp_path / "a.png"), "--classifier", "torchvision:resnet18", "--no-denoise",
                            "--json", "-"])
    assert r.exit_code == 0, r.output
    top = json.loads(r.stdout)[0]["top"]
    assert all(name in w.meta["categories"] for name, _ in top)
    ckpt.unlink()
    r = runner.invoke(app, ["classify", str(tmp_path / "a.png"), "--classifier", "torchvision:resnet18", "--no-denoise"])
    assert r.exit_code != 0 and "DDN_OFFLINE" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, ["classify", str(tmp_path / "a.png"), "--classifier", "torchvision:no_such_net"])
    assert r.exit_code != 0 and "no such model" in r.output


def test_eval_seg_and_cls_tables_json_plot(tmp_path, seg_net, default_weights):
    cam = tiny_camvid(tmp_path / "camvid")
    r = runner.invoke(app, ["eval", "seg", str(cam), "--segmenter", str(seg_net), "--sigma", "0,30",
                            "--denoiser", str(default_weights), "--json", str(tmp_path / "s.json"),
                            "--plot", str(tmp_path / "s.png"), "--precision", "fp32"])
    assert r.exit_code == 0, r.output
    doc = json.loads((tmp_path / "s.json").read_text())
    roles = [v["role"] for v in doc["variants"]]
    assert roles == ["clean", "noisy", "reconstruction"] and doc["metric"] == "mIoU" and doc["images"] == 3
    noisy_v, den_v = doc["variants"][1], doc["variants"][2]
    assert noisy_v["psnr"]["0"] is None and den_v["psnr"]["30"] > noisy_v["psnr"]["30"] + 3
    assert all(0 <= v["metric"][s] <= 1 for v in doc["variants"] for s in ("0", "30"))
    # per-class IoU beside each mIoU: one value per class, whose mean over the classes present is the mIoU
    assert doc["classes"] and all(len(v["per_class"][s]) == len(doc["classes"])
                                  for v in doc["variants"] for s in ("0", "30"))
    for v in doc["variants"]:  # classes neither in the masks nor predicted have no IoU (null), and no say
        per = [x for x in v["per_class"]["30"] if x is not None]
        assert v["metric"]["30"] == pytest.approx(sum(per) / len(per))
    assert Image.open(tmp_path / "s.png").size == (900, 560)
    cif = tiny_cifar(tmp_path / "cifar", 10)
    clf = tiny_classifier(tmp_path / "c.safetensors")
    r = runner.invoke(app, ["eval", "cls", str(cif), "--classifier", str(clf), "--sigma", "15",
                            "--denoiser", str(default_weights), "--json", str(tmp_path / "c.json"), "--precision", "fp32"])
    assert r.exit_code == 0, r.output
    doc = json.loads((tmp_path / "c.json").read_text())
    assert doc["images"] == 10 and doc["metric"] == "top-1"  # one held-out image per class
    assert "classes" not in doc and all("per_class" not in v for v in doc["variants"])


@pytest.mark.skipif("segmenter" not in bundled_manifest().defaults, reason="no bundled segmenter")
def test_denoise_then_segment(tmp_path):
    Image.fromarray(noisy(smooth_image(40, 56), 20)).save(tmp_path / "a.png")
    r = runner.invoke(app, ["denoise", str(tmp_path / "a.png"), str(tmp_path / "out"), "--then", "segment", "--quiet"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "out" / "a.png").is_file() and (tmp_path / "out" / "a.mask.png").is_file()
    r = runner.invoke(app, ["denoise", str(tmp_path / "a.png"), str(tmp_path / "o2"), "--then", "dance"])
    assert r.exit_code == 2


@pytest.mark.skipif("segmenter" not in bundled_manifest().defaults, reason="no bundled segmenter")
def test_denoise_then_segment_on_a_folder_holding_masks(tmp_path):
    """A folder segmented in place (`ddn segment in in`, which README says can be rerun), then
    `ddn denoise in out --then segment`: the masks and overlays were denoised as photos and
    segmented again (x.mask.mask.png), and every real photo failed, all after the denoising."""
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(noisy(smooth_image(40, 56), 20)).save(src / "a.png")
    assert runner.invoke(app, ["segment", str(src), str(src), "--sigma", "20"]).exit_code == 0
    assert sorted(p.name for p in src.iterdir()) == ["a.mask.png", "a.overlay.png", "a.png"]
    r = runner.invoke(app, ["denoise", str(src), str(tmp_path / "out"), "--sigma", "20", "--then", "segment"])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.mask.png", "a.overlay.png", "a.png"]
    # named explicitly, a file called like a mask is denoised; its output would then be a's mask:
    # refused before any work
    r = runner.invoke(app, ["denoise", str(src / "a.png"), str(src / "a.mask.png"), str(tmp_path / "o2"),
                            "--sigma", "20", "--then", "segment"])
    assert r.exit_code == 2 and "would replace one of this run's images" in r.output.replace("\n", ""), r.output
    assert not (tmp_path / "o2").exists()


@pytest.mark.skipif("classifier" not in bundled_manifest().defaults, reason="no bundled classifier")
def test_denoise_then_classify(tmp_path, monkeypatch):
    from ddn_cli.cli import common

    monkeypatch.setattr(common.out, "_width", 300)  # the whole path on one line
    Image.fromarray(noisy(smooth_image(40, 56), 20)).save(tmp_path / "a.png")
    r = runner.invoke(app, ["denoise", str(tmp_path / "a.png"), str(tmp_path / "out"), "--then", "classify", "--quiet"])
    assert r.exit_code == 0, r.output
    assert "a.png" in r.output and (tmp_path / "out" / "a.png").is_file()


@pytest.mark.parametrize("then", ["classify", "segment"])
def test_then_with_json_to_stdout_keeps_stdout_json(tmp_path, then):
    """With `--json -` the denoise report is stdout; the task's table goes to stderr."""
    import subprocess
    import sys

    Image.fromarray(noisy(smooth_image(40, 56), 20)).save(tmp_path / "a.png")
    r = subprocess.run([sys.executable, "-m", "ddn_cli", "denoise", str(tmp_path / "a.png"), str(tmp_path / "out"),
                        "--then", then, "--sigma", "20", "--json", "-"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["summary"]["ok"] == 1
    assert "a.png" in r.stderr  # the table, on stderr


@pytest.mark.skipif("segmenter" not in bundled_manifest().defaults, reason="no bundled segmenter")
def test_segment_keeps_a_mask_another_run_wrote_meanwhile(tmp_path, monkeypatch):
    """Without --overwrite, masks and overlays another `ddn segment` wrote into the same
    folder while this run went were replaced (20 of 30 in a sweep), and a pair could end up
    with one run's mask and the other's overlay. The other run's mask is kept now (skipped)."""
    import ddn_cli.segment as sg

    Image.fromarray(noisy(smooth_image(40, 56), 20)).save(tmp_path / "a.png")
    out = tmp_path / "out"
    real = sg.mask_png

    def mask_then_other_run(labels, palette):
        data = real(labels, palette)
        out.mkdir(exist_ok=True)
        (out / "a.mask.png").write_bytes(b"the other run's mask")  # lands before this run's write
        return data

    monkeypatch.setattr(sg, "mask_png", mask_then_other_run)
    r = runner.invoke(app, ["segment", str(tmp_path / "a.png"), str(out), "--no-denoise", "--json", "-"])
    assert r.exit_code == 0, r.output
    rec = json.loads(r.stdout)[0]
    assert rec["status"] == "skipped" and "appeared while this run was going" in rec["error"]
    assert (out / "a.mask.png").read_bytes() == b"the other run's mask" and not (out / "a.overlay.png").exists()
    assert no_partial_files(out)


@pytest.mark.skipif("segmenter" not in bundled_manifest().defaults, reason="no bundled segmenter")
def test_transparent_pixels_are_neither_measured_nor_labelled(tmp_path):
    """An RGBA image whose right half is transparent over random colours (what editors leave):
    the noise estimate read the hidden colours (sigma 25.7 for an image of about 1), the
    segmenter labelled them and the coverage counted them, and the overlay showed them."""
    from ddn_cli.io import read_image
    from ddn_cli.noise import estimate_sigma

    rgb = noisy(smooth_image(96, 128), 5)
    alpha = np.full((96, 128), 255, np.uint8)
    alpha[:, 64:] = 0
    rgb[:, 64:] = np.random.default_rng(0).integers(0, 256, (96, 64, 3), dtype=np.uint8)
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(tmp_path / "a.png")
    img = read_image(tmp_path / "a.png")
    assert abs(estimate_sigma(img.color, alpha=img.alpha) - 5) < 1.5 and estimate_sigma(img.color) > 15
    r = runner.invoke(app, ["segment", str(tmp_path / "a.png"), str(tmp_path / "out"), "--json", "-"])
    assert r.exit_code == 0, r.output
    rec = json.loads(r.stdout)[0]
    assert rec["sigma"] < 8 and abs(sum(rec["coverage"].values()) - 1) < 1e-3
    mask = np.asarray(Image.open(tmp_path / "out" / "a.mask.png"))
    assert (mask[:, 64:] == 255).all() and (mask[:, :64] < 11).all()
    ov = Image.open(tmp_path / "out" / "a.overlay.png")
    assert ov.mode == "RGBA" and np.array_equal(np.asarray(ov)[..., 3], alpha)


@pytest.mark.skipif("classifier" not in bundled_manifest().defaults, reason="no bundled classifier")
def test_classify_sees_a_transparent_image_as_shown(tmp_path):
    """The classifier got the colours under transparent pixels; it gets the image composited
    over white now, as it shows (and as ddn's JPEG output flattens it)."""
    rgb = smooth_image(32, 32)
    alpha = np.full((32, 32), 255, np.uint8)
    alpha[:, 16:] = 0
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(tmp_path / "a.png")
    shown = rgb.copy()
    shown[:, 16:] = 255
    Image.fromarray(shown).save(tmp_path / "b.png")
    r = runner.invoke(app, ["classify", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "--no-denoise", "--json", "-"])
    assert r.exit_code == 0, r.output
    a, b = json.loads(r.stdout)
    assert a["top"] == b["top"]


def test_overlay_keeps_an_rgb_profile(tmp_path, seg_net):
    """The overlay is in the image's own colours, but was written untagged: a wide-gamut
    image's overlay was shown as sRGB, shifted against the image. An RGB profile is kept; a
    grey one is not (a grey image's overlay is RGB)."""
    from PIL import ImageCms

    rgb_icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    grey_icc = rgb_icc[:16] + b"GRAY" + rgb_icc[20:]
    Image.fromarray(noisy(smooth_image(40, 48), 10)).save(tmp_path / "c.png", icc_profile=rgb_icc)
    Image.fromarray(noisy(smooth_image(40, 48), 10)).convert("L").save(tmp_path / "g.png", icc_profile=grey_icc)
    for name, want in (("c", rgb_icc), ("g", None)):
        r = runner.invoke(app, ["segment", str(tmp_path / f"{name}.png"), str(tmp_path / "out"), "--segmenter",
                                str(seg_net), "--sigma", "10"])
        assert r.exit_code == 0, r.output
        assert Image.open(tmp_path / "out" / f"{name}.overlay.png").info.get("icc_profile") == want


@pytest.mark.parametrize("config", [{"width": 4, "num_classes": 11, "bogus": 1}, {"width": -3}, [4]])
def test_a_segmenter_file_with_a_bad_config_is_one_line(tmp_path, seg_net, config):
    """``--segmenter PATH`` / ``--classifier PATH`` built the network from the file's config
    unguarded: an unknown key or a negative width was a Python traceback."""
    from ddn_cli.weightfile import load_weights, save_weights

    sd, meta = load_weights(seg_net)
    save_weights(sd, tmp_path / "bad.safetensors", {**meta, "config": config})
    Image.fromarray(noisy(smooth_image(24, 32), 10)).save(tmp_path / "a.png")
    r = runner.invoke(app, ["segment", str(tmp_path / "a.png"), str(tmp_path / "o"), "--segmenter",
                            str(tmp_path / "bad.safetensors"), "--no-denoise"])
    assert r.exit_code != 0 and "Traceback" not in r.output and "bad.safetensors" in r.output, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit)
