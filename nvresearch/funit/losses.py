"""FUNIT objectives (Liu et al., ICCV 2019, Eq. 2-4) as the reference computes them.

Generator: ``L_G = gan_w L_adv + recon_w L_R + fm_w (L_FM_c + L_FM_m)`` with hinge L_adv on both the translation
``x_t = G(x_a, x_b)`` (label b) and the reconstruction ``x_r = G(x_a, x_a)`` (label a), ``L_R = mean |x_r - x_a|``
and feature matching of D's spatially pooled features, ``mean |D_f(x_r) - D_f(x_a)|`` and ``mean |D_f(x_t) -
D_f(x_b)|``. Discriminator: ``L_D = gan_w (mean relu(1 - D_b(x_b)) + mean relu(1 + D_b(x_t))) + gp_w R1(x_b)``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from nvresearch.core.gan import d_loss_fake, d_loss_real, g_loss, r1_penalty
from nvresearch.funit.models import FewShotGenerator, MultiTaskDiscriminator

GP_MODES = ("reference", "clean")


def gradient_penalty(
    logits: Tensor, images: Tensor, mode: str = "reference", chunk: int = 8, grad_scale: float = 1.0
) -> Tensor:
    """Zero-centred R1 penalty on real class images.

    ``clean``: ``(1/B) sum_i ||d mean_p D_ip / d x_i||^2`` (per-image patch mean, independent of the batch size).
    ``reference``: the official code differentiates the mean over the whole (per-GPU) batch, which divides the clean
    value by the squared batch size; the reference ran 8 images per GPU, so by default the batch is cut into
    chunks of ``chunk`` images, each penalised as the reference does (clean / |chunk|^2), and the chunks averaged.

    Shape:
        logits: ``(B, h, w)`` for ``images`` ``(B, 3, H, W)`` (which must require grad); returns a scalar.
    """
    if mode not in GP_MODES:
        raise ValueError(f"gp mode must be one of {GP_MODES}, got {mode!r}")
    per = r1_penalty(logits, images, "sample_mean", grad_scale=grad_scale, per_sample=True)
    if mode == "clean":
        return per.mean()
    if chunk < 1:
        raise ValueError(f"gp chunk must be >= 1, got {chunk}")
    parts = [c.mean() / c.numel() ** 2 for c in per.split(chunk)]
    return torch.stack(parts).mean()


def _acc(logits: Tensor, positive: bool) -> Tensor:
    return ((logits > 0) if positive else (logits < 0)).float().mean().detach()


def generator_losses(
    gen: FewShotGenerator,
    dis: MultiTaskDiscriminator,
    x_a: Tensor,
    label_a: Tensor,
    x_b: Tensor,
    label_b: Tensor,
    gan_w: float = 1.0,
    recon_w: float = 0.1,
    fm_w: float = 1.0,
) -> dict[str, Tensor]:
    """The generator step's terms (funit_model.py 'gen_update'); ``loss`` is the weighted total.

    Shape:
        x_a, x_b: ``(B, 3, H, W)`` content and class images; label_a, label_b: ``(B,)`` source-class indices.
    """
    content = gen.encode_content(x_a)
    s_a, s_b = gen.encode_class(x_a), gen.encode_class(x_b)
    x_t = gen.decode(content, s_b)
    x_r = gen.decode(content, s_a)
    logit_t, feat_t = dis(x_t, label_b)
    logit_r, feat_r = dis(x_r, label_a)
    with torch.no_grad():
        feat_a = dis(x_a, label_a)[1].mean((2, 3))
        feat_b = dis(x_b, label_b)[1].mean((2, 3))
    adv_t, adv_r = g_loss(logit_t, "hinge"), g_loss(logit_r, "hinge")
    adv = 0.5 * (adv_t + adv_r)
    recon = (x_r - x_a).abs().mean()
    fm_c = (feat_r.mean((2, 3)) - feat_a).abs().mean()
    fm_m = (feat_t.mean((2, 3)) - feat_b).abs().mean()
    loss = gan_w * adv + recon_w * recon + fm_w * (fm_c + fm_m)
    return {
        "loss": loss,
        "adv": adv,
        "recon": recon,
        "fm_content": fm_c,
        "fm_class": fm_m,
        "acc_fake": 0.5 * (_acc(logit_t, True) + _acc(logit_r, True)),
    }


def discriminator_losses(
    gen: FewShotGenerator,
    dis: MultiTaskDiscriminator,
    x_a: Tensor,
    x_b: Tensor,
    label_b: Tensor,
    gan_w: float = 1.0,
    gp_w: float = 10.0,
    gp_mode: str = "reference",
    gp_chunk: int = 8,
    grad_scale: float = 1.0,
) -> dict[str, Tensor]:
    """The discriminator step's terms (funit_model.py 'dis_update'): hinge on (x_b real, x_t fake) with label b,
    plus ``gp_w`` times the R1 penalty on x_b (:func:`gradient_penalty`). ``loss`` is the weighted total.

    Shape:
        x_a, x_b: ``(B, 3, H, W)``; label_b: ``(B,)``.
    """
    with torch.no_grad():
        x_t = gen(x_a, x_b)
    real = x_b.detach().requires_grad_(gp_w > 0)
    logit_real, _ = dis(real, label_b)
    logit_fake, _ = dis(x_t.detach(), label_b)
    l_real, l_fake = d_loss_real(logit_real, "hinge"), d_loss_fake(logit_fake, "hinge")
    gp = gradient_penalty(logit_real, real, gp_mode, gp_chunk, grad_scale) if gp_w > 0 else l_real.new_zeros(())
    return {
        "loss": gan_w * (l_real + l_fake) + gp_w * gp,
        "real": l_real,
        "fake": l_fake,
        "gp": gp,
        "acc": 0.5 * (_acc(logit_real, True) + _acc(logit_fake, False)),
    }
