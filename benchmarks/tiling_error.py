"""Tiled vs untiled output of the default model (fp32), on Kodak24 photos with sigma 25.

    python benchmarks/tiling_error.py --json benchmarks/results/tiling_error.json
    python benchmarks/tiling_error.py --sides --only 256/48,512/32,512/48 --json benchmarks/results/tiling_error_sides.json

``--sides``: tile as `ddn denoise` does since 2026-12-02, the model told which tile sides are the
image's edges or thinly overlapped (the border ring recomputed only there), each row beside the exact-ring tiling.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


TILINGS = ((128, 32), (128, 48), (256, 32), (256, 48), (512, 32), (512, 48), (1024, 32), (256, 16), (256, 0))


def main() -> None:
    from ddn_cli.descriptor import Denoiser
    from ddn_cli.evaluation.denoise_eval import load_eval_images
    from ddn_cli.evaluation.protocol import make_noisy
    from ddn_cli.registry import resolve_weights
    from ddn_cli.tiling import run_tiled

    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(ROOT.parent / "shared/data/kodak24"))
    ap.add_argument("--limit", type=int, default=4)
    ap.add_argument("--only", default="")
    ap.add_argument("--sides", action="store_true", help="also tile as ddn denoise does, the border ring recomputed only where it counts")
    ap.add_argument("--json")
    a = ap.parse_args()
    den = Denoiser.load(resolve_weights(None), precision="fp32")
    rows = []
    for name, clean in load_eval_images([a.data], a.limit):
        x = np.clip(make_noisy(clean, 25, name), 0, 1)
        whole = den(x[None], 25.0)[0]
        for tile, overlap in [tuple(map(int, t.split('/'))) for t in a.only.split(',')] if a.only else TILINGS:
            runs = {"exact": run_tiled(x, lambda b: den(b, 25.0), tile=tile, overlap=overlap, batch_size=1)}
            if a.sides:
                runs["sides"] = run_tiled(x, lambda b, exact: den(b, 25.0, exact), tile=tile, overlap=overlap,
                                          batch_size=1, sides=True)
            for ring, t in runs.items():
                d = np.abs(t - whole) * 255
                rows.append({"image": name, "tile": tile, "overlap": overlap, **({"ring": ring} if a.sides else {}),
                             "max_abs_diff_255": round(float(d.max()), 4), "mean_abs_diff_255": round(float(d.mean()), 5),
                             "uint8_pixels_differing": round(float((np.rint(t * 255) != np.rint(whole * 255)).mean()), 5)})
                print(json.dumps(rows[-1]), flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps({"command": "python benchmarks/tiling_error.py " + " ".join(sys.argv[1:]),
                                            "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
