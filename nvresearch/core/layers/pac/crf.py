"""PAC-CRF: mean-field inference whose messages are pixel-adaptive convolutions (Su et al., CVPR 2019, Sec. 4.2).

Each pairwise term ``i`` passes a message ``m_i = compat_i(PAC_i(Q; K_i))`` where ``K_i`` is a Gaussian kernel on
edge features (e.g. colour / 30) and the PAC weight carries the spatial filter (and, for ``'4d'`` terms, the label
compatibility). One mean-field step (as the official ``paccrf.py``) is::

    Q = softmax(log_Q);  log_Q <- w_u * unary - sum_i pw_i * m_i

starting from ``log_Q = unary`` (logits). ``pw_i`` is negated for ``'potts'`` terms, whose filter is not a
compatibility (same-label mass raises the score); the ``'crf'`` fillers of the other terms are ``(1 - I) * g`` so the
mass of *other* labels lowers it. The kernels ``K_i`` are computed once per forward and shared by all steps.

Argument names, defaults and parameter names (``unary_weight``, ``messengers.{i}.weight``, ``compat.{i}.weight``,
``pairwise_weights.{i}``) follow the official ``paccrf.py`` so its state dicts load. Behaviour that differs, on
purpose:

- ``pairwise_weights.{i}`` is an ``nn.Parameter`` only where the official code reads it as learnable (``'potts'``
  without a spatial filter and without ``fixed_weighting``). Everywhere else the official Parameter is dead (the
  forward reads the constant initial value, so it never gets a gradient); here it is a (persistent) buffer holding
  that value, so ``parameters()`` lists only what trains and state-dict keys stay the same.
- With ``fixed_weighting=True`` the unary weight is a non-persistent buffer (the official one is a plain float):
  it follows ``.to(dtype)`` and is not in the state dict, as upstream.
- ``final_output`` and ``compat_type`` are validated in the constructor (upstream fails late or silently).
- :class:`PacCRFLoose` skips ``'na'`` terms when computing kernels (upstream calls ``compute_kernel`` on a plain
  ``nn.Conv2d`` and crashes).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nvresearch.core.layers.pac.modules import PacConv2d

__all__ = ["PacCRF", "PacCRFLoose", "create_YXRGB", "create_position_feats"]

_COMPAT_TYPES = ("4d", "2d", "potts", "na")
_FINAL_OUTPUTS = ("log_Q", "softmax", "log_softmax")
_PERTURB = 1e-3  # width of the uniform perturbation of the '2d' compatibility init (as the 'crf_perturbed' filler)

EdgeFeat = Tensor | Sequence[Tensor] | None
EdgeKernel = Tensor | Sequence[Tensor | None] | None


def create_position_feats(
    shape: Sequence[int],
    scales: Sequence[float] | Tensor | float | None = None,
    bs: int = 1,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Pixel coordinates divided by ``scales``: channel ``k`` holds the index along spatial dim ``k``.

    Args:
        shape: Spatial shape, e.g. ``(H, W)``.
        scales: One scale per spatial dim (or a scalar for all); ``None`` leaves the coordinates unscaled.
        bs: Batch size (the map is repeated).
        device: Device of the result.
        dtype: Dtype of the result.

    Shape:
        - output: ``(bs, len(shape), *shape)``, e.g. ``(B, 2, H, W)`` with channels ``(y / s_y, x / s_x)``
    """
    coords = torch.meshgrid(*(torch.arange(n, device=device, dtype=dtype) for n in shape), indexing="ij")
    mesh = torch.stack(coords)
    if scales is not None:
        s = torch.as_tensor(scales, dtype=dtype, device=device).reshape(-1, *([1] * len(shape)))
        mesh = mesh / s
    return mesh.unsqueeze(0).expand(bs, *mesh.shape).contiguous()


def create_YXRGB(
    img: Tensor,
    yx_scale: Sequence[float] | Tensor | float | None = None,
    rgb_scale: Sequence[float] | Tensor | float | None = None,
) -> Tensor:
    """DenseCRF-style bilateral features ``[y / s_xy, x / s_xy, RGB / s_rgb]`` (the README uses 100 and 30).

    Args:
        img: Image(s); any leading dims are flattened into the batch.
        yx_scale: Position scale (scalar or ``(s_y, s_x)``); ``None`` = 1.
        rgb_scale: Colour scale (scalar or one per channel); ``None`` = 1.

    Shape:
        - img: ``(B, C, H, W)`` or ``(C, H, W)``
        - output: ``(B, 2 + C, H, W)``
    """
    img = img.reshape(-1, *img.shape[-3:])
    mesh = create_position_feats(img.shape[-2:], yx_scale, img.shape[0], img.device, img.dtype)
    if rgb_scale is not None:
        img = img / torch.as_tensor(rgb_scale, dtype=img.dtype, device=img.device).reshape(-1, 1, 1)
    return torch.cat([mesh, img], dim=1)


def _ceil_pad(sizes: Sequence[int], factor: int) -> tuple[int, int]:
    """Padding that lets a ``factor``-strided pooling cover the whole image: half the shortfall, rounded up."""
    return tuple(((factor - n % factor) % factor + 1) // 2 for n in sizes)  # type: ignore[return-value]


def _blur(x: Tensor, factor: int) -> Tensor:
    """``factor``×``factor`` average pooling with stride ``factor``, ceil padding, padded zeros not counted."""
    return F.avg_pool2d(x, factor, padding=_ceil_pad(x.shape[2:], factor), count_include_pad=False)


class _ScalarList(nn.Module):
    """Scalars addressed ``0, 1, ...``, each either a ``Parameter`` or a buffer (state-dict keys ``{i}``)."""

    def append(self, value: Tensor, learnable: bool) -> None:
        name = str(len(self))
        if learnable:
            self.register_parameter(name, nn.Parameter(value))
        else:
            self.register_buffer(name, value)

    def __len__(self) -> int:
        return len(self._parameters) + len(self._buffers)

    def __getitem__(self, i: int) -> Tensor:
        return getattr(self, str(i))


def _final(log_q: Tensor, final_output: str) -> Tensor:
    if final_output == "softmax":
        return F.softmax(log_q, dim=1)
    if final_output == "log_softmax":
        return F.log_softmax(log_q, dim=1)
    return log_q


def _check_final_output(final_output: str) -> None:
    if final_output not in _FINAL_OUTPUTS:
        raise ValueError(f"final_output must be one of {_FINAL_OUTPUTS}, got {final_output!r}")


def _edge_kernels(
    messengers: nn.ModuleList, blurs: Sequence[int], edge_feat: EdgeFeat, edge_kernel: EdgeKernel
) -> list[Tensor | None]:
    """One adaptive kernel per pairwise term (``None`` for ``'na'``), computed once for all mean-field steps."""
    n = len(messengers)
    if isinstance(edge_kernel, Tensor):
        return [edge_kernel] * n
    if edge_kernel is not None:
        if len(edge_kernel) != n:
            raise ValueError(f"edge_kernel must hold one kernel per pairwise term ({n}), got {len(edge_kernel)}")
        return list(edge_kernel)
    shared = isinstance(edge_feat, Tensor)
    if not shared:
        if edge_feat is None:
            if any(isinstance(m, PacConv2d) for m in messengers):
                raise ValueError("edge_feat (or edge_kernel) is required for PAC pairwise terms")
            return [None] * n
        if len(edge_feat) != n:
            raise ValueError(
                f"edge_feat must be a Tensor or hold one Tensor per pairwise term ({n}), got {len(edge_feat)}"
            )
    pooled: dict[int, Tensor] = {1: edge_feat} if shared else {}  # type: ignore[dict-item]
    kernels: list[Tensor | None] = []
    for i, (messenger, blur) in enumerate(zip(messengers, blurs)):
        if not isinstance(messenger, PacConv2d):
            kernels.append(None)
            continue
        if shared:
            if blur not in pooled:
                pooled[blur] = _blur(pooled[1], blur)
            feat = pooled[blur]
        else:
            feat = edge_feat[i] if blur == 1 else _blur(edge_feat[i], blur)  # type: ignore[index]
        kernels.append(messenger.compute_kernel(feat)[0])
    return kernels


class PacCRF(nn.Module):
    """Mean-field CRF with PAC message passing (Su et al., CVPR 2019, Sec. 4.2; official ``paccrf.py``).

    Args:
        channels: Number of labels ``C``.
        num_steps: Mean-field iterations (weights tied across steps).
        final_output: ``'log_Q'`` (the last logits, default; train with cross-entropy on them), ``'softmax'`` or
            ``'log_softmax'``.
        perturbed_init: Perturb the ``'4d'``/``'2d'`` initialisations by ``U(-5e-4, 5e-4)`` (breaks symmetry).
        native_impl: Passed to the PAC layers (no effect here).
        fixed_weighting: Keep the unary weight (and ``'potts'`` pairwise weights) fixed.
        unary_weight: Initial (or fixed) unary weight ``w_u``.
        pairwise_kernels: Keyword dict, or list of them, for :meth:`add_pairwise_kernel`.

    Shape:
        - unary: ``(B, C, H, W)`` logits; edge_feat: ``(B, F, H, W)`` or one such tensor per term
        - output: ``(B, C, H, W)``
    """

    def __init__(
        self,
        channels: int,
        num_steps: int,
        final_output: str = "log_Q",
        perturbed_init: bool = True,
        native_impl: bool = False,
        fixed_weighting: bool = False,
        unary_weight: float = 1.0,
        pairwise_kernels: Mapping[str, object] | Sequence[Mapping[str, object]] | None = None,
    ) -> None:
        super().__init__()
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise ValueError(f"channels must be a positive int, got {channels!r}")
        if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 0:
            raise ValueError(f"num_steps must be a non-negative int, got {num_steps!r}")
        _check_final_output(final_output)
        self.channels = channels
        self.num_steps = num_steps
        self.final_output = final_output
        self.perturbed_init = perturbed_init
        self.native_impl = native_impl
        self.fixed_weighting = fixed_weighting
        self.init_unary_weight = float(unary_weight)
        self.unary_weight: Tensor
        if fixed_weighting:
            self.register_buffer("unary_weight", torch.tensor(float(unary_weight)), persistent=False)
        else:
            self.unary_weight = nn.Parameter(torch.tensor(float(unary_weight)))
        self.messengers = nn.ModuleList()
        self.compat = nn.ModuleList()  # holds nn.Identity() where a term has no compatibility transform
        self.pairwise_weights = _ScalarList()
        self.init_pairwise_weights: list[float] = []
        self.blur: list[int] = []
        self.pairwise_repr: list[str] = []
        if pairwise_kernels is not None:
            for kwargs in [pairwise_kernels] if isinstance(pairwise_kernels, Mapping) else pairwise_kernels:
                self.add_pairwise_kernel(**kwargs)  # type: ignore[arg-type]

    def add_pairwise_kernel(
        self,
        kernel_size: int = 3,
        dilation: int = 1,
        blur: int = 1,
        compat_type: str = "4d",
        spatial_filter: bool = True,
        pairwise_weight: float = 1.0,
    ) -> None:
        """Adds a pairwise term; its message is computed at ``1/blur`` resolution and upsampled bilinearly.

        Args:
            kernel_size: Odd window size of the messenger.
            dilation: Messenger dilation (the window spans ``(k-1)*dilation + 1`` pixels at the blurred resolution).
            blur: Pooling factor of ``Q`` and of the edge features for this term.
            compat_type: ``'4d'`` (learned ``C×C×k×k`` PAC weight, ``crf`` filler: compatibility and spatial
                filter jointly), ``'2d'`` (shared ``k×k`` spatial filter, then a learned 1×1 ``C×C``
                compatibility initialised to ``1 - I``), ``'potts'`` (shared spatial filter only; the weight is
                negated) or ``'na'`` (plain ``nn.Conv2d(C, C, k)``, no adaptive kernel).
            spatial_filter: For ``'2d'``/``'potts'``: a learned, Gaussian-initialised (``crf`` filler) shared
                filter; else the fixed ``crf_pool`` box of ones without centre tap.
            pairwise_weight: Weight ``pw`` of the message; learnable only for ``'potts'`` without spatial filter and
                without ``fixed_weighting`` (otherwise a buffer, see the module docstring).
        """
        if compat_type not in _COMPAT_TYPES:
            raise ValueError(f"compat_type must be one of {_COMPAT_TYPES}, got {compat_type!r}")
        if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be an odd positive int, got {kernel_size!r}")
        if isinstance(blur, bool) or not isinstance(blur, int) or blur < 1:
            raise ValueError(f"blur must be a positive int, got {blur!r}")
        c = self.channels
        tag = "0d" if compat_type == "potts" else compat_type
        self.pairwise_repr.append(f"{tag}{'s' if spatial_filter else ''}_{kernel_size}_{dilation}_{blur}")
        weight = -float(pairwise_weight) if compat_type == "potts" else float(pairwise_weight)
        learnable = compat_type == "potts" and not spatial_filter and not self.fixed_weighting
        self.pairwise_weights.append(torch.tensor(weight), learnable)
        self.init_pairwise_weights.append(weight)
        self.blur.append(blur)
        pad = (kernel_size // 2) * dilation
        filler = "crf_perturbed" if self.perturbed_init else "crf"
        messenger: nn.Module
        if compat_type == "na":
            messenger = nn.Conv2d(c, c, kernel_size, padding=pad, dilation=dilation, bias=False)
        else:
            shared = compat_type != "4d"
            if shared and not spatial_filter:
                filler = "crf_pool"
            messenger = PacConv2d(
                c,
                c,
                kernel_size,
                padding=pad,
                dilation=dilation,
                bias=False,
                shared_filters=shared,
                filler=filler,
                native_impl=self.native_impl,
            )
        self.messengers.append(messenger)
        self.compat.append(nn.Conv2d(c, c, 1, bias=False) if compat_type == "2d" else nn.Identity())
        self.reset_parameters(len(self.messengers) - 1)

    @torch.no_grad()
    def reset_parameters(self, pairwise_idx: int | None = None) -> None:
        """Re-initialises one pairwise term, or (``None``) all of them and the unary weight."""
        if pairwise_idx is None:
            idxs: Sequence[int] = range(len(self.messengers))
            self.unary_weight.fill_(self.init_unary_weight)
        else:
            idxs = [pairwise_idx]
        for i in idxs:
            self.messengers[i].reset_parameters()
            compat = self.compat[i]
            if isinstance(compat, nn.Conv2d):
                w = (1.0 - torch.eye(self.channels, dtype=compat.weight.dtype, device=compat.weight.device)).view(
                    self.channels, self.channels, 1, 1
                )
                if self.perturbed_init:
                    w = w + (torch.rand_like(w) - 0.5) * _PERTURB
                compat.weight.copy_(w)
            self.pairwise_weights[i].fill_(self.init_pairwise_weights[i])

    def num_pairwise_kernels(self) -> int:
        """Number of pairwise terms."""
        return len(self.messengers)

    def extra_repr(self) -> str:
        s = f"categories={self.channels}, num_steps={self.num_steps}, final_output={self.final_output}"
        if self.perturbed_init:
            s += ", perturbed_init=True"
        if self.fixed_weighting:
            s += ", fixed_weighting=True"
        if self.pairwise_repr:
            s += f", pairwise_kernels=({', '.join(self.pairwise_repr)})"
        return s

    def compute_kernels(self, edge_feat: EdgeFeat) -> list[Tensor | None]:
        """The adaptive kernel of each pairwise term (``None`` for ``'na'``), at that term's blurred resolution."""
        return _edge_kernels(self.messengers, self.blur, edge_feat, None)

    def forward(
        self, unary: Tensor, edge_feat: EdgeFeat, edge_kernel: EdgeKernel = None, logQ: Tensor | None = None
    ) -> Tensor:
        """Runs ``num_steps`` mean-field updates.

        Args:
            unary: Unary logits.
            edge_feat: Guidance for the kernels: one tensor for all terms (pooled per ``blur``), or one per term
                (pooled when its ``blur > 1``). Ignored when ``edge_kernel`` is given.
            edge_kernel: Precomputed kernels (one tensor for all terms, or one per term, at the blurred resolution).
            logQ: Initial ``log Q`` (defaults to ``unary``).

        Shape:
            - unary, logQ: ``(B, C, H, W)``; edge_feat: ``(B, F, H, W)``
            - edge_kernel: ``(B, 1, k, k, ceil(H / blur), ceil(W / blur))``
            - output: ``(B, C, H, W)``
        """
        if not isinstance(unary, Tensor) or unary.dim() != 4 or unary.shape[1] != self.channels:
            shape = tuple(unary.shape) if isinstance(unary, Tensor) else type(unary).__name__
            raise ValueError(f"unary must have shape (B, C={self.channels}, H, W), got {shape}")
        kernels = _edge_kernels(self.messengers, self.blur, edge_feat, edge_kernel)
        log_q = unary if logQ is None else logQ
        h, w = unary.shape[2:]
        for _ in range(self.num_steps):
            q = F.softmax(log_q, dim=1)
            q_blur = {1: q}
            log_q = unary * self.unary_weight
            for i, (messenger, compat, blur) in enumerate(zip(self.messengers, self.compat, self.blur)):
                if blur not in q_blur:
                    q_blur[blur] = _blur(q, blur)
                if isinstance(messenger, PacConv2d):
                    msg = messenger(q_blur[blur], None, kernels[i])
                else:
                    msg = messenger(q_blur[blur])
                msg = compat(msg)
                if blur > 1:
                    ph, pw_ = _ceil_pad((h, w), blur)
                    msg = F.interpolate(msg, scale_factor=blur, mode="bilinear", align_corners=False)
                    msg = msg[:, :, ph : ph + h, pw_ : pw_ + w]
                log_q = log_q - msg * self.pairwise_weights[i]
        return _final(log_q, self.final_output)


class PacCRFLoose(nn.Module):
    """PAC-CRF with untied steps: ``num_steps`` one-step :class:`PacCRF` s (Su et al., CVPR 2019, Sec. 4.2).

    The kernels are computed once per forward with step 0's messengers and reused by every step, as upstream.
    Arguments are those of :class:`PacCRF`; state-dict keys are ``steps.{i}.<PacCRF key>``.

    Shape:
        - unary: ``(B, C, H, W)``; edge_feat: ``(B, F, H, W)`` or one per term; output: ``(B, C, H, W)``
    """

    def __init__(
        self,
        channels: int,
        num_steps: int,
        final_output: str = "log_Q",
        perturbed_init: bool = True,
        native_impl: bool = False,
        fixed_weighting: bool = False,
        unary_weight: float = 1.0,
        pairwise_kernels: Mapping[str, object] | Sequence[Mapping[str, object]] | None = None,
    ) -> None:
        super().__init__()
        _check_final_output(final_output)
        self.channels = channels
        self.num_steps = num_steps
        self.final_output = final_output
        self.steps = nn.ModuleList(
            PacCRF(channels, 1, "log_Q", perturbed_init, native_impl, fixed_weighting, unary_weight, pairwise_kernels)
            for _ in range(num_steps)
        )

    def reset_parameters(self) -> None:
        """Re-initialises every step."""
        for step in self.steps:
            step.reset_parameters()

    def extra_repr(self) -> str:
        return f"categories={self.channels}, num_steps={self.num_steps}, final_output={self.final_output}"

    def add_pairwise_kernel(
        self,
        kernel_size: int = 3,
        dilation: int = 1,
        blur: int = 1,
        compat_type: str = "4d",
        spatial_filter: bool = True,
        pairwise_weight: float = 1.0,
    ) -> None:
        """Adds the same pairwise term to every step; see :meth:`PacCRF.add_pairwise_kernel`."""
        for step in self.steps:
            step.add_pairwise_kernel(kernel_size, dilation, blur, compat_type, spatial_filter, pairwise_weight)

    def num_pairwise_kernels(self) -> int:
        """Number of pairwise terms (per step)."""
        return self.steps[0].num_pairwise_kernels() if len(self.steps) else 0

    def forward(self, unary: Tensor, edge_feat: EdgeFeat, edge_kernel: EdgeKernel = None) -> Tensor:
        """Runs one mean-field update per step, each with its own weights; see :meth:`PacCRF.forward`."""
        log_q = unary
        if len(self.steps):
            kernels = _edge_kernels(self.steps[0].messengers, self.steps[0].blur, edge_feat, edge_kernel)
            for step in self.steps:
                log_q = step(unary, None, kernels, log_q)
        return _final(log_q, self.final_output)
