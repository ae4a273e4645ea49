"""The PNG fast path (pngread): the same pixels and metadata as Pillow's decode for every
plain PNG, and ``None`` - so Pillow decides, with its error messages - for anything else."""

import io
import struct
import threading
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from ddn_cli import pngread
from ddn_cli.errors import ImageTooLarge, UnsupportedImage
from ddn_cli.io import read_image
from ddn_cli.pngwrite import write_png


def slow_read(path, monkeypatch, **kw):
    """read_image with the fast path switched off (Pillow / OpenCV as before)."""
    with monkeypatch.context() as m:
        m.setattr(pngread, "worth_trying", lambda head, max_pixels: False)
        return read_image(path, **kw)


def noisy(h, w, c, bits, seed=0):
    rng = np.random.default_rng(seed)
    top = 65535 if bits == 16 else 255
    y, x = np.mgrid[0:h, 0:w]
    base = (x * 7 + y * 3)[..., None] * top // (7 * w + 3 * h)
    a = np.clip(base + rng.normal(0, top / 12, (h, w, c)), 0, top)
    return a.astype(np.uint16 if bits == 16 else np.uint8)


def chunks(data):
    pos, out = 8, []
    while pos < len(data):
        (n,) = struct.unpack_from(">I", data, pos)
        out.append(data[pos + 4:pos + 8])
        pos += 12 + n
    return out


def with_chunk(data, kind, payload, before=b"IDAT"):
    """``data`` with a chunk inserted before the first ``before`` chunk."""
    pos = 8
    while data[pos + 4:pos + 8] != before:
        pos += 12 + struct.unpack_from(">I", data, pos)[0]
    c = struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
    return data[:pos] + c + data[pos:]


def write_with(writer, a, alpha, path):
    if writer == "ddn":
        with open(path, "wb") as f:
            write_png(f, a, alpha)
    elif writer == "opencv":
        bgr = a[..., ::-1] if a.shape[2] == 3 else a
        arr = bgr if alpha is None else np.dstack([bgr if a.shape[2] == 3 else np.repeat(a, 3, 2), alpha])
        cv2.imwrite(str(path), np.ascontiguousarray(arr), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    else:  # Pillow: adaptive filters, image data split into several IDAT chunks
        arr = a[..., 0] if a.shape[2] == 1 else a
        im = Image.fromarray(arr)
        if alpha is not None:
            im.putalpha(Image.fromarray(alpha))
        im.save(path)


CASES = [(w, bits, c, alpha) for w in ("ddn", "opencv", "pillow") for bits in (8, 16) for c in (1, 3)
         for alpha in (False, True) if not (w == "pillow" and bits == 16)
         and not (w == "opencv" and c == 1 and alpha)]  # OpenCV has no grey + alpha: BGRA


@pytest.mark.parametrize("writer,bits,c,has_alpha", CASES)
def test_plain_pngs_decode_fast_to_the_same_pixels(tmp_path, monkeypatch, writer, bits, c, has_alpha):
    a = noisy(97, 131, c, bits)
    alpha = noisy(97, 131, 1, bits, seed=1)[..., 0] if has_alpha else None
    p = tmp_path / "a.png"
    write_with(writer, a, alpha, p)
    fast = pngread.decode_png(p.read_bytes(), 10**9)
    assert fast is not None, "a plain PNG must take the fast path"
    got, ref = read_image(p), slow_read(p, monkeypatch)
    assert got.color.dtype == ref.color.dtype == a.dtype and got.bits == ref.bits == bits
    assert np.array_equal(got.color, a) and np.array_equal(ref.color, a)
    if has_alpha:
        assert np.array_equal(got.alpha, alpha) and np.array_equal(ref.alpha, alpha)
    else:
        assert got.alpha is None and ref.alpha is None
    assert got.color.flags.c_contiguous and (got.icc, got.exif, got.notes, got.format) == (None, None, [], "png")


def test_several_idat_chunks_and_plain_text_chunks_stay_fast(tmp_path, monkeypatch):
    a = noisy(300, 400, 3, 8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    data = with_chunk(buf.getvalue(), b"tEXt", b"Software\x00some editor")
    data = with_chunk(data, b"tIME", b"\x07\xea\x0c\x03\x0a\x00\x00", before=b"IEND")  # after the data: allowed
    assert chunks(data).count(b"IDAT") > 1
    p = tmp_path / "a.png"
    p.write_bytes(data)
    assert pngread.decode_png(data, 10**9) is not None
    assert np.array_equal(read_image(p).color, a)


def test_the_icc_profile_is_kept(tmp_path, monkeypatch):
    icc = bytes(range(256)) * 3
    p = tmp_path / "a.png"
    Image.fromarray(noisy(20, 30, 3, 8)).save(p, icc_profile=icc)
    assert pngread.decode_png(p.read_bytes(), 10**9).icc == icc
    assert read_image(p).icc == slow_read(p, monkeypatch).icc == icc


def test_the_fast_path_needs_no_pillow(tmp_path, monkeypatch):
    """Plain PNGs really go the fast way: with Pillow's opener broken they still decode."""
    a = noisy(40, 50, 3, 8)
    p = tmp_path / "a.png"
    Image.fromarray(a).save(p)

    def broken(*args, **kw):
        raise AssertionError("Pillow was used")

    monkeypatch.setattr(Image, "open", broken)
    assert np.array_equal(read_image(p).color, a)


def _palette(p):
    Image.fromarray(noisy(20, 30, 3, 8)).convert("P").save(p)


def _rgb_trns(p):
    Image.fromarray(noisy(20, 30, 3, 8)).save(p, transparency=(1, 2, 3))


def _exif(p):
    ex = Image.Exif()
    ex[0x0112] = 6
    Image.fromarray(noisy(20, 30, 3, 8)).save(p, exif=ex.tobytes())


def _raw_exif_text(p):
    buf = io.BytesIO()
    Image.fromarray(noisy(20, 30, 3, 8)).save(buf, format="PNG")
    p.write_bytes(with_chunk(buf.getvalue(), b"tEXt", b"Raw profile type exif\x00\nexif\n0\n"))


def _xmp(p):
    buf = io.BytesIO()
    Image.fromarray(noisy(20, 30, 3, 8)).save(buf, format="PNG")
    xmp = b'<x:xmpmeta><rdf:Description tiff:Orientation="3"/></x:xmpmeta>'
    p.write_bytes(with_chunk(buf.getvalue(), b"iTXt", b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + xmp))


def _animated(p):
    frames = [Image.fromarray(noisy(20, 30, 3, 8, seed=s)) for s in range(2)]
    frames[0].save(p, save_all=True, append_images=frames[1:])


def _unknown_chunk(p):
    buf = io.BytesIO()
    Image.fromarray(noisy(20, 30, 3, 8)).save(buf, format="PNG")
    p.write_bytes(with_chunk(buf.getvalue(), b"vpAg", b"\x00" * 9))


@pytest.mark.parametrize("make", [_palette, _rgb_trns, _exif, _raw_exif_text, _xmp, _animated, _unknown_chunk])
def test_anything_else_goes_to_pillow_with_the_same_result(tmp_path, monkeypatch, make):
    p = tmp_path / "a.png"
    make(p)
    assert pngread.decode_png(p.read_bytes(), 10**9) is None
    got, ref = read_image(p), slow_read(p, monkeypatch)
    assert np.array_equal(got.color, ref.color) and (got.exif, got.notes) == (ref.exif, ref.notes)


def test_the_header_decides_what_is_worth_reading_whole():
    buf = io.BytesIO()
    Image.fromarray(noisy(20, 30, 3, 8)).save(buf, format="PNG")
    head = buf.getvalue()[:64]
    assert pngread.worth_trying(head, 10**9)
    assert not pngread.worth_trying(head, 599)  # over --max-pixels: Pillow's path refuses it
    interlaced = head[:28] + b"\x01" + head[29:]
    assert not pngread.worth_trying(interlaced, 10**9)
    assert not pngread.worth_trying(head[:20], 10**9) and not pngread.worth_trying(b"GIF89a" + head[6:], 10**9)
    big = head[:16] + struct.pack(">II", 5000, 4000) + head[24:]
    assert not pngread.worth_trying(big, 10**9)  # 20 MP > FAST_MAX_PIXELS: memory first
    for w, h in ((1_000_001, 1), (1, 1_000_001)):  # over libpng's limit on a side
        assert not pngread.worth_trying(head[:16] + struct.pack(">II", w, h) + head[24:], 10**9)
    assert pngread.worth_trying(head[:16] + struct.pack(">II", 1, 1_000_000) + head[24:], 10**9)


def _flip_idat_byte(data):
    i = data.index(b"IDAT") + 20
    return data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:]


def _bad_deflate_good_crc(data):
    i = data.index(b"IDAT")
    (n,) = struct.unpack_from(">I", data, i - 4)
    body = b"\x78\x01" + b"\xff" * (n - 2)
    return data[:i + 4] + body + struct.pack(">I", zlib.crc32(b"IDAT" + body)) + data[i + 8 + n:]


def _short_data(data):
    i = data.index(b"IDAT")
    (n,) = struct.unpack_from(">I", data, i - 4)
    body = zlib.compress(b"\x00" * 100)
    return data[:i - 4] + struct.pack(">I", len(body)) + b"IDAT" + body + struct.pack(">I", zlib.crc32(b"IDAT" + body)) \
        + data[i + 8 + n:]


@pytest.mark.parametrize("spoil", [_flip_idat_byte, _bad_deflate_good_crc, _short_data,
                                   lambda d: d[:len(d) // 2], lambda d: d[:-12]])
def test_damaged_files_get_pillows_error(tmp_path, monkeypatch, spoil):
    buf = io.BytesIO()
    Image.fromarray(noisy(60, 80, 3, 8)).save(buf, format="PNG")
    data = spoil(buf.getvalue())
    p = tmp_path / "a.png"
    p.write_bytes(data)
    assert pngread.decode_png(data, 10**9) is None
    with pytest.raises(UnsupportedImage) as fast:
        read_image(p)
    with pytest.raises(UnsupportedImage) as slow:
        slow_read(p, monkeypatch)
    assert str(fast.value) == str(slow.value) and str(p) in str(fast.value)


def test_the_pixel_limit_still_applies(tmp_path):
    p = tmp_path / "a.png"
    Image.fromarray(noisy(40, 50, 3, 8)).save(p)
    with pytest.raises(ImageTooLarge):
        read_image(p, max_pixels=1999)
    assert read_image(p, max_pixels=2000).shape == (40, 50)


@pytest.mark.parametrize("failure", [MemoryError, RuntimeError])
def test_a_failure_inside_the_fast_path_falls_back_to_pillow(tmp_path, monkeypatch, failure):
    a = noisy(40, 50, 3, 8)
    p = tmp_path / "a.png"
    Image.fromarray(a).save(p)

    def fail(*args):
        raise failure("fast path bug")

    monkeypatch.setattr(pngread, "_unfilter", fail)
    assert pngread.decode_png(p.read_bytes(), 10**9) is None
    assert np.array_equal(read_image(p).color, a)


def _one_idat(data):
    """The same PNG with all its image data in one chunk."""
    pos, out, body = 8, [data[:8]], b""
    while pos < len(data):
        (n,) = struct.unpack_from(">I", data, pos)
        kind = data[pos + 4:pos + 8]
        if kind == b"IDAT":
            body += data[pos + 8:pos + 8 + n]
        else:
            if kind == b"IEND":
                out.append(struct.pack(">I", len(body)) + b"IDAT" + body + struct.pack(">I", zlib.crc32(b"IDAT" + body)))
            out.append(data[pos:pos + 12 + n])
        pos += 12 + n
    return b"".join(out)


def test_one_large_idat_chunk(tmp_path):
    a = noisy(300, 400, 3, 8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    data = _one_idat(buf.getvalue())
    assert chunks(data).count(b"IDAT") == 1 and len(data) > 3 * 0xFFFF
    assert np.array_equal(pngread.decode_png(data, 10**9).color, a)


def _outcome(fn):
    try:
        return "ok", fn().color.tobytes()
    except UnsupportedImage as e:
        return "error", str(e)


def test_more_image_data_than_the_header_says_is_not_inflated_past_it(tmp_path, monkeypatch):
    h, w = 60, 80
    rows = h * (1 + 3 * w)
    body = zlib.compress(b"\x00" * (rows + 300_000))  # a small file that inflates far beyond the image
    buf = io.BytesIO()
    Image.fromarray(noisy(h, w, 3, 8)).save(buf, format="PNG")
    data = buf.getvalue()
    i = data.index(b"IDAT")
    (n,) = struct.unpack_from(">I", data, i - 4)
    data = data[:i - 4] + struct.pack(">I", len(body)) + b"IDAT" + body + struct.pack(">I", zlib.crc32(b"IDAT" + body)) \
        + data[i + 8 + n:]
    p = tmp_path / "a.png"
    p.write_bytes(data)
    inflated = []
    real = pngread._inflate
    monkeypatch.setattr(pngread, "_inflate", lambda idat, r, stride, isal: inflated.append(r) or real(idat, r, stride, isal))
    assert pngread.decode_png(data, 10**9) is None and inflated == [rows]
    assert _outcome(lambda: read_image(p)) == _outcome(lambda: slow_read(p, monkeypatch))


def test_reused_buffers_never_leak_into_results(tmp_path):
    """Decoded images own their pixels: the next file, decoded into the same per-thread
    buffers, leaves an earlier result untouched."""
    imgs = [noisy(50, 70, 3, 8, seed=s) for s in range(3)]
    paths = []
    for k, a in enumerate(imgs):
        paths.append(tmp_path / f"{k}.png")
        Image.fromarray(a).save(paths[-1])
    got = [read_image(p) for p in paths]
    assert pngread.decode_png(paths[0].read_bytes(), 10**9) is not None  # the fast path, buffers and all
    for g, a in zip(got, imgs):
        assert np.array_equal(g.color, a)


def test_read_file_reuses_its_buffer_for_small_files_only(tmp_path, monkeypatch):
    small, big = tmp_path / "s.png", tmp_path / "b.png"
    Image.fromarray(noisy(20, 30, 3, 8)).save(small)
    Image.fromarray(noisy(200, 300, 3, 8)).save(big)
    monkeypatch.setattr(pngread._Buffers, "REUSE_MAX", 100_000)

    def whole(p):
        with open(p, "rb") as f:
            head = f.read(64)
            return pngread.read_file(f, head)

    def check():  # in a new thread: its own, empty buffers
        a = whole(small)
        assert bytes(a) == small.read_bytes()
        assert whole(small).obj is a.obj  # the same bytearray, read again
        c = whole(big)
        assert bytes(c) == big.read_bytes() and c.obj is not a.obj
        assert whole(small).obj is a.obj  # the large file's buffer was not kept
        assert whole(big).obj is not c.obj

    errors = []
    t = threading.Thread(target=lambda: _capture(check, errors))
    t.start()
    t.join()
    assert errors == [None]


def test_a_file_far_larger_than_its_image_is_not_read_whole(tmp_path, monkeypatch):
    buf = io.BytesIO()
    Image.fromarray(noisy(20, 12, 3, 8)).save(buf, format="PNG")
    p = tmp_path / "a.png"
    with open(p, "wb") as f:
        f.write(buf.getvalue())
        f.truncate(len(buf.getvalue()) + (64 << 20))  # 64 MB of zeros after IEND (sparse)
    with open(p, "rb") as f:
        assert pngread.read_file(f, f.read(64)) is None
    assert np.array_equal(read_image(p).color, slow_read(p, monkeypatch).color)


def test_memory_running_out_while_reading_falls_back(tmp_path, monkeypatch):
    p = tmp_path / "a.png"
    a = noisy(20, 30, 3, 8)
    Image.fromarray(a).save(p)

    def no_memory(self, slot, n):
        raise MemoryError

    monkeypatch.setattr(pngread._Buffers, "get", no_memory)
    assert np.array_equal(read_image(p).color, a)


@pytest.mark.parametrize("keyword", [b"exif", b"icc_profile", b"xmp", b"bbox", b"Raw profile type exif", b"gamma"])
def test_text_chunks_pillow_reads_as_metadata_go_to_pillow(tmp_path, monkeypatch, keyword):
    ex = Image.Exif()
    ex[0x0112] = 6
    buf = io.BytesIO()
    Image.fromarray(noisy(20, 12, 3, 8)).save(buf, format="PNG")
    data = with_chunk(buf.getvalue(), b"tEXt", keyword + b"\x00" + ex.tobytes())
    p = tmp_path / "a.png"
    p.write_bytes(data)
    assert pngread.decode_png(data, 10**9) is None
    fast, slow = _outcome(lambda: read_image(p)), _outcome(lambda: slow_read(p, monkeypatch))
    assert fast == slow
    if keyword == b"exif":  # Pillow reads the orientation from it: the image comes out turned
        assert read_image(p).shape == (12, 20)


@pytest.mark.parametrize("kind,payload", [(b"gAMA", b"\x00\x01"), (b"pHYs", b"\x00" * 4), (b"zTXt", b"Comment\x00\x00" + zlib.compress(b"x")),
                                          (b"iTXt", b"Comment\x00\x00\x00\x00\x00hello")])
def test_short_or_compressed_ancillary_chunks_go_to_pillow(tmp_path, monkeypatch, kind, payload):
    buf = io.BytesIO()
    Image.fromarray(noisy(20, 12, 3, 8)).save(buf, format="PNG")
    data = with_chunk(buf.getvalue(), kind, payload)
    p = tmp_path / "a.png"
    p.write_bytes(data)
    assert pngread.decode_png(data, 10**9) is None
    assert _outcome(lambda: read_image(p)) == _outcome(lambda: slow_read(p, monkeypatch))


@pytest.mark.parametrize("h,w", [(1, 1), (1, 57), (57, 1), (2, 3)])
def test_one_pixel_wide_or_high(tmp_path, monkeypatch, h, w):
    for c, bits in ((1, 8), (3, 16)):
        a = noisy(h, w, c, bits)
        p = tmp_path / "a.png"
        with open(p, "wb") as f:
            write_png(f, a)
        assert pngread.decode_png(p.read_bytes(), 10**9) is not None
        assert np.array_equal(read_image(p).color, a)


def test_a_bad_row_filter_type_goes_to_pillow_without_libpng_noise(tmp_path, monkeypatch, capfd):
    h, w = 30, 40
    a = noisy(h, w, 3, 8)
    raw = bytearray(b"".join(b"\x00" + a[y].tobytes() for y in range(h)))
    raw[7 * (1 + 3 * w)] = 9  # row 7: filter type 9 does not exist
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    good = buf.getvalue()
    i = good.index(b"IDAT")
    (n,) = struct.unpack_from(">I", good, i - 4)
    body = zlib.compress(bytes(raw))
    data = good[:i - 4] + struct.pack(">I", len(body)) + b"IDAT" + body + struct.pack(">I", zlib.crc32(b"IDAT" + body)) \
        + good[i + 8 + n:]
    p = tmp_path / "a.png"
    p.write_bytes(data)
    capfd.readouterr()
    assert pngread.decode_png(data, 10**9) is None
    assert "libpng" not in capfd.readouterr().err
    assert _outcome(lambda: read_image(p)) == _outcome(lambda: slow_read(p, monkeypatch))


def test_the_inflater_is_fed_at_most_64_kb_at_a_time(monkeypatch):
    """One big IDAT chunk (as PNG optimisers write): fed whole, each call would copy the
    unconsumed rest, quadratic in the chunk's size."""
    real = pngread._isal()
    fed = []

    class Spy:
        def __init__(self):
            self.d = real.decompressobj()

        def decompress(self, data, max_length=0):
            fed.append(len(data))
            return self.d.decompress(data, max_length)

        def __getattr__(self, name):
            return getattr(self.d, name)

    class Isal:
        crc32, adler32 = real.crc32, real.adler32

        @staticmethod
        def decompressobj():
            return Spy()

    monkeypatch.setattr(pngread, "_isal", lambda: Isal)
    a = noisy(300, 400, 3, 8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    data = _one_idat(buf.getvalue())
    assert np.array_equal(pngread.decode_png(data, 10**9).color, a)
    assert max(fed) <= 0x10000 and sum(1 for n in fed if n) > 3


def _capture(fn, errors):
    try:
        fn()
    except BaseException as e:  # noqa: BLE001 - reported by the test's own thread
        errors.append(e)
    else:
        errors.append(None)
