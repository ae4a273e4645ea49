"""A/B of two source trees on a `ddn denoise` folder run: the same folder of noisy crops,
the two trees' runs alternated, each timed by the run's own JSON report (model loading
excluded), medians printed. How the twenty-first session's folder-throughput variants (a
write queue, fsync skipped or batched) were compared with the code as it is.

    python benchmarks/folder_ab.py --a /tmp/treeA/src --b /tmp/treeB/src [--rounds 6] [--n 120]
``--a``/``--b``: a ``src`` folder each (e.g. of a ``git worktree``); ``--n``, ``--size``,
``--sigma`` as in folder_throughput.py; ``--run-sigma auto`` runs the
default estimate instead of passing the true sigma. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from folder_throughput import add_crop_args, make_crops


def main() -> None:
    ap = argparse.ArgumentParser()
    add_crop_args(ap)
    ap.add_argument("--a", required=True, help="src folder of the first tree")
    ap.add_argument("--b", required=True, help="src folder of the second tree")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--run-sigma", help="what `ddn denoise --sigma` is given (e.g. auto); default: --sigma")
    a = ap.parse_args()
    H, W = (int(v) for v in a.size.split("x"))
    times: dict[str, list[float]] = {"a": [], "b": []}
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in"
        src.mkdir()
        make_crops(src, a.n, H, W, a.sigma)
        for i in range(a.rounds):
            for key, tree in (("a", a.a), ("b", a.b)):
                out, rep = Path(tmp) / f"out-{key}{i}", Path(tmp) / f"rep-{key}{i}.json"
                subprocess.run([sys.executable, "-m", "ddn_cli", "denoise", str(src), str(out), "--sigma",
                                a.run_sigma or f"{a.sigma:g}", "--quiet", "--json", str(rep)],
                               env={**os.environ, "PYTHONPATH": tree}, check=True)
                times[key].append(json.loads(rep.read_text())["seconds"])
    res = {k: {"seconds": [round(t, 3) for t in v], "median": round(statistics.median(v), 3)} for k, v in times.items()}
    res.update(a_tree=a.a, b_tree=a.b, images=a.n, size=[H, W], command=" ".join(sys.argv))
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
