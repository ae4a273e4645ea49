"""Weight-space interpolation of two fine-tunes of one denoiser (WiSE-FT, Wortsman et al.,
CVPR 2022): theta = (1 - alpha) * theta_A + alpha * theta_B, tensor by tensor. Both files
must hold the same architecture and config (e.g. the reconstruction-only default and a
task-guided fine-tune of it); integer tensors (BatchNorm step counters) are taken from A.
With ``--layers``, only the named top-level layers are interpolated and the rest is A's (with
alpha 1: A with B's changes in those layers only, to see where a fine-tune's effect lives).

    python benchmarks/interpolate_weights.py weights/ddn.color-sigma.safetensors \
        weights/ddn.cls.safetensors --alpha 0.5 --out runs/wise/cls_a0.5.safetensors
    python benchmarks/interpolate_weights.py weights/ddn.color-sigma.safetensors \
        weights/ddn.cls.safetensors --alpha 1 --layers down2,res2,up1 --out runs/wise/cls_only_quarter.safetensors
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from ddn_cli.weightfile import load_weights, save_weights


def interpolate(sd_a: dict, sd_b: dict, alpha: float, layers: tuple[str, ...] = ()) -> dict:
    """(1 - alpha) * A + alpha * B for floating tensors (of ``layers`` only, when given);
    A's value for the others."""
    if set(sd_a) != set(sd_b):
        raise SystemExit(f"the two files hold different tensors: {sorted(set(sd_a) ^ set(sd_b))[:5]}")
    out = {}
    for k, a in sd_a.items():
        b = sd_b[k]
        if a.shape != b.shape:
            raise SystemExit(f"{k}: shapes differ ({tuple(a.shape)} vs {tuple(b.shape)})")
        mix = a.is_floating_point() and (not layers or k.split(".")[0] in layers)
        out[k] = (a.double() * (1 - alpha) + b.double() * alpha).to(a.dtype) if mix else a.clone()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("a", help="weights at alpha 0")
    ap.add_argument("b", help="weights at alpha 1")
    ap.add_argument("--alpha", type=float, required=True)
    ap.add_argument("--layers", default="", help="comma-separated top-level layers to interpolate (default: all)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    if not 0.0 <= args.alpha <= 1.0:
        raise SystemExit("--alpha must lie in [0, 1]")
    layers = tuple(v for v in args.layers.split(",") if v)
    sd_a, meta_a = load_weights(args.a)
    unknown = [n for n in layers if not any(k.split(".")[0] == n for k in sd_a)]
    if unknown:
        raise SystemExit(f"--layers {','.join(unknown)}: no such layer in {args.a}")
    sd_b, meta_b = load_weights(args.b)
    if meta_a.get("config") != meta_b.get("config") or meta_a.get("arch") != meta_b.get("arch"):
        raise SystemExit("the two files have different architectures or configs")
    meta = {k: v for k, v in meta_b.items() if k in ("arch", "config", "task", "precision")}  # not B's training record
    meta["arch"] = meta_b.get("arch", "ddn")
    meta["interpolated"] = {
        "a": str(args.a), "a_sha256": hashlib.sha256(Path(args.a).read_bytes()).hexdigest(),
        "b": str(args.b), "b_sha256": hashlib.sha256(Path(args.b).read_bytes()).hexdigest(),
        "alpha": args.alpha, "layers": list(layers) or "all", "what": "(1 - alpha) * a + alpha * b (WiSE-FT)",
    }
    save_weights(interpolate(sd_a, sd_b, args.alpha, layers), args.out, meta)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
