"""Rotation and gaze-angle helpers and the backward warp shared by the papers (torch-only).

Conventions (of the official FAZE code): a (pitch, yaw) pair in radians maps to the unit vector
``v = (cos p sin y, sin p, cos p cos y)``; the rotation of a (pitch, yaw) pair is ``R = R_y(yaw) R_x(pitch)``.
"""

from nvresearch.core.geometry.angles import (
    angular_error,
    as_gaze_vector,
    gaze_angular_error,
    mean_angular_error,
    pitchyaw_angular_error,
    pitchyaw_to_rotation,
    pitchyaw_to_vector,
    rotation_x,
    rotation_y,
    vector_to_pitchyaw,
)
from nvresearch.core.geometry.warp import backward_warp, pixel_grid

__all__ = [
    "angular_error",
    "backward_warp",
    "as_gaze_vector",
    "gaze_angular_error",
    "mean_angular_error",
    "pitchyaw_angular_error",
    "pitchyaw_to_rotation",
    "pitchyaw_to_vector",
    "pixel_grid",
    "rotation_x",
    "rotation_y",
    "vector_to_pitchyaw",
]
