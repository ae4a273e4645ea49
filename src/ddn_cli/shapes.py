"""Which shape to run a small image at, so that a folder of varied sizes reuses compiled kernels.

On a CPU, oneDNN builds (JIT-compiles) its convolution kernels for each input shape: about
20 ms of one core per new shape for the default denoiser, against about 36 ms to denoise a
256 x 320 image on one core. A folder of small images all of different sizes paid that for
every image (and, past oneDNN's cache of 1024 kernels, again on every pass), so it ran at
about half the speed of a folder of one size. An image that fits inside a shape already run
in this folder run is instead padded up to it (reflected, then cropped back), if that adds at
most ``MAX_EXTRA`` of its pixels; otherwise it runs at its own shape, which is remembered.

Only the outermost pixels at the bottom and right edges can change (a CNN's output there
depends on what lies beyond the edge): on CBSD68 at sigma 25 the mean PSNR moved by at most
0.001 dB with 8-64 px of reflected padding. The choice depends only on the images before it in
input order, so a run is repeatable; pure functions, no torch.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

# Extra pixels an image may be padded by to reuse a shape: the kernels for a new shape
# cost about what 40-70% more pixels do for images of 0.06-0.1 MP (measured above); a
# simulation of folders of random sizes put the best total near 0.25-0.4.
MAX_EXTRA = 0.4


def own_shape(h: int, w: int, align: int) -> tuple[int, int]:
    """(h, w) rounded up to multiples of ``align`` (what the network pads to anyway)."""
    return -(-h // align) * align, -(-w // align) * align


def pick_shape(h: int, w: int, seen: Iterable[tuple[int, int]], *, align: int = 4,
               max_extra: float = MAX_EXTRA) -> tuple[int, int]:
    """The shape to run an ``h`` x ``w`` image at: its own (rounded up to ``align``) if that
    was run already or if no shape in ``seen`` holds it with at most ``max_extra`` more
    pixels; else the smallest such shape (ties: the first in ``seen``'s order)."""
    own = own_shape(h, w, align)
    seen = list(seen)
    if own in seen:
        return own
    limit = (1 + max_extra) * own[0] * own[1]
    fits = [s for s in seen if s[0] >= own[0] and s[1] >= own[1] and s[0] * s[1] <= limit]
    return min(fits, key=lambda s: s[0] * s[1]) if fits else own


class ShapeMemo:
    """The shapes run so far in one run. ``choose`` picks a shape and records it. Not
    keyed by thread count (oneDNN builds kernels per thread count too): the choice then
    depends on the images alone, so a folder's outputs do not change with how its images
    were spread over threads. Thread-safe, though a run that wants to be repeatable calls
    it from one thread, in input order."""

    def __init__(self, align: int = 4, max_extra: float = MAX_EXTRA) -> None:
        self.align, self.max_extra = align, max_extra
        self._seen: list[tuple[int, int]] = []
        self._lock = threading.Lock()

    def choose(self, h: int, w: int) -> tuple[int, int]:
        with self._lock:
            shape = pick_shape(h, w, self._seen, align=self.align, max_extra=self.max_extra)
            if shape not in self._seen:
                self._seen.append(shape)
            return shape

    @property
    def shapes(self) -> list[tuple[int, int]]:
        with self._lock:
            return list(self._seen)
