"""segment, classify and eval on awkward data and command lines (from a review's sweep):
one clear line and a non-zero exit instead of tracebacks, no file destroyed."""

import json

import cv2
import numpy as np
import pytest
from conftest import file_hash, noisy, smooth_image
from PIL import Image
from test_cascade import tiny_camvid, tiny_cifar, tiny_classifier, tiny_segmenter
from typer.testing import CliRunner

from ddn_cli.cli.app import app
from ddn_cli.errors import DdnError, UsageError

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def one_clean_line(r, code=None):
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)  # no traceback
    if code is not None:
        assert r.exit_code == code, r.output
    else:
        assert r.exit_code != 0, r.output


def test_training_and_eval_decoding_uses_ddn_reader(tmp_path):
    """A 16-bit grey PNG came out white (Pillow's RGB conversion clips I;16); a broken file
    was a traceback."""
    from ddn_cli.training.data import decode_rgb8

    g = (smooth_image(20, 24, channels=1)[..., 0].astype(np.uint16) * 257)
    cv2.imwrite(str(tmp_path / "g16.png"), g)
    a = decode_rgb8(tmp_path / "g16.png")
    assert a.dtype == np.uint8 and a.shape == (20, 24, 3)
    assert np.array_equal(a[..., 0], (g // 257).astype(np.uint8)) and np.array_equal(a[..., 0], a[..., 2])
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n junk")
    with pytest.raises(DdnError, match="bad.png"):
        decode_rgb8(tmp_path / "bad.png")
    data = tmp_path / "data"
    data.mkdir()
    Image.fromarray(smooth_image(32, 32)).save(data / "a.png")
    (data / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n junk")
    r = run("eval", "denoise", data, "--sigma", "25")
    one_clean_line(r)
    assert "b.png" in r.output


def test_cifar_folders_that_do_not_fit_are_one_line(tmp_path):
    from ddn_cli.training.classifier import load_split

    with pytest.raises(UsageError, match="airplane: no images"):
        load_split(tmp_path, 0.1)
    cif = tiny_cifar(tmp_path / "c", 6)
    Image.fromarray(smooth_image(40, 40)).save(cif / "cat" / "big.jpg")
    with pytest.raises(UsageError, match="big.jpg: 40x40"):
        load_split(cif, 0.1)
    small = tiny_cifar(tmp_path / "s", 5)  # round(0.5) = 0: no held-out image
    clf = tiny_classifier(tmp_path / "c.safetensors")
    r = run("eval", "cls", small, "--classifier", clf, "--sigma", "15", "--denoiser", "ddn.color-sigma")
    one_clean_line(r, 2)
    assert "held-out part" in r.output
    r = run("eval", "cls", tmp_path, "--classifier", clf, "--sigma", "15")  # the parent folder
    one_clean_line(r, 2)
    assert "no images" in r.output


def test_cls_limit_stays_class_balanced():
    from ddn_cli.evaluation.task_eval import balanced_subset

    y = np.repeat(np.arange(10), 500)
    for limit in (10, 15, 3000):
        counts = np.bincount(y[balanced_subset(y, limit)], minlength=10)
        assert counts.sum() == limit and counts.max() - counts.min() <= 1, (limit, counts)


def test_camvid_variants_and_damage(tmp_path):
    from ddn_cli.training.camvid import load_camvid

    cam = tiny_camvid(tmp_path / "cam")
    m = np.asarray(Image.open(cam / "valannot" / "f000.png")).copy()
    m[:5] = 255  # void written as 255, as some CamVid copies do
    Image.fromarray(m).save(cam / "valannot" / "f000.png")
    _, y, _ = load_camvid(cam, "val")
    assert int(y.max()) == 11 and int((y[0, :5] == 11).sum()) == 5 * m.shape[1]
    Image.fromarray(smooth_image(30, 44)).save(cam / "val" / "f001.png")
    Image.fromarray(np.zeros((30, 44), np.uint8)).save(cam / "valannot" / "f001.png")
    with pytest.raises(UsageError, match="same size"):
        load_camvid(cam, "val")
    (cam / "val" / "f001.png").write_bytes((cam / "val" / "f002.png").read_bytes()[:200])  # truncated
    Image.fromarray(np.zeros((40, 56), np.uint8)).save(cam / "valannot" / "f001.png")
    with pytest.raises(DdnError, match="f001.png"):
        load_camvid(cam, "val")


@pytest.mark.parametrize("sigma", ["", ",", "nan", "-5", "300", "inf"])
def test_eval_sigma_lists_are_checked(tmp_path, sigma):
    r = run("eval", "seg", tmp_path, "--sigma", sigma)
    one_clean_line(r, 2)
    assert "--sigma" in r.output
    r = run("eval", "denoise", tmp_path, "--sigma", sigma)
    one_clean_line(r, 2)


def test_eval_json_has_no_infinity_and_models_are_checked_first(tmp_path):
    data = tmp_path / "d"
    data.mkdir()
    Image.fromarray(smooth_image(32, 40)).save(data / "a.png")
    r = run("eval", "denoise", data, "--sigma", "0,25", "--json", tmp_path / "e.json", "--no-ssim")
    assert r.exit_code == 0, r.output
    text = (tmp_path / "e.json").read_text()
    assert "Infinity" not in text and "NaN" not in text
    assert json.loads(text)["models"][0]["results"]["0"]["noisy_psnr"] is None
    r = run("eval", "denoise", data, "--sigma", "25", "-m", "ddn.color-sigma", "-m", "ddn.colour-sigma")
    one_clean_line(r, 2)
    assert "done in" not in r.output  # refused before the first model was measured


def test_torchvision_network_of_the_wrong_kind_is_refused_before_any_download(tmp_path):
    Image.fromarray(smooth_image(40, 40)).save(tmp_path / "a.png")
    r = run("segment", tmp_path / "a.png", tmp_path / "o", "--segmenter", "torchvision:resnet18", "--no-denoise")
    one_clean_line(r, 2)
    assert "a classifier, not a segmenter" in r.output
    r = run("classify", tmp_path / "a.png", "--classifier", "torchvision:deeplabv3_resnet50", "--no-denoise")
    one_clean_line(r, 2)
    assert "a segmenter, not a classifier" in r.output


def test_eval_refuses_a_network_with_other_classes(tmp_path, monkeypatch):
    import torch

    from ddn_cli import highlevel

    cif = tiny_cifar(tmp_path / "c", 10)
    real = highlevel.load_highlevel

    def with_more_classes(*a, **k):
        net = real(*a, **k)
        net.classes = [str(i) for i in range(1000)]
        return net

    monkeypatch.setattr(highlevel, "load_highlevel", with_more_classes)
    r = run("eval", "cls", cif, "--classifier", tiny_classifier(tmp_path / "c.safetensors"), "--sigma", "15",
            "--denoiser", "ddn.color-sigma")
    one_clean_line(r, 2)
    assert "1000 classes, but CIFAR-10 has 10" in r.output
    del torch


def test_segment_stem_clashes_are_refused_and_reruns_skip_own_outputs(tmp_path):
    seg = tiny_segmenter(tmp_path / "seg.safetensors")
    pair = tmp_path / "pair"
    pair.mkdir()
    Image.fromarray(noisy(smooth_image(40, 48), 20)).save(pair / "x.png")
    Image.fromarray(noisy(smooth_image(40, 48, seed=2), 20)).save(pair / "x.jpg")
    r = run("segment", pair, tmp_path / "o", "--segmenter", seg, "--no-denoise")
    one_clean_line(r, 2)
    assert "would both write" in r.output and not (tmp_path / "o").exists()
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(noisy(smooth_image(40, 48), 20)).save(photos / "a.png")
    for _ in range(2):  # outputs beside the inputs: the rerun skips, it does not segment the masks
        r = run("segment", photos, photos, "--segmenter", seg, "--no-denoise", "--json", tmp_path / "r.json")
        assert r.exit_code == 0, r.output
    recs = json.loads((tmp_path / "r.json").read_text())
    assert [(rec["input"], rec["status"]) for rec in recs] == [(str(photos / "a.png"), "skipped")]
    assert sorted(p.name for p in photos.iterdir()) == ["a.mask.png", "a.overlay.png", "a.png"]
    r = run("segment", photos / "a.png", photos / "a.png", tmp_path / "o2", "--segmenter", seg, "--no-denoise",
            "--json", "-")
    assert r.exit_code == 0 and len(json.loads(r.stdout)) == 1  # named twice, segmented once
    r = run("classify", photos, "--no-denoise", "--json", "-")
    assert r.exit_code == 0 and [rec["input"] for rec in json.loads(r.stdout)] == [str(photos / "a.png")]


def test_segment_and_classify_json_never_replaces_an_input(tmp_path):
    src = tmp_path / "keep.png"
    Image.fromarray(noisy(smooth_image(40, 48), 20)).save(src)
    before = file_hash(src)
    r = run("classify", src, "--no-denoise", "--json", src)
    one_clean_line(r, 2)
    other = tmp_path / "b.png"
    Image.fromarray(noisy(smooth_image(40, 48, seed=3), 20)).save(other)
    r = run("segment", "--json", src, other, tmp_path / "o", "--no-denoise")  # --json taken for a switch
    one_clean_line(r, 2)
    assert "--json" in r.output and not (tmp_path / "o").exists()
    assert file_hash(src) == before


def test_segment_and_classify_take_max_pixels(tmp_path):
    Image.fromarray(noisy(smooth_image(40, 48), 20)).save(tmp_path / "a.png")
    r = run("classify", tmp_path / "a.png", "--no-denoise", "--max-pixels", "100")
    one_clean_line(r, 1)
    assert "exceeds" in r.output and "--max-pixels" in r.output
    seg = tiny_segmenter(tmp_path / "seg.safetensors")
    r = run("segment", tmp_path / "a.png", tmp_path / "o", "--segmenter", seg, "--no-denoise", "--max-pixels", "100")
    one_clean_line(r, 1)
    r = run("segment", tmp_path / "a.png", tmp_path / "o", "--segmenter", seg, "--no-denoise", "--max-pixels", "2000")
    assert r.exit_code == 0, r.output


def test_classify_denoises_large_photos_at_the_classifiers_scale(tmp_path, default_weights):
    """The classifier sees a photo shrunk to its input size; denoising every pixel of a 12 MP
    photo first took 20 s for nothing it could see. Large photos are shrunk to twice its scale
    first, with the photo's sigma (given or estimated on the full image) divided by the factor."""
    from ddn_cli import classify as C
    from ddn_cli.descriptor import Denoiser
    from ddn_cli.highlevel import load_highlevel
    from ddn_cli.noise import estimate_sigma

    photo = noisy(smooth_image(320, 480), 20)
    Image.fromarray(photo).save(tmp_path / "big.png")
    clf = load_highlevel(str(tiny_classifier(tmp_path / "c.safetensors")), "classifier", "cpu")
    clf.input_size = (32, 32)  # as the bundled one's metadata says
    den = Denoiser.load(default_weights, device="cpu", precision="fp32")
    seen = []
    real = den.__class__.__call__

    def spy(self, batch, sigma255, *a, **k):
        seen.append((batch.shape[1:3], sigma255))
        return real(self, batch, sigma255, *a, **k)

    den.__class__.__call__ = spy
    try:
        (auto,) = C.classify_files([tmp_path / "big.png"], denoiser=den, classifier=clf)
        (given,) = C.classify_files([tmp_path / "big.png"], denoiser=den, classifier=clf, sigma=20.0)
    finally:
        den.__class__.__call__ = real
    assert auto.status == "ok" and given.status == "ok"
    f = 320 / (C.DENOISE_SCALE * 32)  # short side 320 -> 64
    assert all(max(shape) <= 96 for shape, _ in seen), seen  # never the full 320 x 480
    assert auto.sigma == pytest.approx(estimate_sigma(photo), abs=1e-3)  # the photo's own noise level
    assert seen[-1][1] == pytest.approx(20.0 / f) and given.sigma == pytest.approx(20.0)


def test_segment_refuses_a_missing_image_named_as_the_output_folder(tmp_path):
    """`ddn segment a.png typo.png` made a folder typo.png/ for the masks, exit 0."""
    Image.fromarray(noisy(smooth_image(40, 48), 20)).save(tmp_path / "a.png")
    r = run("segment", tmp_path / "a.png", tmp_path / "typo.png", "--no-denoise")
    one_clean_line(r, 2)
    assert "typo.png: no such file" in r.output and not (tmp_path / "typo.png").exists()


def test_then_segment_mask_clash_is_refused_before_denoising(tmp_path):
    pair = tmp_path / "pair"
    pair.mkdir()
    Image.fromarray(noisy(smooth_image(40, 48), 20)).save(pair / "x.png")
    Image.fromarray(noisy(smooth_image(40, 48, seed=2), 20)).save(pair / "x.jpg")
    r = run("denoise", pair, tmp_path / "out", "--then", "segment", "--sigma", "20")
    one_clean_line(r, 2)
    assert "would both write" in r.output and not (tmp_path / "out").exists()


def test_segment_without_output_folder_walks_the_whole_input(tmp_path, monkeypatch):
    """The default output folder (the current one) was also left out of the walk, so
    `ddn segment ..` from a sub-folder skipped that sub-folder's images."""
    from ddn_cli.cli.segment import plan

    (tmp_path / "in" / "sub").mkdir(parents=True)
    for p in ("in/a.png", "in/sub/b.png"):
        Image.fromarray(smooth_image(16, 16)).save(tmp_path / p)
    monkeypatch.chdir(tmp_path / "in" / "sub")
    items, _ = plan([tmp_path / "in"])
    assert sorted(f.name for f, _, _ in items) == ["a.png", "b.png"]


def test_denoise_takes_a_file_named_twice_once_and_names_unsupported_formats(tmp_path):
    from ddn_cli.io import plan_jobs

    Image.fromarray(smooth_image(16, 16)).save(tmp_path / "a.png")
    jobs, _ = plan_jobs([tmp_path / "a.png", tmp_path / "a.png"], tmp_path / "o")
    assert len(jobs) == 1
    (tmp_path / "photo.heic").write_bytes(b"\x00\x00\x00\x18ftypheic" + b"\x00" * 64)
    r = run("denoise", tmp_path / "photo.heic", tmp_path / "o2", "--sigma", "20")
    one_clean_line(r, 1)
    assert "photo.heic" in r.output and "convert it" in r.output


def test_training_data_walks_leave_hidden_files_out(tmp_path):
    from ddn_cli.training.data import list_training_images

    (tmp_path / "d" / ".cache").mkdir(parents=True)
    Image.fromarray(smooth_image(16, 16)).save(tmp_path / "d" / "a.png")
    (tmp_path / "d" / "._a.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    Image.fromarray(smooth_image(16, 16)).save(tmp_path / "d" / ".cache" / "b.png")
    assert [p.name for p in list_training_images([tmp_path / "d"])] == ["a.png"]


def test_eval_refuses_a_torchvision_network_of_other_classes_before_downloading(tmp_path, monkeypatch):
    import torchvision

    def no_download(*a, **k):
        raise AssertionError("downloaded")

    monkeypatch.setattr(torchvision.models, "get_model", no_download)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cif = tiny_cifar(tmp_path / "c", 10)
    r = run("eval", "cls", cif, "--classifier", "torchvision:resnet18", "--sigma", "15")
    one_clean_line(r, 2)
    assert "1000 classes, but 10 are needed" in r.output


def test_running_out_of_memory_on_the_cpu_fails_that_image_only(tmp_path, monkeypatch, default_weights):
    """The CPU allocator's failure is a plain RuntimeError, and numpy's a MemoryError: both
    were tracebacks that ended a folder run."""
    import torch

    from ddn_cli import noise
    from ddn_cli.descriptor import Denoiser, OutOfMemory
    from ddn_cli.io import read_image
    from ddn_cli.pipeline import denoise_image

    Image.fromarray(noisy(smooth_image(40, 48), 20)).save(tmp_path / "a.png")
    img = read_image(tmp_path / "a.png")
    den = Denoiser.load(default_weights, device="cpu", precision="fp32")
    real = den.model.forward

    def oom(*a, **k):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] . DefaultCPUAllocator: can't allocate memory: "
                           "you tried to allocate 123 bytes")

    den.model.forward = oom
    with pytest.raises(OutOfMemory, match="--tile"):
        denoise_image(img, den, sigma=20, tile=512, overlap=48, batch_size=1)
    den.model.forward = real

    def no_memory(*a, **k):
        raise MemoryError

    monkeypatch.setattr(noise, "_pca_sigma", no_memory)
    with pytest.raises(OutOfMemory, match="48x40"):
        denoise_image(img, den, sigma=None, tile=512, overlap=48, batch_size=1)
    other = RuntimeError("something else")
    den.model.forward = lambda *a, **k: (_ for _ in ()).throw(other)
    with pytest.raises(RuntimeError, match="something else"):  # other errors are not disguised
        denoise_image(img, den, sigma=20, tile=512, overlap=48, batch_size=1)
    del torch


def test_eval_reports_never_replace_an_input(tmp_path):
    """--json and --plot wrote over whatever they named: a model under test, the data list, a
    data set image (found by a sweep). Refused before any measuring; nothing is changed."""
    from ddn_cli.registry import resolve_weights

    data = tmp_path / "d"
    data.mkdir()
    Image.fromarray(smooth_image(32, 40)).save(data / "a.png")
    lst = tmp_path / "list.txt"
    lst.write_text(f"{data / 'a.png'}\n")
    model = tmp_path / "m.safetensors"
    model.write_bytes(resolve_weights(None).read_bytes())
    before = {p: file_hash(p) for p in (lst, model, data / "a.png")}
    for args in (["denoise", lst, "--json", lst], ["denoise", data, "-m", model, "--json", model],
                 ["denoise", data, "--json", data / "a.png"]):
        r = run("eval", *args, "--sigma", "25", "--no-ssim")
        one_clean_line(r, 2)
        assert "done in" not in r.output
    cam = tiny_camvid(tmp_path / "cam")
    seg = tiny_segmenter(tmp_path / "seg.safetensors")
    img = cam / "val" / "f000.png"
    before[img] = file_hash(img)
    # a new plot inside the data folder became one of its images ("mask missing" next time)
    for extra, said in ((["--plot", img], "data folder"), (["--plot", cam / "val" / "new.png"], "data folder"),
                        (["--plot", model], "PNG"), (["--plot", tmp_path / "p.txt"], "PNG"),
                        (["--json", model], "inputs")):
        r = run("eval", "seg", cam, "--sigma", "30", "--segmenter", seg, "-m", model, *extra)
        one_clean_line(r, 2)
        assert said in r.output, r.output
    assert {p: file_hash(p) for p in before} == before
    assert not (tmp_path / "p.txt").exists() and not (cam / "val" / "new.png").exists()
    # mistakes that need nothing loaded are found before anything is (a missing segmenter)
    (tmp_path / "adir").mkdir()
    r = run("eval", "seg", cam, "--segmenter", tmp_path / "nope.safetensors", "--json", tmp_path / "adir")
    one_clean_line(r, 2)
    assert "is a folder" in r.output, r.output
    # a report inside the data folder (not an image name) can be written, and written again
    for _ in range(2):
        r = run("eval", "denoise", data, "--sigma", "25", "--no-ssim", "--json", data / "results.json")
        assert r.exit_code == 0, r.output


def test_eval_json_dash_goes_to_stdout_and_repeats_are_measured_once(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "d"
    data.mkdir()
    Image.fromarray(smooth_image(32, 40)).save(data / "a.png")
    r = runner.invoke(app, ["eval", "denoise", str(data), "--sigma", "25,25.0,0", "--no-ssim", "--json", "-"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)  # only the report on stdout: the table went to stderr
    assert doc["sigmas"] == [25.0, 0.0] and not (tmp_path / "-").exists()
    cam = tiny_camvid(tmp_path / "cam")
    seg = tiny_segmenter(tmp_path / "seg.safetensors")
    r = runner.invoke(app, ["eval", "seg", str(cam), "--sigma", "30,0,30", "--segmenter", str(seg),
                            "-m", "ddn.color-sigma", "--json", "-", "--plot", str(tmp_path / "p.png")])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["sigmas"] == ["30", "0"] and not (tmp_path / "-").exists()
    assert Image.open(tmp_path / "p.png").format == "PNG"


def test_result_tables_tell_same_named_files_apart(tmp_path, monkeypatch):
    """Two IMG_0001.png in two folders were two rows both called IMG_0001.png."""
    from ddn_cli.cli import common

    monkeypatch.setattr(common.out, "_width", 200)
    for d in ("100CANON", "101CANON"):
        (tmp_path / d).mkdir()
        Image.fromarray(smooth_image(32, 32, seed=len(d))).save(tmp_path / d / "IMG_0001.png")
    r = run("classify", tmp_path, "--no-denoise")
    assert r.exit_code == 0, r.output
    assert "100CANON/IMG_0001.png" in r.output and "101CANON/IMG_0001.png" in r.output


@pytest.mark.parametrize("cmd", ["denoise", "classify", "segment"])
def test_json_report_never_replaces_a_skipped_file_of_the_run(tmp_path, cmd):
    """`--json in/notes.txt`, notes.txt a non-image file in the input folder: the report
    replaced it (and listed it as a skipped input)."""
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(smooth_image(32, 32)).save(src / "a.png")
    (src / "notes.txt").write_text("my notes")
    args = {"denoise": [src, tmp_path / "out"], "classify": [src], "segment": [src, tmp_path / "out"]}[cmd]
    r = run(cmd, *args, "--json", src / "notes.txt")
    one_clean_line(r, 2)
    assert "inputs or outputs" in r.output and (src / "notes.txt").read_text() == "my notes"


@pytest.mark.parametrize("cmd", ["segment", "classify"])
def test_no_denoise_refuses_denoising_options_it_would_ignore(tmp_path, cmd):
    Image.fromarray(smooth_image(32, 32)).save(tmp_path / "a.png")
    for extra in (["--sigma", "30"], ["--denoiser", "ddn.color-sigma"]):
        r = run(cmd, tmp_path / "a.png", *([tmp_path / "o"] if cmd == "segment" else []), "--no-denoise", *extra)
        one_clean_line(r, 2)
        assert "--no-denoise with" in r.output
    r = run(cmd, tmp_path / "a.png", *([tmp_path / "o"] if cmd == "segment" else []), "--sigma", "90")
    assert r.exit_code == 0 and "above the noise levels" in r.output, r.output


def test_overlap_error_says_when_it_is_the_default(tmp_path):
    Image.fromarray(smooth_image(32, 32)).save(tmp_path / "a.png")
    r = run("denoise", tmp_path / "a.png", tmp_path / "o.png", "--tile", "32")
    one_clean_line(r, 2)
    assert "--overlap 48 (the default) must be smaller than --tile 32" in r.output


def test_eval_seg_reads_every_case_of_jpeg_and_png(tmp_path):
    """`.JPG`, `.jpeg` and `.PNG` CamVid images were skipped without a word (a folder of
    three was measured on one; a JPEG-only split was "no CamVid images")."""
    from ddn_cli.training.camvid import load_camvid

    cam = tiny_camvid(tmp_path / "cam")
    for f, new in zip(sorted((cam / "val").iterdir()), ("f000.JPG", "f001.jpeg", "f002.PNG"), strict=True):
        Image.open(f).convert("RGB").save(cam / "val" / new, format="PNG" if new.endswith("PNG") else "JPEG")
        f.unlink()
    x, y, names = load_camvid(cam, "val")
    assert names == ["f000.JPG", "f001.jpeg", "f002.PNG"] and x.shape[0] == 3


def test_eval_seg_with_no_labelled_pixel_is_refused(tmp_path):
    """Every mask void: the table was all nan, with exit 0."""
    cam = tiny_camvid(tmp_path / "cam")
    for m in (cam / "valannot").iterdir():
        Image.fromarray(np.full((40, 56), 255, np.uint8)).save(m)
    seg = tiny_segmenter(tmp_path / "seg.safetensors")
    r = run("eval", "seg", cam, "--sigma", "0", "--segmenter", seg, "-m", "ddn.color-sigma")
    one_clean_line(r, 2)
    assert "no labelled pixel" in r.output


def test_eval_cls_refuses_classes_missing_from_the_held_out_part(tmp_path):
    """A class folder of 4 images has no held-out image: top-1 was measured over the other
    classes without a word."""
    cif = tiny_cifar(tmp_path / "cif", per_class=20)
    for f in sorted((cif / "cat").iterdir())[4:]:
        f.unlink()
    r = run("eval", "cls", cif, "--sigma", "0", "-m", "ddn.color-sigma")
    one_clean_line(r, 2)
    assert "has no image of cat" in r.output and "at least 6" in r.output


def test_then_passes_max_pixels_on(tmp_path, monkeypatch):
    """`ddn denoise --max-pixels N --then segment|classify` checked the outputs against the
    default limit in the second step, after the whole denoising, and its hint said to raise
    --max-pixels, which the user had done."""
    import ddn_cli.io as dio

    monkeypatch.setattr(dio, "DEFAULT_MAX_PIXELS", 1000)  # stands for 200 MP
    import ddn_cli.classify as cl
    import ddn_cli.cli.segment as cs
    import ddn_cli.segment as sg

    funcs = (cl.classify_files, sg.segment_files, cs.run)
    for f in funcs:  # every default of the second step stands for 200 MP too
        f.__kwdefaults__["max_pixels"] = 1000
    try:
        Image.fromarray(noisy(smooth_image(40, 56), 20)).save(tmp_path / "a.png")  # 2240 px > 1000
        for then in ("segment", "classify"):
            r = run("denoise", tmp_path / "a.png", tmp_path / f"o_{then}", "--sigma", "20", "--max-pixels", "100000",
                    "--then", then)
            assert r.exit_code == 0, r.output
    finally:
        for f in funcs:
            f.__kwdefaults__["max_pixels"] = 200_000_000
