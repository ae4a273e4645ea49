"""The denoise pipeline: jobs in, ``Result`` records out.

Decoding of the next file and encoding of the previous one run in threads while the
current image is denoised, so folder runs keep the model busy; on a CPU, small images are
denoised several at a time, each on its share of the threads. Library code: it
never prints; progress goes to ``on_event``.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import TYPE_CHECKING

import numpy as np

from .errors import DdnError, OutputError, OutputExists, OutputStorageFull, RunStopped
from .io import DEFAULT_MAX_PIXELS, ImageData, Job, encode_output, read_image, write_atomic, write_image
from .shapes import ShapeMemo, own_shape

if TYPE_CHECKING:
    import torch

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
    workers: int = 0  # small images denoised at once (0 = auto: one per CPU thread, 1 on a GPU)
    reuse_shapes: bool = True  # CPU: pad small images to a shape already run (shapes.py)


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


AUTO_TILE = 512  # --tile auto, on every device


def auto_tile(device_type: str) -> tuple[int, int]:
    """(tile, batch) defaults: bounded memory on CPUs, bigger batches on GPUs. On an H100,
    512 x 16 ran a 12 MP image 17% faster than 1024 x 4 with 21% less GPU memory
    (benchmarks/results/device/gpu_pipeline_probe.json)."""
    return (AUTO_TILE, 16) if device_type == "cuda" else (AUTO_TILE, 1)


def denoise_image(img: ImageData, den, **kw) -> tuple[ImageData, float]:
    """``_denoise_image``, with running out of memory anywhere in it (the noise estimate, the
    tiles, the output) as one ``OutOfMemory`` for this image: a folder run goes on."""
    from .descriptor import OutOfMemory, is_oom

    try:
        return _denoise_image(img, den, **kw)
    except Exception as e:  # noqa: BLE001 - only running out of memory is translated; the rest re-raised
        if not is_oom(e):
            raise
        h, w = img.shape
        raise OutOfMemory(f"not enough memory to denoise a {w}x{h} image",
                          "free memory, use a smaller --tile, or give --sigma N (the estimate needs memory too)") from None


def _denoise_image(img: ImageData, den, *, sigma: float | None, tile: int, overlap: int, batch_size: int,
                   on_tiles: Callable[[int, int], None] | None = None,
                   device_blend: bool | None = None,
                   run_shape: tuple[int, int] | None = None) -> tuple[ImageData, float]:
    """Denoise ``img`` (alpha untouched). Returns (new image, sigma used, 0-255 scale).
    ``device_blend``: crop, blend and convert the tiles on the model's device
    (``tiling_torch``); None = on GPUs, where host-side blending was the bottleneck.
    ``run_shape``: (H, W) to run an image that fits one tile at, reflect-padded and cropped
    back (``shapes.ShapeMemo``: reuses the kernels built for an earlier image); ignored if
    it is smaller than the image or larger than ``tile``, if it is the image's own shape
    (rounded up to ``den.size_multiple``: the network pads that itself), and on the
    device-blended (GPU) path."""
    from .noise import estimate_sigma
    from .tiling import run_tiled

    color = img.color
    scale = 65535.0 if color.dtype == np.uint16 else 255.0
    if sigma is None:
        sigma = estimate_sigma(color, luma=img.chroma_subsampled, alpha=img.alpha)
    grey = color.shape[2] == 1
    # Grey images go through the colour model replicated to RGB: the noise is then the same
    # in all three channels, sqrt(3) x sigma along the luma direction and none in chroma,
    # which the model, trained on noise independent in each channel, handles poorly (Kodak24
    # grey at sigma 25: 24.9 dB). So noise is added in the two chroma directions only, making
    # the noise independent in each channel with sigma sqrt(3) x sigma, what the model is told;
    # the output's channel mean (its luma) is the result, and the added noise, orthogonal to
    # it, leaves that mean's input untouched: 29.9 dB (benchmarks/grey_sigma.py).
    model_sigma = float(sigma) * (3 ** 0.5 if grey else 1.0)
    level = model_sigma / 255.0 if grey else 0.0  # the chroma noise's sigma, [0, 1] scale
    if device_blend is None:
        device_blend = hasattr(den, "run_tensor") and den.device.type == "cuda"
    if device_blend:
        from .tiling_torch import run_tiled_device

        def on_device(x, exact):
            if level > 0:
                field = torch_chroma_field(x.shape[2], x.shape[3], x.device)  # (3, h, w)
                x = x + field.to(x.dtype) * level
            return den.run_tensor(x, model_sigma, exact)

        out = run_tiled_device(color, on_device, device=den.device,
                               tile=tile, overlap=min(overlap, tile - 1), batch_size=batch_size,
                               align=den.size_multiple, on_tiles=on_tiles, sides=True)
        return dataclasses.replace(img, color=out, notes=list(img.notes)), float(sigma)

    def to_float(a: np.ndarray) -> np.ndarray:
        f = a.astype(np.float32)
        f /= scale
        return np.repeat(f, 3, axis=2) if grey else f

    def from_float(f: np.ndarray) -> np.ndarray:  # f: run_tiled's scratch rows, overwritten
        if grey:
            f = f.mean(axis=2, keepdims=True)
        f *= scale
        np.rint(f, out=f)
        np.clip(f, 0, scale, out=f)
        return f.astype(color.dtype)

    h, w = color.shape[:2]
    src = color
    # at its own shape (rounded up to the model's multiple) the network pads the image itself
    if (run_shape is not None and tuple(run_shape) != own_shape(h, w, den.size_multiple)
            and h <= run_shape[0] <= tile and w <= run_shape[1] <= tile):
        src = pad_reflect(color, run_shape)
    out = np.empty_like(src)
    # a Denoiser is told on which sides of a tile its output must be exact (the image's edges,
    # thin overlaps): on the others its inference form skips recomputing the outermost ring of
    # pixels, which blending all but ignores (weight <= 0.0034): 8% less time per inner
    # 456 x 476 tile in bf16 on an AMX CPU
    sides = hasattr(den, "run_tensor")

    def with_chroma(b: np.ndarray) -> np.ndarray:  # b: (N, h, w, 3) float32, grey replicated
        return b + chroma_field(b.shape[1], b.shape[2]) * np.float32(level) if level > 0 else b

    fn = ((lambda b, exact: den(with_chroma(b), model_sigma, exact)) if sides
          else (lambda b: den(with_chroma(b), model_sigma)))
    run_tiled(src, fn, tile=tile, overlap=min(overlap, tile - 1), batch_size=batch_size, align=den.size_multiple,
              to_float=to_float, from_float=from_float, out=out, on_tiles=on_tiles, work_channels=3, sides=sides)
    if src is not color:
        out = np.ascontiguousarray(out[:h, :w])
    # everything else as read (alpha, profile, EXIF, how the file was stored)
    return dataclasses.replace(img, color=out, notes=list(img.notes)), float(sigma)


# the two unit chroma directions, orthogonal to the luma (1, 1, 1) / sqrt(3) and to each other
_CHROMA = np.array([[1.0, -1.0, 0.0], [1.0, 1.0, -2.0]]) / np.array([[2 ** 0.5], [6 ** 0.5]])


@functools.lru_cache(maxsize=8)
def chroma_field(h: int, w: int) -> np.ndarray:
    """(h, w, 3) float32 noise of unit sigma in each of the two chroma directions and none
    along the luma: its three channels sum to zero at every pixel. Fixed (seeded) per tile
    size, so that a grey image's output is repeatable; read-only (shared by the tiles)."""
    z = np.random.default_rng(20201).standard_normal((h, w, 2))
    f = (z @ _CHROMA).astype(np.float32)
    f.flags.writeable = False
    return f


_torch_fields: dict = {}


def torch_chroma_field(h: int, w: int, device) -> torch.Tensor:
    """``chroma_field`` as a (3, h, w) tensor on ``device`` (kept for the last few sizes)."""
    import torch

    key = (h, w, str(device))
    if key not in _torch_fields:
        if len(_torch_fields) >= 8:
            _torch_fields.pop(next(iter(_torch_fields)))
        _torch_fields[key] = torch.from_numpy(np.ascontiguousarray(chroma_field(h, w).transpose(2, 0, 1))).to(device)
    return _torch_fields[key]


def pad_reflect(a: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``a`` (H, W, C) padded at the bottom and right to ``shape``: mirrored (without
    repeating the edge row, as the network's own padding), or edge rows repeated where the
    padding is wider than the image."""
    ph, pw = shape[0] - a.shape[0], shape[1] - a.shape[1]
    mode = "reflect" if ph < a.shape[0] and pw < a.shape[1] else "edge"
    return np.pad(a, ((0, ph), (0, pw), (0, 0)), mode=mode)


def read_denoised(path, den, *, sigma: float | None, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[ImageData, float | None]:
    """Read ``path`` and, when ``den`` is given, denoise it with the device's default tiling.
    Returns (image, sigma used or None) - the front half of ``ddn segment``/``ddn classify``."""
    img = read_image(path, max_pixels)
    if den is None:
        return img, None
    tile, batch = auto_tile(den.device.type)
    return denoise_image(img, den, sigma=sigma, tile=tile, overlap=den.overlap, batch_size=batch)


@dataclass
class ReadAhead:
    """The first image to do, read in a background thread while the caller does something
    else (``read_ahead``: the CLI loads the model meanwhile)."""

    job: Job
    future: Future | None
    max_pixels: int

    thread: threading.Thread | None = None

    def take(self) -> Future | None:
        """The read's future, handed over once: afterwards this object no longer holds the
        decoded image (a run keeps its ``ReadAhead`` to the end; the image must not)."""
        fut, self.future = self.future, None
        return fut

    def finish(self, timeout: float = 30.0) -> None:
        """Wait (at most ``timeout`` seconds) for the reading thread to end: call it before the
        process exits. A daemon thread still inside OpenCV's C++ when the interpreter shut down
        (an interrupt during the model load) aborted the process: std::terminate, exit 134 and
        a core dump instead of 130. The wait is bounded (the thread stays a daemon) so that a
        thread stuck for good (an import lock an interrupt left taken) cannot hang the exit."""
        if self.thread is not None:
            self.thread.join(timeout)


def _to_do(job: Job, overwrite: bool) -> bool:
    """Whether ``process`` denoises ``job``: its output is skipped if it exists, unless
    ``overwrite``; an output path that is a folder fails (``_blocked``). A path that cannot
    be checked (a name too long, a folder not searchable) counts as free: the write then says
    why it fails. (``os.path`` answers False where ``Path.exists`` raises.)"""
    return not os.path.isdir(job.dst) and (overwrite or not os.path.lexists(job.dst))  # a dangling link counts


def _blocked(job: Job) -> bool:
    """Whether ``job``'s output path is taken by a folder."""
    return os.path.isdir(job.dst)


def first_to_do(jobs: Sequence[Job], overwrite: bool) -> Job | None:
    """The first job ``process`` will denoise (the earlier ones are skipped: their output
    exists and ``overwrite`` is off)."""
    return next((j for j in jobs if _to_do(j, overwrite)), None)


def read_ahead(job: Job, max_pixels: int = DEFAULT_MAX_PIXELS) -> ReadAhead:
    """Start reading ``job``'s input in a daemon thread. Pass the result to ``process``: a
    one-photo run then decodes its input while torch is imported and the model loaded, which
    on a 2-core CPU are single-threaded. Call ``finish`` before the process exits."""
    fut: Future = Future()
    ahead = ReadAhead(job, fut, max_pixels)

    def run() -> None:
        if not fut.set_running_or_notify_cancel():
            return
        try:
            fut.set_result(read_image(job.src, max_pixels))
        except BaseException as e:  # noqa: BLE001 - handed over to whoever waits on it
            fut.set_exception(e)

    try:
        t = threading.Thread(target=run, name="ddn-read-ahead", daemon=True)
        t.start()
        ahead.thread = t
    except RuntimeError:  # no thread to be had: ``process`` reads the file itself
        ahead.take()
    return ahead


def process(jobs: Sequence[Job], den, opts: DenoiseOptions, on_event: Event | None = None,
            sink: list[Result] | None = None, ahead: ReadAhead | None = None) -> Iterator[Result]:
    """Denoise every job; yields one ``Result`` per job, in order. A failing input is
    reported and skipped; the others go on. Existing outputs are skipped unless
    ``opts.overwrite``. ``ahead``: the first job's read, already started (``read_ahead``);
    used if it is the first job to do, read with the same ``max_pixels``; else ignored.
    Every finished result is also appended to ``sink``; on an
    interrupt (KeyboardInterrupt, or the generator being closed) the write in flight
    is completed (atomically) and recorded there before the interrupt propagates."""
    sink = sink if sink is not None else []
    for r in _process(jobs, den, opts, on_event, sink, ahead):
        sink.append(r)
        yield r


# Images up to this size are denoised several at a time on a CPU, each on its own share of
# the threads (one each on 2 cores): 256x320 crops ran 1.16-1.42x faster that way than one
# image at a time on both threads (no barrier waits between the threads of one small image),
# and a decode or encode then delays one image instead of stalling every thread. Larger
# images go one at a time on all threads, so memory stays that of one image.
PARALLEL_MAX_PIXELS = 1_000_000
MAX_IMAGE_WORKERS = 4


def image_workers(den, requested: int = 0) -> int:
    """How many small images to denoise at once: ``requested`` if > 0, else one per CPU
    thread up to MAX_IMAGE_WORKERS on a CPU, and 1 on a GPU (whose batches of tiles
    already fill it)."""
    if requested > 0:
        return requested
    device = getattr(den, "device", None)
    if device is None or device.type != "cpu":
        return 1
    import torch

    return max(1, min(torch.get_num_threads(), MAX_IMAGE_WORKERS))


def _process(jobs, den, opts, on_event, sink, ahead=None) -> Iterator[Result]:
    import torch

    emit = on_event or (lambda kind, data: None)
    sink_before = len(sink)
    tile_auto, batch_auto = auto_tile(den.device.type)
    tile = opts.tile or tile_auto
    batch = opts.batch_size or batch_auto
    todo: list[Job] = []
    for j in jobs:
        if _blocked(j):
            yield Result(str(j.src), str(j.dst), "failed", f"{j.dst}: the output path is a folder (rename or remove it)",
                         model=den.name)
        elif not _to_do(j, opts.overwrite):
            yield Result(str(j.src), str(j.dst), "skipped", "output exists (use --overwrite)", model=den.name)
        else:
            todo.append(j)
    if not todo:
        return
    workers = image_workers(den, opts.workers)
    threads = torch.get_num_threads()
    with ThreadPoolExecutor(1, thread_name_prefix="ddn-read") as reader, \
            ThreadPoolExecutor(1, thread_name_prefix="ddn-write") as writer, \
            ThreadPoolExecutor(workers, thread_name_prefix="ddn-denoise") as pool:
        def read(j: Job) -> ImageData:
            return read_image(j.src, opts.max_pixels)

        def denoise(img: ImageData, on_tiles=None, run_shape=None):
            return denoise_image(img, den, sigma=opts.sigma, tile=tile, overlap=opts.overlap, batch_size=batch,
                                 on_tiles=on_tiles, run_shape=run_shape)

        def denoise_and_encode(img: ImageData, dst, run_shape) -> tuple[float, bytes | None, str | None]:
            """A small image's CPU work on one pool thread, encoding included: with every core
            running a denoise, encoding in a separate writer thread only oversubscribed them
            (in process, 120 crops: 0.88 of the pure rate this way, 0.78 through the writer
            thread). The file system's part (write, fsync, rename) is left to the writer
            thread: done here, the fsync idled this thread's core (utilisation 1.96 -> 1.88)."""
            out, used = denoise(img, run_shape=run_shape)
            try:
                return used, encode_output(dst, out, opts.out_format, opts.quality), None
            except DdnError as e:
                return used, None, str(e)

        # taken either way: an unused read-ahead must not keep its image for the whole run
        early = ahead.take() if ahead is not None else None
        usable = early is not None and ahead.job == todo[0] and ahead.max_pixels == opts.max_pixels
        pending_read: Future = early if usable else reader.submit(read, todo[0])
        del early
        pending_write: tuple[Future, Result] | None = None
        landed: list[Result] = []  # outputs in place, listed by the writer thread as it finishes each
        # denoising (and, for pooled small images, encoding), in input order
        inflight: deque[tuple[Job, Result, Future, float, bool]] = deque()  # ..., pooled
        parallel = False  # small images several at a time, torch threads split between them
        # shapes run so far (CPU): chosen here, in input order, so that a run is repeatable
        shapes = ShapeMemo(den.size_multiple) if opts.reuse_shapes and den.device.type == "cpu" else None

        def flush_write() -> Iterator[Result]:
            """The write in flight, finished and reported. Storage that refuses every write (full,
            read-only) stops the run here: each later image would be denoised only to fail."""
            nonlocal pending_write
            if pending_write:
                fut, res = pending_write
                done, pending_write = _finish_write(fut, res), None
                yield done
                if isinstance(fut.exception(), OutputStorageFull):
                    raise _Stop(fut.exception())

        def settle(entry) -> Iterator[Result]:
            """Wait for the oldest denoise and hand its output (an image, or a pooled job's
            encoded file) to the writer; writes happen one at a time, in input order."""
            nonlocal pending_write
            j, res, fut, t0, pooled = entry
            out, data = None, None
            try:
                got = fut.result()
            except DdnError as e:
                error = str(e)
            else:
                if pooled:  # (sigma, encoded file or None, encoder error)
                    used, data, error = got
                else:
                    (out, used), error = got, None
                res.sigma = round(used, 3)
            res.seconds = time.perf_counter() - t0
            yield from flush_write()
            if error is not None:
                res.status, res.error = "failed", error
                yield res
                return
            # one statement: an interrupt cannot fall between a submitted write and its record
            # without --overwrite an output that appeared since the run began is kept (OutputExists)
            pending_write = (writer.submit(_landing, landed, res, partial(write_atomic, replace=opts.overwrite), j.dst,
                                           data) if pooled
                             else writer.submit(_landing, landed, res, partial(write_image, replace=opts.overwrite),
                                                j.dst, out, opts.out_format, opts.quality)), res

        try:
            for i, j in enumerate(todo):
                t0 = time.perf_counter()
                fut = pending_read
                if i + 1 < len(todo):
                    pending_read = reader.submit(read, todo[i + 1])
                res = Result(str(j.src), str(j.dst), "ok", model=den.name)
                try:
                    img = fut.result()
                except DdnError as e:
                    while inflight:
                        yield from settle(inflight.popleft())
                    res.status, res.error = "failed", str(e)
                    res.seconds = time.perf_counter() - t0
                    yield from flush_write()
                    yield res
                    continue
                h, w = img.shape
                res.megapixels = h * w / 1e6
                res.notes = list(img.notes)
                # split the threads only if another small image runs beside this one: one in
                # flight already, or the next (its read was submitted above; decoding is quick)
                small = workers > 1 and h * w <= PARALLEL_MAX_PIXELS and (
                    (parallel and bool(inflight)) or (i + 1 < len(todo) and _is_small(pending_read)))
                if small != parallel:  # switch thread split only with nothing in flight
                    while inflight:
                        yield from settle(inflight.popleft())
                    torch.set_num_threads(max(1, threads // workers) if small else threads)
                    parallel = small
                emit("file_start", {"input": str(j.src), "index": i, "total": len(todo), "megapixels": res.megapixels})
                run_shape = None
                if shapes is not None and max(own_shape(h, w, den.size_multiple)) <= tile:
                    run_shape = shapes.choose(h, w)
                if small:
                    dfut = pool.submit(denoise_and_encode, img, j.dst, run_shape)
                else:
                    dfut = Future()
                    try:
                        dfut.set_result(denoise(img, lambda d, t: emit("tiles", {"done": d, "total": t}), run_shape))
                    except DdnError as e:
                        dfut.set_exception(e)
                del img
                inflight.append((j, res, dfut, t0, small))
                # one job more than the pool has threads: a thread that finishes before the
                # one holding the oldest image (which is settled first, to keep the order)
                # takes the queued one instead of idling
                while len(inflight) >= (workers + 1 if parallel else 1):
                    yield from settle(inflight.popleft())
            while inflight:
                yield from settle(inflight.popleft())
            yield from flush_write()
        except (KeyboardInterrupt, GeneratorExit):
            pending_read.cancel()
            if pending_write:  # the write in flight is atomic: let it finish and record it
                sink.append(_finish_write(*pending_write))
            # an interrupt can also fall after a write was finished but before its record
            # reached ``sink`` (here, or in ``process`` between receiving it and appending it):
            # the writer thread itself listed every output it put in place
            sink.extend(r for r in list(landed) if not any(r is x for x in sink))
            for _, _, fut, _, _ in list(inflight):  # not written: dropped (pool threads never write)
                fut.cancel()
            raise
        except _Stop as stop:
            pending_read.cancel()
            for _, _, fut, _, _ in list(inflight):  # denoised or not, nothing more is written
                fut.cancel()
            left = len(jobs) - (len(sink) - sink_before)  # every result so far is in ``sink``
            if left == 0:  # the last write failed: nothing was left to stop, a failure like any other
                return
            cause = stop.args[0]
            raise RunStopped(f"stopped with {left} image(s) not denoised: {cause.message}",
                             f"{cause.hint}, then rerun: the outputs already written are kept and skipped") from None
        finally:
            torch.set_num_threads(threads)


class _Stop(Exception):
    """Raised inside ``_process`` when a write met storage that refuses every write."""


def _landing(landed: list[Result], res: Result, write: Callable, *args) -> None:
    """``write(*args)``, then ``res`` listed in ``landed``: in the writer thread, which a
    KeyboardInterrupt (raised in the main thread only) cannot stop in between."""
    write(*args)
    landed.append(res)


def _is_small(read: Future) -> bool:
    """Whether a pending read yields an image small enough to share the threads."""
    try:
        h, w = read.result().shape
    except DdnError:
        return False
    return h * w <= PARALLEL_MAX_PIXELS


def _finish_write(fut: Future, res: Result) -> Result:
    t0 = time.perf_counter()
    try:
        fut.result()
    except OutputExists as e:
        res.status, res.error = "skipped", str(e)
    except OutputError as e:
        res.status, res.error = "failed", str(e)
    except DdnError as e:
        res.status, res.error = "failed", str(e)
    res.seconds += time.perf_counter() - t0
    return res
