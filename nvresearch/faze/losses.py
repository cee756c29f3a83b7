"""FAZE losses (spec A.5, A.7): L1 reconstruction, angular gaze loss, embedding consistency, their weighted sum.

All angular quantities are in degrees, with the reference's clip (``arccos`` of a cosine clipped to
``[-1 + 1e-6, 1 - 1e-6]``), so a perfect prediction costs 0.081 degrees.
"""

from __future__ import annotations

from torch import Tensor

from nvresearch.core.geometry import angular_error, mean_angular_error

__all__ = [
    "embedding_consistency_loss",
    "faze_objective",
    "gaze_angular_loss",
    "linear_ramp",
    "reconstruction_l1_loss",
]


def reconstruction_l1_loss(prediction: Tensor, target: Tensor) -> Tensor:
    """Mean absolute error against a detached target (FAZE Eq. 2; spec A.5.1).

    Shape:
        prediction, target: ``(B, 3, H, W)``; returns a scalar.
    """
    if prediction.shape != target.shape:
        raise ValueError(f"prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ in shape")
    return (prediction - target.detach()).abs().mean()


def gaze_angular_loss(prediction: Tensor, target: Tensor) -> Tensor:
    """Mean angular error in degrees between predicted vectors and targets (FAZE Eq. 4; spec A.5.2).

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
    """Embedding-consistency loss on frontalised 3D codes (FAZE Eq. 3; spec A.5.3, E.5).

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


def linear_ramp(step: int, ramp_steps: int, final: float) -> float:
    """``final * min(1, step / ramp_steps)`` (``final`` at once when ``ramp_steps <= 0``): the EC weight warm-up."""
    if ramp_steps <= 0:
        return float(final)
    return float(final) * min(1.0, step / ramp_steps)


def faze_objective(
    recon: Tensor, ec_gaze: Tensor, gaze: Tensor, w_recon: float = 1.0, w_ec: float = 2.0, w_gaze: float = 0.1
) -> Tensor:
    """Total DT-ED loss (FAZE Eq. 5; spec A.5.4): ``w_recon L_recon + w_EC(t) L_EC,gaze + w_gaze L_gaze``.

    Reference weights 1, 2, 0.1; ``w_ec`` is the *current* (ramped) weight, see :func:`linear_ramp`.
    """
    return w_recon * recon + w_ec * ec_gaze + w_gaze * gaze
