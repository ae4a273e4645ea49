"""Pure tiling: plan overlapping tiles, build smooth blending windows, and run a
model tile by tile with bounded memory.

Tiles are processed in rows; finished rows are written into the output straight
away, so working memory is one strip of tiles, whatever the image size. Blending
uses a raised-cosine ramp over each overlap (zero weight at a tile's inner edge,
where its output is least reliable); accumulated weights are normalised, so the
per-pixel weights always sum to one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Tile:
    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def h(self) -> int:
        return self.y1 - self.y0

    @property
    def w(self) -> int:
        return self.x1 - self.x0


def _starts(size: int, tile: int, overlap: int, align: int) -> tuple[list[int], int]:
    """Tile start offsets along one axis: multiples of ``align``, stride about
    ``tile - overlap``; the last tile is clipped at ``size`` (it may be shorter)."""
    if size <= tile:
        return [0], tile
    # as few tiles as the size needs, shrunk evenly so the last one is not mostly overlap
    n = -(-(size - overlap) // max(1, tile - overlap))
    even = -(-(size + (n - 1) * overlap) // n)
    tile = min(tile, -(-even // align) * align)
    stride = max(align, ((tile - overlap) // align) * align)
    starts = list(range(0, size - tile, stride))
    last = -(-(size - tile) // align) * align  # ceil to align: aligned, and still reaches the end
    if starts[-1] != last:
        starts.append(last)
    return starts, tile


def plan_tiles(h: int, w: int, tile: int, overlap: int, align: int = 4) -> list[list[Tile]]:
    """Rows of tiles covering an h x w image. ``align`` >= 1, ``tile`` >= ``align``,
    0 <= overlap < tile. Tiles are at most ``tile`` (shrunk evenly per axis to limit wasted
    overlap). (A tile smaller than ``align`` would step by ``align`` and leave gaps.)"""
    if h < 1 or w < 1:
        raise ValueError("image must be at least 1x1")
    if align < 1 or tile < align or overlap < 0 or overlap >= tile:
        raise ValueError(f"bad tiling: tile={tile}, overlap={overlap}, align={align} "
                         "(need 1 <= align <= tile and 0 <= overlap < tile)")
    ys, th = _starts(h, tile, overlap, align)
    xs, tw = _starts(w, tile, overlap, align)
    return [[Tile(y, min(h, y + th), x, min(w, x + tw)) for x in xs] for y in ys]


def _ramp(n: int, lo_overlap: int, hi_overlap: int) -> np.ndarray:
    """1-D window of length n: raised cosine rising over ``lo_overlap`` at the start
    and falling over ``hi_overlap`` at the end; 1 elsewhere; strictly positive."""
    w = np.ones(n, dtype=np.float64)
    eps = 1e-3
    if lo_overlap > 0:
        k = min(lo_overlap, n)
        t = (np.arange(k) + 0.5) / lo_overlap
        w[:k] = np.minimum(w[:k], eps + (1 - eps) * 0.5 * (1 - np.cos(math.pi * t)))
    if hi_overlap > 0:
        k = min(hi_overlap, n)
        t = (np.arange(k)[::-1] + 0.5) / hi_overlap
        w[n - k:] = np.minimum(w[n - k:], eps + (1 - eps) * 0.5 * (1 - np.cos(math.pi * t)))
    return w


def tile_window(t: Tile, rows: list[list[Tile]], h: int, w: int) -> np.ndarray:
    """(t.h, t.w) float32 blend window: ramps only where a neighbouring tile overlaps."""
    top, bottom, left, right = window_extents(t, rows)
    wy = _ramp(t.h, top, bottom)
    wx = _ramp(t.w, left, right)
    return np.outer(wy, wx).astype(np.float32)


def window_extents(t: Tile, rows: list[list[Tile]]) -> tuple[int, int, int, int]:
    """How far the neighbouring tiles overlap ``t``: (top, bottom, left, right) pixels.
    Together with the tile's size this fixes its blend window."""
    top = bottom = left = right = 0
    ys = sorted({r[0].y0 for r in rows})
    ys_end = {r[0].y0: r[0].y1 for r in rows}
    xs = sorted({c.x0 for c in rows[0]})
    xs_end = {c.x0: c.x1 for c in rows[0]}
    i = ys.index(t.y0)
    j = xs.index(t.x0)
    if i > 0:
        top = max(0, ys_end[ys[i - 1]] - t.y0)
    if i + 1 < len(ys):
        bottom = max(0, t.y1 - ys[i + 1])
    if j > 0:
        left = max(0, xs_end[xs[j - 1]] - t.x0)
    if j + 1 < len(xs):
        right = max(0, t.x1 - xs[j + 1])
    return top, bottom, left, right


def weight_sum(h: int, w: int, tile: int, overlap: int, align: int = 4) -> np.ndarray:
    """Sum of normalised blend weights per pixel (all ones by construction); for tests."""
    rows = plan_tiles(h, w, tile, overlap, align)
    acc = np.zeros((h, w), np.float64)
    for row in rows:
        for t in row:
            acc[t.y0:t.y1, t.x0:t.x1] += tile_window(t, rows, h, w)
    out = np.zeros((h, w), np.float64)
    for row in rows:
        for t in row:
            out[t.y0:t.y1, t.x0:t.x1] += tile_window(t, rows, h, w) / acc[t.y0:t.y1, t.x0:t.x1]
    return out


BatchFn = Callable[[np.ndarray], np.ndarray]  # (N, h, w, C) float32 -> (N, h, w, C) float32


def run_tiled(
    src: np.ndarray,
    fn: BatchFn,
    *,
    tile: int,
    overlap: int,
    batch_size: int = 1,
    align: int = 4,
    to_float: Callable[[np.ndarray], np.ndarray] | None = None,
    from_float: Callable[[np.ndarray], np.ndarray] | None = None,
    out: np.ndarray | None = None,
    on_tiles: Callable[[int, int], None] | None = None,
    work_channels: int | None = None,
    sides: bool = False,
) -> np.ndarray:
    """Apply ``fn`` over ``src`` (H, W, C) tile by tile and blend.

    ``to_float`` converts a source crop to float32 (default: astype float32);
    ``from_float`` converts finished float rows to the output dtype (default: none,
    output float32). ``work_channels``: channels of ``fn``'s output if they differ from
    the source's (``from_float`` maps them back). ``sides``: call ``fn(crops, exact)``
    instead, ``exact`` = (top, bottom, left, right) from ``exact_sides``: False where every
    tile of the batch has a neighbour overlapping it by at least ``SKIP_OVERLAP`` px on that
    side, so that its outermost pixels there get a blending weight of at most 0.0034 and a
    model may compute them less exactly (``models/fast.py`` skips its border ring there).
    Same-size tiles are batched ``batch_size`` at a time. Memory: the output array plus one
    strip of tiles. ``on_tiles(done, total)`` reports progress.

    Scratch arrays are reused in place: ``fn``'s results are weighted where they lie (a
    float32 copy first if they are read-only, another dtype or a view of ``src``) and
    ``from_float`` gets finished rows it may overwrite. A lone tile (the image fits one:
    it is then the whole image) skips blending, its window being all ones. Temporaries
    cost page faults here (each fresh array of a few MB is new memory): 12 MP through an
    identity model took 385 ms in this loop with them.
    """
    h, w, c = src.shape
    wc = work_channels or c
    rows = plan_tiles(h, w, tile, overlap, align)
    total = sum(len(r) for r in rows)
    to_f = to_float or (lambda a: a.astype(np.float32))
    from_f = from_float or (lambda a: a)
    if out is None:
        probe = from_f(np.zeros((1, 1, wc), np.float32))
        out = np.empty((h, w, c), dtype=probe.dtype)
    if total == 1:  # the whole image in one tile: nothing to blend
        crops = to_f(src)[None]
        res = fn(crops, exact_sides(rows[0], rows)) if sides else fn(crops)
        out[:] = from_f(_scratch(res[0], src))
        if on_tiles:
            on_tiles(1, 1)
        return out
    done = 0
    carry_acc: np.ndarray | None = None
    carry_w: np.ndarray | None = None
    carry_y0 = 0
    for ri, row in enumerate(rows):
        y0, y1 = row[0].y0, row[0].y1
        acc = np.zeros((y1 - y0, w, wc), np.float32)
        wsum = np.zeros((y1 - y0, w, 1), np.float32)
        if carry_acc is not None:
            k = carry_acc.shape[0]
            off = carry_y0 - y0
            acc[off:off + k] += carry_acc
            wsum[off:off + k] += carry_w
        for batch in _batches(row, batch_size):
            parts = [to_f(src[t.y0:t.y1, t.x0:t.x1]) for t in batch]
            crops = parts[0][None] if len(parts) == 1 and not np.may_share_memory(parts[0], src) else np.stack(parts)
            res = fn(crops, exact_sides(batch, rows)) if sides else fn(crops)
            for t, r in zip(batch, res):
                win = tile_window(t, rows, h, w)[..., None]
                r = _scratch(r, src)
                np.multiply(r, win, out=r)
                acc[t.y0 - y0:t.y1 - y0, t.x0:t.x1] += r
                wsum[t.y0 - y0:t.y1 - y0, t.x0:t.x1] += win
            done += len(batch)
            if on_tiles:
                on_tiles(done, total)
        next_y0 = rows[ri + 1][0].y0 if ri + 1 < len(rows) else y1
        fin = next_y0 - y0
        finished = acc[:fin]
        np.divide(finished, wsum[:fin], out=finished)
        out[y0:next_y0] = from_f(finished)
        carry_acc, carry_w, carry_y0 = acc[fin:], wsum[fin:], next_y0
    return out


def _scratch(r: np.ndarray, src: np.ndarray) -> np.ndarray:
    """``r`` if it may be overwritten (float32, writeable, not a view of ``src``), else a
    float32 copy."""
    ok = r.dtype == np.float32 and r.flags.writeable and not np.may_share_memory(r, src)
    return r if ok else r.astype(np.float32)


# a tile side whose neighbour overlaps it by this much or more gives its outermost pixel row a
# blending weight of at most 0.0034 (``_ramp`` at half a pixel into a 16 px ramp, 0.0013 at 48 px)
SKIP_OVERLAP = 16


def exact_sides(batch: list[Tile], rows: list[list[Tile]]) -> tuple[bool, bool, bool, bool]:
    """(top, bottom, left, right): True where some tile of ``batch`` lies on that edge of the
    image or is overlapped there by less than ``SKIP_OVERLAP`` px (what ``run_tiled(...,
    sides=True)`` tells its ``fn``: the sides whose outermost pixels count in the blend)."""
    ext = [window_extents(t, rows) for t in batch]
    return tuple(any(e[i] < SKIP_OVERLAP for e in ext) for i in range(4))  # type: ignore[return-value]


def _batches(row: list[Tile], n: int) -> Iterator[list[Tile]]:
    """Group tiles of equal shape into batches of at most n."""
    groups: dict[tuple[int, int], list[Tile]] = {}
    for t in row:
        groups.setdefault((t.h, t.w), []).append(t)
    for ts in groups.values():
        for i in range(0, len(ts), n):
            yield ts[i:i + n]
