"""Fuzzing the image reader: mutated and truncated real files must decode or raise the
clean DdnError, never anything else. CI runs a short pass; the documented long run is
DDN_FUZZ_EXAMPLES=10000 python -m pytest tests/test_fuzz.py tests/test_tiling.py -k fuzz_or_plan."""

import io
import os
from pathlib import Path

import cv2
import numpy as np
from conftest import smooth_image
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from ddn_cli.errors import DdnError
from ddn_cli.io import read_image

N = int(os.environ.get("DDN_FUZZ_EXAMPLES", "150"))


def seeds() -> list[bytes]:
    a = smooth_image(12, 10)
    out = []
    for fmt, kw in (("PNG", {}), ("JPEG", {"quality": 90}), ("TIFF", {}), ("WEBP", {}), ("BMP", {})):
        b = io.BytesIO()
        Image.fromarray(a).save(b, format=fmt, **kw)
        out.append(b.getvalue())
    ok, b16 = cv2.imencode(".png", (a.astype(np.uint16) * 257))
    out.append(b16.tobytes())
    b = io.BytesIO()
    Image.fromarray(np.dstack([a, a[..., 0]]), "RGBA").save(b, format="PNG")
    out.append(b.getvalue())
    return out


SEEDS = seeds()


@settings(max_examples=N, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.sampled_from(range(len(SEEDS))), cut=st.integers(0, 4000),
       flips=st.lists(st.tuples(st.integers(0, 4000), st.integers(1, 255)), max_size=8),
       ext=st.sampled_from([".png", ".jpg", ".tif", ".webp", ".bmp"]))
def test_fuzz_reader_only_raises_ddn_errors(tmp_path_factory, seed, cut, flips, ext):
    data = bytearray(SEEDS[seed])
    for pos, x in flips:
        if pos < len(data):
            data[pos] ^= x
    if cut:
        data = data[: max(0, len(data) - cut)]
    p = Path(tmp_path_factory.mktemp("fz")) / f"f{ext}"
    p.write_bytes(bytes(data))
    try:
        img = read_image(p, max_pixels=10_000_000)
    except DdnError as e:
        assert str(p) in str(e) and "\n" not in str(e)
        return
    assert img.color.ndim == 3 and img.color.shape[2] in (1, 3)
    assert img.color.dtype in (np.uint8, np.uint16)
    if img.alpha is not None:
        assert img.alpha.shape == img.color.shape[:2]
