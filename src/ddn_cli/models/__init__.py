"""nn.Modules only: the paper's denoiser (and later the bundled high-level networks)."""

from .classifier import ResNet9
from .denoiser import DDNDenoiser, DenoiserConfig, build_denoiser
from .segmenter import ResNet9UNet, ResUNetS


def build_resnet9(config: dict | None = None) -> ResNet9:
    return ResNet9(**(config or {}))


def build_resunet_s(config: dict | None = None) -> ResUNetS:
    return ResUNetS(**(config or {}))


def build_resnet9_unet(config: dict | None = None) -> ResNet9UNet:
    return ResNet9UNet(**(config or {}))


ARCHS = {"ddn": build_denoiser, "resnet9": build_resnet9, "resunet_s": build_resunet_s,
         "resnet9_unet": build_resnet9_unet}

__all__ = ["ARCHS", "DDNDenoiser", "DenoiserConfig", "ResNet9", "ResNet9UNet", "ResUNetS", "build_denoiser", "build_resnet9",
           "build_resnet9_unet", "build_resunet_s"]
