"""Fill .devdata/ (git-ignored) with the files a lent GPU needs, mirroring ../shared/data's
layout: the denoiser's training and validation splits (benchmarks/splits/) and CBSD68, so a
device call can run `ddn train ... --data-root .devdata` and `ddn eval denoise
.devdata/bsds500/CBSD68_ids.txt --data-root .devdata/bsds500/images` exactly as here. The
device tool carries it (``carry: [".devdata", ...]``, 64 MiB in all); delete it afterwards.

    python benchmarks/make_devdata.py [--no-train]
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(ROOT / ".devdata"))
    ap.add_argument("--no-train", action="store_true", help="only the validation split and CBSD68")
    a = ap.parse_args()
    if not SHARED.is_dir():
        raise SystemExit(f"{SHARED} is absent: nothing to mirror")
    out = Path(a.out)
    names = [] if a.no_train else (ROOT / "benchmarks/splits/denoise_train.txt").read_text().split()
    names += (ROOT / "benchmarks/splits/denoise_val.txt").read_text().split()
    ids = (SHARED / "bsds500/CBSD68_ids.txt").read_text().split()
    names += ["bsds500/CBSD68_ids.txt"] + [f"bsds500/images/{i}" for i in ids]
    total = 0
    for n in names:
        src, dst = SHARED / n, out / n
        dst.parent.mkdir(parents=True, exist_ok=True)
        if not dst.is_file():
            shutil.copyfile(src, dst)
        total += dst.stat().st_size
    print(f"{out}: {len(names)} files, {total / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
