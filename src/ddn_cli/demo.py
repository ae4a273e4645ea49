"""The quick-start demo: a sample photo shipped by an installed package (scikit-image's
data folder, read as a file, without importing scikit-image), synthetic noise added
as a real file would carry it (clipped, 8-bit), denoised with the default model;
writes noisy / denoised / side-by-side images and returns PSNR before and after."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import UsageError

SAMPLES = ("astronaut", "chelsea", "coffee")


def sample_path(name: str) -> Path:
    """Path of a sample photo: a file path, or a name from scikit-image's data folder."""
    p = Path(name)
    if p.is_file():
        return p
    if name not in SAMPLES:
        if p.suffix or len(p.parts) > 1:  # meant as a path
            raise UsageError(f"{name}: no such file", f"give an image path, or one of {', '.join(SAMPLES)}")
        raise UsageError(f"unknown demo image {name!r}", f"use one of {', '.join(SAMPLES)} or an image path")
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise UsageError("the demo photos come from scikit-image, which is not installed",
                         "pip install 'ddn-cli[demo]' (or scikit-image), or pass --image PATH")
    f = Path(list(spec.submodule_search_locations)[0]) / "data" / f"{name}.png"
    if not f.is_file():
        raise UsageError(f"{f}: sample photo missing from the scikit-image install", "pass --image PATH")
    return f


@dataclass
class DemoResult:
    image: str
    sigma: float
    sigma_estimated: float
    psnr_noisy: float
    psnr_denoised: float
    seconds: float
    files: dict[str, str]


def run_demo(out_dir: Path, *, image: str = "astronaut", sigma: float = 25.0, seed: int = 0, model: str | None = None,
             device: str = "auto", precision: str = "auto") -> DemoResult:
    import time

    from PIL import Image, ImageDraw

    from .descriptor import Denoiser
    from .evaluation.metrics import psnr
    from .io import ImageData, read_image, write_image
    from .pipeline import auto_tile, denoise_image
    from .registry import bundled_manifest, resolve_weights

    src = sample_path(image)
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out {out_dir}: is a file", "give a folder for the demo's images")
    files = {"noisy": out_dir / "noisy.png", "denoised": out_dir / "denoised.png",
             "comparison": out_dir / "comparison.png"}
    for f in files.values():
        if f.resolve() == Path(src).resolve():  # `--image dir/noisy.png --out dir` replaced the user's photo
            raise UsageError(f"--image {image}: the demo writes {f.name} in --out {out_dir}, which would replace it",
                             "give another --out folder")
    from .devices import resolve_device, resolve_precision

    resolve_precision(precision, resolve_device(device))  # a bad --device leaves no folder behind
    weights = resolve_weights(model)
    try:  # made before the work, so that a folder that cannot be made costs nothing
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"--out {out_dir}: cannot make the folder ({e.strerror or e})",
                         "give a folder that can be created") from None
    clean_img = read_image(src)
    clean = clean_img.color if not clean_img.grey else np.repeat(clean_img.color, 3, axis=2)
    if clean.dtype != np.uint8:
        clean = (clean.astype(np.uint32) // 257).astype(np.uint8)
    rng = np.random.default_rng(seed)
    noisy = np.clip(np.rint(clean + rng.normal(0.0, sigma, clean.shape)), 0, 255).astype(np.uint8)
    name = model or bundled_manifest().default("denoise").name
    den = Denoiser.load(weights, name=name, device=device, precision=precision)
    tile, batch = auto_tile(den.device.type)
    t0 = time.perf_counter()
    out, used = denoise_image(ImageData(noisy, None, 8, "png"), den, sigma=None, tile=tile, overlap=den.overlap,
                              batch_size=batch)
    secs = time.perf_counter() - t0
    write_image(files["noisy"], ImageData(noisy, None, 8, "png"))
    write_image(files["denoised"], out)
    h, w = clean.shape[:2]
    strip = np.concatenate([noisy, out.color, clean], axis=1)
    canvas = Image.new("RGB", (strip.shape[1], h + 24), "white")
    canvas.paste(Image.fromarray(strip), (0, 24))
    draw = ImageDraw.Draw(canvas)
    p_noisy, p_den = psnr(noisy, clean), psnr(out.color, clean)
    for i, label in enumerate((f"noisy (sigma {sigma:g}): {p_noisy:.2f} dB", f"ddn: {p_den:.2f} dB", "clean")):
        draw.text((i * w + 6, 6), label, fill="black")
    import io as _io

    buf = _io.BytesIO()
    canvas.save(buf, format="PNG")
    from .io import write_atomic

    write_atomic(files["comparison"], buf.getvalue())
    return DemoResult(image=str(src), sigma=sigma, sigma_estimated=used, psnr_noisy=p_noisy, psnr_denoised=p_den,
                      seconds=secs, files={k: str(v) for k, v in files.items()})
