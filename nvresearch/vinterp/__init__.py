"""vinterp: Unsupervised Video Interpolation Using Cycle Consistency (Reda et al., ICCV 2019).

Torch-only public pieces: the SuperSloMo networks and the cycle construct (``models``), the official losses
(``losses``), the evaluation protocol (``metrics``), the dataset readers (``data``), ``load_official``, and the
backward warp (from ``nvresearch.core.geometry.warp``). Lightning pieces, when they come, live in
``nvresearch.vinterp.module`` and ``nvresearch.vinterp.datamodule``, which this package does not import.
"""

from nvresearch.core.geometry.warp import backward_warp
from nvresearch.vinterp.data import (
    SOURCE_DOMAIN,
    TARGET_DOMAIN,
    CycleTriplets,
    EvalWindows,
    SpriteDomain,
    SupervisedWindows,
    ensure_sprite_world,
    extract_video_frames,
    find_videos,
    load_frame,
    middlebury_windows,
    render_sprite_clip,
    ucf101_windows,
    vimeo_triplet_windows,
    write_sprite_world,
)
from nvresearch.vinterp.inference import SLOWMO_FACTORS, interpolate_pair
from nvresearch.vinterp.losses import (
    LossWeights,
    cycle_consistency_loss,
    cycle_terms,
    perceptual_loss,
    pseudo_targets,
    smoothness_loss,
    supervised_loss,
    supervised_terms,
)
from nvresearch.vinterp.metrics import (
    InterpolationScores,
    frame_metrics,
    interpolate_window,
    interpolation_error,
    psnr,
    quantize,
    ssim,
)
from nvresearch.vinterp.models import (
    MEAN_PIXEL,
    CycleOutput,
    FlowComputation,
    FlowInterpolation,
    Interpolation,
    PerceptualFeatures,
    SuperSloMo,
    UNet,
    cycle_times,
    time_from_index,
)
from nvresearch.vinterp.official import OfficialCheckpointError, load_official, official_state_dict

__all__ = [
    "MEAN_PIXEL",
    "SLOWMO_FACTORS",
    "SOURCE_DOMAIN",
    "TARGET_DOMAIN",
    "CycleOutput",
    "CycleTriplets",
    "EvalWindows",
    "OfficialCheckpointError",
    "FlowComputation",
    "FlowInterpolation",
    "Interpolation",
    "InterpolationScores",
    "LossWeights",
    "PerceptualFeatures",
    "SpriteDomain",
    "SupervisedWindows",
    "SuperSloMo",
    "UNet",
    "backward_warp",
    "cycle_consistency_loss",
    "cycle_terms",
    "interpolate_pair",
    "cycle_times",
    "ensure_sprite_world",
    "extract_video_frames",
    "find_videos",
    "frame_metrics",
    "interpolate_window",
    "interpolation_error",
    "load_frame",
    "load_official",
    "middlebury_windows",
    "official_state_dict",
    "perceptual_loss",
    "pseudo_targets",
    "psnr",
    "quantize",
    "render_sprite_clip",
    "smoothness_loss",
    "ssim",
    "supervised_loss",
    "supervised_terms",
    "time_from_index",
    "ucf101_windows",
    "vimeo_triplet_windows",
    "write_sprite_world",
]
