import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import file_hash, no_partial_files, noisy, smooth_image, tree_hashes
from PIL import Image
from typer.testing import CliRunner

from ddn_cli.cli.app import app
from ddn_cli.evaluation.metrics import psnr

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def photos(tmp_path):
    root = tmp_path / "in"
    (root / "sub").mkdir(parents=True)
    clean = smooth_image(48, 64, seed=1)
    Image.fromarray(noisy(clean, 25)).save(root / "a.png")
    Image.fromarray(noisy(smooth_image(40, 40, seed=2), 25)).save(root / "sub" / "b.jpg", quality=98, subsampling=0)
    (root / "notes.txt").write_text("not an image")
    return root, clean


def test_help_and_version_do_not_import_torch():
    code = "import sys; from ddn_cli.cli.app import app; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
    r = subprocess.run([sys.executable, "-m", "ddn_cli", "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("ddn ")
    assert run("--help").exit_code == 0


def test_pillow_warnings_on_a_damaged_file_stay_quiet(tmp_path):
    """Pillow warns ("Corrupt EXIF data") about a broken TIFF header before ddn reports the
    file in one line; the command line shows only ddn's line."""
    (tmp_path / "bad.tif").write_bytes(b"II*\x00" + b"\xff" * 20)
    r = subprocess.run([sys.executable, "-m", "ddn_cli", "denoise", str(tmp_path / "bad.tif"), str(tmp_path / "o.png"),
                        "--sigma", "10", "--quiet"], capture_output=True, text=True)
    assert r.returncode == 1
    assert len(r.stderr.strip().splitlines()) == 1 and "bad.tif" in r.stderr, r.stderr


def test_cli_keeps_openblas_to_one_thread():
    """numpy's OpenBLAS (the noise estimator's PCA) would spin a thread per core against ddn's
    busy threads; the CLI asks it for one thread, which only works if numpy is not imported
    before main() runs."""
    code = ("import os, sys; os.environ.pop('OPENBLAS_NUM_THREADS', None); os.environ.pop('OPENCV_LOG_LEVEL', None); from ddn_cli.cli.app import main; "
            "assert 'numpy' not in sys.modules\n"
            "sys.argv = ['ddn', '--version']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "assert os.environ['OPENBLAS_NUM_THREADS'] == '1' and os.environ['OPENCV_LOG_LEVEL'] == 'SILENT'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_file_to_file_denoises(tmp_path):
    clean = smooth_image(64, 80, seed=5)
    n = noisy(clean, 25)
    Image.fromarray(n).save(tmp_path / "noisy.png")
    r = run("denoise", tmp_path / "noisy.png", tmp_path / "clean.png", "--sigma", "25", "--quiet")
    assert r.exit_code == 0, r.output
    out = np.asarray(Image.open(tmp_path / "clean.png"))
    assert out.shape == clean.shape
    assert psnr(out, clean) > psnr(n, clean) + 6


def test_auto_sigma_on_a_4_2_0_jpeg(tmp_path):
    """The JPEG cameras and Pillow write (chroma at 4:2:0) gets its noise measured in the luma:
    before, auto read sigma 0.5 here and left the noise in."""
    clean = smooth_image(128, 160, seed=5)
    Image.fromarray(noisy(clean, 25)).save(tmp_path / "noisy.jpg", quality=90, subsampling=2)
    r = run("denoise", tmp_path / "noisy.jpg", tmp_path / "clean.png", "--json", tmp_path / "r.json", "--quiet")
    assert r.exit_code == 0, r.output
    assert 21 < json.loads((tmp_path / "r.json").read_text())["files"][0]["sigma"] < 29
    before = psnr(np.asarray(Image.open(tmp_path / "noisy.jpg")), clean)
    assert psnr(np.asarray(Image.open(tmp_path / "clean.png")), clean) > before + 4


def test_damaged_16bit_file_is_one_line_on_stderr(tmp_path):
    """OpenCV and its libtiff print [ERROR]/[WARN] lines for a damaged file; the command line
    keeps to ddn's one line (they come back with OPENCV_LOG_LEVEL set)."""
    import os

    a = smooth_image(64, 64).astype(np.uint16) * 257
    ok, buf = cv2.imencode(".tif", a)  # OpenCV writes LZW-compressed strips
    data = bytearray(buf.tobytes())
    for i in range(200, len(data) - 200, 7):
        data[i] ^= 0xA5
    (tmp_path / "bad16.tif").write_bytes(bytes(data))
    env = {k: v for k, v in os.environ.items() if k != "OPENCV_LOG_LEVEL"}
    r = subprocess.run([sys.executable, "-m", "ddn_cli", "denoise", str(tmp_path / "bad16.tif"),
                        str(tmp_path / "out.tif"), "--sigma", "10", "--quiet"], capture_output=True, text=True, env=env)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and "bad16.tif" in r.stderr, r.stderr


def test_folder_mirrors_tree_and_reports(photos, tmp_path):
    root, _ = photos
    before = tree_hashes(root)
    r = run("denoise", root, tmp_path / "out", "--json", tmp_path / "r.json")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "out" / "a.png").is_file() and (tmp_path / "out" / "sub" / "b.jpg").is_file()
    assert not (tmp_path / "out" / "notes.txt").exists()
    rep = json.loads((tmp_path / "r.json").read_text())
    by = {Path(f["input"]).name: f for f in rep["files"]}
    assert by["a.png"]["status"] == "ok" and by["a.png"]["sigma"] > 10 and by["a.png"]["model"] == "ddn.color-sigma"
    assert by["notes.txt"]["status"] == "skipped"
    assert set(by["a.png"]) >= {"input", "output", "status", "error", "seconds", "sigma", "model"}
    assert tree_hashes(root) == before  # inputs untouched
    # a rerun skips existing outputs, --overwrite redoes them
    r = run("denoise", root, tmp_path / "out", "--json", "-", "--quiet")
    assert r.exit_code == 0
    rep = json.loads(r.stdout)
    assert rep["summary"]["ok"] == 0 and rep["summary"]["skipped"] == 3
    r = run("denoise", root, tmp_path / "out", "--overwrite", "--json", "-", "--quiet")
    assert json.loads(r.stdout)["summary"]["ok"] == 2


def test_several_files_into_folder_and_no_recursive(photos, tmp_path):
    root, _ = photos
    r = run("denoise", root / "a.png", root / "sub" / "b.jpg", tmp_path / "o", "--quiet")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["a.png", "b.jpg"]
    r = run("denoise", root, tmp_path / "flat", "--no-recursive", "--quiet")
    assert r.exit_code == 0
    assert [p.name for p in (tmp_path / "flat").rglob("*")] == ["a.png"]


def test_corrupt_input_fails_but_others_go_on(photos, tmp_path):
    root, _ = photos
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    (root / "empty.jpg").write_bytes(b"")
    r = run("denoise", root, tmp_path / "out", "--json", tmp_path / "r.json")
    assert r.exit_code == 1
    assert "broken.png" in r.output and "Traceback" not in r.output
    rep = json.loads((tmp_path / "r.json").read_text())
    status = {Path(f["input"]).name: f["status"] for f in rep["files"]}
    assert status["broken.png"] == "failed" and status["empty.jpg"] == "failed" and status["a.png"] == "ok"
    assert not (tmp_path / "out" / "broken.png").exists()
    assert no_partial_files(tmp_path / "out")


def test_usage_errors_exit_2(tmp_path):
    img = tmp_path / "a.png"
    Image.fromarray(smooth_image(8, 8)).save(img)
    assert run("denoise", tmp_path / "missing.png", tmp_path / "o.png").exit_code == 2
    r = run("denoise", img, img)
    assert r.exit_code == 2 and "overwrite an input" in r.output
    assert run("denoise", img, tmp_path / "o.png", "--sigma", "abc").exit_code == 2
    r = run("denoise", img, tmp_path / "o.png", "--precision", "fp16", "--device", "cpu")
    assert r.exit_code == 2 and "fp16" in r.output and "Traceback" not in r.output
    r = run("denoise", img, tmp_path / "o.png", "--model", "ddn.colour-sigma")
    assert r.exit_code == 2 and "did you mean ddn.color-sigma" in r.output
    r = run("denoise", img, tmp_path / "o.png", "--device", "cuda:7")
    assert r.exit_code == 2
    assert not (tmp_path / "o.png").exists()


def test_grey_rgba_16bit_and_format(tmp_path):
    base = smooth_image(40, 48, seed=4)
    g = noisy(base[..., 0], 20)
    Image.fromarray(g, "L").save(tmp_path / "g.png")
    alpha = np.tile(np.arange(48, dtype=np.uint8) * 5, (40, 1))
    Image.fromarray(np.dstack([noisy(base, 20), alpha]), "RGBA").save(tmp_path / "rgba.png")
    c16 = noisy(base.astype(np.uint16) * 257, 20)
    cv2.imwrite(str(tmp_path / "c16.png"), c16[..., ::-1])
    r = run("denoise", tmp_path / "g.png", tmp_path / "rgba.png", tmp_path / "c16.png", tmp_path / "o", "--quiet")
    assert r.exit_code == 0, r.output
    og = Image.open(tmp_path / "o" / "g.png")
    assert og.mode == "L" and psnr(np.asarray(og), base[..., 0]) > psnr(g, base[..., 0]) + 3
    orgba = np.asarray(Image.open(tmp_path / "o" / "rgba.png"))
    assert orgba.shape[2] == 4 and np.array_equal(orgba[..., 3], alpha)
    o16 = cv2.imread(str(tmp_path / "o" / "c16.png"), cv2.IMREAD_UNCHANGED)
    assert o16.dtype == np.uint16 and o16.shape == c16.shape
    assert len(np.unique(o16)) > 256  # really 16-bit values, not 8-bit scaled
    r = run("denoise", tmp_path / "g.png", tmp_path / "fmt", "--format", "jpeg", "--quality", "90", "--quiet")
    assert r.exit_code == 0 and (tmp_path / "fmt" / "g.jpg").is_file()


def test_tiled_cli_matches_untiled(tmp_path):
    clean = smooth_image(150, 170, seed=9)
    Image.fromarray(noisy(clean, 25)).save(tmp_path / "n.png")
    assert run("denoise", tmp_path / "n.png", tmp_path / "whole.png", "--sigma", "25", "--tile", "4096",
               "--precision", "fp32", "-q").exit_code == 0
    assert run("denoise", tmp_path / "n.png", tmp_path / "tiled.png", "--sigma", "25", "--tile", "64",
               "--overlap", "32", "--batch-size", "3", "--precision", "fp32", "-q").exit_code == 0
    a = np.asarray(Image.open(tmp_path / "whole.png")).astype(int)
    b = np.asarray(Image.open(tmp_path / "tiled.png")).astype(int)
    assert np.abs(a - b).max() <= 1


def test_exif_rotated_input_comes_out_upright(tmp_path):
    a = noisy(smooth_image(20, 40, seed=3), 15)
    im = Image.fromarray(a)
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90 CW on display
    im.save(tmp_path / "r.jpg", exif=exif.tobytes(), quality=98)
    r = run("denoise", tmp_path / "r.jpg", tmp_path / "o.jpg", "-q")
    assert r.exit_code == 0
    o = Image.open(tmp_path / "o.jpg")
    assert o.size == (20, 40) and o.getexif().get(0x0112, 1) == 1


def test_single_input_default_output_name(tmp_path):
    Image.fromarray(noisy(smooth_image(16, 16), 10)).save(tmp_path / "p.png")
    assert run("denoise", tmp_path / "p.png", "-q").exit_code == 0
    assert (tmp_path / "p_denoised.png").is_file()


def test_demo_writes_comparison_and_reports_psnr(tmp_path):
    pytest.importorskip("skimage")
    r = run("demo", "--out", tmp_path / "d", "--image", "chelsea", "--sigma", "25")
    assert r.exit_code == 0, r.output
    assert "PSNR" in r.output and "->" in r.output
    comp = Image.open(tmp_path / "d" / "comparison.png")
    noisy_img = Image.open(tmp_path / "d" / "noisy.png")
    assert comp.size[0] == 3 * noisy_img.size[0]
    import re

    before, after = map(float, re.search(r"noisy ([\d.]+) dB -> denoised ([\d.]+) dB", r.output).groups())
    assert after > before + 8


def test_demo_bad_image_name(tmp_path):
    r = run("demo", "--out", tmp_path / "d", "--image", "nope")
    assert r.exit_code == 2 and "unknown demo image" in r.output


def test_output_folder_inside_the_input_folder_is_left_out_so_a_rerun_resumes(tmp_path, monkeypatch):
    """`ddn denoise . denoised/`: the second run must not take the first run's outputs for
    inputs (it was refused as "would overwrite an input", so an interrupted run could not
    resume); `ddn denoise .` names the sibling folder after the folder itself."""
    root = tmp_path / "photos"
    root.mkdir()
    for i in range(2):
        Image.fromarray(noisy(smooth_image(24, 32, seed=i), 20)).save(root / f"{i}.png")
    monkeypatch.chdir(root)
    for _ in range(2):
        r = run("denoise", ".", "denoised", "--sigma", "20", "--json", tmp_path / "r.json")
        assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "r.json").read_text())
    assert sorted(f["input"] for f in rep["files"]) == ["0.png", "1.png"]  # not denoised/0.png
    assert rep["summary"]["skipped"] == 2
    assert "whose output exists (use --overwrite" in r.output
    r = run("denoise", ".", "--sigma", "20", "--quiet")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "photos_denoised" / "0.png").is_file() and (tmp_path / "photos_denoised" / "1.png").is_file()


def test_json_report_path_that_would_destroy_a_file_is_refused(tmp_path):
    """`--json a.png b.png` (--json taken for a switch) replaced the input a.png with the
    report; a report path that is an input, an output or a folder is refused before any work."""
    src = tmp_path / "a.png"
    Image.fromarray(noisy(smooth_image(24, 32), 20)).save(src)
    before = file_hash(src)
    for report in (src, tmp_path / "b.png", tmp_path):
        r = run("denoise", "--json", report, src, tmp_path / "b.png", "--sigma", "20")
        assert r.exit_code == 2 and "--json" in r.output, r.output
    (tmp_path / "o").mkdir()
    r = run("denoise", src, tmp_path / "o", "--json", tmp_path / "o" / "a.png.json", "--sigma", "20")
    assert r.exit_code == 0, r.output  # an ordinary report beside the outputs is fine
    r = run("denoise", src, tmp_path / "o2", "--json", tmp_path / "o2" / "a.png", "--sigma", "20")
    assert r.exit_code == 2  # the output itself
    assert file_hash(src) == before and not (tmp_path / "b.png").exists()


def test_an_explicit_output_name_is_kept_and_must_agree_with_format(tmp_path):
    src = tmp_path / "a.png"
    Image.fromarray(noisy(smooth_image(24, 32), 20)).save(src)
    for name, fmt in (("out.jpeg", "jpeg"), ("OUT.PNG", "png"), ("out.TIFF", "tiff")):
        r = run("denoise", src, tmp_path / name, "--format", fmt, "--sigma", "20", "--quiet")
        assert r.exit_code == 0 and (tmp_path / name).is_file(), (name, r.output)
    r = run("denoise", src, tmp_path / "x.jpg", "--format", "png", "--sigma", "20")
    assert r.exit_code == 2 and "--format png" in r.output
    assert not (tmp_path / "x.jpg").exists() and not (tmp_path / "x.png").exists()


def test_an_explicitly_named_file_is_read_whatever_its_suffix(tmp_path):
    """A photo saved without an extension is denoised (its output named after the format its
    content announces); a named file that is not an image fails with one line and exit 1
    instead of being skipped with exit 0."""
    Image.fromarray(noisy(smooth_image(24, 32), 20)).save(tmp_path / "noext", format="PNG")
    r = run("denoise", tmp_path / "noext", "--sigma", "20", "--quiet")
    assert r.exit_code == 0 and (tmp_path / "noext_denoised.png").is_file(), r.output
    (tmp_path / "notes").write_text("hello")
    r = run("denoise", tmp_path / "notes", tmp_path / "o.png", "--sigma", "20", "--quiet")
    assert r.exit_code == 1 and "notes" in r.output and not (tmp_path / "o.png").exists()


def test_hidden_files_and_folders_are_left_out_of_folder_walks(tmp_path):
    """macOS's ._name companions (not images) failed whole runs; .git folders were denoised."""
    root = tmp_path / "in"
    (root / ".git").mkdir(parents=True)
    Image.fromarray(noisy(smooth_image(24, 32), 20)).save(root / "a.png")
    (root / "._a.png").write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X")
    Image.fromarray(noisy(smooth_image(24, 32), 20)).save(root / ".git" / "x.png")
    r = run("denoise", root, tmp_path / "out", "--sigma", "20", "--json", tmp_path / "r.json")
    assert r.exit_code == 0, r.output
    assert [f["input"] for f in json.loads((tmp_path / "r.json").read_text())["files"]] == [str(root / "a.png")]
    assert [p.name for p in (tmp_path / "out").rglob("*")] == ["a.png"]


def test_output_paths_that_cannot_be_used_are_reported_up_front_or_per_file(tmp_path):
    root = tmp_path / "in"
    root.mkdir()
    Image.fromarray(noisy(smooth_image(24, 32), 20)).save(root / "a.png")
    Image.fromarray(noisy(smooth_image(24, 32, seed=2), 20)).save(root / "b.png")
    (tmp_path / "outfile").write_text("x")
    r = run("denoise", root, tmp_path / "outfile", "--sigma", "20")
    assert r.exit_code == 2 and "needs an output folder" in r.output
    (tmp_path / "out" / "a.png").mkdir(parents=True)  # a folder where an output goes
    r = run("denoise", root, tmp_path / "out", "--sigma", "20", "--overwrite", "--json", "-")
    files = {Path(f["input"]).name: f for f in json.loads(r.stdout)["files"]}
    assert r.exit_code == 1 and "is a folder" in files["a.png"]["error"] and files["b.png"]["status"] == "ok"
    r = run("denoise", root, tmp_path / "o2", "--overlap", "600", "--sigma", "20")
    assert r.exit_code == 2 and "--overlap 600 must be smaller" in r.output
    from ddn_cli.cli.denoise import AUTO_TILE_PX
    from ddn_cli.pipeline import AUTO_TILE

    assert AUTO_TILE_PX == AUTO_TILE


def test_long_names_get_a_temp_name_that_fits_and_a_clear_error_when_they_cannot(tmp_path):
    """The temp file added 19 bytes to the name, so outputs named 237-255 bytes always failed;
    a beside-input output name past 255 bytes was a traceback."""
    root = tmp_path / "in"
    root.mkdir()
    name = "a" * 236 + ".png"  # 240 bytes: legal
    Image.fromarray(noisy(smooth_image(24, 32), 20)).save(root / name)
    r = run("denoise", root, tmp_path / "out", "--sigma", "20", "--quiet")
    assert r.exit_code == 0 and (tmp_path / "out" / name).is_file(), r.output
    r = run("denoise", root / name, "--sigma", "20", "--quiet")  # + "_denoised": 249 bytes
    assert r.exit_code == 0, r.output
    long = "b" * 246 + ".png"
    Image.fromarray(noisy(smooth_image(24, 32), 20)).save(tmp_path / long)
    r = run("denoise", tmp_path / long, "--sigma", "20", "--quiet")  # + "_denoised": 259 bytes
    assert r.exit_code == 1 and "more than a file name may have" in r.output, r.output
    assert no_partial_files(tmp_path)


def test_a_sigma_above_the_trained_range_gets_a_note(tmp_path):
    src = tmp_path / "a.png"
    Image.fromarray(noisy(smooth_image(24, 32), 20)).save(src)
    r = run("denoise", src, tmp_path / "o.png", "--sigma", "100", "--quiet")
    assert r.exit_code == 0 and "above the noise levels the models were trained on" in r.output
    r = run("denoise", src, tmp_path / "o2.png", "--sigma", "75", "--quiet")
    assert r.exit_code == 0 and "above" not in r.output


@pytest.mark.parametrize("args,option", [(("--sigma", "-1"), "--sigma"), (("--sigma", "abc"), "--sigma"),
                                         (("--tile", "16"), "--tile"), (("--tile", "x"), "--tile")])
def test_bad_sigma_and_tile_values_are_one_line_naming_the_option(tmp_path, args, option):
    """They came in Typer's multi-line box without the option's name ("Invalid value: -1 is
    outside 0-255")."""
    Image.fromarray(noisy(smooth_image(24, 32), 20)).save(tmp_path / "a.png")
    r = run("denoise", tmp_path / "a.png", tmp_path / "o.png", *args)
    assert r.exit_code == 2 and r.output.startswith(f"ddn: error: {option} ") and len(r.output.strip().splitlines()) == 1, r.output


def test_a_newline_in_a_file_name_does_not_split_the_failure_line(tmp_path):
    root = tmp_path / "in"
    root.mkdir()
    (root / "bad\nname.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    r = run("denoise", root, tmp_path / "out", "--sigma", "20", "--quiet")
    assert r.exit_code == 1
    lines = [x for x in r.output.splitlines() if "failed" in x]
    assert len(lines) == 1 and "bad\\nname.png" in lines[0], r.output


def test_demo_out_and_image_mistakes_are_one_line_and_psnr_gain_is_signed(tmp_path):
    src = tmp_path / "a.png"
    Image.fromarray(smooth_image(40, 48)).save(src)
    (tmp_path / "afile").write_text("x")
    r = run("demo", "--image", src, "--out", tmp_path / "afile")
    assert r.exit_code == 2 and "is a file" in r.output and isinstance(r.exception, SystemExit), r.output
    r = run("demo", "--image", tmp_path / "nothere.png")
    assert r.exit_code == 2 and "no such file" in r.output
    r = run("demo", "--image", src, "--sigma", "0", "--out", tmp_path / "d0")
    assert r.exit_code == 0 and "+-" not in r.output and "inf dB" in r.output, r.output


def test_demo_never_replaces_its_image_and_leaves_no_folder_on_a_bad_device(tmp_path):
    """`--image dir/noisy.png --out dir` replaced the user's photo with the noised copy; a
    refused --device left an empty --out folder."""
    d = tmp_path / "d"
    d.mkdir()
    for name in ("noisy.png", "denoised.png", "comparison.png"):
        Image.fromarray(smooth_image(40, 48)).save(d / name)
        before = file_hash(d / name)
        r = run("demo", "--image", d / name, "--out", d)
        assert r.exit_code == 2 and "would replace it" in r.output.replace("\n", ""), r.output
        assert file_hash(d / name) == before
        (d / name).unlink()
    r = run("demo", "--device", "cuda:7", "--out", tmp_path / "never")
    assert r.exit_code == 2 and not (tmp_path / "never").exists(), r.output


def test_json_naming_the_output_folder_about_to_be_made_is_refused(tmp_path):
    """`--json od` with `od` the output folder, not yet made: everything was denoised, then
    the report could not be written over the folder (exit 1, no report)."""
    src = tmp_path / "a.png"
    Image.fromarray(noisy(smooth_image(24, 32), 20)).save(src)
    r = run("denoise", src, tmp_path / "od", "--json", tmp_path / "od", "--sigma", "20")
    assert r.exit_code == 2 and "--json" in r.output and not (tmp_path / "od").exists(), r.output


def test_an_output_that_appears_during_the_run_is_kept_without_overwrite(tmp_path, monkeypatch):
    """The existence check ran when the run was planned only: a file someone put at an output
    path meanwhile (or a second ddn run) was silently replaced."""
    from ddn_cli import pipeline

    root = tmp_path / "in"
    root.mkdir()
    for i in range(3):
        Image.fromarray(noisy(smooth_image(24, 32, seed=i), 20)).save(root / f"{i}.png")
    out = tmp_path / "out"
    real = pipeline.read_image

    def read_and_meddle(path, *a, **k):
        if path.name == "1.png":
            out.mkdir(exist_ok=True)
            (out / "1.png").write_bytes(b"precious")
        return real(path, *a, **k)

    monkeypatch.setattr(pipeline, "read_image", read_and_meddle)
    r = run("denoise", root, out, "--sigma", "20", "--json", "-")
    rep = json.loads(r.stdout)
    by = {Path(f["input"]).name: f for f in rep["files"]}
    assert r.exit_code == 0 and by["1.png"]["status"] == "skipped" and "appeared" in by["1.png"]["error"]
    assert (out / "1.png").read_bytes() == b"precious" and by["0.png"]["status"] == by["2.png"]["status"] == "ok"
    assert no_partial_files(out)


def test_review_dangling_output_link_and_deep_json_folder(tmp_path):
    """A dangling symlink at an output path is an existing output (skipped up front, not a
    false "appeared" at write time); --json naming an output folder two levels up is refused."""
    root = tmp_path / "in"
    (root / "sub").mkdir(parents=True)
    Image.fromarray(noisy(smooth_image(24, 32), 20)).save(root / "sub" / "a.png")
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    (out / "sub" / "a.png").symlink_to(tmp_path / "nowhere.png")
    r = run("denoise", root, out, "--sigma", "20", "--json", "-")
    f = json.loads(r.stdout)["files"][0]
    assert r.exit_code == 0 and f["status"] == "skipped" and "exists" in f["error"]
    r = run("denoise", root, tmp_path / "o2", "--json", tmp_path / "o2", "--sigma", "20")
    assert r.exit_code == 2 and "--json" in r.output and not (tmp_path / "o2").exists()


def test_standard_output_trouble_is_one_line(tmp_path):
    """`--json -` with stdout closed (`>&-`) denoised everything, then crashed on writing the
    report (AttributeError); a full stdout (`> /dev/full`) was a traceback."""
    import subprocess
    import sys

    src = tmp_path / "a.png"
    Image.fromarray(noisy(smooth_image(24, 32), 20)).save(src)
    r = subprocess.run(["sh", "-c", 'exec "$@" >&-', "sh", sys.executable, "-m", "ddn_cli", "denoise", str(src),
                        str(tmp_path / "o"), "--sigma", "20", "--json", "-"], stderr=subprocess.PIPE, text=True)
    assert r.returncode == 2 and "standard output is closed" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "o").exists()  # refused before any work
    if Path("/dev/full").exists():
        with open("/dev/full", "w") as full:
            r = subprocess.run([sys.executable, "-m", "ddn_cli", "models", "list"], stdout=full,
                               stderr=subprocess.PIPE, text=True)
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
        assert r.stderr.strip() == "ddn: error: standard output: cannot write (No space left on device)"


def test_narrow_terminal_summary_keeps_its_numbers(tmp_path, monkeypatch):
    """At 30 columns the summary table's headers were all "…" and the failed count was gone."""
    from ddn_cli.cli import common

    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(noisy(smooth_image(24, 32), 20)).save(src / "a.png")
    (src / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    monkeypatch.setattr(common.err, "_width", 30)
    r = run("denoise", src, tmp_path / "o", "--sigma", "20")
    assert r.exit_code == 1 and "done 1, skipped 0, failed 1" in r.output.replace("\n", " "), r.output
