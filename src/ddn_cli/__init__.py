"""ddn: denoise images with the multi-scale CNN of Liu et al. (TIP 2020), and keep
recognition working on noisy images.

Importing this package is cheap (no torch); heavy modules import lazily.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import DdnError

__all__ = ["DdnError", "__version__"]
