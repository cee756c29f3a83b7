"""SCOPS evaluation (Hung et al., CVPR 2019, Sec. 4; official ``evaluate_celebAWild.py``,
``evaluation/face_evaluation_wild.py``, ``visualize.py``), torch only.

- Landmark regression from part centres: :func:`landmark_centers` (part centres in pixels, no epsilon, as evaluated)
  and :func:`landmark_regression_error` (standardise both sides on the train split, least squares without intercept,
  error normalised by the inter-ocular distance).
- Part-segmentation agreement with ground-truth parts: :func:`nmi`, :func:`ari` (the later-literature protocol,
  sklearn's definitions) and :func:`hungarian_match` (one-to-one part matching; scipy, imported when called).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from nvresearch.scops.losses import part_centers
from nvresearch.scops.models import upsample_logits

__all__ = [
    "ari",
    "colour_kmeans_parts",
    "contingency",
    "feature_kmeans_parts",
    "foreground_moments",
    "hungarian_match",
    "kmeans",
    "landmark_centers",
    "landmark_regression_error",
    "mean_error_iod",
    "nmi",
    "part_agreement",
    "position_kmeans_parts",
]


# ---------------------------------------------------------------------------------------------------- landmarks
def landmark_centers(logits: Tensor, size: int | Sequence[int] | None = None) -> Tensor:
    """Part centres in pixels, as the official evaluation computes them (``visualize.Batch_Get_Centers``): logits
    up-sampled to ``size`` (``align_corners=True``), softmax over the K + 1 channels, each part map (background
    dropped) normalised by its sum with **no** epsilon, centre ``c`` in the part-map frame, then ``(c + 1) / 2 * W``.

    Shape:
        logits: ``(B, K + 1, h, w)``; returns ``(B, K, 2)`` as ``(x, y)`` pixels of the ``size`` frame.
    """
    if size is not None:
        logits = upsample_logits(logits, size)
    parts = logits.softmax(dim=1)[:, 1:]
    h, w = parts.shape[-2:]
    c = part_centers(parts, eps=0.0)
    return (c + 1.0) / 2.0 * torch.tensor([w, h], dtype=c.dtype, device=c.device)


def mean_error_iod(fitted: Tensor, gt: Tensor, iod_points: tuple[int, int] = (0, 1)) -> Tensor:
    """Mean over images of (mean over landmarks of the Euclidean error) / IOD, IOD = ``||gt[i0] - gt[i1]||`` (the two
    eye centres of CelebA). As in the official ``mean_error_IOD``, an image with IOD = 0 counts as error 0.

    Shape:
        fitted, gt: ``(N, L, 2)``; returns a scalar (a fraction; x 100 for the paper's %).
    """
    err = (fitted - gt).norm(dim=-1).mean(dim=-1)
    iod = (gt[:, iod_points[0]] - gt[:, iod_points[1]]).norm(dim=-1)
    per_image = torch.where(iod != 0, err / torch.where(iod != 0, iod, torch.ones_like(iod)), torch.zeros_like(err))
    return per_image.mean()


def _standardizer(x: Tensor) -> tuple[Tensor, Tensor]:
    # sklearn StandardScaler: population std, and a constant column keeps scale 1
    mean, std = x.mean(dim=0), x.std(dim=0, unbiased=False)
    return mean, torch.where(std > 0, std, torch.ones_like(std))


def landmark_regression_error(
    train_pred: Tensor, train_gt: Tensor, test_pred: Tensor, test_gt: Tensor, iod_points: tuple[int, int] = (0, 1)
) -> tuple[float, float]:
    """The official landmark-regression protocol (``face_evaluation``): flatten the predicted ``(N, P, 2)`` and ground
    truth ``(N, L, 2)`` coordinates, standardise each side with statistics of the **train** split, fit a linear map
    without intercept from standardised predictions to standardised ground truth on the train split (least squares,
    float64), map back, and return the train and test :func:`mean_error_iod`.

    Shape:
        train_pred: ``(N, P, 2)``; train_gt: ``(N, L, 2)``; test_pred: ``(M, P, 2)``; test_gt: ``(M, L, 2)``.
    """
    if train_pred.shape[0] != train_gt.shape[0] or test_pred.shape[0] != test_gt.shape[0]:
        raise ValueError(
            f"predictions and ground truth differ in length: train {train_pred.shape[0]} vs {train_gt.shape[0]}, "
            f"test {test_pred.shape[0]} vs {test_gt.shape[0]}"
        )
    xp, xg = train_pred.double().flatten(1), train_gt.double().flatten(1)
    mp, sp = _standardizer(xp)
    mg, sg = _standardizer(xg)
    coef = torch.linalg.lstsq((xp - mp) / sp, (xg - mg) / sg, driver="gelsd").solution

    def fit(pred: Tensor) -> Tensor:
        return (((pred.double().flatten(1) - mp) / sp) @ coef * sg + mg).view(pred.shape[0], -1, 2)

    train = mean_error_iod(fit(train_pred), train_gt.double(), iod_points)
    test = mean_error_iod(fit(test_pred), test_gt.double(), iod_points)
    return float(train), float(test)


# ------------------------------------------------------------------------------------------- part agreement
def contingency(pred: Tensor, gt: Tensor) -> Tensor:
    """Counts ``n[i, j]`` of pixels with predicted label ``i`` and ground-truth label ``j`` (labels >= 0), over the
    labels that occur (rows and columns of absent labels dropped).

    Shape:
        pred, gt: any equal shape of integer labels; returns ``(I, J)`` float64.
    """
    if pred.shape != gt.shape:
        raise ValueError(f"predicted {tuple(pred.shape)} and ground-truth {tuple(gt.shape)} labels differ in shape")
    p, g = pred.reshape(-1).long(), gt.reshape(-1).long()
    if p.numel() == 0:
        raise ValueError("no pixels to compare")
    _, p = p.unique(return_inverse=True)
    _, g = g.unique(return_inverse=True)
    cols = int(g.max()) + 1
    table = torch.bincount(p * cols + g, minlength=(int(p.max()) + 1) * cols)
    return table.view(-1, cols).double()


def _entropy(counts: Tensor) -> Tensor:
    p = counts[counts > 0] / counts.sum()
    return -(p * p.log()).sum()


def nmi(pred: Tensor, gt: Tensor) -> float:
    """Normalised mutual information with the arithmetic-mean normalisation (sklearn's
    ``normalized_mutual_info_score`` default): ``MI / ((H(pred) + H(gt)) / 2)``; 1.0 when both are one cluster."""
    n = contingency(pred, gt)
    total = n.sum()
    hp, hg = _entropy(n.sum(1)), _entropy(n.sum(0))
    if n.shape[0] == 1 and n.shape[1] == 1:
        return 1.0
    nz = n > 0
    outer = n.sum(1, keepdim=True) * n.sum(0, keepdim=True)
    mi = (n[nz] / total * (n[nz] * total / outer[nz]).log()).sum()
    denom = (hp + hg) / 2
    return float(mi / denom) if denom > 0 else 0.0


def ari(pred: Tensor, gt: Tensor) -> float:
    """Adjusted Rand index (Hubert and Arabie; sklearn's ``adjusted_rand_score``): 1.0 for identical partitions up to
    relabelling, about 0 for independent ones."""
    n = contingency(pred, gt)

    def pairs(x: Tensor) -> Tensor:
        return (x * (x - 1) / 2).sum()

    total = pairs(n.sum().view(1))
    index, a, b = pairs(n), pairs(n.sum(1)), pairs(n.sum(0))
    expected = a * b / total if total > 0 else torch.zeros((), dtype=n.dtype)
    top = (a + b) / 2
    if top == expected:  # one cluster on both sides (or equivalent degenerate cases)
        return 1.0
    return float((index - expected) / (top - expected))


def hungarian_match(pred: Tensor, gt: Tensor, num_pred: int, num_gt: int) -> dict[str, object]:
    """One-to-one matching of predicted parts to ground-truth parts maximising the overlap (Hungarian algorithm,
    ``scipy.optimize.linear_sum_assignment``).

    Args:
        pred: predicted labels in ``[0, num_pred)``.
        gt: ground-truth labels in ``[0, num_gt)``, same shape.

    Returns:
        ``{"mapping": {pred_label: gt_label}, "accuracy": fraction of pixels whose matched label equals the ground
        truth, "miou": mean IoU over the ground-truth labels}``; an unmatched predicted label counts as wrong.
    """
    from scipy.optimize import linear_sum_assignment

    if pred.shape != gt.shape:
        raise ValueError(f"predicted {tuple(pred.shape)} and ground-truth {tuple(gt.shape)} labels differ in shape")
    p, g = pred.reshape(-1).long(), gt.reshape(-1).long()
    for name, labels, k in (("predicted", p, num_pred), ("ground-truth", g, num_gt)):
        if labels.numel() and (labels.min() < 0 or labels.max() >= k):
            raise ValueError(f"{name} labels must lie in [0, {k}), got [{int(labels.min())}, {int(labels.max())}]")
    n = torch.bincount(p * num_gt + g, minlength=num_pred * num_gt).view(num_pred, num_gt).double()
    rows, cols = linear_sum_assignment(n.numpy(), maximize=True)
    mapping = {int(r): int(c) for r, c in zip(rows, cols, strict=True)}
    hits = sum(float(n[r, c]) for r, c in mapping.items())
    ious = []
    for c in range(num_gt):
        inter = next((float(n[r, c]) for r, cc in mapping.items() if cc == c), 0.0)
        matched = [r for r, cc in mapping.items() if cc == c]
        union = float(n[:, c].sum()) + (float(n[matched[0]].sum()) if matched else 0.0) - inter
        ious.append(inter / union if union > 0 else 1.0)
    return {"mapping": mapping, "accuracy": hits / max(p.numel(), 1), "miou": sum(ious) / len(ious)}


def part_agreement(pred: Tensor, gt: Tensor, foreground: Tensor | None = None) -> dict[str, float]:
    """NMI and ARI of predicted against ground-truth part labels, on the foreground pixels only when ``foreground``
    is given (FG-NMI / FG-ARI: the predicted labels there are the argmax over the parts, background excluded, by the
    caller).

    Shape:
        pred, gt: ``(..., H, W)`` integer labels; foreground: same shape, bool.
    """
    if foreground is not None:
        pred, gt = pred[foreground.bool()], gt[foreground.bool()]
    return {"nmi": nmi(pred, gt), "ari": ari(pred, gt)}


# ---------------------------------------------------------------------------------------------------- probes
def kmeans(points: Tensor, k: int, iterations: int = 20, generator: torch.Generator | None = None) -> Tensor:
    """Lloyd's k-means with k-means++ seeding; returns the cluster of each point (an empty cluster keeps its centre).

    Shape:
        points: ``(N, D)``; returns ``(N,)`` long in ``[0, k)``.
    """
    x = points.double()
    n = x.shape[0]
    centres = x[torch.randint(n, (1,), generator=generator)]
    for _ in range(1, int(k)):
        d2 = torch.cdist(x, centres).pow(2).min(dim=1).values
        prob = d2 / d2.sum() if d2.sum() > 0 else torch.full_like(d2, 1.0 / n)
        centres = torch.cat([centres, x[torch.multinomial(prob, 1, generator=generator)]])
    for _ in range(int(iterations)):
        assign = torch.cdist(x, centres).argmin(dim=1)
        for c in range(int(k)):
            members = x[assign == c]
            if members.shape[0]:
                centres[c] = members.mean(dim=0)
    return torch.cdist(x, centres).argmin(dim=1)


def colour_kmeans_parts(
    images: Tensor,
    foreground: Tensor,
    k: int,
    with_position: bool = False,
    per_image: bool = False,
    generator: torch.Generator | None = None,
) -> Tensor:
    """The trivial probe of part discovery: k-means on the colour (and optionally the position) of the foreground
    pixels, over the whole set or image by image. Background pixels get label 0, clusters ``1..k``.

    Shape:
        images: ``(N, 3, H, W)``; foreground: ``(N, H, W)`` bool; returns ``(N, H, W)`` long.
    """
    n, _, h, w = images.shape
    fg = foreground.bool()
    ys, xs = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    feats = images.permute(0, 2, 3, 1)
    if with_position:
        feats = torch.cat([feats, torch.stack([xs, ys], -1).expand(n, h, w, 2).to(feats.dtype)], dim=-1)
    out = torch.zeros(n, h, w, dtype=torch.long)
    groups = [torch.arange(n)[i : i + 1] for i in range(n)] if per_image else [torch.arange(n)]
    for idx in groups:
        mask = fg[idx]
        if mask.any():
            sub = out[idx]
            sub[mask] = kmeans(feats[idx][mask], k, generator=generator) + 1
            out[idx] = sub
    return out


def position_kmeans_parts(
    foreground: Tensor, k: int, normalised: bool = False, generator: torch.Generator | None = None
) -> Tensor:
    """The layout probe of part discovery: k-means over the whole set on the position of the foreground pixels.

    ``normalised=False`` clusters absolute positions (where in the image; what :func:`colour_kmeans_parts` does with
    ``with_position=True`` and the colours zeroed, up to the unit). ``normalised=True`` clusters each pixel's position
    relative to its image's foreground centroid, divided by the foreground's extent (the root mean squared distance
    of its pixels from the centroid): the object's translation and scale drop out, so only its orientation and
    articulation keep this probe from reading the part off the layout. Background pixels get 0, clusters ``1..k``.

    Shape:
        foreground: ``(N, H, W)`` bool; returns ``(N, H, W)`` long.
    """
    fg = foreground.bool()
    n, h, w = fg.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    pos = torch.stack([xs, ys], -1).expand(n, h, w, 2)
    if normalised:
        moments = foreground_moments(fg)  # centroid (N, 2) and (mu_xx, mu_yy): extent = sqrt(mu_xx + mu_yy)
        extent = moments[:, 1].sum(-1).sqrt().clamp(min=1e-6)
        pos = (pos - moments[:, 0, None, None]) / extent[:, None, None, None]
    else:
        pos = pos / max(h, w)
    out = torch.zeros(n, h, w, dtype=torch.long)
    if fg.any():
        out[fg] = kmeans(pos[fg], k, generator=generator) + 1
    return out


def feature_kmeans_parts(
    features: Tensor, foreground: Tensor, k: int, generator: torch.Generator | None = None
) -> Tensor:
    """Feature clustering without SCOPS's losses (the DFF-like baseline the paper compares with, Collins et al.
    2018, there by factorising CNN features): k-means over the whole set on the frozen features, bilinearly
    up-sampled to the mask, at the foreground pixels. It measures how much part information the semantic-consistency
    target holds by itself. Background pixels get 0, clusters ``1..k``.

    Shape:
        features: ``(N, C, h, w)``; foreground: ``(N, H, W)`` bool; returns ``(N, H, W)`` long.
    """
    fg = foreground.bool()
    up = F.interpolate(features.double(), size=fg.shape[-2:], mode="bilinear", align_corners=False)
    out = torch.zeros(fg.shape, dtype=torch.long)
    if fg.any():
        out[fg] = kmeans(up.permute(0, 2, 3, 1)[fg], k, generator=generator) + 1
    return out


def foreground_moments(foreground: Tensor) -> Tensor:
    """The trivial probe of landmark regression: the foreground's centroid and second central moments, packed as
    three "points" for :func:`landmark_regression_error` (which regresses the landmarks linearly on them). The
    centroid gives the object's position, the moments its extent and orientation (``mu_xx - mu_yy`` and ``mu_xy``
    follow the rotation's double angle), which is what part centres could encode without any parts.

    Shape:
        foreground: ``(N, H, W)`` bool or {0, 1}; returns ``(N, 3, 2)``: ``(x, y)`` centroid in pixels,
        ``(mu_xx, mu_yy)`` and ``(mu_xy, 0)`` in square pixels. An empty mask gives zeros.
    """
    fg = foreground.double()
    h, w = fg.shape[-2:]
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=torch.float64, device=fg.device),
        torch.arange(w, dtype=torch.float64, device=fg.device),
        indexing="ij",
    )
    mass = fg.sum(dim=(-2, -1)).clamp(min=1.0)
    cx, cy = (fg * xs).sum(dim=(-2, -1)) / mass, (fg * ys).sum(dim=(-2, -1)) / mass
    dx, dy = xs - cx[:, None, None], ys - cy[:, None, None]
    mxx, myy = (fg * dx * dx).sum(dim=(-2, -1)) / mass, (fg * dy * dy).sum(dim=(-2, -1)) / mass
    mxy = (fg * dx * dy).sum(dim=(-2, -1)) / mass
    return torch.stack([torch.stack([cx, cy], -1), torch.stack([mxx, myy], -1), torch.stack([mxy, 0 * mxy], -1)], 1)
