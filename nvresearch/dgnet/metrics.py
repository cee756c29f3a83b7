"""Re-id evaluation as the official ``reid_eval`` does it (Market-1501 protocol, DG-Net's feature), torch only.

Feature (official ``test_2label.py``): the primary and fine-grained head features (the heads' BN outputs, dropout
off) of an image and of its mirror image, each L2-normalised, summed over the two, then each half normalised again:
``f = [f_prim ; f_fine]`` (1024-d at the reference). At query time the fine half is scaled by ``alpha`` (0.5 in the
paper's tables; 0: primary only; -1 means the primary half is zeroed: fine only); the gallery is left as is and the
score is the dot product.

Ranking (official ``evaluate_gpu.py``, the Market-1501 devkit): per query, the gallery sorted by decreasing score;
*good* = same identity and another camera; *junk* = same identity and same camera, or identity -1; junk entries are
removed from the ranking; distractors (identity 0) stay. CMC@k = 1 if the first good entry is within the first k;
AP is the devkit's trapezoidal average precision ``sum_i (1/N) (p_{i-1} + p_i) / 2`` with ``p_i = (i+1)/(r_i+1)``
and ``p_{i-1} = i / r_i`` (1 for ``r_i = 0``). Queries without any good entry add 0 to both but still count in the
mean, as in the official script.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "ReidResult",
    "average_precision",
    "evaluate_query",
    "extract_features",
    "market_evaluate",
    "multi_query_features",
    "weight_query",
]

JUNK_ID = -1
DISTRACTOR_ID = 0


@torch.no_grad()
def extract_features(
    encoder: nn.Module | Callable[[Tensor], tuple[Tensor, Tensor]], images: Tensor, batch_size: int = 64
) -> Tensor:
    """DG-Net's test feature: flip-summed, per-half normalised primary and fine-grained features.

    Args:
        encoder: an :class:`~nvresearch.dgnet.models.AppearanceEncoder` (its ``features`` method is used, in eval
            mode) or any callable returning the two feature halves ``(B, D)`` each.
        images: ImageNet-normalised images.

    Shape:
        images: ``(N, 3, H, W)``; returns ``(N, 2 D)``.
    """
    fn = encoder.features if hasattr(encoder, "features") else encoder
    was_training = encoder.training if isinstance(encoder, nn.Module) else False
    if isinstance(encoder, nn.Module):
        encoder.eval()
    try:
        out = []
        for chunk in images.split(batch_size):
            halves = None
            for x in (chunk, chunk.flip(-1)):
                f1, f2 = fn(x)
                pair = (F.normalize(f1, dim=1), F.normalize(f2, dim=1))
                halves = pair if halves is None else (halves[0] + pair[0], halves[1] + pair[1])
            out.append(torch.cat([F.normalize(halves[0], dim=1), F.normalize(halves[1], dim=1)], dim=1))
        return torch.cat(out)
    finally:
        if isinstance(encoder, nn.Module):
            encoder.train(was_training)


def weight_query(features: Tensor, alpha: float = 0.5) -> Tensor:
    """Scale the fine-grained half of query features by ``alpha``; ``alpha = -1`` zeroes the primary half instead
    (the official ``alpha`` loop: 0 primary only, 0.5 the reported combination, -1 fine only).

    Shape:
        features: ``(N, 2 D)``; returns a new tensor of the same shape.
    """
    if features.shape[1] % 2:
        raise ValueError(f"query features must have two equal halves, got width {features.shape[1]}")
    half = features.shape[1] // 2
    out = features.clone()
    if alpha == -1:
        out[:, :half] = 0
    else:
        out[:, half:] *= alpha
    return out


def average_precision(good: Tensor) -> float:
    """Trapezoidal AP of a ranking (junk already removed) given as a boolean mask of its good entries.

    Shape:
        good: ``(G,)`` bool, in ranked order.
    """
    rows = torch.nonzero(good).flatten().double()
    n = rows.numel()
    if n == 0:
        return 0.0
    i = torch.arange(n, dtype=torch.float64)
    precision = (i + 1) / (rows + 1)
    previous = torch.where(rows == 0, torch.ones_like(rows), i / rows.clamp(min=1))
    return float(((previous + precision) / 2).sum() / n)


def evaluate_query(
    scores: Tensor, query_label: int, query_cam: int, gallery_labels: Tensor, gallery_cams: Tensor
) -> tuple[float, Tensor]:
    """AP and CMC of one query from its gallery scores (higher is closer).

    Ties are broken by gallery order (stable sort); the official ``np.argsort`` leaves their order unspecified.

    Returns:
        AP, and the CMC curve ``(G,)`` (0/1 per rank, all 0 when the query has no good entry).

    Shape:
        scores, gallery_labels, gallery_cams: ``(G,)``.
    """
    order = torch.sort(scores, descending=True, stable=True).indices
    labels, cams = gallery_labels[order], gallery_cams[order]
    same_id = labels == query_label
    junk = (same_id & (cams == query_cam)) | (labels == JUNK_ID)
    good = (same_id & (cams != query_cam))[~junk]
    cmc = torch.zeros(scores.numel(), dtype=torch.int64)
    if not bool(good.any()):
        return 0.0, cmc
    first = int(torch.nonzero(good)[0])
    cmc[first:] = 1
    return average_precision(good), cmc


@dataclass(frozen=True)
class ReidResult:
    """Rank-1/5/10 and mAP (fractions in [0, 1]), the full CMC curve and the per-query APs."""

    rank1: float
    rank5: float
    rank10: float
    mAP: float
    cmc: Tensor
    ap: Tensor

    def as_dict(self) -> dict[str, float]:
        return {"rank1": self.rank1, "rank5": self.rank5, "rank10": self.rank10, "mAP": self.mAP}


def market_evaluate(
    query_features: Tensor,
    query_labels: Sequence[int] | Tensor,
    query_cams: Sequence[int] | Tensor,
    gallery_features: Tensor,
    gallery_labels: Sequence[int] | Tensor,
    gallery_cams: Sequence[int] | Tensor,
    alpha: float | None = 0.5,
) -> ReidResult:
    """Market-1501 CMC and mAP over all queries (official ``evaluate_gpu.py``).

    Args:
        query_features / gallery_features: :func:`extract_features` outputs (or any features: with ``alpha=None``
            the query features are used as given).
        alpha: see :func:`weight_query`.

    Shape:
        query_features: ``(Q, D)``; gallery_features: ``(G, D)``; labels and cameras ``(Q,)`` / ``(G,)``.
    """
    ql, qc = torch.as_tensor(query_labels).long(), torch.as_tensor(query_cams).long()
    gl, gc = torch.as_tensor(gallery_labels).long(), torch.as_tensor(gallery_cams).long()
    if query_features.shape[0] != ql.numel() or ql.numel() != qc.numel():
        raise ValueError(f"{query_features.shape[0]} query features, {ql.numel()} labels, {qc.numel()} cameras")
    if gallery_features.shape[0] != gl.numel() or gl.numel() != gc.numel():
        raise ValueError(f"{gallery_features.shape[0]} gallery features, {gl.numel()} labels, {gc.numel()} cameras")
    if ql.numel() == 0 or gl.numel() == 0:
        raise ValueError("need at least one query and one gallery image")
    q = weight_query(query_features, alpha) if alpha is not None else query_features
    scores = q.double() @ gallery_features.double().T
    cmc = torch.zeros(gl.numel(), dtype=torch.float64)
    aps = torch.zeros(ql.numel(), dtype=torch.float64)
    for i in range(ql.numel()):
        ap, curve = evaluate_query(scores[i], int(ql[i]), int(qc[i]), gl, gc)
        aps[i] = ap
        cmc += curve
    cmc /= ql.numel()
    at = lambda k: float(cmc[min(k, cmc.numel()) - 1])  # noqa: E731
    return ReidResult(at(1), at(5), at(10), float(aps.mean()), cmc, aps)


def multi_query_features(
    query_labels: Sequence[int] | Tensor,
    query_cams: Sequence[int] | Tensor,
    mquery_features: Tensor,
    mquery_labels: Sequence[int] | Tensor,
    mquery_cams: Sequence[int] | Tensor,
    alpha: float = 0.5,
) -> Tensor:
    """Market's multi-query features: for each query, the mean feature of the ``gt_bbox`` images of the same
    identity **and camera**, fine half scaled by ``alpha`` (official: fixed 0.5). Feed the result to
    :func:`market_evaluate` with ``alpha=None``.

    Shape:
        mquery_features: ``(M, 2 D)``; returns ``(Q, 2 D)``.
    """
    ql, qc = torch.as_tensor(query_labels).long(), torch.as_tensor(query_cams).long()
    ml, mc = torch.as_tensor(mquery_labels).long(), torch.as_tensor(mquery_cams).long()
    out = []
    for label, cam in zip(ql.tolist(), qc.tolist(), strict=True):
        sel = (ml == label) & (mc == cam)
        if not bool(sel.any()):
            raise ValueError(f"no multi-query image of identity {label} in camera {cam}")
        out.append(mquery_features[sel].mean(0))
    return weight_query(torch.stack(out), alpha)
