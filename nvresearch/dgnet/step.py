"""One DG-Net training iteration as the official trainer computes it (``trainer.py``: ``forward``, ``dis_update``,
``gen_update``), torch-only, for the Lightning module to call between its optimiser steps.

Gradient routing (as the official code's ``detach`` calls and module copies set it):

- the appearance code is detached inside :class:`~nvresearch.dgnet.models.AppearanceEncoder`, so no generation
  loss reaches E_a; E_a learns from the identity losses on real images and, on generated images, from the teacher's
  soft labels and the fine-grained labels, with the generated images **detached** (the student passes);
- the *frozen copy* of E_a (official ``id_a_copy``: eval mode with BatchNorm in batch-statistics mode, no dropout)
  sees the **live** generated images, so its identity loss ``L^c_id`` trains the generator only; here it is a
  :func:`torch.func.functional_call` on detached parameters and cloned buffers instead of a deep copy per iteration;
- the structure re-encoding takes one of two branches at random (official ``use_encoder_again``, p = 0.5): the live
  E_s on detached generated images (trains E_s), or a frozen E_s on the live images (trains G).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call
from torch.nn.modules.batchnorm import _BatchNorm

from nvresearch.dgnet.losses import (
    cross_entropy_pair,
    discriminator_loss,
    generator_adversarial_loss,
    generator_total,
    identity_loss,
    reconstruction_loss,
    teacher_loss,
    teacher_soft_labels,
)
from nvresearch.dgnet.models import AppearanceEncoder, DGNetGenerator, to_gray, upscale_small

__all__ = [
    "DGNetForward",
    "discriminator_objective",
    "dgnet_forward",
    "frozen_forward",
    "generator_objective",
    "running_stats_frozen",
]


@contextmanager
def running_stats_frozen(module: nn.Module) -> Iterator[None]:
    """Inside the block, ``module``'s BatchNorm layers in training mode still normalise with the batch's statistics
    but leave their running statistics as they are (momentum 0), so that the batches seen there do not enter the
    statistics used at test."""
    layers = [m for m in module.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    momenta = [m.momentum for m in layers]
    for m in layers:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum in zip(layers, momenta, strict=True):
            m.momentum = momentum


def frozen_forward(module: nn.Module, *args: Tensor, batchnorm_batch_stats: bool = True) -> object:
    """Call ``module`` as a frozen copy: eval mode (no dropout), BatchNorm on the batch's statistics if
    ``batchnorm_batch_stats`` (official ``train_bn``), parameters detached (no gradient reaches them, but it flows to
    the inputs) and running statistics updated on clones only (the module's own buffers are left as they are).
    """
    modes = {m: m.training for m in module.modules()}
    module.eval()
    if batchnorm_batch_stats:
        for m in module.modules():
            if isinstance(m, _BatchNorm):
                m.train()
    try:
        params = {k: v.detach() for k, v in module.named_parameters()}
        buffers = {k: v.clone() for k, v in module.named_buffers()}
        return functional_call(module, (params, buffers), args)
    finally:
        for m, mode in modes.items():
            m.training = mode


@dataclass
class DGNetForward:
    """The official ``forward`` outputs: structure codes, appearance codes, real-image logits (primary, fine) of
    ``x_a``, ``x_b`` and the positives, and the generated images."""

    s_a: Tensor
    s_b: Tensor
    f_a: Tensor
    f_b: Tensor
    p_a: tuple[Tensor, Tensor]
    p_b: tuple[Tensor, Tensor]
    pp_a: tuple[Tensor, Tensor]
    pp_b: tuple[Tensor, Tensor]
    x_ba: Tensor
    x_ab: Tensor
    x_a_recon: Tensor
    x_b_recon: Tensor
    x_a_recon_p: Tensor
    x_b_recon_p: Tensor


def dgnet_forward(
    gen: DGNetGenerator,
    ida: AppearanceEncoder,
    x_a: Tensor,
    x_b: Tensor,
    xp_a: Tensor,
    xp_b: Tensor,
    erase: Callable[[Tensor], Tensor] | None = None,
    upscale_height: int = 128,
) -> DGNetForward:
    """The official ``forward``: encode, swap, reconstruct; ``erase`` (random erasing) only for the identity logits.

    ``x_ba = G(s_b, f_a)`` has a's appearance and b's structure. E_a sees inputs no taller than ``upscale_height``
    up-sampled x2 (official ``scale2``; a no-op at 256x128; pass 0 to never up-sample).

    Shape:
        x_a, x_b, xp_a, xp_b: ``(B, 3, H, W)`` ImageNet-normalised.
    """
    up = (lambda x: upscale_small(x, upscale_height)) if upscale_height > 0 else (lambda x: x)
    s_a, s_b = gen.encode(to_gray(x_a)), gen.encode(to_gray(x_b))
    f_a, *p_a = ida(up(x_a))
    f_b, *p_b = ida(up(x_b))
    x_ba, x_ab = gen.decode(s_b, f_a), gen.decode(s_a, f_b)
    x_a_recon, x_b_recon = gen.decode(s_a, f_a), gen.decode(s_b, f_b)
    fp_a, *pp_a = ida(up(xp_a))
    fp_b, *pp_b = ida(up(xp_b))
    x_a_recon_p, x_b_recon_p = gen.decode(s_a, fp_a), gen.decode(s_b, fp_b)
    if erase is not None:
        _, *p_a = ida(erase(up(x_a)))
        _, *p_b = ida(erase(up(x_b)))
        _, *pp_a = ida(erase(up(xp_a)))
        _, *pp_b = ida(erase(up(xp_b)))
    return DGNetForward(
        s_a, s_b, f_a, f_b, tuple(p_a), tuple(p_b), tuple(pp_a), tuple(pp_b),
        x_ba, x_ab, x_a_recon, x_b_recon, x_a_recon_p, x_b_recon_p,
    )  # fmt: skip


def discriminator_objective(
    dis: nn.Module, fwd: DGNetForward, x_a: Tensor, x_b: Tensor, gp_weight: float = 0.01, gan_weight: float = 1.0
) -> tuple[Tensor, Tensor]:
    """The official ``dis_update`` loss: :func:`~nvresearch.dgnet.losses.discriminator_loss` for ``x_ba`` (detached)
    against ``x_a`` plus ``x_ab`` against ``x_b``, times ``gan_weight``. Returns the total and the penalties."""
    total, reg = [], []
    for fake, real in ((fwd.x_ba, x_a), (fwd.x_ab, x_b)):
        real = real.detach().requires_grad_()
        loss, r = discriminator_loss(dis(fake.detach()), dis(real), real, gp_weight)
        total.append(loss)
        reg.append(r)
    return gan_weight * (total[0] + total[1]), reg[0] + reg[1]


def generator_objective(
    gen: DGNetGenerator,
    ida: AppearanceEncoder,
    dis: nn.Module,
    teacher: nn.Module | None,
    fwd: DGNetForward,
    x_a: Tensor,
    x_b: Tensor,
    l_a: Tensor,
    l_b: Tensor,
    weights: dict[str, float],
    encoder_again: bool,
    teacher_style: int = 0,
    upscale_height: int = 128,
    generated_bn_stats: bool = True,
) -> tuple[Tensor, dict[str, Tensor | float]]:
    """The official ``gen_update`` objective (one backward for E_s, G and E_a).

    Args:
        teacher: the teacher (its BatchNorm in batch-statistics mode, official ``train_bn``), or None to skip the
            teacher term (official ``teacher: ""``).
        weights: :meth:`~nvresearch.dgnet.losses.DGNetLossWeights.at` of this iteration (``kl`` and ``fine`` are
            the official ``T_w`` and ``B_w``).
        encoder_again: the official random branch (``use_encoder_again >= uniform(0, 1)``): True re-encodes the
            **detached** generated images with the live E_s, False the live images with a frozen E_s.
        generated_bn_stats: whether E_a's student passes on the generated images update its BatchNorm running
            statistics (the official code: True); False keeps them to the real images (:func:`running_stats_frozen`),
            for short runs whose generator is still far from the real images.

    Returns:
        The total and every term (a term whose weight is off is a literal 0, as in the official code).
    """
    up = (lambda x: upscale_small(x, upscale_height)) if upscale_height > 0 else (lambda x: x)
    x_ba_copy, x_ab_copy = fwd.x_ba.detach(), fwd.x_ab.detach()
    if encoder_again:
        s_a_recon = gen.structure_encoder(to_gray(x_ab_copy))
        s_b_recon = gen.structure_encoder(to_gray(x_ba_copy))
    else:
        s_a_recon = frozen_forward(gen.structure_encoder, to_gray(fwd.x_ab))
        s_b_recon = frozen_forward(gen.structure_encoder, to_gray(fwd.x_ba))
    f_a_recon, *p_a_recon = frozen_forward(ida, up(fwd.x_ba))
    f_b_recon, *p_b_recon = frozen_forward(ida, up(fwd.x_ab))

    terms: dict[str, Tensor | float] = {}
    if weights["teacher_on"] and teacher is not None:
        with running_stats_frozen(ida) if not generated_bn_stats else nullcontext():
            _, *p_ba_student = ida(up(x_ba_copy))
            _, *p_ab_student = ida(up(x_ab_copy))
        with torch.no_grad():
            soft_ba = _soft_labels(teacher, up(x_ba_copy), teacher_style, l_a, l_b)
            soft_ab = _soft_labels(teacher, up(x_ab_copy), teacher_style, l_b, l_a)
        terms["teacher"] = teacher_loss(
            p_ba_student[0], soft_ba, p_ba_student[1], l_b, p_ab_student[0], soft_ab, p_ab_student[1], l_a,
            weights["kl"], weights["fine"],
        )  # fmt: skip
    else:
        terms["teacher"] = 0.0
    terms["recon_x"] = reconstruction_loss(fwd.x_a_recon, x_a) + reconstruction_loss(fwd.x_b_recon, x_b)
    terms["recon_xp"] = reconstruction_loss(fwd.x_a_recon_p, x_a) + reconstruction_loss(fwd.x_b_recon_p, x_b)
    terms["recon_s"] = (
        reconstruction_loss(s_a_recon, fwd.s_a) + reconstruction_loss(s_b_recon, fwd.s_b)
        if weights["recon_s_on"]
        else 0.0
    )
    terms["recon_f"] = (
        reconstruction_loss(f_a_recon, fwd.f_a) + reconstruction_loss(f_b_recon, fwd.f_b)
        if weights["recon_f_on"]
        else 0.0
    )
    if weights["recon_x_cyc_on"]:
        x_aba, x_bab = gen.decode(s_a_recon, f_a_recon), gen.decode(s_b_recon, f_b_recon)
        terms["recon_x_cyc"] = reconstruction_loss(x_aba, x_a) + reconstruction_loss(x_bab, x_b)
    else:
        terms["recon_x_cyc"] = 0.0
    terms["id"] = identity_loss(*fwd.p_a, l_a, *fwd.p_b, l_b, fine_weight=weights["fine_real"])
    terms["pid"] = cross_entropy_pair(fwd.pp_a[0], l_a, fwd.pp_b[0], l_b)
    terms["recon_id"] = cross_entropy_pair(p_a_recon[0], l_a, p_b_recon[0], l_b)
    terms["gan"] = generator_adversarial_loss(dis(fwd.x_ba)) + generator_adversarial_loss(dis(fwd.x_ab))
    return generator_total(terms, weights), terms


def _soft_labels(teacher: nn.Module, x: Tensor, style: int, appearance: Tensor, structure: Tensor) -> Tensor:
    needs_teacher = style in (0, 1, 4)
    logits = teacher(x) if needs_teacher else torch.zeros(x.shape[0], _num_classes(teacher), device=x.device)
    flipped = teacher(x.flip(-1)) if needs_teacher else None
    return teacher_soft_labels(logits, flipped, style, appearance, structure)


def _num_classes(teacher: nn.Module) -> int:
    last = [m for m in teacher.modules() if isinstance(m, nn.Linear)][-1]
    return last.out_features
