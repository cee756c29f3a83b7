"""DG-Net losses (Zheng et al., CVPR 2019, Sec. 3.1 generative and 3.2 discriminative module) as the official
``trainer.py`` computes them (the "paper" column names each term as Sec. 3 does).

Notation (official names in brackets): ``x_a, x_b`` two real batches with labels ``l_a, l_b``; ``xp_a`` another
image of ``x_a``'s identity; ``s = E_s(gray(x))``; ``f = E_a(x)`` the detached appearance code; ``x_ba = G(s_b,
f_a)`` (a's appearance on b's structure), ``x_ab = G(s_a, f_b)``.

| term | here | paper | official weight |
|---|---|---|---|
| self reconstruction ``|G(s_a, f_a) - x_a|_1`` | :func:`reconstruction_loss` | L^img_1 | recon_x_w 5 |
| same-identity reconstruction ``|G(s_a, f_xp_a) - x_a|_1`` | :func:`reconstruction_loss` | L^img_2 | recon_xp_w 5 |
| appearance / structure code reconstruction | :func:`reconstruction_loss` | L^code | recon_f_w, recon_s_w 0 -> 1 |
| cycle ``|G(s~_a, f~_a) - x_a|_1`` (not in the paper) | :func:`reconstruction_loss` | - | recon_x_cyc_w 0 -> 2 |
| identity on real images | :func:`identity_loss` | L^s_id | id_w 1, pid_w 1 |
| identity of generated images (frozen E_a copy) | :func:`cross_entropy_pair` | L^c_id | recon_id_w 0.5 |
| adversarial (LSGAN, x2 on the generator side) | :func:`generator_adversarial_loss` | L_adv | gan_w 1 |
| discriminator + gradient penalty on real | :func:`discriminator_loss` | L_adv | gan_w 1, LAMBDA 0.01 |
| primary (teacher KL) + fine-grained mining | :func:`teacher_loss` | L_prim, L_fine | teacher_w 0 -> 2 |

The ramps and the effective weights (``teacher_w`` multiplies the whole teacher term and, times ``B_w``, the
fine-grained head's loss on real images) are in :class:`DGNetLossWeights`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from nvresearch.core.gan import d_loss_fake, d_loss_real, g_loss, r1_penalty

TEACHER_STYLES = (0, 1, 2, 3, 4)


def reconstruction_loss(output: Tensor, target: Tensor) -> Tensor:
    """``mean |output - sg(target)|`` over all elements (official ``recon_criterion``; the target never gets a
    gradient). Used for images (L^img_1, L^img_2, the cycle term) and for codes (L^code).

    Shape:
        output, target: the same shape; returns a scalar.
    """
    if output.shape != target.shape:
        raise ValueError(f"reconstruction needs equal shapes, got {tuple(output.shape)} and {tuple(target.shape)}")
    return (output - target.detach()).abs().mean()


def cross_entropy_pair(logits_a: Tensor, labels_a: Tensor, logits_b: Tensor, labels_b: Tensor) -> Tensor:
    """``CE(logits_a, labels_a) + CE(logits_b, labels_b)``, each the batch mean (``nn.CrossEntropyLoss``).

    The positives' loss ``L_pid`` (``pid_w``) and the generated images' identity loss ``L^c_id``
    (``recon_id_w``: the primary logits of the frozen E_a copy on ``x_ba`` / ``x_ab`` against ``l_a`` / ``l_b``).

    Shape:
        logits: ``(B, K)``; labels: ``(B,)``; returns a scalar.
    """
    return F.cross_entropy(logits_a, labels_a) + F.cross_entropy(logits_b, labels_b)


def identity_loss(
    primary_a: Tensor,
    fine_a: Tensor,
    labels_a: Tensor,
    primary_b: Tensor,
    fine_b: Tensor,
    labels_b: Tensor,
    fine_weight: float,
) -> Tensor:
    """Identity loss on real images, L^s_id (official ``loss_id``, ``ID_style: AB``):
    ``CE(p1_a, l_a) + CE(p1_b, l_b) + fine_weight * (CE(p2_a, l_a) + CE(p2_b, l_b))``.

    ``fine_weight`` is ``teacher_w * B_w`` in the official code (0 until the teacher ramp starts, then up to 0.4).

    Shape:
        logits: ``(B, K)``; labels: ``(B,)``; returns a scalar.
    """
    loss = cross_entropy_pair(primary_a, labels_a, primary_b, labels_b)
    return loss + fine_weight * cross_entropy_pair(fine_a, labels_a, fine_b, labels_b)


def generator_adversarial_loss(fake_outputs: list[Tensor]) -> Tensor:
    """The generator's LSGAN term for one batch of generated images (official ``calc_gen_loss``):
    ``sum_scales 2 * mean((D_s(x) - 1)^2)``. The official total adds it for ``x_ba`` and ``x_ab``.

    Shape:
        fake_outputs: one ``(B, 1, h_s, w_s)`` map per scale; returns a scalar.
    """
    return 2.0 * g_loss(fake_outputs, "lsgan")


def discriminator_loss(
    fake_outputs: list[Tensor], real_outputs: list[Tensor], real: Tensor, gp_weight: float = 0.01
) -> tuple[Tensor, Tensor]:
    """The discriminator's LSGAN loss with the gradient penalty on real images (official ``calc_dis_loss``).

    ``sum_s [mean(D_s(fake)^2) + mean((D_s(real) - 1)^2) + gp_weight * (1/B) sum_i ||d(sum_p D_s(real)_ip)/dx_i||^2]``:
    one penalty per scale, each the gradient of the **sum** over that scale's patches with respect to the
    full-resolution real image. The official total sums this over the two directions (``x_ba`` vs ``x_a``,
    ``x_ab`` vs ``x_b``).

    Args:
        fake_outputs / real_outputs: D's maps for generated (detached) and real images, finest scale first.
        real: the real images D saw; must require grad and be part of ``real_outputs``' graph.
        gp_weight: the official ``LAMBDA``.

    Returns:
        The total (penalty included) and the weighted penalty alone.

    Shape:
        maps: ``(B, 1, h_s, w_s)`` per scale; real: ``(B, 3, H, W)``; returns two scalars.
    """
    if len(fake_outputs) != len(real_outputs):
        raise ValueError(f"got {len(fake_outputs)} fake and {len(real_outputs)} real discriminator scales")
    reg = gp_weight * torch.stack([r1_penalty(o, real, reduction="sample_sum") for o in real_outputs]).sum()
    loss = d_loss_fake(fake_outputs, "lsgan") + d_loss_real(real_outputs, "lsgan")
    return loss + reg, reg


def flip_horizontal(x: Tensor) -> Tensor:
    """Mirror an image batch left-right (the teacher's and the evaluation's test-time flip).

    Shape:
        x: ``(B, C, H, W)``; returns the same shape.
    """
    return x.flip(-1)


@torch.no_grad()
def teacher_soft_labels(
    teacher_logits: Tensor,
    flipped_logits: Tensor | None = None,
    style: int = 0,
    appearance_labels: Tensor | None = None,
    structure_labels: Tensor | None = None,
) -> Tensor:
    """The teacher's target distribution for a generated image (Sec. 3.2, "primary feature learning";
    official ``predict_label``), each row normalised to sum 1.

    Styles: 0 (reference, "dynamic soft label") ``(softmax T(x) + softmax T(flip x)) / 2``; 1 its arg-max as a
    one-hot; 2 one-hot of the appearance label; 3 uniform (LSRO); 4 style 0 restricted to the appearance and
    structure labels and renormalised.

    Args:
        teacher_logits: ``T(x)``; flipped_logits: ``T(flip x)`` (styles 0, 1, 4).
        appearance_labels / structure_labels: ``(B,)`` (style 2: appearance; style 4: both).

    Shape:
        logits: ``(B, K)``; returns ``(B, K)``.
    """
    if style not in TEACHER_STYLES:
        raise ValueError(f"teacher style must be one of {TEACHER_STYLES}, got {style}")
    b, k = teacher_logits.shape
    if style in (0, 1, 4):
        if flipped_logits is None:
            raise ValueError(f"teacher style {style} needs the logits of the flipped images")
        q = teacher_logits.softmax(1) + flipped_logits.softmax(1)
        if style == 1:
            q = F.one_hot(q.argmax(1), k).to(q.dtype)
        elif style == 4:
            if appearance_labels is None or structure_labels is None:
                raise ValueError("teacher style 4 needs the appearance and the structure labels")
            mask = torch.zeros_like(q)
            mask[torch.arange(b), appearance_labels] = 1
            mask[torch.arange(b), structure_labels] = 1
            q = q * mask
    elif style == 2:
        if appearance_labels is None:
            raise ValueError("teacher style 2 needs the appearance labels")
        q = F.one_hot(appearance_labels, k).to(teacher_logits.dtype)
    else:
        q = torch.ones_like(teacher_logits)
    return q / q.sum(1, keepdim=True)


def kl_to_teacher(student_logits: Tensor, soft_labels: Tensor) -> Tensor:
    """``(1/B) sum_i sum_k q_ik (log q_ik - log softmax(p)_ik)`` (official ``KLDivLoss(size_average=False)``
    divided by the batch size). Terms with ``q = 0`` count 0.

    Shape:
        student_logits, soft_labels: ``(B, K)``; returns a scalar.
    """
    return F.kl_div(student_logits.log_softmax(1), soft_labels, reduction="sum") / student_logits.shape[0]


def teacher_loss(
    primary_ba: Tensor,
    soft_ba: Tensor,
    fine_ba: Tensor,
    labels_b: Tensor,
    primary_ab: Tensor,
    soft_ab: Tensor,
    fine_ab: Tensor,
    labels_a: Tensor,
    kl_weight: float = 1.0,
    fine_weight: float = 0.2,
) -> Tensor:
    """Primary feature learning plus fine-grained feature mining on generated images (official
    ``loss_teacher``, ``ID_style: AB``): ``kl_weight * [KL(q_ba || p1(x_ba)) + KL(q_ab || p1(x_ab))]
    + fine_weight * [CE(p2(x_ba), l_b) + CE(p2(x_ab), l_a)]``.

    The student's logits come from the live E_a on **detached** generated images. The fine-grained head must find
    the identity of the **structure** provider (``x_ba`` carries b's structure, so ``l_b``). The official total
    multiplies this by ``teacher_w`` (0 -> 2), so the effective fine-grained weight is up to 0.4.

    Args:
        kl_weight: official ``T_w`` (1). fine_weight: official ``B_w`` (0.2, the paper's alpha).

    Shape:
        logits / soft labels: ``(B, K)``; labels: ``(B,)``; returns a scalar.
    """
    kl = kl_to_teacher(primary_ba, soft_ba) + kl_to_teacher(primary_ab, soft_ab)
    return kl_weight * kl + fine_weight * cross_entropy_pair(fine_ba, labels_b, fine_ab, labels_a)


def ramp(iteration: int, start: int, scale: float, initial: float, maximum: float) -> float:
    """A warm-up weight: ``min(initial + scale * (iteration - start), maximum)`` after ``start``, ``initial`` before.

    The official trainer adds ``scale`` to the weight in its config on every iteration ``> start`` (in place,
    before the total is formed), so at iteration ``t`` the total uses ``ramp(t)``.
    """
    if iteration <= start:
        return float(initial)
    return float(min(initial + scale * (iteration - start), maximum))


@dataclass(frozen=True)
class DGNetLossWeights:
    """The weights of the generator/encoder objective and their schedule (official ``configs/latest.yaml``).

    Sec. 3.3 / 4.1 of the paper: lambda_img = 5, lambda_id = 0.5, lambda_prim = 2, lambda_fine = 0.2, primary and
    fine-grained learning switched on after 30k iterations. The official code ramps ``recon_f_w`` / ``recon_s_w`` to
    1, ``recon_x_cyc_w`` and ``teacher_w`` to 2 by ``warm_scale`` per iteration after ``warm_iter``.
    """

    gan: float = 1.0
    recon_x: float = 5.0
    recon_xp: float = 5.0
    id: float = 1.0
    pid: float = 1.0
    recon_id: float = 0.5
    recon_f: float = 0.0
    recon_s: float = 0.0
    recon_x_cyc: float = 0.0
    teacher: float = 0.0
    kl: float = 1.0
    fine: float = 0.2
    max_recon: float = 1.0
    max_cyc: float = 2.0
    max_teacher: float = 2.0
    warm_iter: int = 30_000
    warm_teacher_iter: int = 30_000
    warm_scale: float = 0.0005

    def at(self, iteration: int) -> dict[str, float]:
        """Every weight the official total uses at 0-based ``iteration``.

        ``recon_f``, ``recon_s``, ``recon_x_cyc``, ``teacher``: the ramped weights (after this iteration's step).
        ``fine_real``: the fine head's weight in :func:`identity_loss`, ``teacher * fine`` with the teacher weight
        **before** this iteration's step (the official code reads it before the ramp). ``<name>_on``: whether the
        term is computed at all (1.0) or a literal 0 (0.0): the official code tests the weight before the step, so
        on the first ramp iteration the weight is ``warm_scale`` but the term is still 0.
        """
        w = {k: float(getattr(self, k)) for k in ("gan", "recon_x", "recon_xp", "id", "pid", "recon_id", "kl")}
        ramps = {
            "recon_f": (self.warm_iter, self.recon_f, self.max_recon),
            "recon_s": (self.warm_iter, self.recon_s, self.max_recon),
            "recon_x_cyc": (self.warm_iter, self.recon_x_cyc, self.max_cyc),
            "teacher": (self.warm_teacher_iter, self.teacher, self.max_teacher),
        }
        for name, (start, initial, maximum) in ramps.items():
            w[name] = ramp(iteration, start, self.warm_scale, initial, maximum)
            w[f"{name}_on"] = float(ramp(iteration - 1, start, self.warm_scale, initial, maximum) > 0)
        w["fine"] = float(self.fine)
        w["fine_real"] = ramp(iteration - 1, self.warm_teacher_iter, self.warm_scale, self.teacher, self.max_teacher)
        w["fine_real"] *= self.fine
        return w


def generator_total(terms: dict[str, Tensor | float], weights: dict[str, float]) -> Tensor:
    """The official ``loss_gen_total``: each term times its weight, summed.

    Args:
        terms: ``gan`` (both directions summed), ``recon_x``, ``recon_xp``, ``recon_f``, ``recon_s``, ``recon_x_cyc``
            (each summed over a and b), ``id``, ``pid``, ``recon_id``, ``teacher`` (:func:`teacher_loss`); a term
            whose weight is off may be a literal 0.
        weights: :meth:`DGNetLossWeights.at`.
    """
    names = ("gan", "recon_x", "recon_xp", "recon_f", "recon_s", "recon_x_cyc", "id", "pid", "recon_id", "teacher")
    missing = [n for n in names if n not in terms]
    if missing:
        raise KeyError(f"generator_total needs the terms {missing}")
    total = sum(weights[n] * terms[n] for n in names)
    return total if isinstance(total, Tensor) else torch.as_tensor(total)
