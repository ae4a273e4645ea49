"""Start-up cost of a `ddn` command: what a one-file `ddn denoise` spends before and after the model.

Each round starts fresh processes (in alternating order when ``--against`` is given) and times:
- `load`: `Denoiser.load` of the default model in a fresh process (the torch import excluded);
- `whole`: a whole `ddn denoise` (or ``--command segment|classify``) run on one 256x320 crop (or ``--input IMG``; ``--input photo``:
  the suite's noisy 12 MP PNG), process start to exit.
Medians over the rounds; ``--against DIR`` also times another checkout's `src/` (e.g. a
`git worktree` of an older commit) in the same rounds and reports the ratio.

    python benchmarks/startup.py [--rounds 7] [--against /tmp/oldtree] [--input IMG] [--command segment] [--json PATH]
Writes benchmarks/results/startup.json by default. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

LOAD = ("import time, torch\n"
        "from ddn_cli.descriptor import Denoiser\n"
        "from ddn_cli.registry import resolve_weights\n"
        "t = time.perf_counter(); Denoiser.load(resolve_weights(None)); print(time.perf_counter() - t)\n")


def timed(src: Path, tmp: Path, crop: Path, command: str = "denoise") -> tuple[float, float]:
    env = dict(os.environ, PYTHONPATH=str(src))
    load = float(subprocess.run([sys.executable, "-c", LOAD], env=env, capture_output=True, text=True,
                                check=True).stdout.strip())
    out = tmp / f"out{time.perf_counter_ns()}{crop.suffix if command == 'denoise' else ''}"
    args = {"denoise": ["denoise", str(crop), str(out), "--sigma", "25", "--quiet"],
            "segment": ["segment", str(crop), str(out), "--sigma", "25", "--json", str(tmp / "seg.json")],
            "classify": ["classify", str(crop), "--sigma", "25", "--json", "-"]}[command]
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "ddn_cli", *args], env=env, check=True, capture_output=True)
    whole = time.perf_counter() - t0
    # a 12 MP output per run would fill the temp folder
    shutil.rmtree(out) if out.is_dir() else out.unlink(missing_ok=True)
    return load, whole


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--against", default=None, help="another checkout whose src/ is timed in the same rounds")
    ap.add_argument("--input", default=None, help="image for the whole run: a path, or 'photo' for suite.py's noisy 12 MP PNG "
                                                 "(default: a noise crop of 256x320)")
    ap.add_argument("--command", choices=("denoise", "segment", "classify"), default="denoise",
                    help="the command the whole run times (segment/classify: denoised first, as by default)")
    ap.add_argument("--json", default=str(ROOT / "benchmarks/results/startup.json"))
    a = ap.parse_args()
    from machine import cpu_name

    trees = {"this": ROOT / "src"}
    if a.against:
        trees["against"] = Path(a.against).resolve() / "src"
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        rng = np.random.default_rng(0)
        if a.input == "photo":
            from suite import make_photo

            crop = tmp / "photo.png"
            make_photo(crop)
        elif a.input:
            crop = Path(a.input).resolve()
        else:
            crop = tmp / "crop.png"
            Image.fromarray(rng.integers(0, 256, (256, 320, 3), dtype=np.uint8)).save(crop)
        res: dict[str, dict[str, list[float]]] = {k: {"load": [], "whole": []} for k in trees}
        for r in range(a.rounds):
            for k in (list(trees) if r % 2 == 0 else list(trees)[::-1]):
                load, whole = timed(trees[k], tmp, crop, a.command)
                res[k]["load"].append(load)
                res[k]["whole"].append(whole)
    out = {"machine": cpu_name(), "rounds": a.rounds, "input": a.input or "noise crop 256x320", "whole_command": a.command, "command": " ".join(sys.argv), "trees": {k: str(v) for k, v in trees.items()}}
    for k, v in res.items():
        out[k] = {m: {"median_s": round(statistics.median(x), 4), "runs_s": [round(t, 4) for t in x]} for m, x in v.items()}
    if a.against:
        out["ratio_whole_against_over_this"] = round(statistics.median(
            [o / t for o, t in zip(res["against"]["whole"], res["this"]["whole"])]), 3)
    Path(a.json).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
