"""An inference-only form of the trained denoiser, numerically equivalent to it
(same function up to float rounding), measured faster on CPUs:

- BatchNorm folded into the preceding convolutions;
- (a transposed convolution alone is not rewritten: its exact sub-pixel form, a 3x3
  convolution to 4x the channels + pixel_shuffle, ``subpixel_from_transposed``, measured
  1.9x slower for the full-resolution one in bf16 on this CPU: 102 vs 54 ms per 512 px tile);
- the final 3x3 convolution over cat(up, skip) split into two convolutions whose
  outputs are added (no full-resolution 128-channel concatenation);
- every full-resolution layer pair that is linear end to end is composed into one
  convolution at half resolution (the network's full-resolution layers are all linear:
  the 5x5 head, the transposed convolution up and the output convolution):
  * transposed convolution + output convolution -> one 3x3 convolution at half
    resolution to 4 x 3 channels + pixel_shuffle (``compose_up_tail``);
  * head + the stride-2 convolution down (before its ReLU) -> one 4x4 convolution over
    the pixel-unshuffled input (``compose_on_unshuffled``);
  * head + the output convolution's skip half -> one 5x5 convolution over the
    unshuffled input, added to the first before the pixel_shuffle.
  Together 222k -> 150k multiply-accumulates per pixel (border strips included), and no 64-channel
  full-resolution tensor is ever made. A composition differs from the original only
  where the original zero-pads an intermediate tensor: the outermost ring of output
  pixels (and the first row and column at half resolution), which is recomputed the
  original way from thin strips, so the whole stays equal to the trained model up to
  float rounding. Measured 1.39x (bf16) and 1.42x (fp32) faster per 512 px tile than
  without the compositions on this project's CPU (the two forms interleaved in one process).
  A tiler may ask for the ring only where it counts (``forward``'s ``exact``): on the image's
  own edges and on sides its neighbours overlap by less than 16 px (elsewhere blending gives it
  a weight of at most 0.0034, ``tiling.exact_sides``);
- residual add + ReLU in place.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .denoiser import SIZE_MULTIPLE, DDNDenoiser, pad_to_multiple, with_noise_map
from .fold import fold_batchnorm


def subpixel_from_transposed(t: nn.ConvTranspose2d) -> nn.Conv2d:
    """Conv2d(cin, 4*cout, 3, padding=1) + pixel_shuffle(2) == ConvTranspose2d(cin, cout, 4, 2, 1)."""
    assert t.kernel_size == (4, 4) and t.stride == (2, 2) and t.padding == (1, 1)
    w = t.weight.data  # (cin, cout, 4, 4)
    cin, cout = w.shape[:2]
    k = torch.zeros(cout, 2, 2, cin, 3, 3, dtype=w.dtype)
    taps = {0: {0: 1, -1: 3}, 1: {1: 0, 0: 2}}  # phase -> {input offset: kernel index}
    for a in (0, 1):
        for b in (0, 1):
            for di, ky in taps[a].items():
                for dj, kx in taps[b].items():
                    k[:, a, b, :, di + 1, dj + 1] = w[:, :, ky, kx].t()
    conv = nn.Conv2d(cin, 4 * cout, 3, padding=1, bias=True)
    conv.weight.data = k.reshape(4 * cout, cin, 3, 3).contiguous()
    b = t.bias.data if t.bias is not None else torch.zeros(cout, dtype=w.dtype)
    conv.bias.data = b.repeat_interleave(4).contiguous()
    return conv


def compose_up_tail(up: nn.ConvTranspose2d, tail: nn.Conv2d) -> nn.Conv2d:
    """``tail(up(x))`` away from the borders, as Conv2d(cin, 4*cout, 3, padding=1) followed by
    pixel_shuffle(2), for ``up`` = ConvTranspose2d(cin, c, 4, 2, 1) and ``tail`` =
    Conv2d(c, cout, 3, padding=1). Weights found from impulse responses in float64, on the
    smallest image that holds them whole with a margin for the support check (5 x 5 half-res
    pixels: tens of ms instead of 0.3 s at 9 x 9 for ddn's 256 -> 64 -> 3 tail, which every
    ``ddn`` command paid at start-up)."""
    assert up.kernel_size == (4, 4) and up.stride == (2, 2) and up.padding == (1, 1)
    assert tail.kernel_size == (3, 3) and tail.padding == (1, 1) and tail.stride == (1, 1)
    cin, cout, n = up.in_channels, tail.out_channels, 5
    c = n // 2
    wu, wt = up.weight.detach().double(), tail.weight.detach().double()
    bu = up.bias.detach().double() if up.bias is not None else None
    bt = tail.bias.detach().double() if tail.bias is not None else None
    with torch.no_grad():
        # up's response to an impulse at half-res (c, c) in channel i is its kernel placed at
        # full-res 2c-1 .. 2c+2 (conv_transpose2d: output 2p - 1 + k), all inside the 2n x 2n image
        mid = torch.zeros(cin, up.out_channels, 2 * n, 2 * n, dtype=torch.float64)
        mid[:, :, 2 * c - 1:2 * c + 3, 2 * c - 1:2 * c + 3] = wu
        y = F.conv2d(mid, wt, None, 1, 1)  # (cin, cout, 2n, 2n): support 2c-2 .. 2c+3, rows to spare
        k = torch.zeros(cout, 2, 2, cin, 3, 3, dtype=torch.float64)
        for a in (0, 1):
            for b in (0, 1):
                for di in (-1, 0, 1):
                    for dj in (-1, 0, 1):
                        # output (2i+a, 2j+b) reads input (i+di, j+dj): the impulse at c lands at i = c-di
                        k[:, a, b, :, di + 1, dj + 1] = y[:, :, 2 * (c - di) + a, 2 * (c - dj) + b].t()
        if not torch.isclose(k.abs().sum(), y.abs().sum(), rtol=1e-9):
            raise AssertionError("composed support is larger than 3x3")
        z = torch.zeros(1, cin, n, n, dtype=torch.float64)
        yb = F.conv2d(F.conv_transpose2d(z, wu, bu, 2, 1), wt, bt, 1, 1)
        bias = yb[0, :, 2 * c:2 * c + 2, 2 * c:2 * c + 2]  # (cout, 2, 2): per output phase
    conv = nn.Conv2d(cin, 4 * cout, 3, padding=1, bias=True)
    conv.weight.data = k.reshape(4 * cout, cin, 3, 3).float().contiguous()
    conv.bias.data = bias.reshape(4 * cout).float().contiguous()  # (cout, a, b): pixel_shuffle's order
    return conv


def compose_on_unshuffled(fn, fn_bias, cin: int, lo: int, hi: int, full_out: bool) -> nn.Conv2d:
    """The linear, translation-equivariant (period 2) map ``fn`` from a (N, cin, H, W) image
    as a convolution over ``pixel_unshuffle(x, 2)`` with kernel offsets ``lo..hi`` (half-res
    pixels; padding is the caller's). ``fn`` returns half-resolution maps, or full-resolution
    ones when ``full_out`` (then the convolution gives 4x the channels for pixel_shuffle(2)).
    ``fn_bias`` is ``fn`` with its biases; both take float64. Found from impulse responses,
    on a 16 x 16 image: ddn's responses (a 5 x 5 head, then a 3 x 3 conv) reach 3 px from the
    impulse at (8, 8), so they are whole; the sum check below catches a longer one."""
    n, k = 8, hi - lo + 1
    c0 = n // 2
    with torch.no_grad():
        x = torch.zeros(cin * 4, cin, 2 * n, 2 * n, dtype=torch.float64)
        for c in range(cin):  # pixel_unshuffle's channel order: (c, a, b)
            for a in (0, 1):
                for b in (0, 1):
                    x[c * 4 + a * 2 + b, c, 2 * c0 + a, 2 * c0 + b] = 1
        y = fn(x)
        cout = y.shape[1]
        phases = ((0, 0),) if not full_out else ((0, 0), (0, 1), (1, 0), (1, 1))
        w = torch.zeros(cout, len(phases), cin * 4, k, k, dtype=torch.float64)
        step = 2 if full_out else 1
        for p, (a, b) in enumerate(phases):
            for di in range(lo, hi + 1):
                for dj in range(lo, hi + 1):  # output i reads input i + di: the impulse at c0 lands at c0 - di
                    w[:, p, :, di - lo, dj - lo] = y[:, :, step * (c0 - di) + a, step * (c0 - dj) + b].t()
        if not torch.isclose(w.abs().sum(), y.abs().sum(), rtol=1e-9):
            raise AssertionError("composed support is larger than the kernel")
        yb = fn_bias(torch.zeros(1, cin, 2 * n, 2 * n, dtype=torch.float64))[0]
        bias = yb[:, 2 * c0:2 * c0 + 2, 2 * c0:2 * c0 + 2].reshape(-1) if full_out else yb[:, c0, c0]
    conv = nn.Conv2d(cin * 4, cout * len(phases), k, padding=0, bias=True)
    conv.weight.data = w.reshape(cout * len(phases), cin * 4, k, k).float().contiguous()
    conv.bias.data = bias.float().contiguous()
    return conv


def _f64(conv: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    return conv.weight.detach().double(), (conv.bias.detach().double() if conv.bias is not None else None)


def _edge(t: torch.Tensor, dim: int, last: bool, width: int) -> torch.Tensor:
    """The first (or ``last``) ``width`` rows (dim 2) or columns (dim 3) of ``t``, as a view
    (all of them where ``t`` has fewer, as slicing would)."""
    width = min(width, t.shape[dim])
    return t.narrow(dim, t.shape[dim] - width if last else 0, width)


class _FastBottleneck(nn.Module):
    def __init__(self, body: nn.Sequential) -> None:
        super().__init__()
        self.body = nn.Sequential(*[m for m in body if not isinstance(m, nn.Identity)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).add_(x).relu_()


class FastDenoiser(nn.Module):
    """Inference form of a trained ``DDNDenoiser`` (eval mode, no gradients)."""

    def __init__(self, model: DDNDenoiser) -> None:
        super().__init__()
        m = fold_batchnorm(model).eval()
        self.config = m.config
        self.head = m.head
        self.down1 = nn.Sequential(*[x for x in m.down1 if not isinstance(x, nn.Identity)])
        self.res1 = _FastBottleneck(m.res1.body)
        self.down2 = nn.Sequential(*[x for x in m.down2 if not isinstance(x, nn.Identity)])
        self.res2 = _FastBottleneck(m.res2.body)
        self.up1 = m.up1
        self.fuse1 = nn.Sequential(*[x for x in m.fuse1 if not isinstance(x, nn.Identity)])
        self.res3 = _FastBottleneck(m.res3.body)
        self.up2 = m.up2  # kept for the border ring
        w = m.tail.weight.data
        c_up = m.up2.out_channels
        self.tail_up = nn.Conv2d(c_up, w.shape[0], 3, padding=1, bias=True)
        self.tail_skip = nn.Conv2d(w.shape[1] - c_up, w.shape[0], 3, padding=1, bias=False)
        self.tail_up.weight.data = w[:, :c_up].contiguous()
        self.tail_up.bias.data = m.tail.bias.data.clone()
        self.tail_skip.weight.data = w[:, c_up:].contiguous()
        self.up_tail = compose_up_tail(self.up2, self.tail_up)
        wh, bh = _f64(self.head)
        wd, bd = _f64(self.down1[0])
        ws, _ = _f64(self.tail_skip)
        ph, pd = self.head.padding[0], self.down1[0].padding[0]
        assert self.head.kernel_size == (5, 5) and ph == 2 and self.down1[0].stride == (2, 2) and pd == 1
        self.down_in = compose_on_unshuffled(  # offsets -2..1: applied after F.pad(.., (2, 1, 2, 1))
            lambda x: F.conv2d(F.conv2d(x, wh, None, 1, ph), wd, None, 2, pd),
            lambda x: F.conv2d(F.conv2d(x, wh, bh, 1, ph), wd, bd, 2, pd), self.head.in_channels, -2, 1, False)
        self.skip_in = compose_on_unshuffled(
            lambda x: F.conv2d(F.conv2d(x, wh, None, 1, ph), ws, None, 1, 1),
            lambda x: F.conv2d(F.conv2d(x, wh, bh, 1, ph), ws, None, 1, 1), self.head.in_channels, -2, 2, True)
        self.skip_in.padding = (2, 2)
        self.down_in_relu = False  # True once ``down_in`` applies the ReLU itself (models/onednn.py)

    def _down(self, xs: torch.Tensor, top: torch.Tensor, left: torch.Tensor) -> torch.Tensor:
        """``down1(head(xin))``; the first row and column (where down1 reads the head's zero
        padding) recomputed from the head's output on the 8-px ``top`` / ``left`` strips.
        (Strips stay >= 4 px: oneDNN's bf16 stride-2 convolution is wrong on inputs 1-2 px wide.)"""
        d = self.down_in(F.pad(xs, (2, 1, 2, 1)))
        conv = self.down1[0]
        d[:, :, :1] = conv(top[:, :, :4])[:, :, :1]
        d[:, :, :, :1] = conv(left[:, :, :, :4])[:, :, :, :1]
        if self.down_in_relu:  # only the recomputed border still needs it
            d[:, :, :1].relu_()
            d[:, :, :, :1].relu_()
            return d
        return d.relu_()

    def _residual(self, u: torch.Tensor, xs: torch.Tensor, rows: dict[str, torch.Tensor],
                  cols: dict[str, torch.Tensor]) -> torch.Tensor:
        """``tail(cat(up2(u), head(xin)))``: the composed convolutions, with the outermost ring
        of output pixels recomputed the original way from strips 4 (half-res) / 8 px thick on the
        sides named in ``rows`` (top, bottom) and ``cols`` (left, right), which map each side to
        the head's output on its 8 outermost rows / columns. A strip's far edge is wrong (zero
        padding where the image goes on), but the ring row or column taken from it never reads
        that far."""
        # the skip convolution feeds the output directly, and in bf16 its rounding (and the
        # input's) cost 0.015 dB on CBSD68 at sigma 15; it is small, so it runs in full precision
        with torch.autocast(xs.device.type, enabled=False):
            skip_in = self.skip_in(xs.to(self.skip_in.weight.dtype))
        out = F.pixel_shuffle(self.up_tail(u) + skip_in, 2)
        up, tail, skip, n = self.up2, self.tail_up, self.tail_skip, u.shape[0]
        for strips, first, dim in ((rows, "top", 2), (cols, "left", 3)):  # each axis's sides in one batch
            if strips:
                r = tail(up(torch.cat([_edge(u, dim, k != first, 4) for k in strips])))
                r = r + skip(torch.cat(list(strips.values())))
                for i, k in enumerate(strips):
                    _edge(out, dim, k != first, 1).copy_(_edge(r[i * n:(i + 1) * n], dim, k != first, 1))
        return out

    def forward(self, x: torch.Tensor, sigma: float | torch.Tensor | None = None,
                exact: tuple[bool, bool, bool, bool] = (True, True, True, True)) -> torch.Tensor:
        """The trained model's output on ``x``. ``exact`` (top, bottom, left, right): the sides
        whose outermost ring of output pixels is recomputed to equal the trained model's; on a
        side given False the composition's own values stay there (it zero-pads the input
        instead of an intermediate tensor), and only those pixels differ. Where a tile's side is
        overlapped by a neighbour by 16 px or more that ring gets a blending weight of at most
        0.0034 (``tiling.exact_sides``), so the recomputation, whose thin transposed-convolution
        strips cost about 8% of a 456 x 476 tile in bf16, can be skipped there. The first
        half-resolution row and column, which the rest of the network reads, are recomputed always."""
        h, w = x.shape[-2:]
        top, bottom, left, right = exact
        xp = pad_to_multiple(x, SIZE_MULTIPLE)
        xin = with_noise_map(xp, sigma, self.config)
        xs = F.pixel_unshuffle(xin, 2)
        n = x.shape[0]
        # the head on the border strips (the first / last 8 rows, then columns, each batched);
        # the first row and column are always needed (``_down``), the last only for the ring
        tb = self.head(torch.cat([xin[:, :, :8]] + ([xin[:, :, -8:]] if bottom else [])))
        lr = self.head(torch.cat([xin[..., :8]] + ([xin[..., -8:]] if right else [])))
        f2 = self.res1(self._down(xs, tb[:n], lr[:n]))
        f3 = self.res2(self.down2(f2))
        u1 = torch.cat([self.up1(f3), f2], dim=1)
        u1 = self.res3(self.fuse1(u1))
        rows = {k: v for k, on, v in (("top", top, tb[:n]), ("bottom", bottom, tb[n:])) if on}
        cols = {k: v for k, on, v in (("left", left, lr[:n]), ("right", right, lr[n:])) if on}
        residual = self._residual(u1, xs, rows, cols)
        out = xp + residual.to(xp.dtype)
        return out[:, :, :h, :w]
