"""The device checks the CPU sessions could not do, as one short script for a lent GPU
(issues #2 and #6): the whole `ddn denoise` path on the GPU, the PSNR of each GPU precision
against fp32 (auto may only pick a precision that loses < 0.05 dB), and megapixels/s of the
whole pipeline on a 12 MP photo per precision.

    python benchmarks/device_check.py --data ../shared/data/bsds500/images/val --limit 68 --out $OUT
    python benchmarks/device_check.py --device cpu --limit 2      # a dry run of the script here

CBSD68 is the 68 ids in ../shared/data/bsds500/CBSD68_ids.txt; pass a folder or list file.
Writes device_check.json (device name, per-precision PSNR at sigma 15/25/50 and MP/s).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(ROOT.parent / "shared/data/kodak24"))
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--precisions", default="fp32,bf16,fp16,auto")
    ap.add_argument("--out", default=".")
    a = ap.parse_args()
    import torch

    from ddn_cli.descriptor import Denoiser
    from ddn_cli.errors import DdnError
    from ddn_cli.evaluation.denoise_eval import evaluate, load_eval_images
    from ddn_cli.registry import resolve_weights

    dev_name = torch.cuda.get_device_name(0) if a.device.startswith("cuda") else "cpu"
    data = a.data
    tmpdir = tempfile.TemporaryDirectory()
    if data == "skimage" or not Path(data).exists():
        # no ../shared on a lent machine: scikit-image's sample photos (colour, 300-512 px)
        from skimage import data as skd
        from PIL import Image

        for name in ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "retina", "colorwheel"):
            im = getattr(skd, name, None)
            if im is not None:
                Image.fromarray(im()[..., :3]).save(Path(tmpdir.name) / f"{name}.png")
        data = tmpdir.name
        a.data = "scikit-image sample photos"
    images = load_eval_images([data], a.limit)
    res: dict = {"device": dev_name, "images": len(images), "data": a.data, "precisions": {}}
    for prec in a.precisions.split(","):
        if a.device == "cpu" and prec == "fp16":
            continue
        try:
            den = Denoiser.load(resolve_weights(None), name="default", device=a.device, precision=prec)
        except DdnError as e:
            res["precisions"][prec] = {"error": str(e)}
            continue
        r = evaluate(lambda n, s, d=den: d(np.clip(n, -1, 2)[None].astype("float32"), s)[0], images, [15, 25, 50])
        res["precisions"][prec] = {"resolved": den.precision.name, "psnr": {f"{k:g}": v["psnr"] for k, v in r.items()}}
        print(prec, res["precisions"][prec], flush=True)
    base = res["precisions"].get("fp32", {}).get("psnr")
    if base:
        for p, v in res["precisions"].items():
            if "psnr" in v:
                v["delta_vs_fp32"] = {k: round(v["psnr"][k] - base[k], 4) for k in base}
    # device-side blending (tiling_torch, the GPU default) against host blending: same bytes?
    from ddn_cli.io import ImageData
    from ddn_cli.pipeline import auto_tile, denoise_image

    rng0 = np.random.default_rng(5)
    base = np.tile(images[0][1], (4, 4, 1))[:1000, :1500]
    test = np.clip(base + rng0.normal(0, 25, base.shape), 0, 255).astype(np.uint8)
    den = Denoiser.load(resolve_weights(None), name="default", device=a.device, precision="auto")
    tile, batch = auto_tile(den.device.type)
    outs = [denoise_image(ImageData(test, None, 8, "png"), den, sigma=25, tile=tile, overlap=den.overlap,
                          batch_size=batch, device_blend=b)[0].color.astype(np.int16) for b in (True, False)]
    diff = np.abs(outs[0] - outs[1])
    res["blend_parity"] = {"shape": list(test.shape), "precision": den.precision.name, "max_abs_diff": int(diff.max()),
                           "frac_differing": float((diff > 0).mean())}
    print("blend_parity", res["blend_parity"], flush=True)
    # the whole CLI on a 12 MP photo (decode, tiles, device copies, encode), per precision
    from PIL import Image

    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        src = np.asarray(Image.open(sorted(Path(ROOT.parent / "shared/data/kodak24").glob("*.png"))[0]).convert("RGB")) \
            if (ROOT.parent / "shared/data/kodak24").is_dir() else rng.integers(0, 255, (512, 768, 3), dtype=np.uint8)
        big = np.tile(src, (6, 6, 1))[:3000, :4000]
        noisy = np.clip(big + rng.normal(0, 25, big.shape), 0, 255).astype(np.uint8)
        p = Path(tmp) / "12mp.png"
        Image.fromarray(noisy).save(p)
        res["pipeline_12mp"] = {}
        for prec in a.precisions.split(","):
            if a.device == "cpu" and prec == "fp16":
                continue
            t0 = time.perf_counter()
            r = subprocess.run([sys.executable, "-m", "ddn_cli", "denoise", str(p), str(Path(tmp) / f"o_{prec}.png"),
                                "--sigma", "25", "--device", a.device, "--precision", prec, "--quiet", "--json", "-"],
                               capture_output=True, text=True)
            wall = time.perf_counter() - t0
            if r.returncode:
                res["pipeline_12mp"][prec] = {"error": r.stderr[-300:]}
                continue
            rep = json.loads(r.stdout)
            res["pipeline_12mp"][prec] = {"mp_s_denoise": round(12.0 / rep["seconds"], 3),
                                          "mp_s_whole_process": round(12.0 / wall, 3), "precision": rep["precision"]}
            print(prec, res["pipeline_12mp"][prec], flush=True)
    out = Path(a.out) / "device_check.json"
    out.write_text(json.dumps(res, indent=2) + "\n")
    print("wrote", out)


if __name__ == "__main__":
    main()
