"""Two CPU speed-ups the performance issue asked to try, measured on one 512x512 tile of the
default model (what `ddn denoise` runs per tile on a CPU):

- torch.compile (inductor), with and without `freezing` (constant folding + oneDNN weight
  prepacking), in bf16 autocast + channels_last: startup (compile + first call) and s/tile;
- the same compiled model inside the whole tiled pipeline on a 12 MP image (tile 512, overlap 48),
  twice each, against eager (`--whole`);
- int8 static quantisation (PT2E, torchao's X86InductorQuantizer, calibrated on noisy crops of
  training photos), compiled with freezing. Needs `pip install torchao` (not a ddn dependency).

    python benchmarks/cpu_compile_int8.py --json benchmarks/results/cpu_compile_int8.json

The model is loaded without the oneDNN post-op fusion (``fuse=False``): inductor and the
quantizer work on plain aten convolutions, and the recorded figures predate the fusion.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
warnings.filterwarnings("ignore")
TILE_MP = 512 * 512 / 1e6


def per_tile(f, x, lvl, ctx, n: int = 6) -> float:
    with torch.inference_mode(), ctx():
        f(x, lvl)
        f(x, lvl)
        t = time.perf_counter()
        for _ in range(n):
            f(x, lvl)
    return (time.perf_counter() - t) / n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", default=None)
    ap.add_argument("--whole", action="store_true", help="also time a 12 MP image through denoise_image")
    a = ap.parse_args()
    import torch._inductor.config as ic

    from ddn_cli.descriptor import Denoiser
    from ddn_cli.registry import resolve_weights

    bf16 = lambda: torch.autocast("cpu", dtype=torch.bfloat16)
    x = torch.rand(1, 3, 512, 512, generator=torch.Generator().manual_seed(0)).contiguous(
        memory_format=torch.channels_last)
    res: dict = {"tile": "1x3x512x512", "torch": torch.__version__, "rows": []}

    def row(name: str, s: float, startup: float | None = None, **kw) -> None:
        r = {"variant": name, "s_per_tile": round(s, 4), "mp_s": round(TILE_MP / s, 3), **kw}
        if startup is not None:
            r["startup_s"] = round(startup, 1)
        res["rows"].append(r)
        print(r, flush=True)

    den = Denoiser.load(resolve_weights(None), device="cpu", precision="bf16", fuse=False)
    m = den.model
    eager = per_tile(m, x, 0.1, bf16)
    row("eager bf16", eager)
    with torch.inference_mode(), bf16():
        ref = m(x, 0.1).float()
    for freezing in (False, True):
        torch._dynamo.reset()
        ic.freezing = freezing
        t0 = time.perf_counter()
        mc = torch.compile(m, dynamic=False)
        with torch.inference_mode(), bf16():
            y = mc(x, 0.1).float()
        startup = time.perf_counter() - t0
        row(f"compiled bf16{' + freezing' if freezing else ''}", per_tile(mc, x, 0.1, bf16), startup,
            speedup=round(eager / per_tile(mc, x, 0.1, bf16), 3), max_abs_diff=round((y - ref).abs().max().item(), 5))
    if a.whole:
        import numpy as np

        from ddn_cli.io import ImageData
        from ddn_cli.pipeline import denoise_image

        rng = np.random.default_rng(0)
        clean = np.tile(rng.integers(0, 256, (375, 500, 3), dtype=np.uint8), (8, 8, 1))[:3000, :4000]
        noisy = np.clip(clean + rng.normal(0, 25, clean.shape), 0, 255).astype(np.uint8)
        img = ImageData(color=noisy, alpha=None, bits=8, format="PNG", icc=None, exif=None, notes=[])
        outs = {}
        for comp in (False, True):
            torch._dynamo.reset()
            ic.freezing = comp
            d = Denoiser.load(resolve_weights(None), device="cpu", precision="bf16", fuse=False)
            if comp:
                d.model = torch.compile(d.model, dynamic=False)
            times = []
            for _ in range(2):
                t = time.perf_counter()
                out, _ = denoise_image(img, d, sigma=25, tile=512, overlap=48, batch_size=1)
                times.append(round(time.perf_counter() - t, 2))
            outs[comp] = out.color.astype(np.int16)
            r = {"variant": f"12 MP denoise_image, {'compiled + freezing' if comp else 'eager'} bf16",
                 "seconds_first_then_second": times, "mp_s_second": round(12.0 / times[1], 3)}
            res["rows"].append(r)
            print(r, flush=True)
        diff = np.abs(outs[True] - outs[False])
        res["rows"][-1]["vs_eager_8bit"] = {"max": int(diff.max()), "mean": round(float(diff.mean()), 4)}
        print(res["rows"][-1]["vs_eager_8bit"], flush=True)
    try:
        import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    except ImportError:
        res["int8"] = "torchao not installed"
        print(res["int8"])
    else:
        from torch.export import Dim

        from ddn_cli.training.data import decode_rgb8, list_training_images

        fp = Denoiser.load(resolve_weights(None), device="cpu", precision="fp32", fuse=False).model.eval()

        class Wrap(torch.nn.Module):
            def __init__(self, net):
                super().__init__()
                self.net = net

            def forward(self, x, lvl):
                return self.net(x, lvl)

        g = torch.Generator().manual_seed(0)
        cal = []
        shared = ROOT.parent / "shared" / "data"
        paths = list_training_images([ROOT / "benchmarks/splits/denoise_train.txt"], shared)[:24] if shared.is_dir() else []
        for i, p in enumerate(paths):
            im = (torch.from_numpy(decode_rgb8(p)).permute(2, 0, 1).float()[None] / 255)[..., :256, :256]
            s = [5, 15, 25, 50, 75][i % 5] / 255
            cal.append(((im + s * torch.randn(im.shape, generator=g)).contiguous(memory_format=torch.channels_last),
                        torch.tensor(s)))
        if not cal:
            cal = [(torch.rand(1, 3, 256, 256).contiguous(memory_format=torch.channels_last), torch.tensor(0.1))]
        h, w = Dim("h", min=4, max=256), Dim("w", min=4, max=256)
        ex = torch.export.export(Wrap(fp).eval(), cal[0], dynamic_shapes={"x": {2: 4 * h, 3: 4 * w}, "lvl": None}).module()
        pm = prepare_pt2e(ex, xiq.X86InductorQuantizer().set_global(xiq.get_default_x86_inductor_quantization_config()))
        with torch.no_grad():
            for c in cal:
                pm(*c)
        qm = convert_pt2e(pm)
        torch._dynamo.reset()
        ic.freezing = True
        lvl = torch.tensor(0.1)
        t0 = time.perf_counter()
        qc = torch.compile(qm)
        with torch.no_grad():
            qc(x, lvl)
        startup = time.perf_counter() - t0
        ti = per_tile(qc, x, lvl, contextlib.nullcontext)
        row("int8 PT2E compiled + freezing", ti, startup, speedup=round(eager / ti, 3), calibration_images=len(cal))
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
