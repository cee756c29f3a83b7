"""SCOPS: Self-Supervised Co-Part Segmentation (Hung et al., CVPR 2019).

Torch-only public pieces: the part segmentation network, the frozen VGG-19 features and the part bases
(:mod:`nvresearch.scops.models`). Thin-plate splines (kornia) and Hungarian matching (scipy) are imported inside the
functions that need them, so importing this package loads neither.
"""

from nvresearch.scops.models import (
    ASPP,
    PartBasis,
    PartSegmenter,
    VGGFeatures,
    l2_normalize_rows,
    load_matching,
    upsample_logits,
)

__all__ = [
    "ASPP",
    "PartBasis",
    "PartSegmenter",
    "VGGFeatures",
    "l2_normalize_rows",
    "load_matching",
    "upsample_logits",
]
