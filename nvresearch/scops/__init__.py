"""SCOPS: Self-Supervised Co-Part Segmentation (Hung et al., CVPR 2019).

Torch-only public pieces: the part segmentation network, the frozen VGG-19 features and the part bases
(:mod:`nvresearch.scops.models`); the losses and the random thin-plate-spline warp (:mod:`nvresearch.scops.losses`); the
evaluation (:mod:`nvresearch.scops.metrics`); the dataset readers (:mod:`nvresearch.scops.data`).
Thin-plate splines (kornia) and Hungarian matching (scipy) are imported inside the functions that need them, so
importing this package loads neither.
"""

from nvresearch.scops.data import (
    CAFFE_MEAN_RGB,
    CelebAWild,
    CUBParts,
    PartImageFolder,
    PartObjects,
    caffe_normalize,
    celeba_split,
    part_objects_split,
    render_part_object,
)
from nvresearch.scops.losses import (
    LOSS_WEIGHTS,
    SCOPSObjective,
    TPSWarp,
    color_jitter,
    concentration_loss,
    equivariance_loss,
    equivariance_losses,
    imagenet_from_caffe,
    landmark_equivariance_loss,
    orthonormality_loss,
    part_centers,
    random_similarity_tps,
    semantic_consistency_loss,
    semantic_targets,
    similarity_tps,
    total_loss,
)
from nvresearch.scops.metrics import (
    ari,
    colour_kmeans_parts,
    hungarian_match,
    landmark_centers,
    landmark_regression_error,
    mean_error_iod,
    nmi,
    part_agreement,
)
from nvresearch.scops.models import (
    ASPP,
    CaffeInputVGG,
    PartBasis,
    PartSegmenter,
    RandomFeatures,
    VGGFeatures,
    l2_normalize_rows,
    load_matching,
    upsample_logits,
)
from nvresearch.scops.official import OfficialCheckpointError, load_official, load_official_basis

__all__ = [
    "ASPP",
    "CAFFE_MEAN_RGB",
    "CUBParts",
    "CelebAWild",
    "PartImageFolder",
    "PartObjects",
    "caffe_normalize",
    "celeba_split",
    "part_objects_split",
    "CaffeInputVGG",
    "RandomFeatures",
    "LOSS_WEIGHTS",
    "OfficialCheckpointError",
    "TPSWarp",
    "ari",
    "color_jitter",
    "colour_kmeans_parts",
    "hungarian_match",
    "imagenet_from_caffe",
    "landmark_centers",
    "landmark_regression_error",
    "load_official",
    "load_official_basis",
    "mean_error_iod",
    "nmi",
    "part_agreement",
    "concentration_loss",
    "equivariance_loss",
    "equivariance_losses",
    "landmark_equivariance_loss",
    "orthonormality_loss",
    "part_centers",
    "random_similarity_tps",
    "render_part_object",
    "semantic_consistency_loss",
    "semantic_targets",
    "similarity_tps",
    "total_loss",
    "PartBasis",
    "PartSegmenter",
    "SCOPSObjective",
    "VGGFeatures",
    "l2_normalize_rows",
    "load_matching",
    "upsample_logits",
]
