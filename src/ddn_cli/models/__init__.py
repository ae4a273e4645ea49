"""nn.Modules only: the paper's denoiser (and later the bundled high-level networks)."""

from .denoiser import DDNDenoiser, DenoiserConfig, build_denoiser

ARCHS = {"ddn": build_denoiser}

__all__ = ["DDNDenoiser", "DenoiserConfig", "build_denoiser", "ARCHS"]
