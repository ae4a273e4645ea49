"""Side-by-side benchmark of ddn against classic denoisers, on this machine, in one run.

    pip install -e ".[bench]"        # bm3d (non-commercial licence: benchmark only), psutil, matplotlib
    python benchmarks/suite.py [--quick] --json benchmarks/results/suite.json --plot benchmarks/results/suite.png

Methods: ddn's default model (fp32 and the auto precision), the other shipped denoisers (the
task-guided ddn.seg and ddn.cls, auto precision: the same network, so the same speed), CDnCNN-B and FFDNet from
../shared/anchors (fp32 and bf16; skipped if absent), CBM3D (`bm3d` package) and OpenCV's
fastNlMeansDenoisingColored (h picked from a small grid on the first two images).
Columns: PSNR on CBSD68 (or the first 8 images with --quick) at sigma 25 (the papers'
unclipped protocol; NLM needs uint8 input, so it gets the clipped, rounded noisy image),
megapixels/s on a 12 MP photo (every CNN tiled 512x512, overlap 32; CBM3D timed on a
1 MP crop), peak RSS of the process that ran the method, and each as a ratio to ddn's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))
SHARED = ROOT.parent / "shared"
SIGMA = 25.0
METHODS = ["ddn-auto", "ddn-fp32", "ddn.seg-auto", "ddn.cls-auto", "ffdnet-bf16", "ffdnet-fp32", "cdncnn-b-bf16",
           "cdncnn-b-fp32", "opencv-nlm", "cbm3d"]


def make_photo(path: Path) -> None:
    import cv2

    from ddn_cli.demo import sample_path

    base = cv2.imread(str(sample_path("astronaut")))
    img = cv2.resize(base, (4000, 3000), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    img += np.random.default_rng(0).standard_normal(img.shape, dtype=np.float32) * SIGMA
    cv2.imwrite(str(path), np.clip(np.rint(img), 0, 255).astype(np.uint8), [cv2.IMWRITE_PNG_COMPRESSION, 1])


def method_fn(name: str):
    """(fn(noisy float32 HxWx3 in [0,1] (unclipped), sigma) -> float32, tiled: bool)."""
    import torch

    torch.set_grad_enabled(False)
    if name.startswith("ddn"):
        from ddn_cli.descriptor import Denoiser
        from ddn_cli.registry import resolve_weights

        model, _, prec = name.rpartition("-")  # ddn-auto: the default; ddn.seg-auto: another shipped denoiser
        return ddn_method(Denoiser.load(resolve_weights(None if model == "ddn" else model), precision=prec)), True
    if name.startswith(("ffdnet", "cdncnn")):
        from anchors import load_anchor

        m = load_anchor("ffdnet" if name.startswith("ffdnet") else "cdncnn-b").to(memory_format=torch.channels_last)
        bf16 = name.endswith("bf16")

        def fn(b: np.ndarray, s: float) -> np.ndarray:
            x = torch.from_numpy(np.ascontiguousarray(b)).permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                y = m(x, s / 255.0)
            return y.float().clamp(0, 1).permute(0, 2, 3, 1).numpy()

        return fn, True
    if name == "cbm3d":
        import bm3d

        return (lambda b, s: np.stack([bm3d.bm3d_rgb(x, s / 255.0) for x in b]).astype(np.float32)), False
    if name == "opencv-nlm":
        import cv2

        state = {"h": None}

        def fn(b: np.ndarray, s: float) -> np.ndarray:
            h = state["h"] or 0.9 * s
            out = []
            for x in b:
                u8 = np.clip(np.rint(x * 255), 0, 255).astype(np.uint8)
                out.append(cv2.fastNlMeansDenoisingColored(u8, None, h, h, 7, 21).astype(np.float32) / 255)
            return np.stack(out)

        return fn, False  # state["h"] is tuned by the caller
    raise SystemExit(f"unknown method {name}")


def ddn_method(den):
    """A ddn ``Denoiser`` as a suite method: told on which tile sides it must be exact, as
    ``ddn denoise`` tells it (``denoise_tiled`` sees the ``sides`` mark)."""
    def fn(b: np.ndarray, s: float, exact: tuple[bool, bool, bool, bool] = (True,) * 4) -> np.ndarray:
        return den(b, s, exact)

    fn.sides = True
    return fn


def denoise_tiled(big: np.ndarray, fn) -> np.ndarray:
    """The suite's whole-image speed setting: an 8-bit photo through ``fn`` tiled 512 / 32."""
    from ddn_cli.tiling import run_tiled

    sides = getattr(fn, "sides", False)  # ddn's own tiled path (pipeline.denoise_image)
    return run_tiled(big, (lambda b, exact: fn(b, SIGMA, exact)) if sides else (lambda b: fn(b, SIGMA)),
                     tile=512, overlap=32, batch_size=1, sides=sides, to_float=lambda a: a.astype(np.float32) / 255,
                     from_float=lambda f: np.clip(np.rint(f * 255), 0, 255).astype(np.uint8))


def run_one(name: str, photo: Path, quick: bool) -> dict:
    import cv2

    from ddn_cli.evaluation.denoise_eval import evaluate, load_eval_images
    fn, tiled = method_fn(name)
    rec: dict = {"method": name}
    ids = SHARED / "data/bsds500/CBSD68_ids.txt"
    if ids.is_file():
        imgs = load_eval_images([ids], 8 if quick else 0, str(SHARED / "data/bsds500/images"))
        if name == "opencv-nlm":  # pick h on the first two images
            best = None
            for k in (0.4, 0.5, 0.6, 0.8, 1.0):
                h = k * SIGMA
                r = evaluate(lambda x, s, h=h: cv2.fastNlMeansDenoisingColored(
                    np.clip(np.rint(x * 255), 0, 255).astype(np.uint8), None, h, h, 7, 21).astype(np.float32) / 255,
                    imgs[:2], [SIGMA])[SIGMA]["psnr"]
                if best is None or r > best[0]:
                    best = (r, h)
            rec["nlm_h"] = best[1]
            fn = (lambda b, s, h=best[1]: np.stack([cv2.fastNlMeansDenoisingColored(
                np.clip(np.rint(x * 255), 0, 255).astype(np.uint8), None, h, h, 7, 21).astype(np.float32) / 255
                for x in b]))
        t = time.perf_counter()
        r = evaluate(lambda x, s: fn(x[None].astype(np.float32), s)[0], imgs, [SIGMA])[SIGMA]
        rec.update(psnr=round(r["psnr"], 3), psnr_images=len(imgs), psnr_seconds=round(time.perf_counter() - t, 1))
    big = cv2.imread(str(photo))[..., ::-1]
    if name == "cbm3d":
        big = big[:1000, :1000]
        rec["speed_on"] = "1 MP crop"
    else:
        rec["speed_on"] = "12 MP photo"
    mp = big.shape[0] * big.shape[1] / 1e6
    t = time.perf_counter()
    if tiled:
        denoise_tiled(big, fn)
    else:
        fn(big[None].astype(np.float32) / 255, SIGMA)
    rec["mp_per_s"] = round(mp / (time.perf_counter() - t), 4)
    return rec


def main() -> None:
    from machine import cpu_name

    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="PSNR on the first 8 CBSD68 images only")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--json")
    ap.add_argument("--plot")
    ap.add_argument("--update", action="store_true", help="replace only the rerun methods' rows in the --json file")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--photo", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(run_one(a.one, Path(a.photo), a.quick)))
        return
    rows = []
    with tempfile.TemporaryDirectory() as td:
        photo = Path(td) / "photo12mp.png"
        subprocess.run([sys.executable, "-c", f"import sys; sys.path[:0]=[{str(ROOT / 'benchmarks')!r}, "
                        f"{str(ROOT / 'src')!r}]; from suite import make_photo; from pathlib import Path; "
                        f"make_photo(Path({str(photo)!r}))"], check=True)
        for name in a.methods.split(","):
            if name.startswith(("ffdnet", "cdncnn")) and not (SHARED / "anchors").is_dir():
                print(f"{name}: skipped (../shared/anchors absent)")
                continue
            args = [sys.executable, __file__, "--one", name, "--photo", str(photo)] + (["--quick"] if a.quick else [])
            t = time.perf_counter()
            p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            _, status, ru = os.wait4(p.pid, 0)
            out, err = p.stdout.read().decode(), p.stderr.read().decode()
            if os.waitstatus_to_exitcode(status) != 0:
                print(f"{name}: FAILED\n{err[-1500:]}")
                continue
            rec = json.loads(out.strip().splitlines()[-1])
            rec["peak_rss_mb"] = round(ru.ru_maxrss / 1024, 1)
            rec["wall_s"] = round(time.perf_counter() - t, 1)
            rows.append(rec)
            print(json.dumps(rec), flush=True)
    if a.update and a.json and Path(a.json).is_file():
        new = {r["method"] for r in rows}
        old = json.loads(Path(a.json).read_text())["rows"]
        order = [r["method"] for r in old] + [m for m in new if m not in {r["method"] for r in old}]
        merged = {r["method"]: r for r in old} | {r["method"]: r for r in rows}
        rows = [merged[m] for m in order]
    ref = next((r for r in rows if r["method"] == "ddn-auto"), rows[0])
    for r in rows:
        r["speed_vs_ddn"] = round(r["mp_per_s"] / ref["mp_per_s"], 3)
        r["rss_vs_ddn"] = round(r["peak_rss_mb"] / ref["peak_rss_mb"], 3)
        if "psnr" in r and "psnr" in ref:
            r["psnr_vs_ddn_db"] = round(r["psnr"] - ref["psnr"], 3)
    hdr = f"{'method':15s} {'PSNR':>7s} {'dPSNR':>7s} {'MP/s':>8s} {'xddn':>6s} {'RSS MB':>7s} {'xddn':>6s}"
    print(hdr)
    for r in rows:
        print(f"{r['method']:15s} {r.get('psnr', float('nan')):7.2f} {r.get('psnr_vs_ddn_db', float('nan')):+7.2f} "
              f"{r['mp_per_s']:8.4f} {r['speed_vs_ddn']:6.2f} {r['peak_rss_mb']:7.0f} {r['rss_vs_ddn']:6.2f}")
    doc = {"machine": f"{cpu_name()}, {os.cpu_count()} cores", "sigma": SIGMA,
           "quick": a.quick, "command": "python benchmarks/suite.py" + (" --quick" if a.quick else ""), "rows": rows}
    if a.json:
        Path(a.json).write_text(json.dumps(doc, indent=2))
    if a.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4.5))
        for r in rows:
            if "psnr" not in r:
                continue
            ax.scatter(r["mp_per_s"], r["psnr"], s=40, color="C3" if r["method"].startswith("ddn") else "C0")
            ax.annotate(r["method"], (r["mp_per_s"], r["psnr"]), textcoords="offset points", xytext=(5, 4), fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel("megapixels / s (this CPU, log scale)")
        ax.set_ylabel(f"PSNR dB, CBSD68{' (8 images)' if a.quick else ''}, sigma {SIGMA:g}")
        ax.set_title("Quality vs speed on " + cpu_name())
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(a.plot, dpi=120)


if __name__ == "__main__":
    main()
