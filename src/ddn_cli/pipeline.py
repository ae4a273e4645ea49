"""The denoise pipeline: jobs in, ``Result`` records out.

Decoding of the next file and encoding of the previous one run in threads while the
current image is denoised, so folder runs keep the model busy. Library code: it
never prints; progress goes to ``on_event``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import numpy as np

from .errors import DdnError, OutputError
from .io import DEFAULT_MAX_PIXELS, ImageData, Job, read_image, write_image

Event = Callable[[str, dict], None]


@dataclass(frozen=True)
class DenoiseOptions:
    sigma: float | None = None  # None = estimate per image
    tile: int | None = None  # None = auto
    overlap: int = 48
    batch_size: int = 0  # 0 = auto
    overwrite: bool = False
    out_format: str | None = None
    quality: int = 95
    max_pixels: int = DEFAULT_MAX_PIXELS


@dataclass
class Result:
    input: str
    output: str | None
    status: str  # ok | skipped | failed
    error: str | None = None
    seconds: float = 0.0
    sigma: float | None = None
    model: str | None = None
    megapixels: float = 0.0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def auto_tile(device_type: str) -> tuple[int, int]:
    """(tile, batch) defaults: bounded memory on CPUs, bigger batches on GPUs. On an H100,
    512 x 16 ran a 12 MP image 17% faster than 1024 x 4 with 21% less GPU memory
    (benchmarks/results/device/gpu_pipeline_probe.json)."""
    return (512, 16) if device_type == "cuda" else (512, 1)


def denoise_image(img: ImageData, den, *, sigma: float | None, tile: int, overlap: int, batch_size: int,
                  on_tiles: Callable[[int, int], None] | None = None,
                  device_blend: bool | None = None) -> tuple[ImageData, float]:
    """Denoise ``img`` (alpha untouched). Returns (new image, sigma used, 0-255 scale).
    ``device_blend``: crop, blend and convert the tiles on the model's device
    (``tiling_torch``); None = on GPUs, where host-side blending was the bottleneck."""
    from .noise import estimate_sigma
    from .tiling import run_tiled

    color = img.color
    scale = 65535.0 if color.dtype == np.uint16 else 255.0
    if sigma is None:
        sigma = estimate_sigma(color)
    grey = color.shape[2] == 1
    # Grey images go through the colour model replicated to RGB: the noise is then the
    # same in all three channels, i.e. sqrt(3) x sigma along the luma direction and none
    # in chroma, so the model is told sqrt(3) x sigma (measured: +1.8 dB over plain sigma).
    model_sigma = float(sigma) * (3 ** 0.5 if grey else 1.0)
    if device_blend is None:
        device_blend = hasattr(den, "run_tensor") and den.device.type == "cuda"
    if device_blend:
        from .tiling_torch import run_tiled_device

        out = run_tiled_device(color, lambda x: den.run_tensor(x, model_sigma), device=den.device, tile=tile,
                               overlap=min(overlap, tile - 1), batch_size=batch_size, align=den.size_multiple,
                               on_tiles=on_tiles)
        return ImageData(color=out, alpha=img.alpha, bits=img.bits, format=img.format, icc=img.icc, exif=img.exif,
                         notes=list(img.notes)), float(sigma)

    def to_float(a: np.ndarray) -> np.ndarray:
        f = a.astype(np.float32) / scale
        return np.repeat(f, 3, axis=2) if grey else f

    def from_float(f: np.ndarray) -> np.ndarray:
        if grey:
            f = f.mean(axis=2, keepdims=True)
        return np.clip(np.rint(f * scale), 0, scale).astype(color.dtype)

    out = np.empty_like(color)
    run_tiled(color, lambda b: den(b, model_sigma), tile=tile, overlap=min(overlap, tile - 1),
              batch_size=batch_size, align=den.size_multiple, to_float=to_float, from_float=from_float,
              out=out, on_tiles=on_tiles, work_channels=3)
    res = ImageData(color=out, alpha=img.alpha, bits=img.bits, format=img.format, icc=img.icc, exif=img.exif,
                    notes=list(img.notes))
    return res, float(sigma)


def read_denoised(path, den, *, sigma: float | None, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[ImageData, float | None]:
    """Read ``path`` and, when ``den`` is given, denoise it with the device's default tiling.
    Returns (image, sigma used or None) - the front half of ``ddn segment``/``ddn classify``."""
    img = read_image(path, max_pixels)
    if den is None:
        return img, None
    tile, batch = auto_tile(den.device.type)
    return denoise_image(img, den, sigma=sigma, tile=tile, overlap=den.overlap, batch_size=batch)


def process(jobs: Sequence[Job], den, opts: DenoiseOptions, on_event: Event | None = None,
            sink: list[Result] | None = None) -> Iterator[Result]:
    """Denoise every job; yields one ``Result`` per job, in order. A failing input is
    reported and skipped; the others go on. Existing outputs are skipped unless
    ``opts.overwrite``. Every finished result is also appended to ``sink``; on an
    interrupt (KeyboardInterrupt, or the generator being closed) the write in flight
    is completed (atomically) and recorded there before the interrupt propagates."""
    sink = sink if sink is not None else []
    for r in _process(jobs, den, opts, on_event, sink):
        sink.append(r)
        yield r


def _process(jobs, den, opts, on_event, sink) -> Iterator[Result]:
    emit = on_event or (lambda kind, data: None)
    tile_auto, batch_auto = auto_tile(den.device.type)
    tile = opts.tile or tile_auto
    batch = opts.batch_size or batch_auto
    todo: list[Job] = []
    for j in jobs:
        if j.dst.exists() and not opts.overwrite:
            yield Result(str(j.src), str(j.dst), "skipped", "output exists (use --overwrite)", model=den.name)
        else:
            todo.append(j)
    if not todo:
        return
    with ThreadPoolExecutor(1, thread_name_prefix="ddn-read") as reader, \
            ThreadPoolExecutor(1, thread_name_prefix="ddn-write") as writer:
        def read(j: Job) -> ImageData:
            return read_image(j.src, opts.max_pixels)

        pending_read: Future = reader.submit(read, todo[0])
        pending_write: tuple[Future, Result] | None = None
        try:
            for i, j in enumerate(todo):
                t0 = time.perf_counter()
                fut = pending_read
                if i + 1 < len(todo):
                    pending_read = reader.submit(read, todo[i + 1])
                res = Result(str(j.src), str(j.dst), "ok", model=den.name)
                try:
                    img = fut.result()
                    h, w = img.shape
                    res.megapixels = h * w / 1e6
                    res.notes = list(img.notes)
                    emit("file_start", {"input": str(j.src), "index": i, "total": len(todo), "megapixels": res.megapixels})
                    out, used = denoise_image(img, den, sigma=opts.sigma, tile=tile, overlap=opts.overlap,
                                              batch_size=batch,
                                              on_tiles=lambda d, t: emit("tiles", {"done": d, "total": t}))
                    res.sigma = round(used, 3)
                    del img
                except DdnError as e:
                    res.status, res.error = "failed", str(e)
                    res.seconds = time.perf_counter() - t0
                    if pending_write:
                        done, pending_write = _finish_write(*pending_write), None
                        yield done
                    yield res
                    continue
                if pending_write:
                    done, pending_write = _finish_write(*pending_write), None
                    yield done
                wf = writer.submit(write_image, j.dst, out, opts.out_format, opts.quality)
                res.seconds = time.perf_counter() - t0
                pending_write = (wf, res)
            if pending_write:
                done, pending_write = _finish_write(*pending_write), None
                yield done
        except (KeyboardInterrupt, GeneratorExit):
            pending_read.cancel()
            if pending_write:  # the write in flight is atomic: let it finish and record it
                sink.append(_finish_write(*pending_write))
            raise


def _finish_write(fut: Future, res: Result) -> Result:
    t0 = time.perf_counter()
    try:
        fut.result()
    except OutputError as e:
        res.status, res.error = "failed", str(e)
    except DdnError as e:
        res.status, res.error = "failed", str(e)
    res.seconds += time.perf_counter() - t0
    return res
