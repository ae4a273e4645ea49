"""Where the time of one 12 MP `ddn denoise` goes on a GPU, in one process: the pipeline
without the model (tiling, blending, 8-bit conversion with an identity "model"), then the
real denoiser per tile size, precision and blending place (device: `tiling_torch`, host:
numpy), first call (CUDA/cuDNN warm-up) and steady state.

    PYTHONPATH=src python3 benchmarks/gpu_pipeline_probe.py --out $OUT
    python benchmarks/gpu_pipeline_probe.py --device cpu --tiles 512 --precisions bf16 --reps 1  # dry run

Writes gpu_pipeline_probe.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiles", default="512,1024,2048")
    ap.add_argument("--precisions", default="bf16,fp16")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--blend", default="device,host", help="where tiles are blended: device (tiling_torch), host (numpy)")
    ap.add_argument("--out", default=".")
    a = ap.parse_args()
    import torch

    from ddn_cli.descriptor import Denoiser
    from ddn_cli.io import ImageData
    from ddn_cli.pipeline import auto_tile, denoise_image
    from ddn_cli.registry import resolve_weights

    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (375, 500, 3), dtype=np.uint8)
    clean = np.tile(base, (8, 8, 1))[:3000, :4000]
    noisy = np.clip(clean + rng.normal(0, 25, clean.shape), 0, 255).astype(np.uint8)
    img = ImageData(color=noisy, alpha=None, bits=8, format="PNG", icc=None, exif=None, notes=[])
    mp = noisy.shape[0] * noisy.shape[1] / 1e6

    class Identity:
        size_multiple = 4
        device = torch.device(a.device)

        def __call__(self, b, s, exact=(True,) * 4):  # the pipeline says which tile sides must be exact
            return b

        def run_tensor(self, x, s, exact=(True,) * 4):
            return x

    res: dict = {"device": torch.cuda.get_device_name(0) if a.device.startswith("cuda") else "cpu",
                 "image": list(noisy.shape), "auto_tile_batch": list(auto_tile(a.device.split(":")[0])), "runs": []}
    blends = a.blend.split(",")
    for blend in blends:
        for tile in [int(t) for t in a.tiles.split(",")]:
            times = []
            for _ in range(2):
                t0 = time.perf_counter()
                denoise_image(img, Identity(), sigma=25, tile=tile, overlap=48, batch_size=4,
                              device_blend=blend == "device")
                times.append(time.perf_counter() - t0)
            res["runs"].append({"what": "identity_model", "blend": blend, "tile": tile, "s": round(min(times), 3)})
            print(res["runs"][-1], flush=True)
    for prec in a.precisions.split(","):
        den = Denoiser.load(resolve_weights(None), device=a.device, precision=prec)
        for tile, blend in [(int(t), b) for t in a.tiles.split(",") for b in blends]:
            batch = max(1, (1024 // tile) ** 2 * 4)
            times = []
            for _ in range(a.reps):
                t0 = time.perf_counter()
                denoise_image(img, den, sigma=25, tile=tile, overlap=den.overlap, batch_size=batch,
                              device_blend=blend == "device")
                if a.device.startswith("cuda"):
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - t0)
            rec = {"what": "denoise", "precision": prec, "tile": tile, "batch": batch, "blend": blend,
                   "first_s": round(times[0], 3), "steady_s": round(statistics.median(times[1:] or times), 3),
                   "steady_mp_s": round(mp / statistics.median(times[1:] or times), 2)}
            if a.device.startswith("cuda"):
                rec["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated() / 2**20)
                torch.cuda.reset_peak_memory_stats()
            res["runs"].append(rec)
            print(rec, flush=True)
    (Path(a.out) / "gpu_pipeline_probe.json").write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
