"""oneDNN post-op fusion of the CPU inference form (``FastDenoiser``).

PyTorch's eager CPU path runs a convolution, then the ReLU, then the residual add and the
ReLU after it as separate passes over memory; at the network's low resolutions those
passes cost about as much as the convolutions themselves (the 256-channel bottleneck ran
at 90 GMAC/s against 294 for the big 3x3 convolution). oneDNN can apply the ReLU, and
the residual add + ReLU, inside the convolution's own output loop ("post-ops"), which
PyTorch exposes as ``torch.ops.mkldnn._convolution_pointwise`` (the op inductor's
freezing pass emits). Here the conv + ReLU pairs and the bottlenecks' last convolution +
add + ReLU use it, with weights cast once to the run's dtype instead of on every call
under autocast.

Same function as ``FastDenoiser`` up to float rounding (in bf16 the fused add rounds
once instead of twice). Measured per 512 px tile on this project's CPU in bf16: see
``benchmarks/tile_speed.py``. Falls back to nothing: ``available()`` says whether the op
exists in this PyTorch build; callers keep the plain form when it does not.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from .fast import FastDenoiser, _FastBottleneck


@functools.cache
def available(dtype: torch.dtype = torch.float32) -> bool:
    """oneDNN is built in, exposes the fused convolution ops, and runs them in ``dtype`` on
    this CPU (oneDNN refuses bf16 on CPUs without AVX-512 / AVX-NE-CONVERT, where the plain
    autocast path quietly falls back): checked once by running a tiny fused convolution."""
    mk = getattr(torch.ops, "mkldnn", None)
    try:
        if not (torch.backends.mkldnn.is_available() and mk is not None
                and hasattr(mk, "_convolution_pointwise") and hasattr(mk, "_convolution_pointwise_")):
            return False
        conv = FusedConv(nn.Conv2d(8, 8, 3, padding=1), True, dtype)
        with torch.inference_mode():
            y = conv(torch.rand(1, 8, 16, 16))
        return bool(torch.isfinite(y).all())
    except (AttributeError, RuntimeError, NotImplementedError):
        return False


class FusedConv(nn.Module):
    """``conv`` (+ ReLU) as one oneDNN primitive, computing in ``dtype`` (inputs are cast)."""

    def __init__(self, conv: nn.Conv2d, relu: bool, dtype: torch.dtype) -> None:
        super().__init__()
        assert isinstance(conv, nn.Conv2d) and conv.padding_mode == "zeros"
        self.register_buffer("weight", conv.weight.detach().to(dtype).contiguous(memory_format=torch.channels_last))
        self.register_buffer("bias", conv.bias.detach().to(dtype) if conv.bias is not None else None)
        self.args = (list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups)
        self.attr = "relu" if relu else "none"

    @property
    def dtype(self) -> torch.dtype:  # follows the weights if the module is cast later
        return self.weight.dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.dtype).contiguous(memory_format=torch.channels_last)
        return torch.ops.mkldnn._convolution_pointwise(x, self.weight, self.bias, *self.args, self.attr, [], "")


class FusedBottleneck(nn.Module):
    """``relu(x + body(x))`` with the body's ReLUs and the final add + ReLU fused into its
    convolutions. The result is written into ``x`` (the inference form only ever passes a
    fresh tensor that nothing else reads)."""

    def __init__(self, block: _FastBottleneck, dtype: torch.dtype) -> None:
        super().__init__()
        c1, r1, c2, r2, c3 = block.body
        assert isinstance(r1, nn.ReLU) and isinstance(r2, nn.ReLU) and c3.kernel_size == (1, 1)
        self.c1, self.c2 = FusedConv(c1, True, dtype), FusedConv(c2, True, dtype)
        self.c3 = FusedConv(c3, False, dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c3 = self.c3
        x = x.to(c3.dtype).contiguous(memory_format=torch.channels_last)
        t = self.c2(self.c1(x))
        return torch.ops.mkldnn._convolution_pointwise_.binary(x, t, c3.weight, c3.bias, *c3.args, "add", 1.0,
                                                               "relu", [], "")


def onednn_form(model: FastDenoiser, dtype: torch.dtype) -> FastDenoiser:
    """``model`` with its conv + ReLU pairs and bottlenecks fused (in place; returned).
    ``dtype``: what the convolutions compute in (bfloat16 under the CPU's bf16 autocast,
    float32 otherwise; a bfloat16 form must run under bf16 autocast, as ``Denoiser`` runs it).
    CPU only."""
    for name in ("res1", "res2", "res3"):
        setattr(model, name, FusedBottleneck(getattr(model, name), dtype))
    for name in ("down2", "fuse1"):
        conv, relu = getattr(model, name)
        assert isinstance(relu, nn.ReLU)
        setattr(model, name, FusedConv(conv, True, dtype))
    model.down_in = FusedConv(model.down_in, True, dtype)
    model.down_in_relu = True
    if dtype != torch.float32:  # the layers left to autocast: their weights cast once, not per call
        for mod in (model.head, model.down1[0], model.up1, model.up_tail, model.up2, model.tail_up, model.tail_skip):
            mod.to(dtype)
    return model
