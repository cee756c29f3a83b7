"""Reusable layers: pixel-adaptive convolutions and pooling (the package :mod:`~nvresearch.core.layers.pac`), with
the PAC-CRF (:mod:`~nvresearch.core.layers.pac.crf`) and hot-swapping convolutions for PAC
(:mod:`~nvresearch.core.layers.pac.swap`)."""

from nvresearch.core.layers.pac import (
    FORMS,
    PacConv2d,
    PacConvTranspose2d,
    PacPool2d,
    load_official_state_dict,
    nd2col,
    official_transposed_weight_to_torch,
    pac_form,
    pacconv2d,
    pacconv_transpose2d,
    packernel2d,
    pacpool2d,
)
from nvresearch.core.layers.pac.crf import PacCRF, PacCRFLoose, create_position_feats, create_YXRGB
from nvresearch.core.layers.pac.swap import PacGuidance, SwappedPacConv2d, pac_from_conv, swap_conv_for_pac

__all__ = [
    "FORMS",
    "PacCRF",
    "PacCRFLoose",
    "PacConv2d",
    "PacConvTranspose2d",
    "PacGuidance",
    "PacPool2d",
    "SwappedPacConv2d",
    "create_YXRGB",
    "create_position_feats",
    "load_official_state_dict",
    "nd2col",
    "official_transposed_weight_to_torch",
    "pac_form",
    "pac_from_conv",
    "pacconv2d",
    "pacconv_transpose2d",
    "packernel2d",
    "pacpool2d",
    "swap_conv_for_pac",
]
