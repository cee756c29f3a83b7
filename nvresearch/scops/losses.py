"""SCOPS losses (Hung et al., CVPR 2019, Sec. 3; official code ``loss.py``, ``utils/utils.py``, ``scops_trainer.py``,
``tps/rand_tps.py``), computed exactly as the official trainer does.

Notation: ``logits`` are the network outputs up-sampled to the loss resolution (``B x (K + 1) x H x W``, channel 0 =
background), ``p = softmax(logits)`` over channels and ``R_k = p_k`` for the K parts (background dropped). Part-map
coordinates are ``u_j = 2 j / W - 1`` (columns) and ``v_i = 2 i / H - 1`` (rows), so they range over
``[-1, 1 - 2 / W]``; this is not the thin-plate-spline frame (``linspace(-1, 1)``, ``align_corners=True``).

Thin-plate splines: :func:`random_similarity_tps` draws the official random warp (5 x 5 control grid jittered by
``U(-sigma, sigma)``, then a random similarity), :class:`TPSWarp` solves the spline (the WarBean ``TPSGridGen``
system, kernel ``r^2 log r`` centred on the target control points) and evaluates and samples it with kornia
(``warp_points_tps``, ``grid_sample`` with ``align_corners=True``); kornia is imported inside those functions only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from nvresearch.scops.models import l2_normalize_rows

__all__ = [
    "CENTER_EPS",
    "LOSS_WEIGHTS",
    "SCOPSObjective",
    "TPSWarp",
    "color_jitter",
    "concentration_loss",
    "coordinate_grids",
    "equivariance_losses",
    "equivariance_loss",
    "imagenet_from_caffe",
    "landmark_equivariance_loss",
    "orthonormality_loss",
    "part_centers",
    "random_similarity_tps",
    "semantic_consistency_loss",
    "semantic_targets",
    "similarity_tps",
    "total_loss",
    "tps_control_grid",
]

CENTER_EPS = 1e-3
"""The official ``epsilon`` added to every part-map pixel before normalising it to a spatial distribution."""

LOSS_WEIGHTS: dict[str, float] = {"con": 10.0, "eqv": 1000.0, "lmeqv": 100.0, "sc": 1e4, "on": 0.1}
"""The released weights (``exps/SCOPS_K8_retrain.json``): concentration, equivariance (KL), landmark equivariance,
semantic consistency, orthonormality of the bases."""


# --------------------------------------------------------------------------------------------------- part centres
def coordinate_grids(
    height: int, width: int, device: torch.device | None = None, dtype: torch.dtype = torch.float32
) -> tuple[Tensor, Tensor]:
    """``(u, v)`` maps of the part-map frame: ``u[i, j] = 2 j / W - 1``, ``v[i, j] = 2 i / H - 1``.

    The official ``get_coordinate_tensors`` builds the same maps for square inputs (for non-square ones its maps have
    the transposed shape and break); this one is correct for any ``H x W``.

    Shape:
        returns two ``(H, W)`` tensors.
    """
    u = torch.arange(width, device=device, dtype=torch.float64) / width * 2 - 1
    v = torch.arange(height, device=device, dtype=torch.float64) / height * 2 - 1
    return u.to(dtype).expand(height, width), v.to(dtype)[:, None].expand(height, width)


def _part_pdf(part_maps: Tensor, eps: float) -> Tensor:
    maps = part_maps + eps
    return maps / maps.sum(dim=(-2, -1), keepdim=True)


def part_centers(part_maps: Tensor, eps: float = CENTER_EPS) -> Tensor:
    """Centre of mass of each part map normalised to a spatial distribution, ``(R + eps) / sum(R + eps)``.

    Training uses ``eps = 1e-3`` (official ``utils.get_centers``); the landmark evaluation uses ``eps = 0``.

    Shape:
        part_maps: ``(B, K, H, W)`` non-negative; returns ``(B, K, 2)`` as ``(x, y)`` in the part-map frame.
    """
    pdf = _part_pdf(part_maps, eps)
    u, v = coordinate_grids(*part_maps.shape[-2:], device=part_maps.device, dtype=part_maps.dtype)
    return torch.stack([(pdf * u).sum(dim=(-2, -1)), (pdf * v).sum(dim=(-2, -1))], dim=-1)


# ---------------------------------------------------------------------------------------------------------- losses
def concentration_loss(logits: Tensor, eps: float = CENTER_EPS) -> Tensor:
    """Geometric concentration loss (paper Eq. 1; official ``loss.concentration_loss``).

    ``L_con = 1/B^2 sum_b sum_k sum_ij R~_bk(i, j) [(u_j - c_bkx)^2 + (v_i - c_bky)^2]``: the sum over parts of the
    spatial variance of each part map (background excluded), with ``R~ = (R + eps) / sum(R + eps)``. As in the official
    code it is divided by ``B`` twice, and the gradient flows through the centres too.

    Shape:
        logits: ``(B, K + 1, H, W)``; returns a scalar.
    """
    parts = logits.softmax(dim=1)[:, 1:]
    pdf = _part_pdf(parts, eps)
    centers = part_centers(parts, eps)
    u, v = coordinate_grids(*logits.shape[-2:], device=logits.device, dtype=logits.dtype)
    cx, cy = centers[..., 0, None, None], centers[..., 1, None, None]
    variance = (pdf * ((u - cx) ** 2 + (v - cy) ** 2)).sum()
    batch = logits.shape[0]
    return variance / batch / batch


def equivariance_loss(logits_of_warped: Tensor, warped_logits: Tensor) -> Tensor:
    """Equivariance loss on the part maps (paper Eq. 2; official ``scops_trainer.py``, ``nn.KLDivLoss()``).

    ``KL(q || p~)`` with ``q = softmax(T(z))`` the prediction on the original image warped by ``T`` (detached here:
    a target) and ``p~ = softmax(f(T(x)))``. The logits are warped, not the probabilities, with zero padding, so the
    target is uniform over the K + 1 channels outside the warped support. Reduction ``mean`` over all
    ``B (K + 1) H W`` elements, background channel included.

    Shape:
        logits_of_warped, warped_logits: ``(B, K + 1, H, W)``; returns a scalar.
    """
    target = warped_logits.detach().softmax(dim=1)
    # torch's reduction="mean" (the official nn.KLDivLoss() default) is about to change meaning: spelled out here
    return F.kl_div(logits_of_warped.log_softmax(dim=1), target, reduction="sum") / target.numel()


def landmark_equivariance_loss(logits_of_warped: Tensor, warped_logits: Tensor, eps: float = CENTER_EPS) -> Tensor:
    """Equivariance of the part centres (official ``loss_lmeqv``): mean over ``B K 2`` of
    ``(c_k(softmax(f(T(x)))) - c_k(softmax(T(z))))^2``, background dropped, ``eps = 1e-3``. Unlike the KL target,
    ``T(z)`` is **not** detached: the gradient reaches both branches.

    Shape:
        logits_of_warped, warped_logits: ``(B, K + 1, H, W)``; returns a scalar.
    """
    a = part_centers(logits_of_warped.softmax(dim=1)[:, 1:], eps)
    b = part_centers(warped_logits.softmax(dim=1)[:, 1:], eps)
    return F.mse_loss(a, b)


def equivariance_losses(logits: Tensor, logits_of_warped: Tensor, warp: TPSWarp) -> tuple[Tensor, Tensor]:
    """``(L_eqv, L_lmeqv)`` for the original-image logits ``z`` and the logits of the warped image, warping ``z`` with
    ``warp`` (zero padding) as the official trainer does.

    Shape:
        logits, logits_of_warped: ``(B, K + 1, H, W)``; returns two scalars.
    """
    warped = warp(logits, padding_mode="zeros")
    return equivariance_loss(logits_of_warped, warped), landmark_equivariance_loss(logits_of_warped, warped)


def semantic_targets(features: Tensor, size: int | Sequence[int], saliency: Tensor | None = None) -> Tensor:
    """The target ``V`` of the semantic-consistency loss: the frozen features up-sampled bilinearly
    (``align_corners=True``) to the part-map size and multiplied by the saliency map (official saliency masking).

    Shape:
        features: ``(B, C, h, w)``; saliency: ``(B, H, W)`` or ``(B, 1, H, W)`` in [0, 1]; returns ``(B, C, H, W)``.
    """
    size = (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
    out = F.interpolate(features, size=size, mode="bilinear", align_corners=True)
    if saliency is not None:
        out = out * (saliency if saliency.dim() == 4 else saliency[:, None]).to(out.dtype)
    return out


def semantic_consistency_loss(logits: Tensor, features: Tensor, basis: Tensor) -> Tensor:
    """Semantic consistency (paper Eq. 3; official ``loss.semantic_consistency_loss``).

    ``L_sc = mean over B H W C of (sum_k R_k(i, j) W_k - V(i, j))^2`` with the K part channels only (no background),
    ``W = ReLU(w)`` the part bases and ``V`` the (saliency-masked) features of :func:`semantic_targets`.

    Shape:
        logits: ``(B, K + 1, H, W)``; features: ``(B, C, H, W)``; basis: ``(K, C)``; returns a scalar.
    """
    parts = logits.softmax(dim=1)[:, 1:]
    recon = torch.einsum("bkhw,kc->bchw", parts, basis)
    return F.mse_loss(recon, features)


def orthonormality_loss(basis: Tensor) -> Tensor:
    """Orthonormality of the part bases (paper Eq. 4; official ``loss.orthonomal_loss``):
    ``sum_{k,l} ((W^ W^T - I)_{kl})^2`` with rows L2-normalised (``eps = 1e-6`` inside the root). A **sum** over the
    ``K^2`` entries, not a mean.

    Shape:
        basis: ``(K, C)``; returns a scalar.
    """
    w = l2_normalize_rows(basis)
    gram = w @ w.t()
    return (gram - torch.eye(basis.shape[0], dtype=basis.dtype, device=basis.device)).pow(2).sum()


def total_loss(terms: Mapping[str, Tensor], weights: Mapping[str, float] | None = None) -> Tensor:
    """``sum_t lambda_t L_t`` over the terms given (keys of :data:`LOSS_WEIGHTS`: con, eqv, lmeqv, sc, on); a term
    missing from ``terms`` is left out (an ablation), an unknown key raises."""
    weights = {**LOSS_WEIGHTS, **(weights or {})}
    unknown = sorted(set(terms) - set(weights))
    if unknown:
        raise KeyError(f"unknown SCOPS loss term(s) {unknown}; expected some of {sorted(LOSS_WEIGHTS)}")
    return sum((float(weights[k]) * v for k, v in terms.items()), torch.zeros(()))


# ------------------------------------------------------------------------------------------------ thin-plate splines
def tps_control_grid(points_per_side: int = 5, dtype: torch.dtype = torch.float32) -> Tensor:
    """Target control points of the official random TPS: a grid over ``linspace(-1, 1, n)^2`` as ``(x, y)`` pairs,
    ``x`` varying slowest (the official ``itertools.product`` order).

    Shape:
        returns ``(n^2, 2)``.
    """
    a = torch.linspace(-1.0, 1.0, int(points_per_side), dtype=torch.float64)
    x, y = torch.meshgrid(a, a, indexing="ij")
    return torch.stack([x.reshape(-1), y.reshape(-1)], dim=1).to(dtype)


def _tps_kernel(d2: Tensor) -> Tensor:
    # U(r) = r^2 log r = 0.5 d2 log d2, with 0 log 0 = 0
    safe = torch.where(d2 > 0, d2, torch.ones_like(d2))
    return torch.where(d2 > 0, 0.5 * d2 * safe.log(), torch.zeros_like(d2))


@dataclass
class TPSWarp:
    """A batch of thin-plate-spline warps, mapping each output pixel to the input point it samples.

    ``f(t_i) = s_i`` for the control points: ``target`` (the output frame) to ``source`` (the input frame), both in the
    ``align_corners=True`` normalised frame (``linspace(-1, 1)`` over pixel centres). The spline is the official one
    (WarBean ``TPSGridGen``): kernel ``r^2 log r`` centred on the target points, affine part, side conditions; the
    linear system is solved in float64. Evaluation and sampling go through kornia (``warp_points_tps``,
    ``grid_sample`` with ``align_corners=True``).

    Attributes:
        target: ``(N, 2)`` or ``(B, N, 2)`` control points in the output frame, ``(x, y)``.
        source: ``(B, N, 2)`` the points they map to in the input frame.
    """

    target: Tensor
    source: Tensor

    def __post_init__(self) -> None:
        if self.source.dim() != 3 or self.source.shape[-1] != 2:
            raise ValueError(f"source control points must be (B, N, 2), got {tuple(self.source.shape)}")
        if self.target.dim() == 2:
            self.target = self.target.expand(self.source.shape[0], -1, -1)
        if self.target.shape != self.source.shape:
            raise ValueError(f"target {tuple(self.target.shape)} and source {tuple(self.source.shape)} differ")
        self._cache: dict[tuple, Tensor] = {}

    @property
    def batch_size(self) -> int:
        return int(self.source.shape[0])

    def weights(self) -> tuple[Tensor, Tensor]:
        """Kernel weights ``(B, N, 2)`` and affine weights ``(B, 3, 2)`` (rows: constant, x, y) in kornia's layout,
        float64."""
        t = self.target.double()
        b, n, _ = t.shape
        k = _tps_kernel(torch.cdist(t, t).pow(2))
        ones = torch.ones(b, n, 1, dtype=t.dtype, device=t.device)
        p = torch.cat([ones, t], dim=2)
        top = torch.cat([k, p], dim=2)
        bottom = torch.cat([p.transpose(1, 2), torch.zeros(b, 3, 3, dtype=t.dtype, device=t.device)], dim=2)
        rhs = torch.cat([self.source.double(), torch.zeros(b, 3, 2, dtype=t.dtype, device=t.device)], dim=1)
        sol = torch.linalg.solve(torch.cat([top, bottom], dim=1), rhs)
        return sol[:, :n], sol[:, n:]

    def warp_points(self, points: Tensor) -> Tensor:
        """Map output-frame points to input-frame points.

        Shape:
            points: ``(B, M, 2)``; returns ``(B, M, 2)``.
        """
        from kornia.geometry.transform import warp_points_tps

        kernel, affine = self.weights()
        # evaluated in float64 (the spline sums 25 kernel terms per point), returned in the control points' dtype
        out = warp_points_tps(points.double(), self.target.double(), kernel, affine)
        return out.to(self.source.dtype)

    def grid(self, height: int, width: int) -> Tensor:
        """The sampling grid for an ``H x W`` output (cached per size, device and dtype).

        Shape:
            returns ``(B, H, W, 2)`` as ``(x, y)`` in the ``align_corners=True`` frame.
        """
        key = (int(height), int(width))
        if key not in self._cache:
            from kornia.geometry import create_meshgrid

            coords = create_meshgrid(
                int(height), int(width), normalized_coordinates=True, device=self.source.device,
                dtype=self.source.dtype, align_corners=True,
            )  # fmt: skip
            pts = coords.reshape(1, -1, 2).expand(self.batch_size, -1, -1)
            self._cache[key] = self.warp_points(pts).reshape(self.batch_size, int(height), int(width), 2)
        return self._cache[key]

    def __call__(self, x: Tensor, padding_mode: str = "zeros") -> Tensor:
        """Warp ``x`` (bilinear, ``align_corners=True``; the official code was written for torch 0.4, whose
        ``grid_sample`` had these semantics).

        Shape:
            x: ``(B, C, H, W)``; returns ``(B, C, H, W)``.
        """
        if x.shape[0] != self.batch_size:
            raise ValueError(f"the warp holds {self.batch_size} transforms, the input has batch {x.shape[0]}")
        grid = self.grid(*x.shape[-2:]).to(x.dtype)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding_mode, align_corners=True)


def similarity_tps(
    angle_deg: Tensor,
    scale: Tensor,
    shift: Tensor,
    noise: Tensor | None = None,
    mirror: bool = False,
    points_per_side: int = 5,
) -> TPSWarp:
    """The official "affine" random TPS for given parameters (``tps/rand_tps.py``): the jittered control grid mapped by
    the similarity ``[[s cos a, -s sin a, t_x], [s sin a, s cos a, t_y]]`` (target to source), then ``x -> -x`` when
    ``mirror``.

    Args:
        angle_deg: ``(B,)`` rotation in degrees.
        scale: ``(B,)`` scale of the target-to-source map (the official code draws it in ``1/scale_range``).
        shift: ``(B, 2)`` translation in normalised units.
        noise: ``(B, N, 2)`` control-point jitter added before the similarity; zeros when ``None``.
        mirror: negate the source x coordinates (one flag for the whole batch, as in the official code).
    """
    target = tps_control_grid(points_per_side)
    b = angle_deg.shape[0]
    pts = target.expand(b, -1, -1).to(torch.float32)
    if noise is not None:
        pts = pts + noise.to(torch.float32)
    a = angle_deg.double() * math.pi / 180.0
    cos, sin = (scale.double() * a.cos()).float(), (scale.double() * a.sin()).float()
    theta = torch.stack(
        [torch.stack([cos, -sin, shift[:, 0].float()], -1), torch.stack([sin, cos, shift[:, 1].float()], -1)], 1
    )  # (B, 2, 3)
    source = torch.cat([pts, torch.ones(b, pts.shape[1], 1)], dim=2) @ theta.transpose(1, 2)
    if mirror:
        source = source * torch.tensor([-1.0, 1.0])
    return TPSWarp(target, source)


def random_similarity_tps(
    batch_size: int,
    sigma: float = 0.01,
    scale_range: Sequence[float] = (0.7, 2.0),
    rotation_deg: float = 60.0,
    translation: float = 0.1,
    mirror: bool = False,
    generator: torch.Generator | None = None,
    points_per_side: int = 5,
) -> TPSWarp:
    """Draw the official random warp (paper Sec. 3.2; ``exps/SCOPS_K8_retrain.json``): control-point jitter
    ``U(-sigma, sigma)``, angle ``U(-rotation, rotation)``, scale ``U(1 / scale_range[1], 1 / scale_range[0])``
    (inverted because the map goes from target to source), translation ``U(-t, t)`` per axis and, when ``mirror``, a
    horizontal flip with probability 1/2. All draws come from ``generator`` (torch), not numpy.
    """
    g = generator

    def uniform(shape: tuple[int, ...], low: float, high: float) -> Tensor:
        return torch.rand(shape, generator=g, dtype=torch.float64) * (high - low) + low

    b = int(batch_size)
    noise = uniform((b, int(points_per_side) ** 2, 2), -sigma, sigma).float()
    angle = uniform((b,), -rotation_deg, rotation_deg)
    scale = uniform((b,), 1.0 / float(scale_range[1]), 1.0 / float(scale_range[0]))
    shift = uniform((b, 2), -translation, translation)
    flip = bool(mirror) and bool(torch.randint(0, 2, (1,), generator=g).item())
    return similarity_tps(angle, scale, shift, noise, mirror=flip, points_per_side=points_per_side)


# ------------------------------------------------------------------------------------------- the training objective
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_CAFFE_MEAN_BGR = (104.00698793, 116.66876762, 122.67891434)
_CAFFE_MEAN_RGB = _CAFFE_MEAN_BGR[::-1]


def _mean(order_bgr: bool, like: Tensor) -> Tensor:
    values = _CAFFE_MEAN_BGR if order_bgr else _CAFFE_MEAN_RGB
    return torch.tensor(values, dtype=like.dtype, device=like.device).view(1, 3, 1, 1)


def imagenet_from_caffe(images: Tensor, official_mean_order: bool = True) -> Tensor:
    """The VGG input of the official trainer: the network input (RGB minus the Caffe mean) plus the mean, / 255,
    ImageNet-normalised. The official code adds the mean back in BGR order to the RGB tensor
    (``scops_trainer.py``), shifting R by -18.67 and B by +18.67 grey levels; ``official_mean_order=False`` adds it
    in RGB order (the exact inverse).

    Shape:
        images: ``(B, 3, H, W)``; returns ``(B, 3, H, W)``.
    """
    x = (images + _mean(official_mean_order, images)) / 255.0
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def color_jitter(
    images: Tensor,
    brightness: float = 0.3,
    contrast: float = 0.3,
    saturation: float = 0.2,
    hue: float = 0.2,
    generator: torch.Generator | None = None,
    official_mean_order: bool = True,
) -> Tensor:
    """The photometric jitter of the equivariance branch (official ``scops_trainer.py``: torchvision ``ColorJitter``
    (0.3, 0.3, 0.2, 0.2) per image on a uint8 picture): the input is taken back to [0, 255] (the official mean-order
    quirk of :func:`imagenet_from_caffe` included), clipped and truncated to uint8, brightness / contrast /
    saturation / hue factors drawn per image and applied in a random order (each step returning uint8, as PIL does),
    and the mean subtracted again.

    Shape:
        images: ``(B, 3, H, W)`` network inputs; returns the same.
    """
    import torchvision.transforms.v2.functional as TF

    mean = _mean(official_mean_order, images)
    # truncation, as ToPILImage's mul(255).byte() (the epsilon absorbs float error of integer-valued inputs)
    pix = (images + mean + 1e-4).clamp(0, 255).floor().to(torch.uint8)
    out = []
    for img in pix:
        factors = torch.rand(4, generator=generator, dtype=torch.float64)
        ops = {
            0: lambda x, f=factors[0]: TF.adjust_brightness(x, float(1 - brightness + 2 * brightness * f)),
            1: lambda x, f=factors[1]: TF.adjust_contrast(x, float(1 - contrast + 2 * contrast * f)),
            2: lambda x, f=factors[2]: TF.adjust_saturation(x, float(1 - saturation + 2 * saturation * f)),
            3: lambda x, f=factors[3]: TF.adjust_hue(x, float(-hue + 2 * hue * f)),
        }
        for i in torch.randperm(4, generator=generator).tolist():
            img = ops[i](img)
        out.append(img)
    return torch.stack(out).to(images.dtype) - mean


class SCOPSObjective(torch.nn.Module):
    """All SCOPS loss terms of one training step, in the order of the official ``SCOPSTrainer.step``.

    For a batch ``x`` (network inputs) with saliency ``S``: ``z = up(f(x))``; ``V = up(features(x)) * S``;
    ``L_sc(z, V, ReLU(w))``, ``L_on(ReLU(w))``, ``L_con(z)``; then ``x~ = T(jitter(x))`` for a random warp ``T``,
    ``z~ = up(f(x~))`` and ``L_eqv, L_lmeqv`` from ``z``, ``z~`` and ``T``. ``up`` is the bilinear up-sampling to the
    input size (``align_corners=True``).

    Args:
        features: frozen feature extractor applied to the network input (``VGGFeatures`` after
            :func:`imagenet_from_caffe` for the paper; any frozen network for the embedded world), ``(B, C, h, w)``.
        basis: the part bases (``PartBasis``), ``C`` columns.
        terms: which loss terms to compute (an ablation leaves some out); default all of :data:`LOSS_WEIGHTS`.
        saliency_masking: multiply the features by the saliency (the official ``no_sal_masking=False``).
        jitter: apply :func:`color_jitter` before the warp (official); off: warp the input as it is.
        tps: keyword arguments of :func:`random_similarity_tps` (sigma, scale_range, rotation_deg, translation).

    Returns from :meth:`forward`: the unweighted terms by name, plus ``"loss"`` (the weighted sum, :func:`total_loss`).
    """

    def __init__(
        self,
        features: torch.nn.Module,
        basis: torch.nn.Module,
        terms: Sequence[str] = tuple(LOSS_WEIGHTS),
        weights: Mapping[str, float] | None = None,
        saliency_masking: bool = True,
        jitter: bool = True,
        tps: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__()
        unknown = sorted(set(terms) - set(LOSS_WEIGHTS))
        if unknown:
            raise KeyError(f"unknown SCOPS loss term(s) {unknown}; expected some of {sorted(LOSS_WEIGHTS)}")
        self.features, self.basis = features, basis
        self.terms = tuple(terms)
        self.weights = {**LOSS_WEIGHTS, **(weights or {})}
        self.saliency_masking, self.jitter = bool(saliency_masking), bool(jitter)
        self.tps = dict(tps or {})

    def forward(
        self,
        net: torch.nn.Module,
        images: Tensor,
        saliency: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> dict[str, Tensor]:
        from nvresearch.scops.models import upsample_logits

        size = images.shape[-2:]
        z = upsample_logits(net(images), size)
        out: dict[str, Tensor] = {}
        if "sc" in self.terms or "on" in self.terms:
            w = self.basis()
            if "sc" in self.terms:
                with torch.no_grad():
                    v = semantic_targets(self.features(images), size, saliency if self.saliency_masking else None)
                out["sc"] = semantic_consistency_loss(z, v, w)
            if "on" in self.terms:
                out["on"] = orthonormality_loss(w)
        if "con" in self.terms:
            out["con"] = concentration_loss(z)
        if "eqv" in self.terms or "lmeqv" in self.terms:
            warp = random_similarity_tps(images.shape[0], generator=generator, **self.tps)  # type: ignore[arg-type]
            source = color_jitter(images, generator=generator) if self.jitter else images
            z_tps = upsample_logits(net(warp(source)), size)
            eqv, lmeqv = equivariance_losses(z, z_tps, warp)
            if "eqv" in self.terms:
                out["eqv"] = eqv
            if "lmeqv" in self.terms:
                out["lmeqv"] = lmeqv
        out["loss"] = total_loss(out, self.weights).to(z.dtype)
        return out
