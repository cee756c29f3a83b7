"""Reusable layers: pixel-adaptive convolutions and pooling (:mod:`~nvresearch.core.layers.pac`) and the PAC-CRF
(:mod:`~nvresearch.core.layers.paccrf`)."""

from nvresearch.core.layers.pac import (
    PacConv2d,
    PacConvTranspose2d,
    PacPool2d,
    nd2col,
    official_transposed_weight_to_torch,
    pacconv2d,
    pacconv_transpose2d,
    packernel2d,
    pacpool2d,
)
from nvresearch.core.layers.paccrf import PacCRF, PacCRFLoose, create_position_feats, create_YXRGB

__all__ = [
    "PacCRF",
    "PacCRFLoose",
    "PacConv2d",
    "PacConvTranspose2d",
    "PacPool2d",
    "create_YXRGB",
    "create_position_feats",
    "nd2col",
    "official_transposed_weight_to_torch",
    "pacconv2d",
    "pacconv_transpose2d",
    "packernel2d",
    "pacpool2d",
]
