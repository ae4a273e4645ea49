"""benchmarks/prune_width.py: cutting the decoder's channel stream keeps the network's function
when the dropped channels carry nothing, and the result loads into the narrower architecture."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from prune_width import prune

from ddn_cli.models.denoiser import build_denoiser


def _model(**cfg):
    torch.manual_seed(0)
    m = build_denoiser(cfg).eval()
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_var.uniform_(0.5, 2.0)
                mod.running_mean.normal_(0, 0.1)
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.normal_(0, 0.1)
    return m


def test_dropping_silent_channels_keeps_the_output():
    m = _model(width=8, mid=16, up_mid=8, fuse=32)
    dead = [3, 17, 21, 30]
    with torch.no_grad():  # these stream channels are always zero after fuse1 and after res3
        m.fuse1[1].bias[dead] = -1e4
        m.res3.body[6].weight[dead] = 0
        m.res3.body[7].bias[dead] = -1e4
        for bn, j in ((m.res3.body[1], 5), (m.res3.body[4], 2)):  # one silent channel in each inner layer:
            bn.weight[j], bn.bias[j] = 0.0, -1e4  # the bottleneck (fuse // 4) loses one, the weakest
    keep = torch.tensor([c for c in range(32) if c not in dead])
    sd = {k: v.clone() for k, v in m.state_dict().items()}
    cut = build_denoiser({"width": 8, "mid": 16, "up_mid": 8, "fuse": 28}).eval()
    cut.load_state_dict(prune(sd, keep, inner=7))
    x = torch.rand(2, 3, 24, 28)
    with torch.inference_mode():
        assert torch.allclose(cut(x, 0.1), m(x, 0.1), atol=1e-5)


def test_narrower_bottleneck_loads_and_runs():
    m = _model(width=8, mid=16, up_mid=8, fuse=32)
    keep = torch.arange(0, 32, 2)
    cut = build_denoiser({"width": 8, "mid": 16, "up_mid": 8, "fuse": 16}).eval()
    cut.load_state_dict(prune(m.state_dict(), keep, inner=4))
    with torch.inference_mode():
        y = cut(torch.rand(1, 3, 20, 20), 0.1)
    assert y.shape == (1, 3, 20, 20) and torch.isfinite(y).all()
