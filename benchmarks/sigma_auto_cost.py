"""What `--sigma auto` (the default) costs a `ddn denoise` run, against a given sigma.

Whole `ddn denoise DIR OUT --quiet --json FILE` processes over a folder of noisy crops
(``folder_throughput.make_crops``), the variants alternated round by round: this checkout
with ``--sigma auto`` and with ``--sigma 25``, and with ``--against DIR`` another checkout's
``src/`` (e.g. a `git worktree` of an older commit) with ``--sigma auto``. Reported per
variant: the median of the run's own seconds (model loading excluded), of the whole
process's wall time, and of its user + system CPU time.

    python benchmarks/sigma_auto_cost.py [--n 120] [--rounds 5] [--against /tmp/oldtree/src] [--json PATH]
Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from folder_throughput import add_crop_args, make_crops


def run(src: Path, sigma: str, pythonpath: str | None, tmp: Path) -> dict:
    out, rep = tmp / "out", tmp / "r.json"
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "ddn_cli", "denoise", str(src), str(out), "--sigma", sigma,
                             "--quiet", "--overwrite", "--json", str(rep)], env=env)
    _, status, ru = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"ddn denoise failed ({status})")
    r = json.loads(rep.read_text())
    return {"seconds": r["seconds"], "wall_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime,
            "mean_sigma": statistics.mean(f["sigma"] for f in r["files"])}


def main() -> None:
    ap = argparse.ArgumentParser()
    add_crop_args(ap)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--against", help="another checkout's src/ folder, run with --sigma auto")
    ap.add_argument("--json", default=str(ROOT / "benchmarks/results/sigma_auto_cost.json"))
    a = ap.parse_args()
    H, W = (int(v) for v in a.size.split("x"))
    variants = {"auto": ("auto", str(ROOT / "src")), "sigma 25": ("25", str(ROOT / "src"))}
    if a.against:
        variants["auto, --against"] = ("auto", str(Path(a.against).resolve()))
    res: dict[str, list[dict]] = {k: [] for k in variants}
    with tempfile.TemporaryDirectory() as td:
        src = Path(td) / "in"
        src.mkdir()
        make_crops(src, a.n, H, W, a.sigma)
        names = list(variants)
        for r in range(a.rounds):
            for k in (names if r % 2 == 0 else names[::-1]):
                res[k].append(run(src, *variants[k], Path(td)))
                print(k, json.dumps({m: round(v, 3) for m, v in res[k][-1].items()}), flush=True)
    summary = {k: {m: round(statistics.median(x[m] for x in v), 3) for m in v[0]} for k, v in res.items()}
    doc = {"images": a.n, "size": [H, W], "noise_sigma": a.sigma, "rounds": a.rounds, "against": a.against,
           "medians": summary, "runs": res, "command": " ".join(["python"] + sys.argv)}
    Path(a.json).write_text(json.dumps(doc, indent=2) + "\n")
    for k, v in summary.items():
        print(f"{k:16s} run {v['seconds']:6.2f} s  whole {v['wall_s']:6.2f} s  CPU {v['cpu_s']:6.2f} s  "
              f"mean sigma {v['mean_sigma']:.2f}")


if __name__ == "__main__":
    main()
