"""The stage-2 ablations of the official ``2_meta_learning.py``: ``before_z`` features and Meta-SGD."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import load_script

from nvresearch.core.geometry import mean_angular_error
from nvresearch.core.meta import batched_adapt, batched_meta_loss
from nvresearch.faze import FazeGazeEstimator, personalize, predict
from nvresearch.faze.adagen import AdaGENConfig, PersonCodes, meta_train, mlp_from_dted_before_z, mlp_meta_loss
from nvresearch.faze.metrics import adapt_tasks, personalization_curve
from nvresearch.faze.models import DTED, GazeMLP


def _dted() -> DTED:
    torch.manual_seed(0)
    return DTED(growth_rate=4, decoder_input_c=8, image_size=(32, 64), num_blocks=2)


def _persons(n: int, samples: int, features: int, seed: int = 0) -> list[PersonCodes]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        x = torch.randn(samples, features, generator=g)
        py = torch.tanh(x[:, :2]) * 0.4 + 0.05 * torch.randn(2, generator=g)  # a person offset
        v = torch.stack([py[:, 0].cos() * py[:, 1].sin(), py[:, 0].sin(), py[:, 0].cos() * py[:, 1].cos()], dim=1)
        out.append(PersonCodes(f"p{i}", x, v, py))
    return out


def test_dted_pooled_features_are_the_input_of_fc_enc() -> None:
    dted = _dted().eval()
    images = torch.randn(3, 3, 32, 64)
    pooled = dted.pooled_features(images)
    assert pooled.shape == (3, dted.encoder.out_channels)
    for mine, ref in zip(dted.codes_from_features(pooled), dted.encode(images)):
        torch.testing.assert_close(mine, ref)


def test_before_z_mlp_starts_from_the_dted_fc_enc_and_gaze_head() -> None:
    dted = _dted().eval()
    mlp = mlp_from_dted_before_z(dted.fc_enc, dted.gaze1, dted.gaze2, dted.z_app)
    torch.testing.assert_close(mlp.layer0.weight, dted.fc_enc.weight)
    torch.testing.assert_close(mlp.layer0.bias, dted.fc_enc.bias)
    torch.testing.assert_close(mlp.layer1.weight, dted.gaze1.weight)
    torch.testing.assert_close(mlp.layer2.weight, dted.gaze2.weight)
    assert mlp.layer0.weight.data_ptr() != dted.fc_enc.weight.data_ptr()  # a copy: fine-tuning leaves the DT-ED
    feats = dted.pooled_features(torch.randn(5, 3, 32, 64))
    out = mlp(feats)
    assert out.shape == (5, 3)
    # the official GazeEstimationModelPreExtended: fc_enc, the (unnormalised) gaze code's outputs, SELU, head, SELU
    z = dted.fc_enc(feats)[:, dted.z_app : dted.z_app + 3 * dted.z_gaze]
    ref = F.normalize(dted.gaze2(F.selu(dted.gaze1(F.selu(z)))), dim=-1)
    torch.testing.assert_close(out, ref)
    with pytest.raises(ValueError, match=f"expects {dted.encoder.out_channels} input features"):
        mlp(torch.zeros(2, 6))
    with pytest.raises(ValueError, match="must fit in pre_out"):
        GazeMLP(6, 64, pre_features=16, pre_out=10, pre_keep_start=8)


@pytest.mark.parametrize("first_order", [True, False])
def test_mlp_meta_loss_with_a_first_layer_equals_the_generic_one(first_order: bool) -> None:
    torch.manual_seed(1)
    mlp = GazeMLP(6, 8, pre_features=10, pre_out=12, pre_keep_start=4)
    sx, qx = torch.randn(3, 4, 10), torch.randn(3, 5, 10)
    sy, qy = F.normalize(torch.randn(3, 4, 3), dim=-1), F.normalize(torch.randn(3, 5, 3), dim=-1)
    a = mlp_meta_loss(mlp, sx, sy, qx, qy, 2, 1e-2, first_order)
    b = batched_meta_loss(mlp, sx, sy, qx, qy, mean_angular_error, 2, 1e-2, first_order)
    torch.testing.assert_close(a, b)
    for ga, gb in zip(torch.autograd.grad(a, list(mlp.parameters())), torch.autograd.grad(b, list(mlp.parameters()))):
        torch.testing.assert_close(ga, gb, rtol=1e-4, atol=1e-5)


def test_meta_sgd_step_scales_are_buffers_of_the_parameters_shapes() -> None:
    mlp = GazeMLP(meta_sgd=True)
    scales = mlp.step_scales()
    assert list(scales) == [n for n, _ in mlp.named_parameters()]
    for name, p in mlp.named_parameters():
        assert scales[name].shape == p.shape and bool((scales[name] == 1).all())
    assert sum(p.numel() for p in mlp.parameters()) == 643  # the multipliers are not parameters of the MLP
    assert "step_layer1_weight" in mlp.state_dict()
    assert GazeMLP().step_scales() == {}


def test_meta_sgd_scales_change_the_inner_update() -> None:
    torch.manual_seed(2)
    mlp = GazeMLP(6, 8)
    sx, qx = torch.randn(2, 3, 6), torch.randn(2, 4, 6)
    sy, qy = F.normalize(torch.randn(2, 3, 3), dim=-1), F.normalize(torch.randn(2, 4, 3), dim=-1)
    ones = [torch.ones_like(p) for p in mlp.parameters()]
    plain = mlp_meta_loss(mlp, sx, sy, qx, qy, 3, 1e-2)
    torch.testing.assert_close(mlp_meta_loss(mlp, sx, sy, qx, qy, 3, 1e-2, step_scales=ones), plain)
    twice = mlp_meta_loss(mlp, sx, sy, qx, qy, 3, 1e-2, step_scales=[2 * s for s in ones])
    torch.testing.assert_close(twice, mlp_meta_loss(mlp, sx, sy, qx, qy, 3, 2e-2))
    # element-wise: freezing the output layer (scale 0) is not the plain update, and the scales get gradients
    scales = [torch.ones_like(p).requires_grad_(True) for p in mlp.parameters()]
    with torch.no_grad():
        scales[2].zero_()
        scales[3].zero_()
    frozen = mlp_meta_loss(mlp, sx, sy, qx, qy, 3, 1e-2, first_order=True, step_scales=scales)
    assert not torch.allclose(frozen, plain)
    grads = torch.autograd.grad(frozen, scales)
    assert all(g.abs().sum() > 0 for g in grads[:2])


def test_meta_sgd_meta_training_learns_the_steps() -> None:
    persons = _persons(6, 40, 6)
    cfg = AdaGENConfig(
        mode="textbook",
        first_order=True,
        inner_steps=3,
        inner_lr=1e-3,
        outer_lr=1e-2,
        meta_steps=15,
        query_size=10,
        per_k=False,
        train_ks=(3,),
        meta_sgd=True,
        meta_sgd_init=(1.0, 1.0),
    )
    mlp = meta_train(persons, cfg)
    scales = mlp.step_scales()
    assert set(scales) == {n for n, _ in mlp.named_parameters()}
    moved = max(float((s - 1).abs().max()) for s in scales.values())
    assert moved > 1e-3  # learned, not left at their initial value
    plain = meta_train(persons, AdaGENConfig(**{**cfg.__dict__, "meta_sgd": False}))
    assert not torch.allclose(plain.layer1.weight, mlp.layer1.weight)


def test_meta_sgd_config_errors() -> None:
    with pytest.raises(ValueError, match="meta_sgd needs model.stage2.mode=textbook"):
        AdaGENConfig(meta_sgd=True, mode="faithful")
    with pytest.raises(ValueError, match="select_z must be 'z_gaze' or 'before_z'"):
        AdaGENConfig(select_z="after_z")
    with pytest.raises(ValueError, match="meta_sgd=True but the initial MLP has meta_sgd=False"):
        meta_train(_persons(2, 20, 6), AdaGENConfig(mode="textbook", meta_sgd=True, meta_steps=1), init=GazeMLP())


def test_personalisation_uses_the_learned_steps() -> None:
    torch.manual_seed(3)
    mlp = GazeMLP(6, 8, meta_sgd=True)
    sx, sy = torch.randn(4, 3, 6), F.normalize(torch.randn(4, 3, 3), dim=-1)
    # all-ones multipliers: plain SGD
    base = GazeMLP(6, 8)
    mlp.load_state_dict({**base.state_dict(), **{n: v for n, v in mlp.state_dict().items() if n.startswith("step")}})
    ref = batched_adapt(base, sx, sy, mean_angular_error, 4, 1e-2)
    for name, t in adapt_tasks(mlp, sx, sy, 4, 1e-2).items():
        torch.testing.assert_close(t, ref[name])
    # a zero multiplier freezes its parameter; a larger one moves it further
    mlp.step_layer2_weight.zero_()
    mlp.step_layer1_bias.fill_(3.0)
    out = adapt_tasks(mlp, sx, sy, 4, 1e-2)
    torch.testing.assert_close(out["layer2.weight"], mlp.layer2.weight.expand(4, -1, -1))
    assert not torch.allclose(out["layer1.weight"], mlp.layer1.weight.expand(4, -1, -1))
    persons = [PersonCodes("a", torch.randn(30, 6), F.normalize(torch.randn(30, 3), dim=-1), torch.zeros(30, 2))]
    curve = personalization_curve(mlp, persons, [3], test_last=20, repeats=2, steps=4, lr=1e-2)
    mlp.step_layer1_bias.fill_(1.0)
    assert curve[0].mean != personalization_curve(mlp, persons, [3], test_last=20, repeats=2, steps=4, lr=1e-2)[0].mean


def test_estimator_with_before_z_and_meta_sgd_round_trips(tmp_path) -> None:
    dted = _dted().eval()
    mlp = mlp_from_dted_before_z(dted.fc_enc, dted.gaze1, dted.gaze2, dted.z_app, meta_sgd=True)
    mlp.step_layer0_weight.zero_()  # fc_enc frozen in personalisation
    model = FazeGazeEstimator(dted, mlp, equalize=False)
    images = torch.rand(6, 3, 32, 64) * 2 - 1
    assert model.features(images).shape == (6, dted.encoder.out_channels)
    loaded = FazeGazeEstimator.load(model.save(tmp_path / "estimator.pt"))
    torch.testing.assert_close(predict(loaded, images), predict(model, images))
    torch.testing.assert_close(loaded.mlp.step_layer0_weight, torch.zeros_like(mlp.layer0.weight))
    gaze = torch.rand(6, 2) * 0.6 - 0.3
    mine = personalize(loaded, images, gaze, steps=3, lr=1e-2)
    torch.testing.assert_close(mine.mlp.layer0.weight, mlp.layer0.weight)  # its multiplier is 0
    assert not torch.allclose(mine.mlp.layer1.weight, mlp.layer1.weight)


def test_ablation_reproduce_script_rows_build_their_models(compose) -> None:
    """Every row of ``scripts/reproduce/faze/ablations.py`` composes and builds the module it names."""
    from pathlib import Path

    from nvresearch.core.utils import instantiate

    path = Path(__file__).resolve().parents[3] / "scripts" / "reproduce" / "faze" / "ablations.py"
    script = load_script(path)
    built = {name: instantiate(compose(["paper=faze", *o]).model) for name, o in script.VARIANTS.items()}
    assert built["default"].stage2.select_z == "z_gaze" and not built["default"].gaze_mlp.meta_sgd
    assert built["before_z"].gaze_mlp.pre_features == built["before_z"].dted.encoder.out_channels
    assert built["meta_sgd"].gaze_mlp.meta_sgd and built["meta_sgd"].stage2.meta_sgd_init == [1.0, 1.0]
    assert built["triplet"].triplet_loss == "angular" and built["triplet"].w_ec == 0
    assert built["all_equal"].all_frontals_equal
