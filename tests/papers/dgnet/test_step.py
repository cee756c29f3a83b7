"""One DG-Net iteration on tiny networks: which loss reaches which network (the official detach semantics), the
frozen copies, the random structure re-encoding branch, and the loss values at initialisation."""

from __future__ import annotations

import math

import pytest
import torch

from nvresearch.dgnet import AppearanceEncoder, DGNetDiscriminator, DGNetGenerator, DGNetLossWeights, TeacherNet
from nvresearch.dgnet.step import (
    dgnet_forward,
    discriminator_objective,
    frozen_forward,
    generator_objective,
    running_stats_frozen,
)

K = 5  # identities


@pytest.fixture(scope="module")
def nets():
    torch.manual_seed(0)
    ida = AppearanceEncoder(K, backbone="tiny", bottleneck=16)
    gen = DGNetGenerator(base_channels=4, num_downsample=1, num_res=2, appearance_dim=ida.code_dim, mlp_dim=8)
    dis = DGNetDiscriminator(base_channels=4, num_downsample=1, num_res=1, num_scales=2)
    teacher = TeacherNet(K, backbone="tiny", bottleneck=16).eval()
    return gen, ida, dis, teacher


def _batch():
    g = torch.Generator().manual_seed(1)
    x = lambda: torch.randn(2, 3, 40, 24, generator=g)  # noqa: E731
    return x(), x(), x(), x(), torch.tensor([0, 1]), torch.tensor([2, 3])


def _grads(module):
    return sum(float(p.grad.abs().sum()) for p in module.parameters() if p.grad is not None)


def _zero(*modules):
    for m in modules:
        for p in m.parameters():
            p.grad = None


def _weights(**only):
    """Every weight 0 except the given ones; every term computed."""
    w = {k: 0.0 for k in DGNetLossWeights().at(0)}
    w.update({k: 1.0 for k in w if k.endswith("_on")}, kl=1.0, fine=0.2)
    w.update(only)
    return w


def _run(nets, weights, encoder_again=True):
    gen, ida, dis, teacher = nets
    x_a, x_b, xp_a, xp_b, l_a, l_b = _batch()
    _zero(gen, ida, dis)
    fwd = dgnet_forward(gen, ida, x_a, x_b, xp_a, xp_b, upscale_height=0)
    total, terms = generator_objective(
        gen, ida, dis, teacher, fwd, x_a, x_b, l_a, l_b, weights, encoder_again, upscale_height=0
    )
    total.backward()
    return terms


def test_generation_losses_never_reach_the_appearance_encoder(nets):
    """Spec H.5: with the identity losses off, E_a gets no gradient at all (detached code, frozen copy)."""
    gen, ida, dis, _ = nets
    _run(nets, _weights(gan=1.0, recon_x=5.0, recon_xp=5.0, recon_f=1.0, recon_s=1.0, recon_x_cyc=2.0, recon_id=0.5))
    assert _grads(ida) == 0.0
    assert _grads(gen.decoder) > 0 and _grads(gen.structure_encoder) > 0 and _grads(gen.mlp_w) > 0
    _run(nets, _weights(id=1.0))
    assert _grads(ida) > 0 and _grads(gen) == 0.0


def test_teacher_term_trains_only_the_appearance_encoder(nets):
    gen, ida, _, _ = nets
    terms = _run(nets, _weights(teacher=2.0))
    assert terms["teacher"].item() > 0
    assert _grads(ida.classifier1) > 0 and _grads(ida.classifier2) > 0 and _grads(ida.model) > 0
    assert _grads(gen) == 0.0  # the students see detached generated images


def test_structure_reencoding_branches(nets):
    gen = nets[0]
    _run(nets, _weights(recon_s=1.0), encoder_again=True)  # live E_s on detached images
    assert _grads(gen.structure_encoder) > 0 and _grads(gen.decoder) == 0.0
    _run(nets, _weights(recon_s=1.0), encoder_again=False)  # frozen E_s on live images
    assert _grads(gen.decoder) > 0


def test_generated_images_can_be_kept_out_of_the_running_statistics(nets):
    """``generated_bn_stats=False``: the student passes on generated images still learn (teacher term) but leave
    E_a's BatchNorm running statistics to the real images; the default (official) lets them in."""
    gen, ida, dis, teacher = nets
    x_a, x_b, xp_a, xp_b, l_a, l_b = _batch()
    ida.train()

    def stats_after_objective(generated_bn_stats: bool) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        _zero(gen, ida, dis)
        fwd = dgnet_forward(gen, ida, x_a, x_b, xp_a, xp_b, upscale_height=0)
        before = {k: v.clone() for k, v in ida.state_dict().items() if "running" in k}
        total, _ = generator_objective(
            gen, ida, dis, teacher, fwd, x_a, x_b, l_a, l_b, _weights(teacher=2.0), True, upscale_height=0,
            generated_bn_stats=generated_bn_stats,
        )  # fmt: skip
        total.backward()
        assert _grads(ida) > 0  # the students still learn
        return before, {k: v.clone() for k, v in ida.state_dict().items() if "running" in k}

    before, after = stats_after_objective(False)
    assert all(torch.equal(before[k], after[k]) for k in before)
    before, after = stats_after_objective(True)
    assert any(not torch.equal(before[k], after[k]) for k in before)
    momenta = [m.momentum for m in ida.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with running_stats_frozen(ida):
        ida(x_a)
    assert [m.momentum for m in ida.modules() if isinstance(m, torch.nn.BatchNorm2d)] == momenta  # restored


def test_frozen_forward_leaves_the_module_as_it_was(nets):
    ida = nets[1]
    ida.train()
    before = {k: v.clone() for k, v in ida.state_dict().items()}
    x = torch.randn(2, 3, 40, 24, requires_grad=True)
    _zero(ida)
    _, p1, _ = frozen_forward(ida, x)
    p1.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0 and _grads(ida) == 0.0
    assert all(torch.equal(before[k], v) for k, v in ida.state_dict().items())  # running stats untouched
    assert ida.training and ida.classifier1.add_block[2].training
    torch.manual_seed(3)
    a = frozen_forward(ida, x)[1]
    torch.manual_seed(4)
    assert torch.equal(a, frozen_forward(ida, x)[1])  # no dropout


def test_loss_values_at_initialisation(nets):
    """Spec E.21 at small scale: D ~ 2 directions x 2 scales x 1, L_gan ~ 2 x 2 x 2 x 1, L_id ~ 2 ln K
    (the heads' last layers start at N(0, 0.001^2))."""
    gen, ida, dis, teacher = nets
    x_a, x_b, xp_a, xp_b, l_a, l_b = _batch()
    _zero(gen, ida, dis)
    fwd = dgnet_forward(gen, ida, x_a, x_b, xp_a, xp_b, upscale_height=0)
    d_loss, reg = discriminator_objective(dis, fwd, x_a, x_b)
    assert d_loss.item() == pytest.approx(4.0, abs=0.05) and 0 <= reg.item() < 0.01
    d_loss.backward()
    assert _grads(dis) > 0 and _grads(gen) == 0.0 and _grads(ida) == 0.0  # generated images detached for D
    _, terms = generator_objective(
        gen, ida, dis, teacher, fwd, x_a, x_b, l_a, l_b, DGNetLossWeights().at(0), True, upscale_height=0
    )
    assert terms["gan"].item() == pytest.approx(8.0, abs=0.1)
    assert terms["id"].item() == pytest.approx(2 * math.log(K), abs=0.05)
    assert terms["recon_id"].item() == pytest.approx(2 * math.log(K), abs=0.05)
    assert terms["teacher"] == 0.0 and terms["recon_f"] == 0.0  # off before the warm-up, literal zeros
