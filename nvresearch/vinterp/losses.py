"""vinterp losses exactly as the official code computes them (``HJSuperSloMo.py``, ``CycleHJSuperSloMo.py``).

Units: every image term compares mean-subtracted frames in the 0-255 scale; "L1" is the mean absolute
error over all elements and "MSE" the mean squared error over all elements (``nn.L1Loss`` / ``nn.MSELoss``); flows
are in pixels. The default weights are the official ones: reconstruction 0.8, warping 0.4, perceptual 0.005,
smoothness 1.0, pseudo-supervision 0.8 (``HJSuperSloMo.py`` / ``CycleHJSuperSloMo.py``). Every term dictionary has
the keys ``rec``, ``perceptual``, ``warp``, ``smooth`` (and ``pseudo`` for the cycle loss) and ``total``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nvresearch.core.geometry.warp import backward_warp
from nvresearch.vinterp.models import CycleOutput, Interpolation, SuperSloMo

__all__ = [
    "LossWeights",
    "cycle_consistency_loss",
    "cycle_terms",
    "perceptual_loss",
    "pseudo_targets",
    "smoothness_loss",
    "supervised_loss",
    "supervised_terms",
]


@dataclass(frozen=True)
class LossWeights:
    """The weights of the total loss (official defaults).

    Attributes:
        rec: L1 reconstruction. warp: warping. perceptual: VGG feature MSE. smooth: flow smoothness.
        pseudo: pseudo-supervision by the frozen pretrained copy (0.8 when a teacher is given, as ``--resume``).
    """

    rec: float = 0.8
    warp: float = 0.4
    perceptual: float = 0.005
    smooth: float = 1.0
    pseudo: float = 0.8


def smoothness_loss(flow: Tensor) -> Tensor:
    """First-order smoothness: ``L1(F[..., :, :-1], F[..., :, 1:]) + L1(F[..., :-1, :], F[..., 1:, :])`` (official).

    Shape:
        flow: ``(B, 2, H, W)``; returns a scalar.
    """
    return F.l1_loss(flow[..., :, :-1], flow[..., :, 1:]) + F.l1_loss(flow[..., :-1, :], flow[..., 1:, :])


def perceptual_loss(features: nn.Module | None, output: Tensor, target: Tensor) -> Tensor:
    """``MSE(phi(output / 255), phi(target / 255))`` on mean-subtracted frames (official; no ImageNet normalisation).

    ``features`` None (no VGG weights, e.g. on CPU) gives 0.

    Shape:
        output, target: ``(B, 3, H, W)``; returns a scalar.
    """
    if features is None:
        return output.new_zeros(())
    return F.mse_loss(features(output / 255.0), features(target / 255.0))


def _total(terms: dict[str, Tensor], weights: LossWeights) -> Tensor:
    total = (
        weights.rec * terms["rec"]
        + weights.warp * terms["warp"]
        + weights.perceptual * terms["perceptual"]
        + weights.smooth * terms["smooth"]
    )
    if "pseudo" in terms:
        total = total + weights.pseudo * terms["pseudo"]
    return total


def supervised_terms(
    out: Interpolation,
    frame0: Tensor,
    target: Tensor,
    frame1: Tensor,
    features: nn.Module | None = None,
    weights: LossWeights | None = None,
    align_corners: bool = True,
) -> dict[str, Tensor]:
    """The supervised SuperSloMo loss of one interpolation (official ``HJSuperSloMo.forward``).

    ``rec = L1(I_t, I_t*)``; ``perceptual = MSE(phi(I_t/255), phi(I_t*/255))``;
    ``warp = L1(W(I0, F^_{t->0}), I_t*) + L1(W(I1, F^_{t->1}), I_t*) + L1(W(I0, F_{1->0}), I1)
    + L1(W(I1, F_{0->1}), I0)`` (raw, unrefined intermediate flows); ``smooth`` on ``F_{0->1}`` and ``F_{1->0}``.

    Args:
        out: the model's :class:`Interpolation` of (frame0, frame1) at t.
        frame0, target, frame1: mean-subtracted frames; target is the ground truth at t.
        features: the frozen VGG features (:class:`~nvresearch.vinterp.models.PerceptualFeatures`) or None.
        weights: loss weights (official defaults). align_corners: the model's warping convention.

    Shape:
        frames: ``(B, 3, H, W)``; returns scalars.
    """
    weights = weights or LossWeights()
    terms = {
        "rec": F.l1_loss(out.frame, target),
        "perceptual": perceptual_loss(features, out.frame, target),
        "warp": F.l1_loss(out.warped0_raw, target)
        + F.l1_loss(out.warped1_raw, target)
        + F.l1_loss(backward_warp(frame0, out.flow_10, align_corners), frame1)
        + F.l1_loss(backward_warp(frame1, out.flow_01, align_corners), frame0),
        "smooth": smoothness_loss(out.flow_10) + smoothness_loss(out.flow_01),
    }
    terms["total"] = _total(terms, weights)
    return terms


def cycle_terms(
    out: CycleOutput,
    frame0: Tensor,
    frame1: Tensor,
    frame2: Tensor,
    pseudo: tuple[Tensor, Tensor] | None = None,
    features: nn.Module | None = None,
    weights: LossWeights | None = None,
    align_corners: bool = True,
) -> dict[str, Tensor]:
    """The cycle-consistency loss on a triplet (official ``CycleHJSuperSloMo.forward``).

    With ``Î_t`` / ``Î_{1+t}`` the first-pass frames and ``Î1`` the cycle reconstruction of ``I1``:
    ``rec = L1(Î1, I1)``; ``perceptual = MSE(phi(Î1/255), phi(I1/255))``; ``warp`` = 8 L1 terms: the second pass's
    raw warps against I1, its bidirectional warps between ``Î_t`` and ``Î_{1+t}``, and the bidirectional warps of both
    first passes (``W(I0, F10) ~ I1``, ``W(I1, F01) ~ I0``, ``W(I1, F12's F10) ~ I2``, ``W(I2, F01) ~ I1``);
    ``smooth`` on the six bidirectional flows; ``pseudo = L1(P_t, Î_t) + L1(P_{1+t}, Î_{1+t})`` against the frozen
    teacher's predictions (0 without a teacher, as the official code without ``--resume``).

    Args:
        out: :meth:`SuperSloMo.cycle` of (frame0, frame1, frame2).
        frame0, frame1, frame2: the mean-subtracted low-frame-rate triplet.
        pseudo: the teacher's mean-subtracted predictions ``(P_t, P_{1+t})`` (:func:`pseudo_targets`) or None.
        features / weights / align_corners: as :func:`supervised_terms`.

    Shape:
        frames: ``(B, 3, H, W)``; returns scalars.
    """
    weights = weights or LossWeights()
    first, second, cyc = out
    pred_t, pred_1t = first.frame, second.frame

    def warp(image: Tensor, flow: Tensor) -> Tensor:
        return backward_warp(image, flow, align_corners)

    terms = {
        "rec": F.l1_loss(cyc.frame, frame1),
        "perceptual": perceptual_loss(features, cyc.frame, frame1),
        "warp": F.l1_loss(cyc.warped0_raw, frame1)
        + F.l1_loss(cyc.warped1_raw, frame1)
        + F.l1_loss(warp(pred_t, cyc.flow_10), pred_1t)
        + F.l1_loss(warp(pred_1t, cyc.flow_01), pred_t)
        + F.l1_loss(warp(frame0, first.flow_10), frame1)
        + F.l1_loss(warp(frame1, first.flow_01), frame0)
        + F.l1_loss(warp(frame1, second.flow_10), frame2)
        + F.l1_loss(warp(frame2, second.flow_01), frame1),
        "smooth": smoothness_loss(cyc.flow_10)
        + smoothness_loss(first.flow_10)
        + smoothness_loss(second.flow_10)
        + smoothness_loss(cyc.flow_01)
        + smoothness_loss(first.flow_01)
        + smoothness_loss(second.flow_01),
        "pseudo": pred_t.new_zeros(())
        if pseudo is None
        else F.l1_loss(pseudo[0], pred_t) + F.l1_loss(pseudo[1], pred_1t),
    }
    terms["total"] = _total(terms, weights)
    return terms


@torch.no_grad()
def pseudo_targets(
    teacher: SuperSloMo, frame0: Tensor, frame1: Tensor, frame2: Tensor, t: Tensor | float
) -> tuple[Tensor, Tensor]:
    """The frozen teacher's mean-subtracted predictions ``P_t = T(I0, I1, t)``, ``P_{1+t} = T(I1, I2, t)`` (official).

    Computed as the official code does: from the 0-255 frames, the teacher's 0-255 output minus the mean pixel.

    Shape:
        frames: ``(B, 3, H, W)`` in 0-255; returns two ``(B, 3, H, W)``.
    """
    m = teacher.mean_pixel
    return teacher(frame0, frame1, t) - m, teacher(frame1, frame2, t) - m


def supervised_loss(
    model: SuperSloMo,
    frame0: Tensor,
    target: Tensor,
    frame1: Tensor,
    t: Tensor | float,
    features: nn.Module | None = None,
    weights: LossWeights | None = None,
) -> tuple[dict[str, Tensor], Interpolation]:
    """Interpolate (frame0, frame1) at t and compute :func:`supervised_terms` against ``target`` (``HJSuperSloMo``).

    Shape:
        frames: ``(B, 3, H, W)`` in 0-255; t: ``(B,)`` or a float. Returns the terms and the (mean-subtracted)
        :class:`Interpolation`.
    """
    m = model.mean_pixel
    a, gt, b = frame0 - m, target - m, frame1 - m
    out = model.interpolate_centered(a, b, t)
    return supervised_terms(out, a, gt, b, features, weights, model.align_corners), out


def cycle_consistency_loss(
    model: SuperSloMo,
    frame0: Tensor,
    frame1: Tensor,
    frame2: Tensor,
    t: Tensor | float,
    t_back: Tensor | float | None = None,
    teacher: SuperSloMo | None = None,
    features: nn.Module | None = None,
    weights: LossWeights | None = None,
) -> tuple[dict[str, Tensor], CycleOutput]:
    """The cycle construct and :func:`cycle_terms` on a 0-255 triplet (official ``CycleHJSuperSloMo.forward``).

    Args:
        model: the student. frame0, frame1, frame2: consecutive low-frame-rate frames in 0-255.
        t: first-pass time; t_back: second-pass time (default ``1 - t``; :func:`~nvresearch.vinterp.cycle_times`).
        teacher: the frozen pretrained copy for the pseudo-supervised term, or None (term 0).
        features / weights: as :func:`supervised_terms`.

    Shape:
        frames: ``(B, 3, H, W)``; t: ``(B,)`` or a float. Returns the terms and the :class:`CycleOutput`.
    """
    pseudo = pseudo_targets(teacher, frame0, frame1, frame2, t) if teacher is not None else None
    m = model.mean_pixel
    a, b, c = frame0 - m, frame1 - m, frame2 - m
    out = model.cycle(a, b, c, t, t_back)
    return cycle_terms(out, a, b, c, pseudo, features, weights, model.align_corners), out
