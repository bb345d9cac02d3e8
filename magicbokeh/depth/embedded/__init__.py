"""Depth that phones store inside their photos: iPhone HEIC depth images, Google GDepth (Lens
Blur) and Dynamic Depth 1.0 JPEGs. See docs/phone-depth.md.

Entry point: :func:`read_embedded_depth` -> :class:`EmbeddedDepth` or None.
"""

from .read import read_embedded_depth
from .types import FORMAT_NAMES, EmbeddedDepth, EmbeddedDepthError

__all__ = ["FORMAT_NAMES", "EmbeddedDepth", "EmbeddedDepthError", "read_embedded_depth"]
