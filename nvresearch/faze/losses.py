"""FAZE losses (Eqs. 2-5): L1 reconstruction, angular gaze loss, embedding consistency, their weighted sum, and the two
ablation losses the official code defines (``src/losses/``) but does not use in its reference run: a batch-hard triplet
loss and an "all frontalised codes equal" loss.

All angular quantities are in degrees, with the reference's clip (``arccos`` of a cosine clipped to
``[-1 + 1e-6, 1 - 1e-6]``), so a perfect prediction costs 0.081 degrees.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from nvresearch.core.geometry import angular_error, mean_angular_error

__all__ = [
    "all_frontals_equal_loss",
    "batch_hard_triplet_loss",
    "embedding_consistency_loss",
    "faze_objective",
    "gaze_angular_loss",
    "linear_ramp",
    "reconstruction_l1_loss",
]


def reconstruction_l1_loss(prediction: Tensor, target: Tensor) -> Tensor:
    """Mean absolute error against a detached target (FAZE Eq. 2; official ``src/losses/reconstruction_l1.py``).

    Shape:
        prediction, target: ``(B, 3, H, W)``; returns a scalar.
    """
    if prediction.shape != target.shape:
        raise ValueError(f"prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ in shape")
    return (prediction - target.detach()).abs().mean()


def gaze_angular_loss(prediction: Tensor, target: Tensor) -> Tensor:
    """Mean angular error in degrees between predicted vectors and targets (FAZE Eq. 4; official ``gaze_angular.py``).

    The paper's name for :func:`nvresearch.core.geometry.mean_angular_error`, which stage 2 (AdaGEN) and the
    evaluation protocol use as well: one implementation, one clip.

    Args:
        prediction: ``(B, 3)`` gaze vectors (any length).
        target: ``(B, 2)`` (pitch, yaw) in radians, or ``(B, 3)`` vectors.

    Returns:
        A scalar in degrees.
    """
    return mean_angular_error(prediction, target)


def embedding_consistency_loss(codes: Tensor, person: Tensor) -> Tensor:
    """Embedding-consistency loss on frontalised 3D codes (FAZE Eq. 3; official ``embedding_consistency.py``).

    With ``d(i, j) = (1/F) sum_f angle(C_i[f], C_j[f])`` in degrees,
    ``L = (1/N) sum_i max_{j: person(j) = person(i)} d(i, j)``; the maximum includes ``j = i`` (0.081 degrees after
    the clip). In FAZE the pool is the ``2B`` frontalised gaze codes of the ``a`` and ``b`` images of a batch.

    Shape:
        codes: ``(N, F, 3)``; person: ``(N,)`` integer ids; returns a scalar.
    """
    if codes.dim() != 3 or person.shape != codes.shape[:1]:
        raise ValueError(f"codes must be (N, F, 3) and person (N,), got {tuple(codes.shape)} and {tuple(person.shape)}")
    d = angular_error(codes[:, None], codes[None, :]).mean(-1)  # (N, N)
    same = person[:, None] == person[None, :]
    return d.masked_fill(~same, float("-inf")).amax(dim=1).mean()


def _code_distances(codes: Tensor, distance: str) -> Tensor:
    """``(N, F, 3)`` codes -> ``(N, N)`` distances: the mean over the ``F`` rows of the angle (degrees, clipped as in
    :func:`embedding_consistency_loss`) or of the Euclidean distance between matching rows."""
    if distance == "angular":
        return angular_error(codes[:, None], codes[None, :]).mean(-1)
    if distance == "euclidean":
        return (codes[:, None] - codes[None, :]).norm(dim=-1).mean(-1)
    raise ValueError(f"distance must be 'angular' or 'euclidean', got {distance!r}")


def batch_hard_triplet_loss(
    codes: Tensor, person: Tensor, margin: float = 0.0, distance: str = "angular", regularize_within: bool = False
) -> Tensor:
    """Batch-hard triplet loss on frontalised 3D codes (an ablation of FAZE's EC loss; official ``src/losses/``).

    For each anchor ``i`` with at least one other code of its person and one of another person:
    ``d+ = max_{j: person(j) = person(i)} d(i, j)`` (the maximum includes ``j = i``) and
    ``d- = min_{j: person(j) != person(i)} d(i, j)``; the loss is the mean over these anchors of
    ``softplus(d+ - d- + margin)``, plus the mean ``d+`` when ``regularize_within``. ``d`` is the mean over rows of the
    angle in degrees (``"angular"``, for normalised codes) or of the Euclidean distance (``"euclidean"``). Zero when
    no anchor qualifies. Different persons' codes closer than 1e-6 are ignored as negatives, as in the official code.

    Shape:
        codes: ``(N, F, 3)``; person: ``(N,)`` integer ids; returns a scalar.
    """
    if codes.dim() != 3 or person.shape != codes.shape[:1]:
        raise ValueError(f"codes must be (N, F, 3) and person (N,), got {tuple(codes.shape)} and {tuple(person.shape)}")
    d = _code_distances(codes, distance)
    same = person[:, None] == person[None, :]
    d_pos = d.masked_fill(~same, float("-inf")).amax(dim=1)
    d_neg = d.masked_fill(same | (d < 1e-6), float("inf")).amin(dim=1)
    valid = (same.sum(1) > 1) & (~same).any(1)
    if not bool(valid.any()):
        return codes.sum() * 0.0  # keeps the graph (and DDP's gradient reduction) intact
    loss = F.softplus(d_pos[valid] - d_neg[valid] + margin).mean()  # d- = inf (no usable negative): 0
    return loss + d_pos[valid].mean() if regularize_within else loss


def all_frontals_equal_loss(codes: Tensor) -> Tensor:
    """Spread of the frontalised codes around their batch mean (an ablation, ``src/losses/``): all persons' codes alike.

    ``a_i`` is the mean over the ``F`` rows of the angle (degrees) between row ``f`` of code ``i`` and row ``f`` of the
    mean code over the batch, with the cosine clipped to ``[1e-6, 1 - 1e-6]`` (the official lower bound: angles
    beyond 90 degrees count as 90); the loss is the standard deviation of ``a_i`` over the batch (unbiased, N - 1).

    Shape:
        codes: ``(N, F, 3)`` with ``N >= 2``; returns a scalar.
    """
    if codes.dim() != 3 or codes.shape[0] < 2:
        raise ValueError(f"codes must be (N, F, 3) with N >= 2, got {tuple(codes.shape)}")
    mean = codes.mean(dim=0, keepdim=True)
    cos = F.hardtanh(F.cosine_similarity(mean, codes, dim=-1, eps=1e-6), 1e-6, 1.0 - 1e-6)
    return (torch.acos(cos) * (180.0 / math.pi)).mean(dim=1).std()


def linear_ramp(step: int, ramp_steps: int, final: float) -> float:
    """``final * min(1, step / ramp_steps)`` (``final`` at once when ``ramp_steps <= 0``): the EC weight warm-up."""
    if ramp_steps <= 0:
        return float(final)
    return float(final) * min(1.0, step / ramp_steps)


def faze_objective(
    recon: Tensor, ec_gaze: Tensor, gaze: Tensor, w_recon: float = 1.0, w_ec: float = 2.0, w_gaze: float = 0.1
) -> Tensor:
    """Total DT-ED loss (FAZE Eq. 5): ``w_recon L_recon + w_EC(t) L_EC,gaze + w_gaze L_gaze``.

    Reference weights 1, 2, 0.1; ``w_ec`` is the *current* (ramped) weight, see :func:`linear_ramp`.
    """
    return w_recon * recon + w_ec * ec_gaze + w_gaze * gaze
