"""GAN objectives (hinge, least squares, non-saturating), the R1 gradient penalty and feature matching.

Every function reduces to a scalar by the mean over all elements of each discriminator output; lists of outputs
(multi-scale discriminators) are summed over scales.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

GAN_MODES = ("hinge", "lsgan", "nonsaturating")

Outputs = Tensor | Sequence[Tensor]


def _as_list(x: Outputs) -> list[Tensor]:
    return [x] if isinstance(x, Tensor) else list(x)


def d_loss_real(real: Outputs, mode: str = "hinge") -> Tensor:
    """Discriminator loss on real samples. hinge: ``mean relu(1 - D)``; lsgan: ``mean (D - 1)^2``;
    nonsaturating: ``mean softplus(-D)`` (= -log sigmoid D)."""
    return _total([_real_term(o, mode) for o in _as_list(real)])


def d_loss_fake(fake: Outputs, mode: str = "hinge") -> Tensor:
    """Discriminator loss on generated samples. hinge: ``mean relu(1 + D)``; lsgan: ``mean D^2``;
    nonsaturating: ``mean softplus(D)`` (= -log(1 - sigmoid D))."""
    return _total([_fake_term(o, mode) for o in _as_list(fake)])


def g_loss(fake: Outputs, mode: str = "hinge") -> Tensor:
    """Generator loss. hinge: ``-mean D``; lsgan: ``mean (D - 1)^2``; nonsaturating: ``mean softplus(-D)``."""
    return _total([-o.mean() if mode == "hinge" else _real_term(o, mode) for o in _as_list(fake)])


def _total(terms: list[Tensor]) -> Tensor:
    """Sum of the per-output terms, on their device (a CPU zero would not do on CUDA under every torch)."""
    if not terms:
        raise ValueError("got no discriminator outputs")
    total = terms[0]
    for t in terms[1:]:
        total = total + t
    return total


def _real_term(o: Tensor, mode: str) -> Tensor:
    if mode == "hinge":
        return F.relu(1 - o).mean()
    if mode == "lsgan":
        return ((o - 1) ** 2).mean()
    if mode == "nonsaturating":
        return F.softplus(-o).mean()
    raise ValueError(f"unknown GAN loss {mode!r}; choose one of {GAN_MODES}")


def _fake_term(o: Tensor, mode: str) -> Tensor:
    if mode == "hinge":
        return F.relu(1 + o).mean()
    if mode == "lsgan":
        return (o**2).mean()
    if mode == "nonsaturating":
        return F.softplus(o).mean()
    raise ValueError(f"unknown GAN loss {mode!r}; choose one of {GAN_MODES}")


def r1_penalty(
    outputs: Tensor, inputs: Tensor, reduction: str = "sample_mean", grad_scale: float = 1.0, per_sample: bool = False
) -> Tensor:
    """Zero-centred gradient penalty on real data (Mescheder et al. 2018, Eq. 9 without the gamma / 2).

    Args:
        outputs: discriminator outputs for ``inputs``, ``(B, ...)``; ``inputs`` must require grad and be part of
            their graph. The graph of the penalty is kept (``create_graph``) so that it can be back-propagated.
        reduction: what is differentiated. ``sample_mean``: each sample's output averaged over its positions,
            ``R = (1/B) sum_i ||d mean_p D_ip / d x_i||^2`` (independent of the batch size); ``sample_sum``: summed
            over positions; ``batch_mean``: the FUNIT reference, the gradient of the mean over the whole batch and
            all positions, ``R = (1/B) sum_i ||d mean_{j,p} D_jp / d x_i||^2`` (scales as 1 / B^2).
        grad_scale: multiply the outputs by this before differentiating and divide the gradient afterwards (pass
            the AMP loss scale so that half-precision gradients do not underflow).
        per_sample: return the ``(B,)`` squared gradient norms instead of their mean.

    Shape:
        outputs: ``(B, ...)``; inputs: ``(B, ...)``; returns a scalar (``(B,)`` with ``per_sample``).
    """
    if not inputs.requires_grad:
        raise ValueError("r1_penalty needs inputs that require grad (call inputs.requires_grad_() before D)")
    b = inputs.shape[0]
    flat = outputs.reshape(outputs.shape[0], -1).float()
    if reduction == "sample_mean":
        target = flat.mean(1).sum()
    elif reduction == "sample_sum":
        target = flat.sum()
    elif reduction == "batch_mean":
        target = flat.mean()
    else:
        raise ValueError(f"unknown reduction {reduction!r}; choose sample_mean, sample_sum or batch_mean")
    (grad,) = torch.autograd.grad(target * grad_scale, inputs, create_graph=True)
    grad = grad.float() / grad_scale
    norms = grad.pow(2).reshape(b, -1).sum(1)
    return norms if per_sample else norms.mean()


def feature_matching_loss(fake_features: Outputs, real_features: Outputs, distance: str = "l1") -> Tensor:
    """Mean distance between discriminator features of generated and real images, summed over feature sets.

    ``l1``: ``mean |f - r|``; ``l2``: ``mean (f - r)^2``. The real features are not detached: pass detached
    features when they must not receive gradient.
    """
    fakes, reals = _as_list(fake_features), _as_list(real_features)
    if len(fakes) != len(reals):
        raise ValueError(f"got {len(fakes)} fake and {len(reals)} real feature sets")
    if distance not in ("l1", "l2"):
        raise ValueError(f"distance must be 'l1' or 'l2', got {distance!r}")
    terms = []
    for f, r in zip(fakes, reals, strict=True):
        if f.shape != r.shape:
            raise ValueError(f"feature shapes differ: {tuple(f.shape)} vs {tuple(r.shape)}")
        d = f - r
        terms.append(d.abs().mean() if distance == "l1" else d.pow(2).mean())
    return _total(terms)
