"""FAZE evaluation (official ``2_meta_learning.py``): angular error and the personalisation protocol, error against k.

Protocol: each test person with more than ``min_samples`` samples keeps its last ``test_last`` samples as its test
set; for each k, Python ``random`` is reseeded with ``seed`` and, person by person, ``repeats`` calibration sets of k
samples are drawn from the rest (the official ``2_meta_learning.py`` order: reseed per k, person-major), a copy of
the gaze MLP is fine-tuned with full-batch SGD on each, then evaluated on the test set. The error for k is
the mean over all (person, test sample, repeat) triples; its spread is the std over repeats of the per-repeat mean.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from nvresearch.core.geometry import angular_error, mean_angular_error, pitchyaw_to_vector, vector_to_pitchyaw
from nvresearch.core.meta import batched_adapt, batched_forward, stack_params

__all__ = ["CurvePoint", "adapt_tasks", "offset_correction_curve", "personalization_curve", "select_adapt_lr"]


@dataclass
class CurvePoint:
    """Error of one k: ``mean`` over (person, sample, repeat), ``std`` over repeats, ``persons`` evaluated."""

    k: int
    mean: float
    std: float
    persons: int


def adapt_tasks(
    mlp: nn.Module, support_x: Tensor, support_y: Tensor, steps: int, lr: float, params: dict[str, Tensor] | None = None
) -> dict[str, Tensor]:
    """Personalise ``T`` copies of ``mlp`` at once: full-batch SGD with the angular loss, ``steps`` steps at ``lr``.

    Plain SGD (:func:`~nvresearch.core.meta.batched_adapt`) unless ``mlp`` carries Meta-SGD step multipliers
    (:meth:`~nvresearch.faze.models.GazeMLP.step_scales`): then each element moves by ``lr * scale * grad``.

    Shape:
        support_x: ``(T, K, F)``; support_y: ``(T, K, 3)``; returns name -> ``(T, *param.shape)``, without graph.
    """
    scales = mlp.step_scales() if hasattr(mlp, "step_scales") else {}
    return batched_adapt(
        mlp, support_x, support_y, mean_angular_error, steps, lr, params=params, step_scales=scales or None
    )


def personalization_curve(
    mlp: nn.Module,
    persons: Sequence[object],
    ks: Sequence[int],
    test_last: int = 500,
    repeats: int = 10,
    steps: int = 1000,
    lr: float = 1e-5,
    seed: int = 4089213955,
    inits: dict[int, nn.Module] | None = None,
) -> list[CurvePoint]:
    """Mean angular error after personalising with k calibration samples, for each k (official ``2_meta_learning.py``).

    Args:
        mlp: the starting gaze MLP (``features (N, F) -> unit vectors (N, 3)``).
        persons: test persons, each with ``features`` ``(N, F)`` and ``targets`` ``(N, 3)`` in sample order
            (:class:`~nvresearch.faze.adagen.PersonCodes`); persons with ``N <= test_last`` are skipped.
        ks: calibration sizes; k = 0 evaluates ``mlp`` without adaptation; a k larger than a person's calibration
            pool (``N - test_last``) skips that person for that k, and a k no person allows is left out.
        test_last / repeats / steps / lr / seed: the protocol (reference: 500, 10, 1000, 1e-5, 4089213955).
        inits: optional per-k starting MLPs (the reference meta-trains one model per k).

    Returns:
        One :class:`CurvePoint` per evaluated k, in the order of ``ks``.
    """
    people = [p for p in persons if len(p.features) > test_last]
    if not people:
        raise ValueError(f"no test person has more than test_last={test_last} samples")
    out = []
    for k in ks:
        k = int(k)
        rng = random.Random(seed)  # reseeded per k: the draws of one k do not depend on which other ks are run
        start = (inits or {}).get(k, mlp)
        eligible = [p for p in people if len(p.features) - test_last >= k]
        if not eligible:
            continue
        reps = 1 if k == 0 else repeats
        sx, sy, qx, qy = [], [], [], []
        for p in eligible:  # person-major, as the official loop: person, then its repeats
            for _ in range(reps):
                pool = len(p.features) - test_last
                idx = torch.tensor(rng.sample(range(pool), k), dtype=torch.long)
                sx.append(p.features[idx])
                sy.append(p.targets[idx])
                qx.append(p.features[-test_last:])
                qy.append(p.targets[-test_last:])
        qx_t, qy_t = torch.stack(qx), torch.stack(qy)
        params = stack_params(start, len(qx))
        if k > 0 and steps > 0:
            params = adapt_tasks(start, torch.stack(sx), torch.stack(sy), steps, lr, params=params)
        with torch.no_grad():
            err = angular_error(batched_forward(start, params, qx_t), qy_t)  # (persons * reps, test_last)
        per_repeat = err.view(len(eligible), reps, -1).mean(dim=(0, 2))
        std = float(per_repeat.std(unbiased=False)) if reps > 1 else 0.0
        out.append(CurvePoint(k, float(err.mean()), std, len(eligible)))
    return out


@torch.no_grad()
def offset_correction_curve(
    mlp: nn.Module,
    persons: Sequence[object],
    ks: Sequence[int],
    test_last: int = 500,
    repeats: int = 10,
    seed: int = 4089213955,
) -> list[CurvePoint]:
    """The offset-correction baseline: subtract the mean (pitch, yaw) error of the k calibration samples.

    No learning: ``mlp`` predicts, the mean of ``label - prediction`` over the k samples (in pitch and yaw) is added
    to its predictions on the test set. Calibration sets are the same draws as :func:`personalization_curve` with the
    same ``seed`` (reseeded per k, person-major); k = 0 is the unadapted error.

    Returns:
        One :class:`CurvePoint` per evaluated k, in the order of ``ks``.
    """
    people = [p for p in persons if len(p.features) > test_last]
    if not people:
        raise ValueError(f"no test person has more than test_last={test_last} samples")
    out = []
    for k in ks:
        k = int(k)
        rng = random.Random(seed)  # the draws of personalization_curve
        eligible = [p for p in people if len(p.features) - test_last >= k]
        if not eligible:
            continue
        reps = 1 if k == 0 else repeats
        errs = []
        for p in eligible:
            pred = vector_to_pitchyaw(mlp(p.features))
            label = vector_to_pitchyaw(p.targets)
            for _ in range(reps):
                idx = torch.tensor(rng.sample(range(len(p.features) - test_last), k), dtype=torch.long)
                offset = (label[idx] - pred[idx]).mean(0) if k > 0 else torch.zeros(2)
                fixed = pitchyaw_to_vector(pred[-test_last:] + offset)
                errs.append(angular_error(fixed, p.targets[-test_last:]))
        err = torch.stack(errs).view(len(eligible), reps, -1)
        per_repeat = err.mean(dim=(0, 2))
        std = float(per_repeat.std(unbiased=False)) if reps > 1 else 0.0
        out.append(CurvePoint(k, float(err.mean()), std, len(eligible)))
    return out


def select_adapt_lr(
    mlp: nn.Module,
    persons: Sequence[object],
    lrs: Sequence[float],
    ks: Sequence[int],
    test_last: int,
    repeats: int = 10,
    steps: int = 10,
    seed: int = 4089213955,
) -> tuple[float, dict[float, float]]:
    """The personalisation step size that suits one initialisation, chosen on persons that are not test persons.

    Each candidate runs the protocol of :func:`personalization_curve` on ``persons`` (outside the test set: their last
    ``test_last`` samples held out); its score is the mean error over ``ks``. Comparing initialisations each at its
    own best step size keeps one that needs a smaller step (the jointly trained MLP, the DT-ED head) from
    diverging at a step size meta-learned for another.

    Returns:
        ``(best lr, {lr: score in degrees})``; ties go to the first candidate.
    """
    if not lrs:
        raise ValueError("select_adapt_lr needs at least one candidate step size")
    scores = {}
    for lr in lrs:
        curve = personalization_curve(mlp, persons, ks, test_last, repeats, steps, float(lr), seed)
        if not curve:
            raise ValueError(f"no selection person has more than test_last={test_last} + k samples for ks={list(ks)}")
        scores[float(lr)] = sum(c.mean for c in curve) / len(curve)
    return min(scores, key=scores.__getitem__), scores
