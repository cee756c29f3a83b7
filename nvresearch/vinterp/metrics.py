"""vinterp evaluation under the official protocol (official ``eval.py``), torch only.

Per intermediate frame: the prediction and the ground truth are cast to uint8 by *truncation* (numpy
``astype(np.uint8)`` on float32: toward zero, out-of-range values wrap modulo 256), cropped to the unpadded size, and
scored with

- PSNR with data range 255 (``skimage.measure.compare_psnr``: MSE in float64);
- SSIM of ``compare_ssim(..., multichannel=True, gaussian_weights=True)``: Gaussian window sigma 1.5 truncated at 3.5
  sigma (11 x 11), sample covariance (``N / (N - 1)``), K1 0.01, K2 0.03, data range 255, mean over the interior
  (the borders a window does not cover are dropped) of each channel, then over channels;
- IE: the mean over pixels of the Euclidean norm of the RGB difference (not an RMS).

The reported numbers are the ``nanmean`` over all predicted frames of all clips, and per intermediate index k
(:class:`InterpolationScores`). Inputs are the first and last frame of an ``N + 2``-frame window, zero-padded
bottom/right to a multiple of the model's stride (:func:`interpolate_window`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "InterpolationScores",
    "frame_metrics",
    "interpolate_window",
    "interpolation_error",
    "psnr",
    "quantize",
    "ssim",
]


def quantize(x: Tensor, mode: str = "truncate") -> Tensor:
    """0-255 floats to uint8 as the official evaluation does (``truncate``: toward zero, wrapping modulo 256) or by
    rounding and clamping (``round``; not the official protocol).

    Shape:
        x: any; returns a uint8 tensor of the same shape.
    """
    if mode == "truncate":
        return torch.remainder(torch.trunc(x.float()).to(torch.int64), 256).to(torch.uint8)
    if mode == "round":
        return x.float().round().clamp(0, 255).to(torch.uint8)
    raise ValueError(f"quantize mode must be 'truncate' or 'round', got {mode!r}")


def _check(pred: Tensor, gt: Tensor) -> None:
    if pred.shape != gt.shape or pred.dim() != 4:
        raise ValueError(
            f"metrics need pred and gt of one shape (B, C, H, W), got {tuple(pred.shape)} and {tuple(gt.shape)}"
        )


def psnr(pred: Tensor, gt: Tensor, data_range: float = 255.0) -> Tensor:
    """``10 log10(R^2 / MSE)`` per image, MSE in float64; identical images give ``inf``.

    Shape:
        pred, gt: ``(B, C, H, W)`` (uint8 from :func:`quantize` in the protocol); returns float64 ``(B,)``.
    """
    _check(pred, gt)
    mse = (pred.double() - gt.double()).pow(2).flatten(1).mean(1)
    return 10.0 * torch.log10(data_range**2 / mse)


def _gaussian_window(sigma: float, truncate: float, device: torch.device) -> Tensor:
    radius = int(truncate * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64, device=device)
    g = torch.exp(-0.5 * (x / sigma) ** 2)
    return g / g.sum()


def ssim(
    pred: Tensor,
    gt: Tensor,
    data_range: float = 255.0,
    sigma: float = 1.5,
    truncate: float = 3.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> Tensor:
    """Structural similarity as ``skimage`` computes it with Gaussian weights and sample covariance (``eval.py``).

    Local statistics come from a separable Gaussian window (sigma 1.5, radius ``int(3.5 sigma + 0.5)`` = 5);
    variances and covariance are scaled by ``N / (N - 1)`` with ``N`` = 121 window pixels; the SSIM map is averaged
    over the pixels whose window lies inside the image, per channel, then over channels.

    Shape:
        pred, gt: ``(B, C, H, W)`` with H, W >= 11; returns float64 ``(B,)``.
    """
    _check(pred, gt)
    b, c, h, w = pred.shape
    g = _gaussian_window(sigma, truncate, pred.device)
    win = g.numel()
    if h < win or w < win:
        raise ValueError(f"SSIM needs images of at least {win}x{win} pixels, got {h}x{w}")

    def filt(z: Tensor) -> Tensor:  # valid part only: the border that skimage crops is never computed
        z = F.conv2d(z.reshape(b * c, 1, h, w), g.view(1, 1, win, 1))
        return F.conv2d(z, g.view(1, 1, 1, win))

    x, y = pred.double(), gt.double()
    ux, uy = filt(x), filt(y)
    uxx, uyy, uxy = filt(x * x), filt(y * y), filt(x * y)
    cov_norm = win * win / (win * win - 1.0)
    vx, vy, vxy = cov_norm * (uxx - ux * ux), cov_norm * (uyy - uy * uy), cov_norm * (uxy - ux * uy)
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.reshape(b, c, -1).mean(2).mean(1)


def interpolation_error(pred: Tensor, gt: Tensor) -> Tensor:
    """IE: mean over pixels of ``||pred - gt||_2`` over the colour channels (official, not the Middlebury RMS).

    Shape:
        pred, gt: ``(B, 3, H, W)``; returns float32 ``(B,)``.
    """
    _check(pred, gt)
    err = pred.float() - gt.float()
    return err.pow(2).sum(1).sqrt().flatten(1).mean(1)


def frame_metrics(pred: Tensor, gt: Tensor, mode: str = "truncate") -> dict[str, Tensor]:
    """PSNR, SSIM and IE of 0-255 frames after :func:`quantize` (the official per-frame protocol).

    Shape:
        pred, gt: ``(B, 3, H, W)`` floats in 0-255 (already cropped to the unpadded size); returns ``(B,)`` each.
    """
    p, q = quantize(pred, mode), quantize(gt, mode)
    return {"psnr": psnr(p, q), "ssim": ssim(p, q), "ie": interpolation_error(p, q).double()}


@torch.no_grad()
def interpolate_window(
    model: Callable[[Tensor, Tensor, Tensor], Tensor], first: Tensor, last: Tensor, num_interp: int, multiple: int = 64
) -> list[Tensor]:
    """The N intermediate frames between ``first`` and ``last`` at ``t = linspace(0, 1, N + 2)[k]``, k = 1..N, with
    the inputs zero-padded bottom/right to a multiple of ``multiple`` and the outputs cropped back (official
    ``VideoInterp.pad_images``, ``eval.py``; the padding takes part in warping).

    Args:
        model: ``(frame0, frame1, t (B,)) -> frame`` in 0-255 (a :class:`~nvresearch.vinterp.SuperSloMo`).
        first, last: the window's first and last frames in 0-255. num_interp: N. multiple: the padding stride.

    Shape:
        first, last: ``(B, 3, H, W)``; returns N tensors ``(B, 3, H, W)``.
    """
    h, w = first.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    a, b = F.pad(first, (0, pw, 0, ph)), F.pad(last, (0, pw, 0, ph))
    grid = torch.linspace(0, 1, num_interp + 2, dtype=torch.float32)
    out = []
    for k in range(1, num_interp + 1):
        t = grid[k].expand(first.shape[0]).to(first.device)
        out.append(model(a, b, t)[..., :h, :w])
    return out


class InterpolationScores:
    """Accumulates per-frame PSNR / SSIM / IE and reports the official means (``nanmean`` over all frames and per k).

    Example::

        scores = InterpolationScores(num_interp=7)
        for k, (pred, gt) in enumerate(zip(preds, targets), start=1):
            scores.update(pred, gt, k)
        scores.compute()  # {"psnr": ..., "ssim": ..., "ie": ..., "psnr_k1": ...}
    """

    def __init__(self, num_interp: int, mode: str = "truncate") -> None:
        self.num_interp = int(num_interp)
        self.mode = mode
        self.rows: list[tuple[int, float, float, float]] = []

    def update(self, pred: Tensor, gt: Tensor, k: int) -> dict[str, Tensor]:
        """Score a batch of intermediate frames of index ``k`` (1..N). Shape: ``(B, 3, H, W)`` in 0-255."""
        if not 1 <= k <= self.num_interp:
            raise ValueError(f"intermediate index k must lie in 1..{self.num_interp}, got {k}")
        m = frame_metrics(pred, gt, self.mode)
        for i in range(pred.shape[0]):
            self.rows.append((k, float(m["psnr"][i]), float(m["ssim"][i]), float(m["ie"][i])))
        return m

    @staticmethod
    def _nanmean(values: list[float]) -> float:
        kept = [v for v in values if not math.isnan(v)]
        return sum(kept) / len(kept) if kept else math.nan

    def compute(self) -> dict[str, float]:
        """``psnr``, ``ssim``, ``ie`` over all frames, and ``<metric>_k<k>`` per index (nan where none)."""
        out = {}
        for j, name in enumerate(("psnr", "ssim", "ie"), start=1):
            out[name] = self._nanmean([r[j] for r in self.rows])
            for k in range(1, self.num_interp + 1):
                out[f"{name}_k{k}"] = self._nanmean([r[j] for r in self.rows if r[0] == k])
        return out
