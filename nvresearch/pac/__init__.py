"""PAC: Pixel-Adaptive Convolutional Neural Networks (Su et al., CVPR 2019).

Torch-only public pieces: the PAC layers (from :mod:`nvresearch.core.layers.pac`), the joint-upsampling networks,
losses, metrics, datasets and the inference helper. Lightning lives in ``nvresearch.pac.module`` and
``nvresearch.pac.datamodule``, which this package does not import.
"""

from nvresearch.core.layers.pac import (
    PacConv2d,
    PacConvTranspose2d,
    PacPool2d,
    official_transposed_weight_to_torch,
    pacconv2d,
    pacconv_transpose2d,
    packernel2d,
    pacpool2d,
)
from nvresearch.core.layers.paccrf import PacCRF, PacCRFLoose, create_position_feats, create_YXRGB
from nvresearch.pac.data import JointUpsamplingDataset, NYUDepthV2, SyntheticRGBD, lowres
from nvresearch.pac.inference import upsample
from nvresearch.pac.losses import normalized_l2_loss
from nvresearch.pac.metrics import denormalize, per_image_epe, per_image_rmse
from nvresearch.pac.models import Bicubic, Bilinear, JointBilateral, PacJointUpsample

__all__ = [
    "Bicubic",
    "Bilinear",
    "JointBilateral",
    "JointUpsamplingDataset",
    "NYUDepthV2",
    "PacConv2d",
    "PacConvTranspose2d",
    "PacCRF",
    "PacCRFLoose",
    "PacPool2d",
    "PacJointUpsample",
    "SyntheticRGBD",
    "create_YXRGB",
    "create_position_feats",
    "denormalize",
    "lowres",
    "normalized_l2_loss",
    "official_transposed_weight_to_torch",
    "pacconv2d",
    "pacconv_transpose2d",
    "packernel2d",
    "pacpool2d",
    "per_image_epe",
    "per_image_rmse",
    "upsample",
]
