"""The bad-input corpus, generated here: every case gets one clear line, no traceback,
the other inputs still processed, the right exit code, no partial output, inputs unchanged."""

import builtins
import errno
import io
import json
import os
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import no_partial_files, noisy, smooth_image, tree_hashes
from PIL import Image
from typer.testing import CliRunner

from ddn_cli.cli.app import app

runner = CliRunner()


def good(root: Path) -> None:
    Image.fromarray(noisy(smooth_image(24, 24), 15)).save(root / "good.png")


def run_folder(root: Path, out: Path, *extra):
    before = tree_hashes(root)
    r = runner.invoke(app, ["denoise", str(root), str(out), "--json", str(out.parent / "rep.json"), *map(str, extra)])
    assert "Traceback" not in r.output
    assert tree_hashes(root) == before, "an input was modified"
    assert not out.exists() or no_partial_files(out)
    rep = json.loads((out.parent / "rep.json").read_text())
    return r, {Path(f["input"]).name: f for f in rep["files"]}


def png_with_bad_crc() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(smooth_image(16, 16)).save(buf, format="PNG")
    b = bytearray(buf.getvalue())
    i = b.index(b"IDAT")
    n = struct.unpack(">I", b[i - 4:i])[0]
    b[i + 4 + n] ^= 0xFF  # corrupt the IDAT CRC
    return bytes(b)


BAD = {
    "zero.png": lambda: b"",
    "text.png": lambda: b"just some text, not a PNG",
    "crc.png": png_with_bad_crc,
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_files_fail_cleanly(tmp_path, name):
    root = tmp_path / "in"
    root.mkdir()
    good(root)
    (root / name).write_bytes(BAD[name]())
    r, by = run_folder(root, tmp_path / "out")
    assert r.exit_code == 1
    assert by[name]["status"] == "failed" and name in by[name]["error"]
    assert by["good.png"]["status"] == "ok"
    assert not (tmp_path / "out" / name).exists()
    lines = [ln for ln in r.output.splitlines() if name in ln]
    assert lines and all(len(ln) < 400 for ln in lines)


def test_truncated_files(tmp_path):
    root = tmp_path / "in"
    root.mkdir()
    good(root)
    for name, fmt in (("t.png", "PNG"), ("t.jpg", "JPEG")):
        buf = io.BytesIO()
        Image.fromarray(smooth_image(64, 64)).save(buf, format=fmt)
        (root / name).write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    r, by = run_folder(root, tmp_path / "out")
    assert r.exit_code == 1 and by["t.png"]["status"] == "failed" and by["t.jpg"]["status"] == "failed"


def test_decompression_bomb_limit_is_configurable(tmp_path):
    root = tmp_path / "in"
    root.mkdir()
    Image.new("RGB", (300, 300)).save(root / "bomb.png")
    good(root)
    r, by = run_folder(root, tmp_path / "out", "--max-pixels", "50000")
    assert r.exit_code == 1 and "exceeds" in by["bomb.png"]["error"] and "--max-pixels" in by["bomb.png"]["error"]
    r, by = run_folder(root, tmp_path / "out2", "--max-pixels", "100000")
    assert r.exit_code == 0


@pytest.mark.parametrize("h,w", [(1, 1), (1, 9), (9, 1), (3, 40000 // 100)])
def test_tiny_and_thin_images(tmp_path, h, w):
    root = tmp_path / "in"
    root.mkdir()
    Image.fromarray(noisy(smooth_image(h, w), 10)).save(root / "x.png")
    r, by = run_folder(root, tmp_path / "out")
    assert r.exit_code == 0, r.output
    assert np.asarray(Image.open(tmp_path / "out" / "x.png")).shape == (h, w, 3)


def test_long_strip_40000x8(tmp_path):
    root = tmp_path / "in"
    root.mkdir()
    Image.fromarray(noisy(smooth_image(8, 40000), 10)).save(root / "strip.png")
    r, by = run_folder(root, tmp_path / "out", "--tile", "256")
    assert r.exit_code == 0, r.output
    assert Image.open(tmp_path / "out" / "strip.png").size == (40000, 8)


def test_cmyk_palette_16bit_variants(tmp_path):
    root = tmp_path / "in"
    root.mkdir()
    a = noisy(smooth_image(20, 20), 10)
    Image.fromarray(a).convert("CMYK").save(root / "cmyk.jpg")
    p = Image.fromarray(a).convert("P", palette=Image.Palette.ADAPTIVE, colors=32)
    p.save(root / "pal.png", transparency=0)
    g16 = (smooth_image(20, 20)[..., 0].astype(np.uint16) * 257)
    cv2.imwrite(str(root / "g16.png"), g16)
    rgba16 = np.dstack([a.astype(np.uint16) * 257, np.full((20, 20), 40000, np.uint16)])
    cv2.imwrite(str(root / "rgba16.png"), rgba16[..., [2, 1, 0, 3]])
    r, by = run_folder(root, tmp_path / "out")
    assert r.exit_code == 0, r.output
    assert Image.open(tmp_path / "out" / "cmyk.jpg").mode == "RGB"
    assert Image.open(tmp_path / "out" / "pal.png").mode == "RGBA"
    og = cv2.imread(str(tmp_path / "out" / "g16.png"), cv2.IMREAD_UNCHANGED)
    assert og.dtype == np.uint16 and og.ndim == 2
    o4 = cv2.imread(str(tmp_path / "out" / "rgba16.png"), cv2.IMREAD_UNCHANGED)
    assert o4.dtype == np.uint16 and o4.shape == (20, 20, 4) and (o4[..., 3] == 40000).all()


def test_float_tiff_refused_multipage_and_animation_first_frame(tmp_path):
    root = tmp_path / "in"
    root.mkdir()
    good(root)
    Image.fromarray(np.random.rand(10, 10).astype(np.float32), "F").save(root / "float.tif")
    frames = [Image.fromarray(noisy(smooth_image(16, 16, seed=i), 10)) for i in range(3)]
    frames[0].save(root / "pages.tif", save_all=True, append_images=frames[1:])
    frames[0].save(root / "anim.webp", save_all=True, append_images=frames[1:], lossless=True)
    frames[0].save(root / "anim.gif", save_all=True, append_images=frames[1:])
    r, by = run_folder(root, tmp_path / "out")
    assert r.exit_code == 1
    assert by["float.tif"]["status"] == "failed" and "floating-point" in by["float.tif"]["error"]
    assert by["pages.tif"]["status"] == "ok" and any("first" in n for n in by["pages.tif"]["notes"])
    assert by["anim.webp"]["status"] == "ok" and any("first" in n for n in by["anim.webp"]["notes"])
    assert by["anim.gif"]["status"] == "skipped" and "not supported" in by["anim.gif"]["error"]


def test_unreadable_file(tmp_path, monkeypatch):
    root = tmp_path / "in"
    root.mkdir()
    good(root)
    Image.fromarray(smooth_image(8, 8)).save(root / "secret.png")
    real_open = builtins.open

    def guarded(f, *a, **k):
        if str(f).endswith("secret.png"):
            raise PermissionError(errno.EACCES, "Permission denied", str(f))
        return real_open(f, *a, **k)

    monkeypatch.setattr(builtins, "open", guarded)
    r, by = run_folder(root, tmp_path / "out")
    assert r.exit_code == 1 and "permission denied" in by["secret.png"]["error"]
    assert by["good.png"]["status"] == "ok"


def test_unwritable_output_and_full_disk(tmp_path, monkeypatch):
    root = tmp_path / "in"
    root.mkdir()
    good(root)
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the output folder should be")
    r = runner.invoke(app, ["denoise", str(root / "good.png"), str(blocker / "x.png")])
    assert r.exit_code in (1, 2) and "Traceback" not in r.output
    # a full disk while writing: the write fails, nothing partial is left
    import ddn_cli.io as dio

    real_fdopen = os.fdopen

    class Full(io.RawIOBase):
        def __init__(self, fd):
            self.f = real_fdopen(fd, "wb")

        def write(self, b):
            raise OSError(errno.ENOSPC, "No space left on device")

        def fileno(self):
            return self.f.fileno()

        def close(self):
            self.f.close()

        def __enter__(self):
            return self

        def __exit__(self, *a):
            self.close()

    monkeypatch.setattr(dio.os, "fdopen", lambda fd, mode="r": Full(fd))
    out = tmp_path / "out"
    r = runner.invoke(app, ["denoise", str(root), str(out), "--json", str(tmp_path / "rep.json")])
    assert r.exit_code == 1 and "No space left" in r.output
    assert not any(out.rglob("*.png")) and no_partial_files(out)


def test_symlink_loop_and_odd_names(tmp_path):
    root = tmp_path / "in"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "loop").symlink_to(root, target_is_directory=True)
    os.symlink(root / "x1", root / "x2")
    os.symlink(root / "x2", root / "x1")
    for name in ("with space.png", "ünïcødé.png", "-dash.png"):
        Image.fromarray(noisy(smooth_image(12, 12), 10)).save(root / name)
    r, by = run_folder(root, tmp_path / "out")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["-dash.png", "with space.png", "ünïcødé.png"]
    # a leading-dash file given directly
    r = runner.invoke(app, ["denoise", "--quiet", "--", str(root / "-dash.png"), str(tmp_path / "d.png")])
    assert r.exit_code == 0 and (tmp_path / "d.png").is_file()


def test_png_without_image_data_fails_alone_in_a_folder(tmp_path):
    """A PNG with no IDAT chunk ended the whole folder run with a traceback (Pillow's
    IndexError escaped the reader), and the good image beside it was never written."""
    import struct
    import zlib

    def chunk(k, d):
        return struct.pack(">I", len(d)) + k + d + struct.pack(">I", zlib.crc32(k + d))

    root = tmp_path / "in"
    root.mkdir()
    Image.fromarray(noisy(smooth_image(32, 40), 25)).save(root / "a_good.png")
    (root / "b_bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 4, 8, 2, 0, 0, 0))
                                     + chunk(b"IEND", b""))
    Image.fromarray(noisy(smooth_image(32, 40, seed=1), 25)).save(root / "c_good.png")
    r = runner.invoke(app, ["denoise", str(root), str(tmp_path / "out"), "--sigma", "25"])
    assert r.exit_code == 1 and "b_bad.png: cannot decode" in r.output.replace("\n", ""), r.output
    assert isinstance(r.exception, SystemExit)  # not an escaped IndexError
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a_good.png", "c_good.png"]


def test_first_page_note_is_said_on_the_terminal_and_unsupported_output_names_refused(tmp_path):
    """A multi-page file's "only the first page" note was in the --json report alone: the
    terminal said nothing of the pages left out (exit 0). And an output named ``x.gif``
    (a format ddn does not write) was taken for a folder: ``x.gif/a.png`` was written."""
    frames = [Image.fromarray(noisy(smooth_image(16, 16, seed=i), 10)) for i in range(3)]
    frames[0].save(tmp_path / "pages.tif", save_all=True, append_images=frames[1:])
    r = runner.invoke(app, ["denoise", str(tmp_path / "pages.tif"), str(tmp_path / "out.tif"), "--sigma", "10"])
    assert r.exit_code == 0, r.output
    assert "note" in r.output and "3 frames/pages: only the first is denoised" in r.output
    r = runner.invoke(app, ["denoise", str(tmp_path / "pages.tif"), str(tmp_path / "q.tif"), "--sigma", "10", "--quiet"])
    assert r.exit_code == 0 and "note" not in r.output
    for name in ("x.gif", "x.HEIC"):
        r = runner.invoke(app, ["denoise", str(tmp_path / "pages.tif"), str(tmp_path / name), "--sigma", "10"])
        assert r.exit_code == 2 and "cannot write" in r.output and ".png" in r.output
        assert not (tmp_path / name).exists()
    (tmp_path / "old.gif").mkdir()  # an existing folder of that name is still a folder
    r = runner.invoke(app, ["denoise", str(tmp_path / "pages.tif"), str(tmp_path / "old.gif"), "--sigma", "10"])
    assert r.exit_code == 0 and (tmp_path / "old.gif" / "pages.tif").exists()


def test_lossless_webp_stays_lossless(tmp_path):
    """A lossless WebP (VP8L) came back lossy (VP8, chroma at half resolution: errors of up to
    100 levels on saturated edges), and no --quality could ask for lossless. A lossless input
    is now written losslessly, as is any WebP output at --quality 100; lossy stays lossy."""
    img = noisy(smooth_image(32, 40, seed=3), 20)
    img[:8, :8] = (250, 10, 10)
    Image.fromarray(img).save(tmp_path / "ll.webp", lossless=True)
    Image.fromarray(img).save(tmp_path / "lossy.webp", quality=90)
    Image.fromarray(img).save(tmp_path / "p.png")

    def kind(p):
        return "VP8L" if b"VP8L" in p.read_bytes()[:64] else "VP8"

    for src, dst, extra, want in (("ll.webp", "a.webp", (), "VP8L"), ("lossy.webp", "b.webp", (), "VP8"),
                                  ("p.png", "c.webp", ("--quality", "100"), "VP8L"),
                                  ("p.png", "d.webp", ("--quality", "90"), "VP8")):
        r = runner.invoke(app, ["denoise", str(tmp_path / src), str(tmp_path / dst), "--sigma", "20", *extra])
        assert r.exit_code == 0, r.output
        assert kind(tmp_path / dst) == want, (src, dst)
    r = runner.invoke(app, ["denoise", str(tmp_path / "ll.webp"), str(tmp_path / "a.png"), "--sigma", "20"])
    assert r.exit_code == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a.webp").convert("RGB")),
                          np.asarray(Image.open(tmp_path / "a.png").convert("RGB")))
