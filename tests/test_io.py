import io
import os

import cv2
import numpy as np
import pytest
from conftest import smooth_image
from PIL import Image

from ddn_cli.errors import ImageTooLarge, UnsupportedImage, UsageError
from ddn_cli.io import ImageData, encode_image, plan_jobs, read_image, write_atomic, write_image


def test_rgb8_png_roundtrip(tmp_path):
    a = smooth_image(20, 30)
    Image.fromarray(a).save(tmp_path / "a.png")
    d = read_image(tmp_path / "a.png")
    assert d.bits == 8 and d.color.shape == (20, 30, 3) and d.alpha is None and d.format == "png"
    assert np.array_equal(d.color, a)
    write_image(tmp_path / "b.png", d)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "b.png")), a)


def test_16bit_colour_png_keeps_16_bits(tmp_path):
    a = (smooth_image(16, 24).astype(np.uint16) * 257 + np.arange(24, dtype=np.uint16)[None, :, None])
    cv2.imwrite(str(tmp_path / "a.png"), a[..., ::-1])
    d = read_image(tmp_path / "a.png")
    assert d.bits == 16 and d.color.dtype == np.uint16
    assert np.array_equal(d.color, a)
    write_image(tmp_path / "b.png", d)
    back = cv2.imread(str(tmp_path / "b.png"), cv2.IMREAD_UNCHANGED)[..., ::-1]
    assert back.dtype == np.uint16 and np.array_equal(back, a)


def test_16bit_tiff_and_grey16(tmp_path):
    a = (smooth_image(10, 12).astype(np.uint16) * 257)
    cv2.imwrite(str(tmp_path / "a.tif"), a[..., ::-1])
    d = read_image(tmp_path / "a.tif")
    assert d.bits == 16 and np.array_equal(d.color, a)
    g = a[..., 0]
    cv2.imwrite(str(tmp_path / "g.png"), g)
    dg = read_image(tmp_path / "g.png")
    assert dg.grey and dg.bits == 16 and np.array_equal(dg.color[..., 0], g)


def test_rgba_alpha_passes_through(tmp_path):
    a = smooth_image(12, 14)
    alpha = np.linspace(0, 255, 12 * 14).reshape(12, 14).astype(np.uint8)
    Image.fromarray(np.dstack([a, alpha]), "RGBA").save(tmp_path / "a.png")
    d = read_image(tmp_path / "a.png")
    assert np.array_equal(d.alpha, alpha) and np.array_equal(d.color, a)


def test_grey_and_la(tmp_path):
    g = smooth_image(9, 11)[..., 0]
    Image.fromarray(g, "L").save(tmp_path / "g.png")
    d = read_image(tmp_path / "g.png")
    assert d.grey and d.color.shape == (9, 11, 1)
    Image.merge("LA", [Image.fromarray(g), Image.fromarray(255 - g)]).save(tmp_path / "la.png")
    d = read_image(tmp_path / "la.png")
    assert d.grey and np.array_equal(d.alpha, 255 - g)


def test_palette_with_transparency_becomes_rgba(tmp_path):
    im = Image.fromarray(smooth_image(8, 8)).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    im.info["transparency"] = 0
    im.save(tmp_path / "p.png", transparency=0)
    d = read_image(tmp_path / "p.png")
    assert d.color.shape[2] == 3 and d.alpha is not None


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_and_reset(tmp_path, orientation):
    a = smooth_image(6, 10)
    im = Image.fromarray(a)
    exif = im.getexif()
    exif[0x0112] = orientation
    im.save(tmp_path / "o.jpg", exif=exif.tobytes(), quality=100, subsampling=0)
    expected = np.asarray(__import__("PIL.ImageOps", fromlist=["x"]).exif_transpose(Image.open(tmp_path / "o.jpg")))
    d = read_image(tmp_path / "o.jpg")
    assert d.color.shape == expected.shape
    assert np.array_equal(d.color, expected)
    write_image(tmp_path / "w.jpg", d)
    assert Image.open(tmp_path / "w.jpg").getexif().get(0x0112, 1) == 1


def _orientation_probe(dtype=np.uint8, channels: int = 3) -> np.ndarray:
    """A 40 x 60 image whose every turn and flip is different: marks in two corners."""
    a = np.zeros((40, 60, channels), np.uint8)
    a[:8, :8] = 255
    a[-8:, :12, 0] = 200
    a[..., -1] = np.maximum(a[..., -1], 9)  # RGBA: an alpha channel that turns with the pixels
    return a.astype(dtype) * (257 if dtype == np.uint16 else 1)


def _orient_expected(a: np.ndarray, orientation: int) -> np.ndarray:
    from PIL import ImageOps

    transpose = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
                 5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
                 8: Image.Transpose.ROTATE_90}
    assert ImageOps  # the same table as ImageOps.exif_transpose
    out = np.stack([np.asarray(Image.fromarray(a[..., i]).transpose(transpose[orientation])) for i in range(a.shape[2])], -1)
    return out if orientation in transpose else a


@pytest.mark.parametrize("orientation", [2, 3, 5, 6, 8])
@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L"])
def test_tiff_orientation_is_applied_once_8bit(tmp_path, orientation, mode):
    """A TIFF's Orientation tag turns the image exactly once, as for JPEG (Pillow 13 turns a
    TIFF itself as it loads it; an earlier ddn then failed on orientations 5-8 and turned 2-4 twice)."""
    a = _orientation_probe(np.uint8, len(mode))
    Image.fromarray(a[..., 0] if mode == "L" else a, mode).save(tmp_path / "o.tif", tiffinfo={0x0112: orientation})
    d = read_image(tmp_path / "o.tif")
    want = _orient_expected(a, orientation)
    assert np.array_equal(d.color, want[..., :3] if mode != "L" else want)
    if mode == "RGBA":
        assert np.array_equal(d.alpha, want[..., 3])
    write_image(tmp_path / "w.jpg", ImageData(color=d.color[..., :3] if mode != "L" else d.color, alpha=None,
                                               bits=8, format="jpeg", exif=d.exif))
    assert Image.open(tmp_path / "w.jpg").getexif().get(0x0112, 1) == 1


@pytest.mark.parametrize("orientation", [2, 3, 6, 8])
@pytest.mark.parametrize("layout", ["rgb-little", "rgb-big-endian", "rgba-bigtiff", "grey"])
def test_tiff_orientation_is_applied_once_16bit(tmp_path, orientation, layout):
    """16-bit TIFFs are decoded by OpenCV, which (5.x) turns a TIFF by its Orientation even when
    told not to; ddn sets the tag to 1 in the bytes it hands over and turns the image itself."""
    tifffile = pytest.importorskip("tifffile")
    channels = {"rgb-little": 3, "rgb-big-endian": 3, "rgba-bigtiff": 4, "grey": 1}[layout]
    a = _orientation_probe(np.uint16, channels)
    kw = {"byteorder": ">"} if layout == "rgb-big-endian" else {"bigtiff": True} if layout == "rgba-bigtiff" else {}
    extra = {"extrasamples": [2]} if channels == 4 else {}
    tifffile.imwrite(tmp_path / "o.tif", a if channels > 1 else a[..., 0],
                     photometric="rgb" if channels > 1 else "minisblack",
                     extratags=[(0x0112, "H", 1, orientation, True)], **kw, **extra)
    d = read_image(tmp_path / "o.tif")
    want = _orient_expected(a, orientation)
    assert d.bits == 16
    assert np.array_equal(d.color, want[..., :3] if channels > 1 else want)
    if channels == 4:
        assert np.array_equal(d.alpha, want[..., 3])


def test_tiff_orientation_patch_leaves_other_files_alone():
    from ddn_cli.tiffmeta import orientation_to_1

    for junk in (b"", b"II", b"II*\x00\xff\xff\xff\xff", b"MM\x00*\x00\x00\x00\x08\x00", b"\x89PNG\r\n\x1a\n" + bytes(20)):
        data = np.frombuffer(junk, np.uint8).copy()
        orientation_to_1(data)
        assert data.tobytes() == junk


@pytest.mark.parametrize("name,save,subsampled", [
    ("a.jpg", {"quality": 90, "subsampling": 2}, True),  # 4:2:0
    ("b.jpg", {"quality": 90, "subsampling": 1}, True),  # 4:2:2
    ("c.jpg", {"quality": 90, "subsampling": 0}, False),  # 4:4:4
    ("d.webp", {"quality": 90}, True),  # lossy WebP is always 4:2:0
    ("e.webp", {"lossless": True}, False),
    ("f.webp", {"quality": 90, "icc_profile": b"\0" * 300}, True),  # extended (VP8X) layout
    ("g.png", {}, False),
])
def test_chroma_subsampled_files_are_marked(tmp_path, name, save, subsampled):
    """``--sigma auto`` measures such files' noise in their luma (noise.py)."""
    Image.fromarray(smooth_image(32, 48)).save(tmp_path / name, **save)
    assert read_image(tmp_path / name).chroma_subsampled is subsampled


def test_grey_jpeg_is_not_marked_subsampled(tmp_path):
    Image.fromarray(smooth_image(32, 48)[..., 0]).save(tmp_path / "g.jpg", quality=90)
    assert read_image(tmp_path / "g.jpg").chroma_subsampled is False


def test_tiff_layout_tags_do_not_travel_as_exif(tmp_path):
    """A TIFF's own tags (size, samples, planar layout, palette, CMYK) were kept as its EXIF
    and Pillow's TIFF writer took them as its own: a turned TIFF could not be written back,
    planar / palette / CMYK ones were written broken, BigTIFF ones got an EXIF ddn could not
    read back. Only the descriptive tags and the Exif/GPS IFDs go on now."""
    tifffile = pytest.importorskip("tifffile")
    rgb = smooth_image(23, 37)
    tifffile.imwrite(tmp_path / "o6.tif", rgb, photometric="rgb",
                     extratags=[(0x0112, "H", 1, 6, True), (0x010F, "s", 0, "ddn-cam", True)])
    tifffile.imwrite(tmp_path / "planar.tif", np.moveaxis(rgb, -1, 0), photometric="rgb", planarconfig="separate")
    tifffile.imwrite(tmp_path / "big.tif", rgb, photometric="rgb", bigtiff=True)
    Image.fromarray(rgb).quantize(16).save(tmp_path / "pal.tif")
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.tif")
    for name in ("o6", "planar", "big", "pal", "cmyk"):
        d = read_image(tmp_path / f"{name}.tif")
        for ext in ("tif", "png", "jpg"):
            out = tmp_path / f"{name}_out.{ext}"
            write_image(out, d)
            back = read_image(out)
            assert back.color.shape == d.color.shape, (name, ext)
            if ext != "jpg":
                assert np.array_equal(back.color, d.color), (name, ext)
    back = Image.open(tmp_path / "o6_out.tif")
    assert back.getexif().get(0x010F) == "ddn-cam" and back.getexif().get(0x0112, 1) == 1
    assert 0x0100 not in Image.open(tmp_path / "o6_out.png").getexif()  # no stale ImageWidth


def test_unsupported_tiff_layouts_are_refused_in_one_line(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    rgb16 = smooth_image(23, 37).astype(np.uint16) * 257
    tifffile.imwrite(tmp_path / "p16.tif", np.moveaxis(rgb16, -1, 0), photometric="rgb", planarconfig="separate")
    with pytest.raises(UnsupportedImage, match="separate colour planes"):  # OpenCV scrambled these, silently
        read_image(tmp_path / "p16.tif")
    tifffile.imwrite(tmp_path / "u32.tif", np.arange(64, dtype=np.uint32).reshape(8, 8) * 2**26)
    with pytest.raises(UnsupportedImage, match="32-bit integer"):  # clipped to 16 bits before
        read_image(tmp_path / "u32.tif")


def test_oversized_exif_is_left_out_of_a_jpeg(tmp_path):
    """A JPEG's EXIF segment holds 64 kB; a larger EXIF (a TIFF's or PNG's) made Pillow raise
    ValueError, which escaped as a traceback and ended a folder run."""
    exif = Image.Exif()
    exif[0x010E] = "x" * 70000  # ImageDescription
    img = ImageData(color=smooth_image(16, 16), alpha=None, bits=8, format="png", exif=exif.tobytes())
    write_image(tmp_path / "a.jpg", img)
    assert Image.open(tmp_path / "a.jpg").size == (16, 16)
    write_image(tmp_path / "a.png", img)  # PNG has room for it
    assert Image.open(tmp_path / "a.png").getexif().get(0x010E) == "x" * 70000


def test_any_encoder_failure_is_one_output_error(tmp_path, monkeypatch):
    from ddn_cli.errors import OutputError
    from ddn_cli.io import encode_output

    def broken(self, *a, **k):
        raise ValueError("simulated encoder bug")

    monkeypatch.setattr(Image.Image, "save", broken)
    img = ImageData(color=smooth_image(8, 8), alpha=None, bits=8, format="jpeg")
    with pytest.raises(OutputError, match="a.jpg: the image encoder failed"):
        write_image(tmp_path / "a.jpg", img)
    with pytest.raises(OutputError, match="b.jpg: the image encoder failed"):
        encode_output(tmp_path / "b.jpg", img)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kind", ["grey", "rgb", "grey16"])
def test_png_transparency_key_becomes_alpha(tmp_path, kind):
    """A tRNS colour key (grey or RGB PNG) marks fully transparent pixels: they keep that as
    alpha instead of turning opaque."""
    g = smooth_image(12, 10)[..., 0]
    if kind == "grey":
        Image.fromarray(g).save(tmp_path / "t.png", transparency=int(g[0, 0]))
        key = g == g[0, 0]
    elif kind == "rgb":
        rgb = smooth_image(12, 10)
        Image.fromarray(rgb).save(tmp_path / "t.png", transparency=tuple(int(v) for v in rgb[0, 0]))
        key = (rgb == rgb[0, 0]).all(axis=2)
    else:
        g16 = g.astype(np.uint16) * 257
        Image.fromarray(g16).save(tmp_path / "t.png", transparency=int(g16[0, 0]))
        key = g16 == g16[0, 0]
    d = read_image(tmp_path / "t.png")
    assert d.alpha is not None and d.grey == (kind != "rgb")
    full = 65535 if kind == "grey16" else 255
    assert np.array_equal(d.alpha, np.where(key, 0, full).astype(d.alpha.dtype))


def test_cmyk_without_a_usable_profile_becomes_rgb_without_it(tmp_path):
    """A CMYK file is turned into RGB; its CMYK ICC profile no longer describes the pixels, so
    it is not passed on (a profile ImageCms can read converts through it to sRGB instead)."""
    fake_cmyk_profile = bytes(16) + b"CMYK" + bytes(108)
    Image.fromarray(smooth_image(8, 8)).convert("CMYK").save(tmp_path / "c.jpg", icc_profile=fake_cmyk_profile)
    d = read_image(tmp_path / "c.jpg")
    assert d.color.shape[2] == 3 and d.icc is None


@pytest.mark.parametrize("channels", [3, 1])
def test_bmp_output_keeps_alpha(tmp_path, channels):
    """Pillow writes RGBA as a 32-bit BMP whose fourth byte readers (Pillow included) ignore;
    ddn writes the alpha mask into a V4 header. Grey + alpha goes as RGBA (BMP has no LA)."""
    rng = np.random.default_rng(0)
    color = rng.integers(0, 256, (7, 9, channels), dtype=np.uint8)
    alpha = rng.integers(0, 256, (7, 9), dtype=np.uint8)
    write_image(tmp_path / "a.bmp", ImageData(color=color, alpha=alpha, bits=8, format="bmp"))
    d = read_image(tmp_path / "a.bmp")
    assert np.array_equal(d.alpha, alpha)
    assert np.array_equal(d.color, np.repeat(color, 3, axis=2) if channels == 1 else color)
    x = cv2.imread(str(tmp_path / "a.bmp"), cv2.IMREAD_UNCHANGED)  # another reader agrees
    assert x.shape == (7, 9, 4) and np.array_equal(x[..., 3], alpha)


def test_camera_exif_can_be_written_as_tiff(tmp_path):
    """Pillow's libtiff writer (deflate TIFF) cannot write EXIF's Exif and GPS sub-IFDs, so a
    camera JPEG could not be denoised into a TIFF; the TIFF keeps the main tags only."""
    exif = Image.Exif()
    exif[0x010F] = "Canon"
    exif[0x8769] = {0x9003: "2024:01:01 10:00:00"}
    exif[0x8825] = {1: "N"}
    Image.fromarray(smooth_image(24, 32)).save(tmp_path / "cam.jpg", exif=exif.tobytes(), quality=95)
    d = read_image(tmp_path / "cam.jpg")
    write_image(tmp_path / "cam.tif", d)
    back = Image.open(tmp_path / "cam.tif")
    assert back.size == (32, 24) and back.getexif().get(0x010F) == "Canon"
    write_image(tmp_path / "cam.png", d)  # other formats keep the sub-IFDs
    assert Image.open(tmp_path / "cam.png").getexif().get_ifd(0x8769).get(0x9003) == "2024:01:01 10:00:00"


@pytest.mark.parametrize("tag_type", ["I", "H"])
def test_tiff_orientation_stored_as_long_is_applied(tmp_path, tag_type):
    tifffile = pytest.importorskip("tifffile")
    a = _orientation_probe(np.uint8, 3)
    tifffile.imwrite(tmp_path / "o.tif", a, photometric="rgb", extratags=[(0x0112, tag_type, 1, 6, True)])
    assert np.array_equal(read_image(tmp_path / "o.tif").color, _orient_expected(a, 6))


def _png(w: int, h: int, depth: int, colour_type: int, rows: list[bytes], extra: bytes = b"") -> bytes:
    import struct
    import zlib

    def chunk(k: bytes, d: bytes) -> bytes:
        return struct.pack(">I", len(d)) + k + d + struct.pack(">I", zlib.crc32(k + d))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, colour_type, 0, 0, 0))
            + extra + chunk(b"IDAT", zlib.compress(b"".join(b"\0" + r for r in rows))) + chunk(b"IEND", b""))


@pytest.mark.parametrize("depth", [1, 2, 4])
def test_png_transparency_key_of_low_bit_depth_grey(tmp_path, depth):
    """Pillow scales 1/2/4-bit grey pixels to 0-255 but reports the key as stored: the key
    is scaled the same way, or no pixel would match."""
    import struct
    import zlib

    top = (1 << depth) - 1
    vals = np.arange(8 * 8).reshape(8, 8) % (top + 1)
    per = 8 // depth
    rows = [bytes(int("".join(format(int(v), f"0{depth}b") for v in r[i:i + per]), 2) for i in range(0, 8, per))
            for r in vals]
    trns = b"tRNS" + struct.pack(">H", top)
    extra = struct.pack(">I", 2) + trns + struct.pack(">I", zlib.crc32(trns))
    (tmp_path / "t.png").write_bytes(_png(8, 8, depth, 0, rows, extra))
    d = read_image(tmp_path / "t.png")
    assert d.alpha is not None and np.array_equal(d.alpha == 0, vals == top)


def test_transparency_key_matching_nothing_adds_no_alpha(tmp_path):
    g = np.full((6, 6), 100, np.uint8)
    Image.fromarray(g).save(tmp_path / "t.png", transparency=7)
    assert read_image(tmp_path / "t.png").alpha is None


def test_exif_just_under_the_jpeg_limit_is_kept(tmp_path):
    """The limit is Pillow's own (65533 bytes with the "Exif" header): a block at it is kept."""
    exif = Image.Exif()
    n = max(n for n in range(65400, 65533) if len((exif.__setitem__(0x010E, "x" * n), exif.tobytes())[1]) <= 65533)
    exif[0x010E] = "x" * n
    blob = exif.tobytes()
    assert 65500 < len(blob) <= 65533
    write_image(tmp_path / "a.jpg", ImageData(color=smooth_image(8, 8), alpha=None, bits=8, format="png", exif=blob))
    assert Image.open(tmp_path / "a.jpg").getexif().get(0x010E) == "x" * n


def test_memory_error_while_writing_is_one_output_error(tmp_path, monkeypatch):
    from ddn_cli import io as dio
    from ddn_cli.errors import OutputError

    def oom(*a, **k):
        raise MemoryError

    monkeypatch.setattr(dio, "encode_to", oom)
    with pytest.raises(OutputError, match="not enough memory"):
        write_image(tmp_path / "a.png", ImageData(color=smooth_image(8, 8), alpha=None, bits=8, format="png"))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("channels", [3, 1])
def test_16bit_tiff_alpha_is_marked_as_alpha(tmp_path, channels):
    """OpenCV writes 16-bit RGBA TIFFs without an ExtraSamples tag, so readers took the fourth
    sample for an unspecified one; ddn adds the tag (unassociated alpha). Grey + alpha goes as
    RGBA, as before."""
    tifffile = pytest.importorskip("tifffile")
    rng = np.random.default_rng(0)
    color = rng.integers(0, 65536, (5, 7, channels), dtype=np.uint16)
    alpha = rng.integers(0, 65536, (5, 7), dtype=np.uint16)
    write_image(tmp_path / "a.tif", ImageData(color=color, alpha=alpha, bits=16, format="tiff"))
    page = tifffile.TiffFile(tmp_path / "a.tif").pages[0]
    assert tuple(int(x) for x in page.extrasamples) == (2,) and page.samplesperpixel == 4
    d = read_image(tmp_path / "a.tif")
    assert d.bits == 16 and np.array_equal(d.alpha, alpha)
    assert np.array_equal(d.color, np.repeat(color, 3, axis=2) if channels == 1 else color)


def test_tiff_tag_rewrite_leaves_other_files_alone():
    from ddn_cli.tiffmeta import with_tags

    for data in (b"", b"\x89PNG\r\n\x1a\n", b"II*\x00\xff\xff\xff\xff", b"II+\x00" + bytes(12)):
        assert with_tags(data, {338: (3, 1, b"\x02\x00")}) == data


def test_tiffs_pillow_cannot_open_get_a_tiff_message(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    tifffile.imwrite(tmp_path / "f.tif", np.zeros((8, 8, 3), np.float32), photometric="rgb")
    with pytest.raises(UnsupportedImage, match="a TIFF with samples ddn cannot read"):
        read_image(tmp_path / "f.tif")


def test_16bit_transparency_key_matching_nothing_adds_no_alpha(tmp_path):
    Image.fromarray(np.full((6, 6), 30000, np.uint16)).save(tmp_path / "t.png", transparency=1234)
    d = read_image(tmp_path / "t.png")
    assert d.bits == 16 and d.alpha is None


def test_icc_and_exif_are_kept(tmp_path):
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    im = Image.fromarray(smooth_image(8, 8))
    exif = im.getexif()
    exif[0x010F] = "ddn-test-camera"
    for fmt, name in (("JPEG", "a.jpg"), ("PNG", "a.png"), ("WEBP", "a.webp"), ("TIFF", "a.tif")):
        im.save(tmp_path / name, format=fmt, icc_profile=icc, exif=exif.tobytes())
        d = read_image(tmp_path / name)
        assert d.icc == icc, fmt
        write_image(tmp_path / ("out_" + name), d)
        back = Image.open(tmp_path / ("out_" + name))
        assert back.info.get("icc_profile") == icc, fmt
        assert back.getexif().get(0x010F) == "ddn-test-camera", fmt


@pytest.mark.parametrize("channels,alpha", [(3, False), (3, True), (1, False), (1, True)])
def test_16bit_tiff_keeps_icc_and_descriptive_exif(tmp_path, channels, alpha):
    """16-bit TIFFs are written by OpenCV, which takes no metadata: a wide-gamut 16-bit TIFF
    (the usual hand-off from raw converters) came out with no profile, so viewers showed it
    as sRGB, and without its camera, date, author and resolution tags. A grey profile is
    left out where grey + alpha goes as RGBA (it would not describe RGB)."""
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB" if channels == 3 else "LAB")).tobytes()
    if channels == 1:  # a grey profile's colour space
        icc = icc[:16] + b"GRAY" + icc[20:]
    ex = Image.Exif()
    ex[0x010F], ex[0x0110], ex[0x8298] = "ddn-camera", "Model Z", "(c) someone"
    ex[0x0132], ex[0x0112] = "2026:12:03 10:00:00", 1
    ex[0x011A], ex[0x011B], ex[0x0128] = 300.0, 72.5, 2
    rng = np.random.default_rng(0)
    color = rng.integers(0, 65536, (6, 9, channels), dtype=np.uint16)
    a = rng.integers(0, 65536, (6, 9), dtype=np.uint16) if alpha else None
    write_image(tmp_path / "x.tif", ImageData(color=color, alpha=a, bits=16, format="tiff", icc=icc,
                                              exif=ex.tobytes()))
    with Image.open(tmp_path / "x.tif") as im:
        tags = im.tag_v2
        assert tags.get(271) == "ddn-camera" and tags.get(272) == "Model Z" and tags.get(33432) == "(c) someone"
        assert tags.get(306) == "2026:12:03 10:00:00" and tags.get(274) == 1 and tags.get(296) == 2
        assert float(tags.get(282)) == 300.0 and float(tags.get(283)) == 72.5
        assert (tags.get(338) == 2) == alpha or (tags.get(338) in (2, (2,))) == alpha
    d = read_image(tmp_path / "x.tif")
    assert d.icc == (None if channels == 1 and alpha else icc)
    assert np.array_equal(d.color, np.repeat(color, 3, axis=2) if channels == 1 and alpha else color)
    assert d.alpha is None if not alpha else np.array_equal(d.alpha, a)


def test_16bit_png_keeps_icc(tmp_path):
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    d = ImageData(color=np.full((4, 5, 3), 1000, np.uint16), alpha=None, bits=16, format="png", icc=icc)
    write_image(tmp_path / "x.png", d)
    assert read_image(tmp_path / "x.png").icc == icc


@pytest.mark.parametrize("content,reason", [
    (b"", "empty"),
    (b"hello, I am text", "not an image"),
])
def test_bad_files_raise_one_line_errors(tmp_path, content, reason):
    p = tmp_path / "x.png"
    p.write_bytes(content)
    with pytest.raises(UnsupportedImage) as e:
        read_image(p)
    assert reason in str(e.value) and str(p) in str(e.value) and "\n" not in str(e.value)


def test_truncated_png_and_jpeg(tmp_path):
    a = smooth_image(64, 64)
    for name in ("t.png", "t.jpg"):
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, format="PNG" if name.endswith("png") else "JPEG")
        (tmp_path / name).write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
        with pytest.raises(UnsupportedImage):
            read_image(tmp_path / name)


def test_pixel_limit(tmp_path):
    Image.new("RGB", (100, 100)).save(tmp_path / "big.png")
    with pytest.raises(ImageTooLarge) as e:
        read_image(tmp_path / "big.png", max_pixels=5000)
    assert "--max-pixels" in str(e.value)


def test_write_atomic_leaves_nothing_on_failure(tmp_path, monkeypatch):
    import os

    target = tmp_path / "out.png"
    target.write_bytes(b"old")

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]


def test_plan_jobs_layouts(tmp_path):
    (tmp_path / "in" / "sub").mkdir(parents=True)
    for n in ("in/a.png", "in/sub/b.jpg", "in/readme.txt"):
        (tmp_path / n).write_bytes(b"x")
    jobs, skipped = plan_jobs([tmp_path / "in"], tmp_path / "out")
    assert sorted(str(j.dst.relative_to(tmp_path)) for j in jobs) == ["out/a.png", "out/sub/b.jpg"]
    assert [p.name for p in skipped] == ["readme.txt"]
    jobs, _ = plan_jobs([tmp_path / "in"], tmp_path / "out", recursive=False)
    assert [j.src.name for j in jobs] == ["a.png"]
    jobs, _ = plan_jobs([tmp_path / "in/a.png"], tmp_path / "x.png")
    assert jobs[0].dst == tmp_path / "x.png"
    jobs, _ = plan_jobs([tmp_path / "in/a.png"], None)
    assert jobs[0].dst.name == "a_denoised.png"
    jobs, _ = plan_jobs([tmp_path / "in/a.png"], tmp_path / "o", out_format="jpeg")
    assert jobs[0].dst == tmp_path / "o" / "a.jpg"
    with pytest.raises(UsageError):
        plan_jobs([tmp_path / "in/a.png"], tmp_path / "in/a.png")
    with pytest.raises(UsageError):
        plan_jobs([tmp_path / "in"], tmp_path / "in")  # would write onto the inputs
    with pytest.raises(UsageError):
        plan_jobs([tmp_path / "missing.png"], tmp_path / "o")


def test_encode_jpeg_drops_alpha(tmp_path):
    d = ImageData(color=smooth_image(4, 4), alpha=np.full((4, 4), 7, np.uint8), bits=8, format="png")
    data = encode_image(d, "jpeg")
    assert Image.open(io.BytesIO(data)).mode == "RGB"


def test_images_are_encoded_straight_into_the_file(tmp_path):
    """write_image streams the encoder's output into the temp file (no in-memory copy of
    the encoded file): the result equals encode_image's bytes for 8- and 16-bit PNG, 16-bit
    TIFF and JPEG, and an encoder failing half-way leaves neither output nor temp file."""
    rgb8 = ImageData(color=smooth_image(40, 56, seed=3), alpha=None, bits=8, format="png")
    rgb16 = ImageData(color=smooth_image(40, 56, seed=4).astype(np.uint16) * 257, alpha=None, bits=16, format="png")
    for img, fmt, name in ((rgb8, "png", "a.png"), (rgb16, "png", "b.png"), (rgb16, "tiff", "c.tif"),
                           (rgb8, "jpeg", "d.jpg")):
        write_image(tmp_path / name, img, fmt)
        assert (tmp_path / name).read_bytes() == encode_image(img, fmt), name

    def half_then_fail(f):
        f.write(b"\x89PNG partial")
        raise RuntimeError("encoder crashed")

    with pytest.raises(RuntimeError, match="encoder crashed"):
        write_atomic(tmp_path / "e.png", half_then_fail)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.png", "c.tif", "d.jpg"]


def test_an_encoder_failure_is_reported_as_such_and_leaves_no_file(tmp_path):
    from ddn_cli.errors import OutputError

    def encoder_error(f):
        f.write(b"\x89PNG partial")
        raise OSError("encoder error -2 when writing image file")  # Pillow's kind: no errno

    with pytest.raises(OutputError, match="image encoder failed"):
        write_atomic(tmp_path / "x.png", encoder_error)
    assert list(tmp_path.iterdir()) == []


def test_encode_output_reports_an_encoder_failure_naming_the_file(tmp_path, monkeypatch):
    # folder runs encode small images in memory (io.encode_output) and write the bytes later:
    # an encoder failure there gets the same one-line error, naming the output, and no file
    import ddn_cli.io as io_mod
    from ddn_cli.errors import OutputError

    img = io_mod.ImageData(np.zeros((4, 5, 3), np.uint8), None, 8, "png")
    dst = tmp_path / "out" / "x.webp"
    assert io_mod.encode_output(dst, img)[:4] == b"RIFF"  # the suffix picks the format

    def broken(*a, **k):
        raise OSError("encoder error -2 when writing image file")  # Pillow's kind: no errno

    monkeypatch.setattr(io_mod, "encode_image", broken)
    with pytest.raises(OutputError, match="image encoder failed") as e:
        io_mod.encode_output(dst, img)
    assert str(dst) in str(e.value) and not (tmp_path / "out").exists()


def _png_row_filters(data: bytes, row_bytes: int) -> set[int]:
    import struct
    import zlib

    pos, idat = 8, b""
    while pos < len(data):
        n = struct.unpack(">I", data[pos:pos + 4])[0]
        if data[pos + 4:pos + 8] == b"IDAT":
            idat += data[pos + 8:pos + 8 + n]
        pos += 12 + n
    raw = zlib.decompress(idat)
    return {raw[i] for i in range(0, len(raw), row_bytes + 1)}


@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("deflate", ["isal", "zlib"])
def test_png_writer_is_lossless_for_every_mode_and_keeps_metadata(tmp_path, monkeypatch, bits, deflate):
    """Every PNG (grey, grey + alpha, RGB, RGBA; 8 and 16 bits) is written by pngwrite:
    Sub, Up or Average per row, deflated by ISA-L (or zlib where isal is missing).
    Lossless, ICC and EXIF kept, grey + alpha stays grey, and several IDAT strips decode as
    one image."""
    import sys

    import ddn_cli.pngwrite as pw
    from PIL import ImageCms

    if deflate == "zlib":
        monkeypatch.setitem(sys.modules, "isal", None)  # import isal -> ImportError
    monkeypatch.setattr(pw, "STRIP_BYTES", 200)  # many strips: the row above crosses strips
    assert type(pw._compressor()).__module__.startswith("isal") == (deflate == "isal")
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.new("RGB", (1, 1)).getexif()
    exif[0x010F] = "ddn-test-camera"
    rgb = smooth_image(33, 47, seed=7)
    rng = np.random.default_rng(3)
    rgb[::5] = rng.integers(0, 256, rgb[::5].shape)  # noisy rows: filter wrap-around
    alpha = (np.arange(33 * 47) % 256).reshape(33, 47).astype(np.uint8)
    if bits == 16:
        rgb = rgb.astype(np.uint16) * 257 + rng.integers(0, 257, rgb.shape).astype(np.uint16)
        alpha = alpha.astype(np.uint16) * 257
    cases = {"rgb": (rgb, None, 3), "rgba": (rgb, alpha, 4), "grey": (rgb[..., :1], None, 1),
             "la": (rgb[..., :1], alpha, 2)}
    for name, (color, a, ch) in cases.items():
        img = ImageData(color=color, alpha=a, bits=bits, format="png", icc=icc, exif=exif.tobytes())
        write_image(tmp_path / f"{name}.png", img)
        back = read_image(tmp_path / f"{name}.png")
        assert back.bits == bits and np.array_equal(back.color, color), name
        assert (back.alpha is None) == (a is None) and (a is None or np.array_equal(back.alpha, a)), name
        assert back.icc == icc, name
        assert Image.open(tmp_path / f"{name}.png").getexif().get(0x010F) == "ddn-test-camera", name
        data = (tmp_path / f"{name}.png").read_bytes()
        assert _png_row_filters(data, 47 * ch * bits // 8) <= {1, 2, 3}, name
        exif_at = data.index(b"eXIf") + 4
        assert data[exif_at:exif_at + 2] in (b"MM", b"II"), name  # a TIFF header, no "Exif\0\0"
        assert data.index(b"iCCP") < data.index(b"IDAT") and data.index(b"eXIf") < data.index(b"IDAT"), name


def test_png_writer_takes_views_and_refuses_what_png_cannot_hold():
    """Mirrored / transposed views (negative and odd strides) are written as their pixels;
    empty images and mismatched alpha are refused instead of written as broken files."""
    import io

    from ddn_cli.pngwrite import write_png

    rgb = smooth_image(21, 30, seed=5)
    for view in (rgb[..., ::-1], rgb[::-1, ::-1], rgb.transpose(1, 0, 2)):
        buf = io.BytesIO()
        write_png(buf, view)
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(buf.getvalue()))), view)
    with pytest.raises(ValueError):
        write_png(io.BytesIO(), np.zeros((0, 5, 3), np.uint8))
    with pytest.raises(ValueError, match="alpha"):
        write_png(io.BytesIO(), rgb, np.zeros((21, 30), np.uint16))


def test_row_filters_match_the_png_definition():
    """The vectorised uint8 filters against PNG's definitions, byte by byte, for whichever
    filter each row chose; and the choice is the smallest sum of |residual|."""
    from ddn_cli.pngwrite import filter_rows

    rng = np.random.default_rng(0)
    bpp, width = 3, 18
    rows = rng.integers(0, 256, (6, width), dtype=np.uint8)
    rows[1] = np.arange(width) * 7  # a ramp: Sub wins
    rows[2] = rows[1] + 1  # the row above plus one: Up wins
    prev = rng.integers(0, 256, width, dtype=np.uint8)
    for above in (None, prev):
        out = filter_rows(rows.copy(), above, bpp)
        assert out[1, 0] == 1 and out[2, 0] == 2
        for y in range(len(rows)):
            costs = {}
            for ft in (1, 2, 3):
                res = []
                for x in range(width):
                    left = int(rows[y, x - bpp]) if x >= bpp else 0
                    up = int(rows[y - 1, x]) if y else (0 if above is None else int(above[x]))
                    pred = {1: left, 2: up, 3: (left + up) // 2}[ft]
                    res.append((int(rows[y, x]) - pred) % 256)
                costs[ft] = sum(min(r, 256 - r) for r in res)
                if out[y, 0] == ft:
                    assert list(out[y, 1:]) == res, (y, ft)
            assert costs[int(out[y, 0])] == min(costs.values()), y


def test_16bit_tiff_encoder_errors_are_reported(tmp_path, monkeypatch):
    """An OpenCV encoder error (16-bit TIFF) fails that one output with OutputError and
    leaves no file."""
    import cv2

    from ddn_cli.errors import OutputError

    img = ImageData(color=smooth_image(20, 24, seed=9).astype(np.uint16) * 257, alpha=None, bits=16, format="tiff")

    def broken(*a, **k):
        raise cv2.error("simulated encoder failure")

    monkeypatch.setattr(cv2, "imencode", broken)
    with pytest.raises(OutputError, match="OpenCV could not encode"):
        write_image(tmp_path / "x.tif", img)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
@pytest.mark.parametrize("mask", [0o022, 0o027, 0o077])
def test_written_files_get_the_umask_permissions_and_the_umask_is_never_touched(tmp_path, mask, monkeypatch):
    """The kernel applies the umask to the temp file as it creates it: ddn neither reads nor
    sets it (setting it, even for a moment, would give files other threads create meanwhile
    the wrong permissions)."""
    from ddn_cli.io import write_atomic

    old = os.umask(mask)
    try:
        def no_umask(*a):
            raise AssertionError("os.umask called")

        monkeypatch.setattr(os, "umask", no_umask)
        write_atomic(tmp_path / "a.bin", b"data")
        monkeypatch.undo()
        assert os.umask(mask) == mask
    finally:
        os.umask(old)
    assert (tmp_path / "a.bin").stat().st_mode & 0o777 == 0o666 & ~mask
    assert (tmp_path / "a.bin").read_bytes() == b"data"


def test_write_atomic_takes_another_temp_name_when_one_exists(tmp_path, monkeypatch):
    """A temp name already taken (another process's, or a symlink planted there) is never
    opened, followed or overwritten: the next name is tried."""
    from ddn_cli import io as dio

    draws = iter([b"\x00" * 4, b"\x01" * 4, b"\x00" * 4, b"\x02" * 4])
    monkeypatch.setattr(dio.os, "urandom", lambda n: next(draws))
    taken = tmp_path / ".out.png.00000000.ddn-part"
    taken.write_bytes(b"someone else's")
    target = tmp_path / "elsewhere"
    target.write_bytes(b"keep")
    dio.write_atomic(tmp_path / "out.png", b"new")  # first draw taken
    assert taken.read_bytes() == b"someone else's"
    taken.unlink()
    taken.symlink_to(target)
    dio.write_atomic(tmp_path / "out.png", b"newer")  # second draw is a symlink: not followed
    assert target.read_bytes() == b"keep"
    assert (tmp_path / "out.png").read_bytes() == b"newer"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.png.00000000.ddn-part", "elsewhere", "out.png"]


def test_tiff_output_takes_only_descriptive_exif_tags(tmp_path):
    """Phones and Photoshop leave layout tags (ImageWidth, PhotometricInterpretation, ...) in a
    JPEG's EXIF; Pillow's TIFF writer took them for the new file's own and failed (encoder
    error -8) or wrote a TIFF nothing could open."""
    rgb = smooth_image(48, 64, seed=2)
    e = Image.Exif()
    e[0x010F] = "Phone"
    e[0x0100], e[0x0101] = 4000, 3000
    img = ImageData(color=rgb, alpha=None, bits=8, format="jpeg", exif=e.tobytes())
    write_image(tmp_path / "a.tif", img, "tiff")
    back = read_image(tmp_path / "a.tif")
    assert back.shape == (48, 64) and np.array_equal(back.color, rgb)
    assert Image.open(tmp_path / "a.tif").getexif()[0x010F] == "Phone"
    g = Image.Exif()
    g[0x0106] = 2  # PhotometricInterpretation RGB, on grey pixels
    grey = ImageData(color=rgb[..., :1].copy(), alpha=None, bits=8, format="png", exif=g.tobytes())
    write_image(tmp_path / "g.tif", grey, "tiff")
    assert np.array_equal(read_image(tmp_path / "g.tif").color, rgb[..., :1])


def test_grey_written_as_rgb_webp_drops_a_grey_icc_profile(tmp_path):
    gray_icc = b"\x00" * 16 + b"GRAY" + b"XYZ " + b"\x00" * 108  # the header's colour space field
    img = ImageData(color=smooth_image(16, 16)[..., :1].copy(), alpha=None, bits=8, format="jpeg", icc=gray_icc)
    write_image(tmp_path / "g.webp", img, "webp")
    assert "icc_profile" not in Image.open(tmp_path / "g.webp").info
    rgb_icc = b"\x00" * 16 + b"RGB " + b"XYZ " + b"\x00" * 108
    write_image(tmp_path / "c.webp", ImageData(color=smooth_image(16, 16), alpha=None, bits=8, format="png",
                                               icc=rgb_icc), "webp")
    assert Image.open(tmp_path / "c.webp").info.get("icc_profile") == rgb_icc


def test_jpeg_output_composites_alpha_over_white_and_refuses_oversize(tmp_path):
    """Transparent pixels got whatever colour lay under them (black, or a logo's key colour)."""
    color = np.zeros((8, 8, 3), np.uint8)
    color[..., 0] = 255  # hidden magenta-ish red under the transparent half
    alpha = np.zeros((8, 8), np.uint8)
    alpha[:, 4:] = 255
    write_image(tmp_path / "a.jpg", ImageData(color=color, alpha=alpha, bits=8, format="png"), "jpeg")
    a = np.asarray(Image.open(tmp_path / "a.jpg")).astype(int)
    assert (a[:, :3] > 240).all()  # white where transparent
    assert (a[:, 5:, 0] > 230).all() and (a[:, 5:, 1:] < 30).all()  # red where opaque
    la = ImageData(color=np.zeros((8, 8, 1), np.uint8), alpha=alpha, bits=8, format="png")
    write_image(tmp_path / "g.jpg", la, "jpeg")
    g = np.asarray(Image.open(tmp_path / "g.jpg")).astype(int)
    assert g.ndim == 2 and (g[:, :3] > 240).all() and (g[:, 5:] < 20).all()  # grey stays grey
    from ddn_cli.errors import OutputError

    wide = ImageData(color=np.zeros((1, 65501, 3), np.uint8), alpha=None, bits=8, format="png")
    with pytest.raises(OutputError, match=r"w\.jpg: JPEG cannot hold a 65501x1 image"):
        write_image(tmp_path / "w.jpg", wide, "jpeg")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jpg", "g.jpg"]


def test_write_atomic_without_replace_keeps_a_file_that_appeared(tmp_path, monkeypatch):
    from ddn_cli.errors import OutputExists

    (tmp_path / "o.png").write_bytes(b"someone's")
    with pytest.raises(OutputExists, match="--overwrite"):
        write_atomic(tmp_path / "o.png", b"ours", replace=False)
    assert (tmp_path / "o.png").read_bytes() == b"someone's" and len(list(tmp_path.iterdir())) == 1
    write_atomic(tmp_path / "new.png", b"ours", replace=False)
    assert (tmp_path / "new.png").read_bytes() == b"ours" and len(list(tmp_path.iterdir())) == 2

    def no_links(*a):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)  # a file system without hard links
    with pytest.raises(OutputExists):
        write_atomic(tmp_path / "o.png", b"ours", replace=False)
    write_atomic(tmp_path / "fat.png", b"ours", replace=False)
    assert (tmp_path / "fat.png").read_bytes() == b"ours" and (tmp_path / "o.png").read_bytes() == b"someone's"
    assert len(list(tmp_path.iterdir())) == 3


def _chunk(k: bytes, d: bytes) -> bytes:
    import struct
    import zlib

    return struct.pack(">I", len(d)) + k + d + struct.pack(">I", zlib.crc32(k + d))


@pytest.mark.parametrize("middle", [b"", b"tEXt", b"PLTE"])
def test_png_without_image_data_is_one_unsupported_image(tmp_path, middle):
    """IHDR + IEND (and nothing but ancillary chunks between): Pillow 13's verify() raised
    IndexError, which escaped read_image and ended a whole folder run with a traceback."""
    import struct

    extra = {b"": b"", b"tEXt": _chunk(b"tEXt", b"Comment\0x"), b"PLTE": _chunk(b"PLTE", bytes(range(12)))}[middle]
    colour_type = 3 if middle == b"PLTE" else 2
    p = tmp_path / "x.png"
    p.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 4, 8, colour_type, 0, 0, 0))
                  + extra + _chunk(b"IEND", b""))
    with pytest.raises(UnsupportedImage, match="x.png: cannot decode"):
        read_image(p)


def test_16bit_tiff_with_premultiplied_alpha_is_read_straight(tmp_path):
    """ExtraSamples 1 (associated alpha): the colour is premultiplied. OpenCV returns the
    samples as stored; they were taken for straight colour (1/alpha too dark, and written
    back marked as straight). The 8-bit path (Pillow) always un-premultiplied."""
    tifffile = pytest.importorskip("tifffile")
    straight = np.full((4, 5, 3), 60000, np.uint32)
    straight[0, 0] = (1000, 30000, 65535)
    alpha = np.full((4, 5), 16384, np.uint32)
    alpha[1, 1] = 0
    alpha[2, 2] = 65535
    pre = (straight * alpha[..., None] + 32767) // 65535
    tifffile.imwrite(tmp_path / "p.tif", np.dstack([pre, alpha]).astype(np.uint16), photometric="rgb",
                     extrasamples=[1])
    d = read_image(tmp_path / "p.tif")
    assert np.array_equal(d.alpha, alpha.astype(np.uint16))
    ok = alpha > 0
    assert np.abs(d.color.astype(int) - straight)[ok].max() <= 4  # 16384 levels of alpha: 4 of rounding
    assert (d.color[~ok] == 0).all()
    # unassociated alpha (ExtraSamples 2) is taken as stored
    tifffile.imwrite(tmp_path / "u.tif", np.dstack([pre, alpha]).astype(np.uint16), photometric="rgb",
                     extrasamples=[2])
    assert np.array_equal(read_image(tmp_path / "u.tif").color, pre.astype(np.uint16))


@pytest.mark.parametrize("photometric,channels", [("minisblack", 1), ("rgb", 3)])
def test_8bit_tiff_with_premultiplied_alpha_is_read(tmp_path, photometric, channels):
    """Pillow's modes La / RGBa (8-bit associated alpha): La was refused as "corrupt or
    truncated (conversion from La to L not supported)"."""
    tifffile = pytest.importorskip("tifffile")
    a = np.dstack([np.full((4, 4, channels), 50, np.uint8), np.full((4, 4), 128, np.uint8)])
    tifffile.imwrite(tmp_path / "p.tif", a, photometric=photometric, extrasamples=[1])
    d = read_image(tmp_path / "p.tif")
    assert d.color.shape == (4, 4, channels) and (d.alpha == 128).all()
    assert (np.abs(d.color.astype(int) - 100) <= 1).all()  # 50 * 255 / 128


def test_16bit_rgb_png_transparency_key_matching_nothing_adds_no_alpha(tmp_path):
    """libpng expands any tRNS colour key to an alpha channel; when no pixel has the key the
    16-bit colour image got an all-opaque alpha (and so an RGBA output), unlike 8-bit."""
    import struct

    rows = [struct.pack(">6H", 1, 2, 3, 4, 5, 6)]
    (tmp_path / "k.png").write_bytes(_png(2, 1, 16, 2, rows, _chunk(b"tRNS", struct.pack(">3H", 9, 9, 9))))
    d = read_image(tmp_path / "k.png")
    assert d.alpha is None and d.color.tolist() == [[[1, 2, 3], [4, 5, 6]]]
    (tmp_path / "h.png").write_bytes(_png(2, 1, 16, 2, rows, _chunk(b"tRNS", struct.pack(">3H", 4, 5, 6))))
    assert read_image(tmp_path / "h.png").alpha.tolist() == [[65535, 0]]


def test_16bit_png_with_a_malformed_bkgd_reads_on_every_path(tmp_path, monkeypatch):
    """A bKGD of the wrong length: the fast path passes over it, libpng refused the file, so
    the same image read or refused depending on its size or interlacing."""
    import struct

    import ddn_cli.pngread as pr

    rows = [struct.pack(">8H", 1, 2, 3, 9, 4, 5, 6, 9)]
    (tmp_path / "b.png").write_bytes(_png(2, 1, 16, 6, rows, _chunk(b"bKGD", bytes(8))))
    fast = read_image(tmp_path / "b.png")
    monkeypatch.setattr(pr, "worth_trying", lambda head, max_pixels: False)  # as a > 16 MP image
    slow = read_image(tmp_path / "b.png")
    assert fast.color.tolist() == slow.color.tolist() == [[[1, 2, 3], [4, 5, 6]]]
    assert fast.alpha.tolist() == slow.alpha.tolist() == [[9, 9]]


def test_two_inputs_writing_one_output_are_refused_with_the_right_hint(tmp_path):
    """``x.png`` and ``x.jpg`` in one folder, with --format png, would both write ``x.png``;
    ``a/x.png`` and ``b/x.png`` named into one output folder would both write ``out/x.png``."""
    from pathlib import Path

    src = tmp_path / "in"
    src.mkdir()
    for name in ("x.png", "x.jpg", "y.png"):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(src / name)
    with pytest.raises(UsageError, match="would both write") as e:
        plan_jobs([src], tmp_path / "out", out_format="png")
    assert "leave out --format" in e.value.hint
    jobs, _ = plan_jobs([src], tmp_path / "out")  # each keeps its own format: no clash
    assert len({j.dst for j in jobs}) == 3
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / d / "x.png")
    with pytest.raises(UsageError, match="would both write") as e:
        plan_jobs([tmp_path / "a" / "x.png", tmp_path / "b" / "x.png"], tmp_path / "out")
    assert "separate output folders" in e.value.hint
    from ddn_cli.io import first_collision

    assert first_collision([(Path("p"), tmp_path / "o"), (Path("q"), tmp_path / "o2")]) is None
    assert first_collision([(Path("p"), tmp_path / "o"), (Path("q"), tmp_path / "." / "o")]) == (
        Path("q"), Path("p"), tmp_path / "." / "o")


def test_a_lab_tiff_becomes_rgb_without_its_lab_profile(tmp_path):
    """A Lab TIFF is converted to RGB pixels; its Lab profile was kept on them, so the output
    claimed to be Lab and colour-managed tools could not use it."""
    from PIL import ImageCms

    rgb = Image.fromarray(smooth_image(16, 16))
    lab = ImageCms.profileToProfile(rgb, ImageCms.createProfile("sRGB"), ImageCms.createProfile("LAB"),
                                    outputMode="LAB")
    lab.save(tmp_path / "lab.tif", icc_profile=ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes())
    assert Image.open(tmp_path / "lab.tif").info.get("icc_profile")[16:20] == b"Lab "
    d = read_image(tmp_path / "lab.tif")
    assert d.color.shape == (16, 16, 3) and d.icc is None
    assert np.abs(d.color.astype(int) - np.asarray(rgb).astype(int)).max() <= 16  # really RGB


def _png_chunks(data: bytes) -> dict[bytes, bytes]:
    import struct

    out, pos = {}, 8
    while pos + 12 <= len(data):
        n = struct.unpack_from(">I", data, pos)[0]
        out.setdefault(data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n])
        pos += 12 + n
    return out


@pytest.mark.parametrize("path", ["fast", "pillow"])
def test_png_gamma_chromaticities_and_dpi_are_kept(tmp_path, path):
    """A PNG that says how to show its colours with gAMA / cHRM / sRGB instead of an ICC
    profile lost them (viewers then showed a gamma-1.0 image far too dark), and every
    output lost its resolution (pHYs). Both PNG decoding paths (ddn's own; Pillow's, taken
    here for a tEXt keyword the fast path leaves to it) keep them; sRGB is left out beside
    an ICC profile, as the PNG specification requires."""
    import struct
    import zlib

    from ddn_cli.pngwrite import chunk

    ok, enc = cv2.imencode(".png", smooth_image(16, 20)[..., ::-1])
    base = enc.tobytes()
    extra = (chunk(b"gAMA", struct.pack(">I", 100000))
             + chunk(b"cHRM", struct.pack(">8I", 31270, 32900, 64000, 33000, 30000, 60000, 15000, 6000))
             + chunk(b"sRGB", b"\x00") + chunk(b"pHYs", struct.pack(">IIB", 11811, 3937, 1)))
    if path == "pillow":
        extra += chunk(b"tEXt", b"XML:com.adobe.xmp\x00<x/>")
    (tmp_path / "a.png").write_bytes(base[:33] + extra + base[33:])
    from ddn_cli.pngread import _isal, decode_png

    if path == "fast" and _isal() is None:
        pytest.skip("no ISA-L: no fast PNG path")
    assert (decode_png((tmp_path / "a.png").read_bytes(), 10**9) is not None) == (path == "fast")
    d = read_image(tmp_path / "a.png")
    assert d.dpi == pytest.approx((300, 100), abs=0.01)
    write_image(tmp_path / "o.png", d)
    got = _png_chunks((tmp_path / "o.png").read_bytes())
    assert got[b"gAMA"] == struct.pack(">I", 100000) and got[b"sRGB"] == b"\x00"
    assert got[b"cHRM"] == struct.pack(">8I", 31270, 32900, 64000, 33000, 30000, 60000, 15000, 6000)
    assert got[b"pHYs"] == struct.pack(">IIB", 11811, 3937, 1)
    d.icc = b"\x00" * 16 + b"RGB " + b"\x00" * 100
    write_image(tmp_path / "icc.png", d)
    got = _png_chunks((tmp_path / "icc.png").read_bytes())
    assert b"sRGB" not in got and b"gAMA" in got and zlib.decompress(got[b"iCCP"][5:]) == d.icc
    for fmt in ("jpeg", "tiff", "bmp"):
        write_image(tmp_path / f"o.{fmt}", d.__class__(**{**d.__dict__, "format": fmt}), fmt=fmt)
        assert Image.open(tmp_path / f"o.{fmt}").info.get("dpi") == pytest.approx((300, 100), abs=0.5), fmt


def test_jpeg_dpi_reaches_every_output_turned_with_the_image(tmp_path):
    """A JPEG's resolution (JFIF density) was dropped from every output; a quarter-turned
    image's x and y resolutions swap with its axes."""
    im = Image.fromarray(smooth_image(16, 24))
    ex = im.getexif()
    ex[0x0112] = 6
    im.save(tmp_path / "a.jpg", dpi=(300, 150), exif=ex.tobytes())
    d = read_image(tmp_path / "a.jpg")
    assert d.color.shape[:2] == (24, 16) and d.dpi == pytest.approx((150, 300))
    for name in ("o.jpg", "o.png", "o.tif"):
        write_image(tmp_path / name, d)
        assert Image.open(tmp_path / name).info.get("dpi") == pytest.approx((150, 300), abs=0.5), name
    d16 = d.__class__(**{**d.__dict__, "color": d.color.astype(np.uint16) * 257, "bits": 16, "exif": None})
    write_image(tmp_path / "o16.tif", d16)
    assert Image.open(tmp_path / "o16.tif").info.get("dpi") == pytest.approx((150, 300), abs=0.5)


def test_xmp_is_kept_with_its_orientation_set_upright(tmp_path):
    """The XMP packet (Lightroom ratings, keywords, captions) was dropped from every output.
    It is kept; its tiff:Orientation, which ddn applies to the pixels (here it is the only
    orientation the file has), is set to 1 so that viewers do not turn the output again."""
    xmp = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
           b'<rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" xmlns:xmp="http://ns.adobe.com/xap/1.0/" '
           b'tiff:Orientation="6" xmp:Rating="4"/></rdf:RDF></x:xmpmeta>')
    Image.fromarray(smooth_image(16, 24)).save(tmp_path / "a.jpg", xmp=xmp, quality=95)
    d = read_image(tmp_path / "a.jpg")
    assert d.color.shape[:2] == (24, 16)  # turned by the XMP's orientation
    assert b'tiff:Orientation="1"' in d.xmp and b'xmp:Rating="4"' in d.xmp
    d16 = d.__class__(**{**d.__dict__, "color": d.color.astype(np.uint16) * 257, "bits": 16})
    for name, img in (("o.jpg", d), ("o.png", d), ("o.webp", d), ("o.tif", d), ("o16.tif", d16), ("o16.png", d16)):
        write_image(tmp_path / name, img)
        back = read_image(tmp_path / name)
        assert back.xmp is not None and b'xmp:Rating="4"' in back.xmp, name
        assert b'tiff:Orientation="1"' in back.xmp and back.color.shape[:2] == (24, 16), name
    from ddn_cli.io import upright_xmp

    assert upright_xmp("<tiff:Orientation> 8 </tiff:Orientation>") == b"<tiff:Orientation>1</tiff:Orientation>"
    assert upright_xmp(None) is None and upright_xmp(b"") is None


def _wider_red(icc: bytes) -> bytes:
    """sRGB's matrix profile with its red colorant moved (a stand-in for a wide-gamut one)."""
    import struct

    b = bytearray(icc)
    n = struct.unpack_from(">I", b, 128)[0]
    for k in range(n):
        sig, off, _ = struct.unpack_from(">4sII", b, 132 + 12 * k)
        if sig == b"rXYZ":
            x, y, z = struct.unpack_from(">3i", b, off + 8)
            struct.pack_into(">3i", b, off + 8, int(x * 1.25), int(y * 0.9), z)
    return bytes(b)


def test_bmp_output_converts_a_wide_gamut_image_to_srgb(tmp_path):
    """BMP output carries no profile, so it is shown as sRGB: a wide-gamut image written as BMP
    kept its pixels and lost its profile, and its colours shifted. They are now converted to
    sRGB (as LittleCMS does); an sRGB image, or one with a profile that is not RGB, is unchanged."""
    from PIL import ImageCms

    rgb = smooth_image(16, 16)
    rgb[:4, :4] = (200, 40, 40)
    srgb_icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    wide_icc = _wider_red(srgb_icc)
    lab_icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()
    want = np.asarray(ImageCms.profileToProfile(Image.fromarray(rgb), ImageCms.ImageCmsProfile(__import__("io").BytesIO(
        wide_icc)), ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")), outputMode="RGB")).astype(int)
    assert np.abs(want - rgb.astype(int)).max() > 10  # the stand-in profile really is another space
    for icc, expect in ((srgb_icc, rgb), (lab_icc, rgb), (wide_icc, want)):
        write_image(tmp_path / "o.bmp", ImageData(color=rgb.copy(), alpha=None, bits=8, format="png", icc=icc))
        out = np.asarray(Image.open(tmp_path / "o.bmp").convert("RGB")).astype(int)
        assert np.abs(out - np.asarray(expect).astype(int)).max() <= 2


@pytest.mark.parametrize("path", ["fast", "pillow"])
def test_png_text_chunks_are_kept(tmp_path, path):
    """A PNG's text chunks (Title, Author, Copyright, Comment, ...) were dropped. PNG outputs
    keep them: tEXt as it was, zTXt and iTXt rebuilt uncompressed (UTF-8 where Latin-1 cannot
    hold the text); the fast decoding path takes plain tEXt only, the rest goes to Pillow."""
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Copyright", "ACME, 2026")
    info.add_text("Author", "Jo")
    if path == "pillow":
        info.add_itxt("Description", "café ☕", zip=False)
        info.add_text("Comment", "zipped " * 20, zip=True)
    Image.fromarray(smooth_image(12, 16)).save(tmp_path / "a.png", pnginfo=info)
    from ddn_cli.pngread import _isal, decode_png

    if path == "fast" and _isal() is None:
        pytest.skip("no ISA-L: no fast PNG path")
    assert (decode_png((tmp_path / "a.png").read_bytes(), 10**9) is not None) == (path == "fast")
    d = read_image(tmp_path / "a.png")
    write_image(tmp_path / "o.png", d)
    with Image.open(tmp_path / "o.png") as back:
        back.load()
        got = dict(back.text)
    want = {"Copyright": "ACME, 2026", "Author": "Jo"}
    if path == "pillow":
        want.update(Description="café ☕", Comment="zipped " * 20)
    assert got == want
