"""Pitch/yaw angles, direction vectors, rotation matrices and the angular error in degrees.

The gaze datasets normalised with Zhang et al. (ETRA 2018) store gaze and head pose as (pitch, yaw) in radians.
Here, as in the official FAZE code (``src/losses/gaze_angular.py``, ``src/data.py``), a pair ``(p, y)`` stands for
the unit vector ``v(p, y) = (cos p sin y, sin p, cos p cos y)`` and its rotation is ``R(p, y) = R_y(y) R_x(p)``.
Note ``R(p, y) e_z = v(-p, y)``: the rotation is a consistent SO(3) representation whose pitch sign is opposite to
the vector convention (only relative rotations matter).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "angular_error",
    "as_gaze_vector",
    "gaze_angular_error",
    "mean_angular_error",
    "pitchyaw_angular_error",
    "pitchyaw_to_rotation",
    "pitchyaw_to_vector",
    "rotation_x",
    "rotation_y",
    "vector_to_pitchyaw",
]


def _check_last(x: Tensor, size: int, name: str) -> None:
    if not isinstance(x, Tensor) or x.dim() < 1 or x.shape[-1] != size:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{name} must have shape (..., {size}), got {shape}")


def pitchyaw_to_vector(pitchyaw: Tensor) -> Tensor:
    """``(pitch, yaw)`` -> unit vector ``(cos p sin y, sin p, cos p cos y)`` (FAZE convention).

    Shape:
        pitchyaw: ``(..., 2)`` radians; returns ``(..., 3)``.
    """
    _check_last(pitchyaw, 2, "pitchyaw")
    p, y = pitchyaw[..., 0], pitchyaw[..., 1]
    return torch.stack([torch.cos(p) * torch.sin(y), torch.sin(p), torch.cos(p) * torch.cos(y)], dim=-1)


def vector_to_pitchyaw(vector: Tensor) -> Tensor:
    """Inverse of :func:`pitchyaw_to_vector`: ``pitch = arcsin(v_y / |v|)``, ``yaw = atan2(v_x, v_z)``.

    Shape:
        vector: ``(..., 3)`` (any non-zero length); returns ``(..., 2)`` radians.
    """
    _check_last(vector, 3, "vector")
    n = vector / vector.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return torch.stack([torch.asin(n[..., 1].clamp(-1.0, 1.0)), torch.atan2(n[..., 0], n[..., 2])], dim=-1)


def rotation_x(angle: Tensor) -> Tensor:
    """``R_x(a) = [[1,0,0],[0,cos a,-sin a],[0,sin a,cos a]]``.

    Shape:
        angle: ``(...)``; returns ``(..., 3, 3)``.
    """
    c, s = torch.cos(angle), torch.sin(angle)
    one, zero = torch.ones_like(angle), torch.zeros_like(angle)
    return torch.stack([one, zero, zero, zero, c, -s, zero, s, c], dim=-1).unflatten(-1, (3, 3))


def rotation_y(angle: Tensor) -> Tensor:
    """``R_y(a) = [[cos a,0,sin a],[0,1,0],[-sin a,0,cos a]]``.

    Shape:
        angle: ``(...)``; returns ``(..., 3, 3)``.
    """
    c, s = torch.cos(angle), torch.sin(angle)
    one, zero = torch.ones_like(angle), torch.zeros_like(angle)
    return torch.stack([c, zero, s, zero, one, zero, -s, zero, c], dim=-1).unflatten(-1, (3, 3))


def pitchyaw_to_rotation(pitchyaw: Tensor) -> Tensor:
    """Rotation ``R(p, y) = R_y(y) R_x(p)`` of a (pitch, yaw) pair (official FAZE ``src/data.py``).

    Shape:
        pitchyaw: ``(..., 2)`` radians; returns ``(..., 3, 3)``.
    """
    _check_last(pitchyaw, 2, "pitchyaw")
    return rotation_y(pitchyaw[..., 1]) @ rotation_x(pitchyaw[..., 0])


def angular_error(a: Tensor, b: Tensor, eps: float = 1e-6, clip: float = 1e-6, degrees: bool = True) -> Tensor:
    """Angle between vectors, as the official FAZE code computes it, differentiable everywhere.

    ``e = arccos(clip(cos_sim(a, b), -1 + clip, 1 - clip))`` with ``cos_sim`` using ``max(|x|, eps)`` norms. The clip
    keeps the gradient of ``arccos`` finite, so identical inputs give ``arccos(1 - 1e-6) = 0.081`` degrees, not 0.

    Shape:
        a, b: ``(..., D)`` broadcastable; returns ``(...)`` in degrees (radians if ``degrees=False``).
    """
    if a.shape[-1] != b.shape[-1]:
        raise ValueError(f"angular_error: last dimensions differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    cos = F.cosine_similarity(a, b, dim=-1, eps=eps)
    angle = torch.acos(F.hardtanh(cos, -1.0 + clip, 1.0 - clip))
    return angle * (180.0 / math.pi) if degrees else angle


def pitchyaw_angular_error(a: Tensor, b: Tensor, degrees: bool = True) -> Tensor:
    """Angular error between two (pitch, yaw) pairs, through :func:`pitchyaw_to_vector` (no clip floor).

    Identical pairs give exactly 0, and the gradient there is infinite: an evaluation measure, not a loss.

    Shape:
        a, b: ``(..., 2)`` radians; returns ``(...)``.
    """
    # The plain dot product of the two unit vectors, not angular_error's renormalising cosine_similarity: the two
    # differ in the last bits (up to 0.03 degrees in float32 near identical pairs), and these are the numbers the
    # evaluation reported before the dedupe.
    va, vb = pitchyaw_to_vector(a), pitchyaw_to_vector(b)
    angle = torch.acos((va * vb).sum(-1).clamp(-1.0, 1.0))
    return angle * (180.0 / math.pi) if degrees else angle


def as_gaze_vector(gaze: Tensor) -> Tensor:
    """A gaze direction as a vector: ``(..., 2)`` (pitch, yaw) radians go through :func:`pitchyaw_to_vector`,
    ``(..., 3)`` vectors (any length) are returned as they are.

    Shape:
        gaze: ``(..., 2)`` or ``(..., 3)``; returns ``(..., 3)``.
    """
    if not isinstance(gaze, Tensor) or gaze.dim() < 1 or gaze.shape[-1] not in (2, 3):
        shape = tuple(gaze.shape) if isinstance(gaze, Tensor) else type(gaze).__name__
        raise ValueError(f"gaze must have shape (..., 2) (pitch, yaw) or (..., 3) (vector), got {shape}")
    return pitchyaw_to_vector(gaze) if gaze.shape[-1] == 2 else gaze


def gaze_angular_error(prediction: Tensor, target: Tensor) -> Tensor:
    """Per-sample gaze error in degrees with the clip of :func:`angular_error`, as the official FAZE code.

    Either side may be (pitch, yaw) radians or a vector (:func:`as_gaze_vector`); after that the shapes must match.

    Shape:
        prediction, target: ``(..., 2)`` or ``(..., 3)``; returns ``(...)`` degrees.
    """
    prediction, target = as_gaze_vector(prediction), as_gaze_vector(target)
    if prediction.shape != target.shape:
        raise ValueError(f"prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ in shape")
    return angular_error(prediction, target)


def mean_angular_error(prediction: Tensor, target: Tensor) -> Tensor:
    """Mean of :func:`gaze_angular_error`: the angular gaze loss, differentiable everywhere (FAZE Eq. 4).

    Shape:
        prediction, target: ``(..., 2)`` or ``(..., 3)``; returns a scalar in degrees.
    """
    return gaze_angular_error(prediction, target).mean()
