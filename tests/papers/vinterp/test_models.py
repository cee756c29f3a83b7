"""vinterp networks: reference parameter counts, the interpolation mechanics by hand, the official name map."""

from __future__ import annotations

import pytest
import torch

from nvresearch.vinterp import (
    FlowComputation,
    FlowInterpolation,
    OfficialCheckpointError,
    PerceptualFeatures,
    SuperSloMo,
    cycle_times,
    load_official,
    time_from_index,
)


def _count(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters() if p.requires_grad)


def test_reference_parameter_counts() -> None:
    """Spec B: the official HJSuperSloMo has 38,846,249 trainable parameters (flow U-Net with heads 18,235,620,
    interpolation U-Net 20,610,629); the frozen VGG16 features[:22] 7,635,264. Built on the meta device."""
    with torch.device("meta"):
        model = SuperSloMo()
        vgg = PerceptualFeatures()
    assert _count(model) == 38_846_249
    assert _count(model.flow_net) == 18_235_620
    assert _count(model.interp_net) == 20_610_629
    assert _count(vgg) == 0  # frozen
    assert sum(p.numel() for p in vgg.parameters()) == 7_635_264
    assert isinstance(vgg.features[21], torch.nn.Conv2d)  # conv4_3 before its ReLU


def _zero_heads(model: SuperSloMo) -> None:
    with torch.no_grad():
        for head in (model.interp_net.delta_t0, model.interp_net.delta_t1, model.interp_net.visibility):
            head.weight.zero_()
            head.bias.zero_()


def test_end_times_return_the_inputs() -> None:
    """With zero residual flows, t = 0 gives I0 and t = 1 gives I1 exactly (A.3: F^_{t->0}(0) = F^_{t->1}(1) = 0)."""
    torch.manual_seed(0)
    model = SuperSloMo(base_channels=4).eval()
    _zero_heads(model)
    a, b = torch.rand(2, 3, 32, 64) * 255, torch.rand(2, 3, 32, 64) * 255
    with torch.no_grad():
        torch.testing.assert_close(model(a, b, torch.tensor([0.0, 0.0])), a, atol=1e-3, rtol=0)
        torch.testing.assert_close(model(a, b, 1.0), b, atol=1e-3, rtol=0)


def test_linear_motion_approximation_and_blend() -> None:
    """Global translation d (F01 = d, F10 = -d): F^_{t->0} = -t d, F^_{t->1} = (1 - t) d (spec H.3), and the blend of
    two exact warps is the frame at t away from the borders."""
    torch.manual_seed(0)
    model = SuperSloMo(base_channels=4).eval()
    _zero_heads(model)
    with torch.no_grad():
        for head, sign in ((model.flow_net.flow_01, 1.0), (model.flow_net.flow_10, -1.0)):
            head.weight.zero_()
            head.bias.copy_(torch.tensor([8.0 * sign, 0.0]))
    frame0 = torch.rand(1, 3, 32, 64) * 255
    frame1 = torch.roll(frame0, 8, dims=3)  # content moves 8 px right: I1(x + 8) = I0(x)
    m = model.mean_pixel
    with torch.no_grad():
        out = model.interpolate_centered(frame0 - m, frame1 - m, torch.tensor([0.25]))
    torch.testing.assert_close(out.flow_t0_raw[:, 0], torch.full((1, 32, 64), -2.0))
    torch.testing.assert_close(out.flow_t1_raw[:, 0], torch.full((1, 32, 64), 6.0))
    assert torch.all(out.flow_t0_raw[:, 1] == 0) and torch.all(out.flow_t1_raw[:, 1] == 0)
    expected = torch.roll(frame0, 2, dims=3)  # the frame at t = 1/4
    torch.testing.assert_close((out.frame + m)[..., 2:-8], expected[..., 2:-8], atol=1e-3, rtol=0)


def test_flow_scale_shapes_and_size_check() -> None:
    torch.manual_seed(0)
    model = SuperSloMo(base_channels=4, flow_scale=2.0).eval()
    a = torch.rand(1, 3, 64, 128) * 255
    with torch.no_grad():
        out = model.interpolate_centered(a, a, 0.5)
    assert out.frame.shape == (1, 3, 64, 128) and out.flow_01.shape == (1, 2, 64, 128)
    assert out.visibility0.shape == (1, 1, 64, 128) and 0 < out.visibility0.min() and out.visibility0.max() < 1
    with pytest.raises(ValueError, match="multiple of 64"):
        model(torch.rand(1, 3, 32, 64), torch.rand(1, 3, 32, 64), 0.5)


def test_flow_scale_rescales_flows_in_pixels() -> None:
    """A constant flow predicted at 1/s resolution is s times larger at full resolution (spec A.2, E.8)."""
    model = SuperSloMo(base_channels=4, flow_scale=2.0)
    with torch.no_grad():
        model.flow_net.flow_01.weight.zero_()
        model.flow_net.flow_01.bias.copy_(torch.tensor([1.5, -0.5]))
        f01, _, bottleneck = model.bidirectional_flow(torch.zeros(1, 3, 64, 64), torch.zeros(1, 3, 64, 64))
    torch.testing.assert_close(f01[0, :, 10, 10], torch.tensor([3.0, -1.0]))
    assert bottleneck.shape == (1, 64, 2, 2)  # 1x1 at 1/s resolution, upsampled by s


def test_time_grid_and_cycle_times() -> None:
    t = time_from_index(torch.tensor([1, 4, 7]), 7)
    torch.testing.assert_close(t, torch.tensor([1 / 8, 4 / 8, 7 / 8]))
    t, back = cycle_times(torch.tensor([1, 2]), 7)
    torch.testing.assert_close(back, torch.tensor([7 / 8, 6 / 8]))
    with pytest.raises(ValueError, match="0..8"):
        time_from_index(9, 7)


def test_cycle_reconstructs_the_middle_frame_with_an_oracle() -> None:
    """Spec H.3: under global translation the cycle M(M(I0, I1, t), M(I1, I2, t), 1 - t) returns I1 (t <-> 1 - t
    bookkeeping), here with exact linear flows."""
    model = SuperSloMo(base_channels=4).eval()
    _zero_heads(model)
    with torch.no_grad():
        for head, sign in ((model.flow_net.flow_01, 1.0), (model.flow_net.flow_10, -1.0)):
            head.weight.zero_()
            head.bias.copy_(torch.tensor([8.0 * sign, 0.0]))
    torch.manual_seed(3)
    i0 = torch.rand(1, 3, 32, 96) * 100
    i1, i2 = torch.roll(i0, 8, dims=3), torch.roll(i0, 16, dims=3)
    t, back = cycle_times(torch.tensor([2]), 7)  # t = 1/4: the intermediates move by 2 px, 8 px apart
    with torch.no_grad():
        out = model.cycle(i0, i1, i2, t, back)
    torch.testing.assert_close(out.first.frame[..., 2:-8], torch.roll(i0, 2, dims=3)[..., 2:-8], atol=1e-3, rtol=0)
    torch.testing.assert_close(out.cycle.frame[..., 24:-24], i1[..., 24:-24], atol=1e-3, rtol=0)


def test_components_alone() -> None:
    flow = FlowComputation(base_channels=4)
    f01, f10, bottleneck = flow(torch.zeros(2, 6, 32, 32))
    assert f01.shape == f10.shape == (2, 2, 32, 32) and bottleneck.shape == (2, 64, 1, 1)
    interp = FlowInterpolation(base_channels=4)
    d0, d1, v = interp(torch.zeros(2, 16, 32, 32), bottleneck)
    assert d0.shape == d1.shape == (2, 2, 32, 32) and v.shape == (2, 1, 32, 32)
    with pytest.raises(ValueError, match="extra bottleneck"):
        interp.unet(torch.zeros(1, 16, 32, 32))


# ----------------------------------------------------------------------------------------- official checkpoints
def _official_names_and_shapes(base: int) -> dict[str, tuple[int, ...]]:
    """The official HJSuperSloMo parameter names and shapes (models/HJSuperSloMo.py), written from its layout."""
    w = [base * 2**i for i in range(5)]
    kernels = (7, 5, 3, 3, 3)
    out: dict[str, tuple[int, ...]] = {}

    def conv(name: str, cin: int, cout: int, k: int) -> None:
        out[f"{name}.weight"] = (cout, cin, k, k)
        out[f"{name}.bias"] = (cout,)

    for net, cin, extra in (("pred", 6, 0), ("interp", 16, w[4])):
        for i in range(5):
            conv(f"flow_{net}_encoder_layer{i + 1}.0", cin if i == 0 else w[i - 1], w[i], kernels[i])
            conv(f"flow_{net}_encoder_layer{i + 1}.2", w[i], w[i], kernels[i])
        conv(f"flow_{net}_bottleneck.0", w[4], w[4], 3)
        conv(f"flow_{net}_bottleneck.2", w[4], w[4], 3)
        for i in range(4, -1, -1):
            cin_dec = w[4] + extra if i == 4 else 2 * w[i + 1]
            conv(f"flow_{net}_decoder_layer{i + 1}.1", cin_dec, w[i], 3)
            conv(f"flow_{net}_decoder_layer{i + 1}.3", w[i], w[i], 3)
        conv(f"flow_{net}_refine_layer.0", 2 * w[0], w[0], 3)
    for name, cout in (
        ("forward_flow_conv", 2),
        ("backward_flow_conv", 2),
        ("flow_interp_forward_out_layer", 2),
        ("flow_interp_backward_out_layer", 2),
        ("flow_interp_vis_layer", 1),
    ):
        conv(name, w[0], cout, 1)
    return out


def test_load_official_maps_every_name(tmp_path) -> None:
    shapes = _official_names_and_shapes(4)
    torch.manual_seed(0)
    state = {k: torch.randn(s) for k, s in shapes.items()}
    extras = {
        "mean_pix": torch.zeros(1, 3, 1, 1),
        "tlinespace": torch.zeros(9),
        "vgg16_features.0.weight": torch.zeros(1),
    }
    torch.save({"state_dict": {f"module.{k}": v for k, v in {**state, **extras}.items()}}, tmp_path / "ck.pth")
    model = load_official(tmp_path / "ck.pth", model=SuperSloMo(base_channels=4))
    assert not model.training
    got = model.state_dict()
    # the t->0 residual is the official "backward" head, the t->1 residual the "forward" one (spec A.3)
    assert torch.equal(got["interp_net.delta_t0.weight"], state["flow_interp_backward_out_layer.weight"])
    assert torch.equal(got["interp_net.delta_t1.weight"], state["flow_interp_forward_out_layer.weight"])
    assert torch.equal(got["flow_net.flow_01.bias"], state["forward_flow_conv.bias"])
    assert torch.equal(got["flow_net.unet.decoders.0.1.weight"], state["flow_pred_decoder_layer5.1.weight"])
    assert torch.equal(got["interp_net.unet.encoders.0.0.weight"], state["flow_interp_encoder_layer1.0.weight"])


def test_load_official_reports_what_does_not_map(tmp_path) -> None:
    shapes = _official_names_and_shapes(4)
    state = {k: torch.zeros(s) for k, s in shapes.items()}
    del state["flow_interp_vis_layer.bias"]
    state["flow_pred_decoder_layer1.1.weight"] = torch.zeros(3, 3, 3, 3)
    state["surprise.weight"] = torch.zeros(1)
    torch.save({"state_dict": state}, tmp_path / "bad.pth")
    with pytest.raises(OfficialCheckpointError, match="1 missing: interp_net.visibility.bias") as err:
        load_official(tmp_path / "bad.pth", model=SuperSloMo(base_channels=4))
    assert "unexpected: surprise.weight" in str(err.value) and "decoders.4.1.weight (3, 3, 3, 3)" in str(err.value)
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_official(tmp_path / "nope.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(OfficialCheckpointError, match="junk.pth"):
        load_official(tmp_path / "junk.pth")


def test_perceptual_features_from_a_local_file(tmp_path) -> None:
    torch.manual_seed(0)
    full = {f"features.{k}": torch.randn_like(v) for k, v in PerceptualFeatures().features.state_dict().items()}
    full["classifier.0.weight"] = torch.zeros(1)  # a whole torchvision vgg16 file also holds the classifier
    torch.save(full, tmp_path / "vgg16.pth")
    vgg = PerceptualFeatures(str(tmp_path / "vgg16.pth"))
    assert torch.equal(vgg.features[21].weight, full["features.21.weight"])
    assert not vgg.train().features.training
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        PerceptualFeatures(str(tmp_path / "missing.pth"))


def test_visibility_selects_the_warp_of_its_frame_and_heads_are_not_swapped() -> None:
    """V0 -> 1 keeps only W(I0, F_{t->0}) (A.4, V1 = 1 - V0); the t->0 residual head moves only that warp (A.3)."""
    model = SuperSloMo(base_channels=4).eval()
    _zero_heads(model)
    with torch.no_grad():
        for head in (model.flow_net.flow_01, model.flow_net.flow_10):
            head.weight.zero_()
            head.bias.zero_()
        model.interp_net.delta_t1.bias.copy_(torch.tensor([5.0, 0.0]))  # only the t->1 flow is displaced
        model.interp_net.visibility.bias.fill_(30.0)  # V0 = 1: I_t comes from frame 0 only
    torch.manual_seed(0)
    a, b = torch.rand(1, 3, 32, 32) * 255, torch.rand(1, 3, 32, 32) * 255
    with torch.no_grad():
        out = model.interpolate_centered(a, b, 0.5)
    torch.testing.assert_close(out.frame, a, atol=1e-3, rtol=0)
    torch.testing.assert_close(out.flow_t1[:, 0], torch.full((1, 32, 32), 5.0))
    assert torch.all(out.flow_t0 == 0)
    with torch.no_grad():
        model.interp_net.visibility.bias.fill_(-30.0)  # V0 = 0: from frame 1, warped by the t->1 flow
        out = model.interpolate_centered(a, b, 0.5)
    torch.testing.assert_close(out.frame[..., :-5], b[..., 5:], atol=1e-3, rtol=0)
