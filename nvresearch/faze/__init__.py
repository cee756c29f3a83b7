"""FAZE: Few-Shot Adaptive Gaze Estimation (Park et al., ICCV 2019).

Torch-only public pieces: the DT-ED and gaze-MLP networks, the rotation helpers of the latent codes, the losses,
the stage-2 meta-learning and evaluation protocol, the data layout readers and the embedded eye-strip world, and
the inference API (:func:`personalize`, :func:`predict`). Lightning lives in ``nvresearch.faze.module`` and
``nvresearch.faze.datamodule``, which this package does not import.
"""

from nvresearch.faze.adagen import AdaGENConfig, PersonCodes, joint_train, meta_train, sample_task
from nvresearch.faze.data import (
    FazeH5,
    PairDataset,
    SampleDataset,
    ensure_eye_strip_world,
    load_split,
    preprocess_pixels,
    render_person,
    write_eye_strip_world,
)
from nvresearch.faze.inference import FazeGazeEstimator, personalize, predict
from nvresearch.faze.losses import (
    embedding_consistency_loss,
    faze_objective,
    gaze_angular_loss,
    linear_ramp,
    reconstruction_l1_loss,
)
from nvresearch.faze.metrics import CurvePoint, personalization_curve
from nvresearch.faze.models import DTED, DenseNetDecoder, DenseNetEncoder, GazeMLP, normalize_codes, rotate_codes
from nvresearch.faze.official import OfficialCheckpointError, load_official

__all__ = [
    "DTED",
    "AdaGENConfig",
    "CurvePoint",
    "DenseNetDecoder",
    "DenseNetEncoder",
    "FazeGazeEstimator",
    "FazeH5",
    "GazeMLP",
    "OfficialCheckpointError",
    "PairDataset",
    "PersonCodes",
    "SampleDataset",
    "embedding_consistency_loss",
    "ensure_eye_strip_world",
    "faze_objective",
    "gaze_angular_loss",
    "joint_train",
    "linear_ramp",
    "load_official",
    "load_split",
    "meta_train",
    "normalize_codes",
    "personalization_curve",
    "personalize",
    "predict",
    "preprocess_pixels",
    "reconstruction_l1_loss",
    "render_person",
    "rotate_codes",
    "sample_task",
    "write_eye_strip_world",
]
