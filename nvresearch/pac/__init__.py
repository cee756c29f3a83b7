"""PAC: Pixel-Adaptive Convolutional Neural Networks (Su et al., CVPR 2019).

Torch-only public pieces: the PAC layers (from :mod:`nvresearch.core.layers.pac`); the joint depth / flow upsampling
networks, losses, metrics, datasets and the inference helper; the segmentation networks (FCN-8s, PAC-FCN, PAC-CRF),
loss, metrics and datasets. Lightning lives in ``nvresearch.pac.module``, ``datamodule``, ``seg_module`` and
``seg_datamodule``, which this package does not import.
"""

from nvresearch.core.layers.pac import (
    PacConv2d,
    PacConvTranspose2d,
    PacPool2d,
    load_official_state_dict,
    official_transposed_weight_to_torch,
    pacconv2d,
    pacconv_transpose2d,
    packernel2d,
    pacpool2d,
)
from nvresearch.core.layers.pac.crf import PacCRF, PacCRFLoose, create_position_feats, create_YXRGB
from nvresearch.core.layers.pac.swap import PacGuidance, SwappedPacConv2d, pac_from_conv, swap_conv_for_pac
from nvresearch.pac.data import JointUpsamplingDataset, NYUDepthV2, SyntheticRGBD, lowres
from nvresearch.pac.flow_data import SintelFlow, SyntheticFlow, read_flo, write_flo
from nvresearch.pac.inference import upsample
from nvresearch.pac.losses import normalized_l2_loss, segmentation_loss
from nvresearch.pac.metrics import (
    confusion_matrix,
    denormalize,
    per_image_epe,
    per_image_rmse,
    segmentation_scores,
)
from nvresearch.pac.models import DJIF, Bicubic, Bilinear, JointBilateral, PacJointUpsample, PacJointUpsampleLite
from nvresearch.pac.seg_data import (
    SegmentationDataset,
    SyntheticSegmentation,
    VOCSegmentation,
    export_voc_predictions,
    read_voc_png,
    write_voc_png,
)
from nvresearch.pac.seg_models import FCN8s, FCNWithCRF, create_model, load_weights

__all__ = [
    "DJIF",
    "FCN8s",
    "FCNWithCRF",
    "PacJointUpsampleLite",
    "SegmentationDataset",
    "SintelFlow",
    "SyntheticFlow",
    "SyntheticSegmentation",
    "VOCSegmentation",
    "confusion_matrix",
    "create_model",
    "load_weights",
    "read_flo",
    "segmentation_loss",
    "segmentation_scores",
    "write_flo",
    "export_voc_predictions",
    "read_voc_png",
    "write_voc_png",
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
    "PacGuidance",
    "SwappedPacConv2d",
    "load_official_state_dict",
    "pac_from_conv",
    "swap_conv_for_pac",
]
