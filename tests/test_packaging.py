import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_carries_weights_and_manifest(tmp_path):
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(ROOT), "-w", str(tmp_path)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    whl = next(tmp_path.glob("ddn_cli-*.whl"))
    names = zipfile.ZipFile(whl).namelist()
    assert "ddn_cli/weights/manifest.json" in names
    assert "ddn_cli/weights/ddn.color-sigma.safetensors" in names
    assert any(n.endswith("entry_points.txt") for n in names)
    ep = zipfile.ZipFile(whl).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "ddn = ddn_cli.cli:main" in ep
