"""PNG decode time: ddn's fast path (pngread: ISA-L inflate, libpng unfilter) against the
general path it replaced for plain PNGs (Pillow, OpenCV for 16-bit), through ``read_image``.

    python benchmarks/png_decode.py [--rounds 7] [--json PATH]
Files: the 120 noisy 256x320 crops of folder_throughput.py (Kodak24 crops where ../shared
has them), one noisy 12 MP 8-bit RGB photo-sized PNG, one 4 MP 16-bit RGB PNG. Per case the
median over rounds of the mean time per file, both paths alternated within each round.
Writes benchmarks/results/png_decode.json by default; run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from folder_throughput import make_crops


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--json", default=str(ROOT / "benchmarks/results/png_decode.json"))
    a = ap.parse_args()
    import cv2
    from machine import cpu_name

    from ddn_cli import pngread
    from ddn_cli.io import read_image

    fast_check = pngread.worth_trying

    def general(head, max_pixels):
        return False

    def use(fast: bool) -> None:
        pngread.worth_trying = fast_check if fast else general

    def timed(files, fast: bool) -> float:
        use(fast)
        try:
            t0 = time.perf_counter()
            for f in files:
                read_image(f)
            return (time.perf_counter() - t0) / len(files)
        finally:
            use(True)

    def pixels(f, fast: bool) -> np.ndarray:
        use(fast)
        try:
            return read_image(f).color
        finally:
            use(True)

    rng = np.random.default_rng(0)
    cases = {}
    with tempfile.TemporaryDirectory() as td:
        crops = Path(td) / "crops"
        crops.mkdir()
        make_crops(crops, 120, 256, 320, 25)
        cases["120 crops 256x320 rgb8"] = sorted(crops.glob("*.png"))
        y, x = np.mgrid[0:3000, 0:4000]
        base = ((x + y) / 7000 * 200)[..., None] + 20
        photo = np.clip(np.round(base + rng.normal(0, 25, (3000, 4000, 3))), 0, 255).astype(np.uint8)
        p = Path(td) / "photo12mp.png"
        cv2.imwrite(str(p), photo[..., ::-1])
        cases["12 MP rgb8 (OpenCV-written)"] = [p]
        p16 = Path(td) / "photo4mp16.png"
        cv2.imwrite(str(p16), (photo[:1732, :2309].astype(np.uint16) * 257 + rng.integers(0, 257, (1732, 2309, 3)))
                    .astype(np.uint16)[..., ::-1])
        cases["4 MP rgb16 (OpenCV-written)"] = [p16]
        for files in cases.values():  # the same pixels both ways (and the page cache warm)
            assert np.array_equal(pixels(files[0], True), pixels(files[0], False))
        rows = []
        for name, files in cases.items():
            fast, slow = [], []
            for r in range(a.rounds):
                order = (True, False) if r % 2 == 0 else (False, True)
                for is_fast in order:
                    (fast if is_fast else slow).append(timed(files, is_fast))
            f_ms, s_ms = statistics.median(fast) * 1e3, statistics.median(slow) * 1e3
            rows.append({"case": name, "files": len(files), "fast_ms_per_file": round(f_ms, 3),
                         "general_ms_per_file": round(s_ms, 3), "speedup": round(s_ms / f_ms, 3)})
            print(f"{name:32s} fast {f_ms:9.3f} ms  general {s_ms:9.3f} ms  {s_ms / f_ms:.2f}x")
    res = {"machine": cpu_name(), "rounds": a.rounds, "rows": rows, "command": " ".join(sys.argv)}
    Path(a.json).write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
