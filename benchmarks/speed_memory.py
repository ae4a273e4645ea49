"""Whole-process speed and peak memory of `ddn denoise` on large synthetic photos.

    python benchmarks/speed_memory.py --json benchmarks/results/speed_memory.json

Inputs are made from scikit-image's astronaut photo (upscaled, noise sigma 25 added):
a 12 MP 8-bit PNG (4000x3000), a 48 MP 8-bit PNG (8000x6000) and a 24 MP 16-bit TIFF
(6000x4000). Each run is a separate process; peak RSS is that process's ru_maxrss.
MP/s is reported two ways: whole process (start, model load, decode, denoise, encode)
and the denoise step alone (the per-file seconds in ddn's JSON report).
``--sigma auto`` runs with ddn's default noise level (estimated per image) instead of 25;
``--src DIR`` runs another checkout's ``src/`` (e.g. a `git worktree` of an older commit).
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


def make_inputs(d: Path, which: set[str]) -> dict[str, Path]:
    import cv2

    from ddn_cli.demo import sample_path

    base = cv2.imread(str(sample_path("astronaut")))
    rng = np.random.default_rng(0)
    out = {}
    specs = {"12mp": (4000, 3000, 8, ".png"), "48mp": (8000, 6000, 8, ".png"), "24mp16": (6000, 4000, 16, ".tif")}
    for name, (w, h, bits, ext) in specs.items():
        if name not in which:
            continue
        img = cv2.resize(base, (w, h), interpolation=cv2.INTER_CUBIC).astype(np.float32)
        scale = 257.0 if bits == 16 else 1.0
        img = img * scale + rng.standard_normal(img.shape, dtype=np.float32) * (25 * scale)
        img = np.clip(np.rint(img), 0, 255 * scale).astype(np.uint16 if bits == 16 else np.uint8)
        p = d / f"{name}{ext}"
        cv2.imwrite(str(p), img, [cv2.IMWRITE_PNG_COMPRESSION, 1] if ext == ".png" else [])
        out[name] = p
        del img
    return out


def run(args: list[str]) -> dict:
    t = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, ru = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    out = proc.stdout.read().decode()
    err = proc.stderr.read().decode()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"failed ({code}): {' '.join(args)}\n{err[-2000:]}")
    return {"wall_s": wall, "peak_rss_mb": ru.ru_maxrss / 1024, "stdout": out}


def main() -> None:
    from machine import cpu_name

    ap = argparse.ArgumentParser()
    ap.add_argument("--json")
    ap.add_argument("--only", default="12mp,48mp,24mp16")
    ap.add_argument("--precisions", default="fp32,auto")
    ap.add_argument("--sigma", default="25", help="25, or auto: the default, estimated per image")
    ap.add_argument("--src", help="run ddn from this src/ folder instead of this checkout's")
    a = ap.parse_args()
    ddn = [sys.executable, "-m", "ddn_cli"]
    if a.src:
        os.environ["PYTHONPATH"] = str(Path(a.src).resolve()) + os.pathsep + os.environ.get("PYTHONPATH", "")
    rows = []
    with tempfile.TemporaryDirectory() as td:
        d = Path(td)
        # inputs are made in a child process: Linux carries a process's peak RSS across
        # fork+exec, so a big parent would inflate every measured child's ru_maxrss
        code = ("import sys, json; sys.path.insert(0, %r); from speed_memory import make_inputs; from pathlib import Path; "
                "print(json.dumps({k: str(v) for k, v in make_inputs(Path(%r), set(%r.split(','))).items()}))"
                % (str(Path(__file__).parent), str(d), a.only))
        made = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        inputs = {k: Path(v) for k, v in json.loads(made.stdout).items()}
        for name, src in inputs.items():
            precs = a.precisions.split(",") if name == "12mp" else ["auto"]
            inputs_mb = src.stat().st_size / 2**20
            for prec in precs:
                dst = d / f"out_{name}_{prec}{src.suffix}"
                r = run(ddn + ["denoise", str(src), str(dst), "--sigma", a.sigma, "--precision", prec, "--quiet",
                               "--json", "-"])
                rep = json.loads(r.pop("stdout"))
                f = rep["files"][0]
                assert f["status"] == "ok", f
                row = {"input": name, "megapixels": f["megapixels"], "sigma": a.sigma, "sigma_used": f["sigma"],
                       "precision": rep["precision"], "requested": prec,
                       "device": rep["device"], "wall_s": round(r["wall_s"], 2),
                       "mp_per_s_whole_process": round(f["megapixels"] / r["wall_s"], 4),
                       "denoise_s": round(f["seconds"], 2), "mp_per_s_denoise": round(f["megapixels"] / f["seconds"], 4),
                       "peak_rss_mb": round(r["peak_rss_mb"], 1)}
                rows.append(row)
                print(json.dumps(row), flush=True)
                dst.unlink()
    doc = {"machine": f"{cpu_name()}, {os.cpu_count()} cores", "command": " ".join(["python"] + sys.argv),
           "src": a.src, "rows": rows}
    if a.json:
        Path(a.json).write_text(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
