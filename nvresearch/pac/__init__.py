"""PAC: Pixel-Adaptive Convolutional Neural Networks (Su et al., CVPR 2019).

Two tasks, each a sub-package of the same shape (``models``, ``losses``, ``data``, ``metrics``, ``module``,
``datamodule``): :mod:`nvresearch.pac.upsampling` (joint depth and optical-flow upsampling, Sec. 5.1, with the
``inference`` helper) and :mod:`nvresearch.pac.segmentation` (FCN-8s, PAC-FCN and PAC-CRF, Sec. 5.2-5.3).
Torch-only public pieces are re-exported here with the PAC layers (from :mod:`nvresearch.core.layers.pac`);
Lightning lives in the ``module`` and ``datamodule`` files, which this package does not import.
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
from nvresearch.pac.official import load_official
from nvresearch.pac.segmentation.data import (
    SegmentationDataset,
    SyntheticSegmentation,
    VOCSegmentation,
    export_voc_predictions,
    read_voc_png,
    write_voc_png,
)
from nvresearch.pac.segmentation.losses import segmentation_loss
from nvresearch.pac.segmentation.metrics import confusion_matrix, segmentation_scores
from nvresearch.pac.segmentation.models import FCN8s, FCNWithCRF, create_model, load_weights
from nvresearch.pac.upsampling.data import (
    JointUpsamplingDataset,
    NYUDepthV2,
    SintelFlow,
    SyntheticFlow,
    SyntheticRGBD,
    lowres,
    read_flo,
    write_flo,
)
from nvresearch.pac.upsampling.inference import upsample
from nvresearch.pac.upsampling.losses import normalized_l2_loss
from nvresearch.pac.upsampling.metrics import denormalize, per_image_epe, per_image_rmse
from nvresearch.pac.upsampling.models import (
    DJIF,
    Bicubic,
    Bilinear,
    DJIFResidual,
    JointBilateral,
    PacJointUpsample,
    PacJointUpsampleLite,
)

__all__ = [
    "DJIF",
    "DJIFResidual",
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
    "load_official",
    "load_official_state_dict",
    "pac_from_conv",
    "swap_conv_for_pac",
]
