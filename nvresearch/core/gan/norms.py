"""Normalisation layers for generators and discriminators: AdaIN, layer norm, switchable norm and a factory.

AdaIN (Huang & Belongie 2017) as used by MUNIT, FUNIT and DG-Net: the affine parameters are not learned by the
layer but written into it before each forward pass by an MLP (see :func:`assign_adain_params`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

NORMS = ("none", "batch", "instance", "layer", "adain", "switchable")


class AdaptiveInstanceNorm2d(nn.Module):
    """Instance normalisation whose per-sample affine parameters come from outside (Huang & Belongie 2017, Eq. 8).

    ``AdaIN(h)[b, c] = weight[b, c] * (h[b, c] - mean[b, c]) / sqrt(var[b, c] + eps) + bias[b, c]`` with the
    spatial mean and the biased variance of each instance. ``weight`` is used as is (no ``1 + weight``), as in the
    FUNIT / MUNIT / DG-Net reference code. Set :attr:`weight` and :attr:`bias` (``(B, C)`` each) before calling,
    usually with :func:`assign_adain_params`.

    Shape:
        x: ``(B, C, H, W)``; returns the same shape.
    """

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_features = int(num_features)
        self.eps = float(eps)
        self.weight: Tensor | None = None
        self.bias: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        if self.weight is None or self.bias is None:
            raise RuntimeError("AdaIN parameters are not set: call assign_adain_params(params, module) first")
        b, c = x.shape[:2]
        if c != self.num_features:
            raise ValueError(f"AdaIN expects {self.num_features} channels, got input of shape {tuple(x.shape)}")
        weight, bias = self.weight, self.bias
        if weight.shape != (b, c) or bias.shape != (b, c):
            raise ValueError(
                f"AdaIN parameters must be (B, C) = ({b}, {c}), got weight {tuple(weight.shape)}, "
                f"bias {tuple(bias.shape)}"
            )
        var, mean = torch.var_mean(x, dim=(2, 3), keepdim=True, correction=0)
        normed = (x - mean) * torch.rsqrt(var + self.eps)
        return normed * weight[:, :, None, None] + bias[:, :, None, None]

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}"


class LayerNorm2d(nn.Module):
    """Per-sample layer norm over ``(C, H, W)`` as in MUNIT / DG-Net / the segmentation-by-translation code.

    ``y = (x - mean) / (std + eps) * gamma[c] + beta[c]`` with the **unbiased** standard deviation over all of
    ``(C, H, W)`` and ``eps`` added to the std; ``gamma`` starts from U(0, 1), ``beta`` from 0 (reference inits).

    Shape:
        x: ``(B, C, H, W)``; returns the same shape.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, affine: bool = True) -> None:
        super().__init__()
        self.num_features, self.eps, self.affine = int(num_features), float(eps), affine
        if affine:
            self.gamma = nn.Parameter(torch.rand(num_features))
            self.beta = nn.Parameter(torch.zeros(num_features))

    def forward(self, x: Tensor) -> Tensor:
        flat = x.reshape(x.shape[0], -1)
        shape = (-1,) + (1,) * (x.dim() - 1)
        mean = flat.mean(1).view(shape)
        std = flat.std(1).view(shape)
        y = (x - mean) / (std + self.eps)
        if self.affine:
            y = y * self.gamma.view(1, -1, 1, 1) + self.beta.view(1, -1, 1, 1)
        return y

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, affine={self.affine}"


class SwitchableNorm2d(nn.Module):
    """A normalisation with one independent set of parameters per mode ("switching normalisation").

    Holds ``num_modes`` copies of a base norm (``layer`` or ``instance``, affine) and applies the copy selected by
    :attr:`mode`, which the owning network sets for a whole forward pass with :func:`set_norm_mode`.

    Shape:
        x: ``(B, C, H, W)``; returns the same shape.
    """

    def __init__(self, num_features: int, num_modes: int = 2, base: str = "layer") -> None:
        super().__init__()
        if base not in ("layer", "instance", "batch"):
            raise ValueError(f"SwitchableNorm2d base must be 'layer', 'instance' or 'batch', got {base!r}")
        if num_modes < 1:
            raise ValueError(f"num_modes must be >= 1, got {num_modes}")
        self.norms = nn.ModuleList(make_norm(base, num_features, affine=True) for _ in range(num_modes))
        self.mode = 0

    def forward(self, x: Tensor) -> Tensor:
        if not 0 <= self.mode < len(self.norms):
            raise ValueError(f"norm mode {self.mode} out of range for {len(self.norms)} modes")
        return self.norms[self.mode](x)


def make_norm(name: str, num_features: int, affine: bool | None = None) -> nn.Module:
    """Build a 2-D normalisation by name: one of :data:`NORMS`.

    ``instance`` is non-affine without running statistics (the GAN default) unless ``affine=True``; ``batch`` is
    affine unless ``affine=False``; ``switchable`` is two layer-norm parameter sets (see :class:`SwitchableNorm2d`).
    """
    if name == "none":
        return nn.Identity()
    if name == "batch":
        return nn.BatchNorm2d(num_features, affine=True if affine is None else affine)
    if name == "instance":
        return nn.InstanceNorm2d(num_features, affine=bool(affine), track_running_stats=False)
    if name == "layer":
        return LayerNorm2d(num_features, affine=True if affine is None else affine)
    if name == "adain":
        return AdaptiveInstanceNorm2d(num_features)
    if name == "switchable":
        return SwitchableNorm2d(num_features)
    raise ValueError(f"unknown norm {name!r}; choose one of {NORMS}")


def adain_layers(module: nn.Module) -> list[AdaptiveInstanceNorm2d]:
    """The AdaIN layers of ``module`` in registration order (the order their parameters are assigned in)."""
    return [m for m in module.modules() if isinstance(m, AdaptiveInstanceNorm2d)]


def num_adain_params(module: nn.Module) -> int:
    """How many numbers an MLP must produce to drive every AdaIN layer of ``module`` (2 C per layer)."""
    return sum(2 * m.num_features for m in adain_layers(module))


def assign_adain_params(params: Tensor, module: nn.Module, order: Sequence[str] = ("bias", "weight")) -> None:
    """Write ``params`` into the AdaIN layers of ``module``.

    Layers are filled in registration order; each takes the next ``2 C`` entries, split in ``order``. The default
    ``("bias", "weight")`` is the MUNIT/FUNIT layout ``[beta_1, gamma_1, beta_2, gamma_2, ...]``.

    Shape:
        params: ``(B, num_adain_params(module))``.
    """
    layers = adain_layers(module)
    need = sum(2 * m.num_features for m in layers)
    if params.dim() != 2 or params.shape[1] != need:
        raise ValueError(f"expected AdaIN parameters of shape (B, {need}), got {tuple(params.shape)}")
    if sorted(order) != ["bias", "weight"]:
        raise ValueError(f"order must be a permutation of ('bias', 'weight'), got {tuple(order)}")
    start = 0
    for m in layers:
        c = m.num_features
        first, second = params[:, start : start + c], params[:, start + c : start + 2 * c]
        values = dict(zip(order, (first, second), strict=True))
        m.weight, m.bias = values["weight"], values["bias"]
        start += 2 * c


def set_norm_mode(module: nn.Module, mode: int) -> None:
    """Select parameter set ``mode`` in every :class:`SwitchableNorm2d` of ``module``."""
    for m in module.modules():
        if isinstance(m, SwitchableNorm2d):
            m.mode = int(mode)


def instance_norm(x: Tensor, eps: float = 1e-5) -> Tensor:
    """Parameter-free instance normalisation (biased variance), e.g. for content-preservation features.

    Shape:
        x: ``(B, C, H, W)``; returns the same shape.
    """
    return F.instance_norm(x, eps=eps)
