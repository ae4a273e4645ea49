"""How much of Python's GIL one CPU forward pass of the default denoiser needs, eager against
a TorchScript trace (which runs the whole graph with the GIL released).

One 256 x 320 crop, one intra-op thread, bf16 autocast as ``ddn denoise`` runs it; printed:
the forward alone, the forward beside a thread spinning in pure Python (it holds the GIL
except at switch intervals, so every op of the eager forward waits for it), and two threads
denoising one crop each. The trace is taken under autocast and run outside it (taken with
the JIT's own autocast pass on, it re-casts the float32 skip convolution); it matches eager
bit for bit. The oneDNN fused convolutions are called through two scripted helpers, since
tracing cannot record their empty scalar lists.

    python benchmarks/gil_forward.py
The folder-run comparison (twenty-third session) used the same trace inside
``Denoiser.run_tensor``, cached per input shape: ``benchmarks/patches/traced_forward.diff``,
applied to a `git worktree` of cc2f85d, then ``benchmarks/folder_ab.py``.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import List, Optional, Union

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
warnings.filterwarnings("ignore")

import torch

from ddn_cli.descriptor import Denoiser
from ddn_cli.models import onednn


@torch.jit.script
def _conv_pw(x: torch.Tensor, w: torch.Tensor, b: Optional[torch.Tensor], padding: List[int], stride: List[int],
             dilation: List[int], groups: int, attr: str) -> torch.Tensor:
    e: List[Optional[Union[int, float, complex]]] = []
    return torch.ops.mkldnn._convolution_pointwise(x, w, b, padding, stride, dilation, groups, attr, e, "")


@torch.jit.script
def _conv_add_relu(x: torch.Tensor, t: torch.Tensor, w: torch.Tensor, b: Optional[torch.Tensor], padding: List[int],
                   stride: List[int], dilation: List[int], groups: int) -> torch.Tensor:
    e: List[Optional[Union[int, float, complex]]] = []
    return torch.ops.mkldnn._convolution_pointwise_(x, t, w, b, padding, stride, dilation, groups, "add", 1.0, "relu",
                                                    e, "")


def _fc_forward(self, x):
    x = x.to(self.dtype).contiguous(memory_format=torch.channels_last)
    return _conv_pw(x, self.weight, self.bias, *self.args, self.attr)


def _fb_forward(self, x):
    c3 = self.c3
    x = x.to(c3.dtype).contiguous(memory_format=torch.channels_last)
    return _conv_add_relu(x, self.c2(self.c1(x)), c3.weight, c3.bias, *c3.args)


def main() -> None:
    onednn.FusedConv.forward, onednn.FusedBottleneck.forward = _fc_forward, _fb_forward
    den = Denoiser.load(ROOT / "weights" / "ddn.color-sigma.safetensors")
    torch.set_num_threads(1)
    m = den.model
    x = torch.rand(1, 3, 256, 320).contiguous(memory_format=torch.channels_last)
    s = torch.tensor([25 / 255.0])
    with torch.inference_mode(), den.precision.autocast(den.device):
        tr = torch.jit.trace(m, (x, s), check_trace=False)

    def eager(*a):
        with den.precision.autocast(den.device):
            return m(*a)

    with torch.inference_mode():
        print("max |eager - traced|:", (eager(x, s) - tr(x, s)).abs().max().item())

    def run(f, n):
        with torch.inference_mode():
            for _ in range(n):
                f(x, s)

    def ms(f, n):
        run(f, 3)
        with torch.inference_mode():
            t = time.perf_counter()
            for _ in range(n):
                f(x, s)
        return (time.perf_counter() - t) / n * 1e3

    stop = False

    def spin():
        while not stop:
            pass

    for name, f in (("eager", eager), ("traced", tr)):
        alone = ms(f, 20)
        stop = False
        th = threading.Thread(target=spin)
        th.start()
        beside = ms(f, 8)
        stop = True
        th.join()
        per = []
        for _ in range(2):
            ths = [threading.Thread(target=run, args=(f, 20)) for _ in range(2)]
            t = time.perf_counter()
            [t_.start() for t_ in ths]
            [t_.join() for t_ in ths]
            per.append((time.perf_counter() - t) / 40 * 1e3)
        print(f"{name:7s} alone {alone:6.1f} ms   beside a spinning Python thread {beside:6.1f} ms   "
              f"two threads, per crop {min(per):5.1f} ms")


if __name__ == "__main__":
    main()
