"""Reusable layers: pixel-adaptive convolutions (:mod:`nvresearch.core.layers.pac`)."""

from nvresearch.core.layers.pac import (
    PacConv2d,
    PacConvTranspose2d,
    nd2col,
    official_transposed_weight_to_torch,
    pacconv2d,
    pacconv_transpose2d,
    packernel2d,
)

__all__ = [
    "PacConv2d",
    "PacConvTranspose2d",
    "nd2col",
    "official_transposed_weight_to_torch",
    "pacconv2d",
    "pacconv_transpose2d",
    "packernel2d",
]
