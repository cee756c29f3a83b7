"""FAZE unit tests: networks at the reference configuration, latent rotations, losses by hand, data layout,
pair sampling, the evaluation protocol and the inference API (spec faze.md)."""

from __future__ import annotations

import json
import math

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nvresearch.core.data import DatasetLayoutError
from nvresearch.core.geometry import pitchyaw_to_rotation, pitchyaw_to_vector, rotation_x
from nvresearch.core.utils import torch_threads
from nvresearch.faze import (
    DTED,
    AdaGENConfig,
    FazeGazeEstimator,
    FazeH5,
    GazeMLP,
    PairDataset,
    PersonCodes,
    SampleDataset,
    embedding_consistency_loss,
    ensure_eye_strip_world,
    faze_objective,
    gaze_angular_loss,
    joint_train,
    linear_ramp,
    load_split,
    meta_train,
    normalize_codes,
    personalization_curve,
    personalize,
    predict,
    reconstruction_l1_loss,
    render_person,
    rotate_codes,
)
from nvresearch.faze.adagen import mlp_from_dted_head
from nvresearch.faze.data import apparent_rotation, kappa_rotation, optical_axis, preprocess_pixels
from nvresearch.faze.metrics import select_adapt_lr
from nvresearch.faze.visual import draw_error_curve, save_gaze_rotation, save_reconstructions

FLOOR = math.degrees(math.acos(1 - 1e-6))  # the clipped angle of identical vectors, 0.081 deg


# ---------------------------------------------------------------------------------------------------- networks
def test_dted_reference_parameter_counts() -> None:
    """Spec B: 6,873,465 parameters, 51 state-dict tensors, no buffers; the per-module split of the spec."""
    m = DTED()
    count = lambda mod: sum(p.numel() for p in mod.parameters())  # noqa: E731
    assert count(m) == 6_873_465
    assert (count(m.encoder), count(m.decoder), count(m.fc_enc), count(m.fc_dec)) == (
        2_246_336,
        4_489_920,
        75_638,
        60_928,
    )
    assert (count(m.gaze1), count(m.gaze2)) == (448, 195)
    assert len(m.state_dict()) == 51 and not list(m.buffers())
    sd = m.state_dict()
    assert sd["decoder.block2.compo1.conv.weight"].shape == (160, 32, 3, 3)  # ConvTranspose layout (c_in, 32, 3, 3)
    assert sd["encoder.trans3.composite.conv.weight"].shape == (512, 512, 1, 1)
    assert sd["decoder.last.conv1.weight"].shape == (544, 128, 3, 3)
    assert count(GazeMLP()) == 643


def test_dted_shapes_normalisation_and_modes() -> None:
    torch.manual_seed(0)
    m = DTED(growth_rate=4, decoder_input_c=8, image_size=(32, 64))
    x = torch.randn(3, 3, 32, 64)
    eye = torch.eye(3).expand(3, 3, 3)
    out = m(x, eye, eye, eye, eye, image_b=x)
    assert out["image_b_hat"].shape == (3, 3, 32, 64)
    assert out["z_app"].shape == (3, 64) and out["z_gaze"].shape == (3, 2, 3) and out["z_head"].shape == (3, 16, 3)
    # Official dt_ed.py: the gaze (B, 2, 3) and head (B, 16, 3) codes are normalised each on its own over dim 1,
    # so each code's 3 columns are unit norm (not those of the stacked 18 rows) and its rows are not.
    for code in (out["z_gaze"], out["z_head"]):
        torch.testing.assert_close(code.norm(dim=1), torch.ones(3, 3))
        assert (code.norm(dim=2) - 1).abs().max() > 0.05
    torch.testing.assert_close(out["gaze_hat"].norm(dim=-1), torch.ones(3))
    m.eval()  # no BatchNorm, no dropout: train and eval give the same output
    torch.testing.assert_close(m(x, eye, eye, eye, eye)["image_b_hat"], out["image_b_hat"])
    with pytest.raises(ValueError, match=r"images of shape \(B, 3, 32, 64\)"):
        m.encode(torch.randn(1, 3, 64, 64))
    with pytest.raises(ValueError, match="divisible by 32"):
        DTED(image_size=(40, 64))


def _official_layout_dted(sd: dict[str, torch.Tensor], x, xb, rga, rha, rgb, rhb, z_app: int = 64, z_gaze: int = 2):
    """An independent, functional DT-ED of the official layout (dt_ed.py, densenet.py) on a state dict.

    InstanceNorm -> LeakyReLU(0.01) -> bias-free conv composites, dense concatenation, 1x1 transition + 2x2 average
    pooling; ``z = fc_enc(GAP)`` split into app | gaze rows | head rows (row-major (., 3)); the gaze and head codes
    L2-normalised separately over dim 1; rows rotated ``Z R_a`` / ``Z R_a R_b^T``; decoder mirrored with transposed
    convolutions, no output activation.
    """

    def pre(t):
        return F.leaky_relu(F.instance_norm(t), 0.01)

    def trunk(t, prefix, transposed):
        b = 1
        while f"{prefix}.block{b}.compo1.conv.weight" in sd:
            i = 1
            while (key := f"{prefix}.block{b}.compo{i}.conv.weight") in sd:
                conv = F.conv_transpose2d if transposed else F.conv2d
                t = torch.cat([t, conv(pre(t), sd[key], padding=1)], 1)
                i += 1
            if (key := f"{prefix}.trans{b}.composite.conv.weight") in sd:
                t = F.avg_pool2d(F.conv2d(pre(t), sd[key]), 2)
            elif (key := f"{prefix}.trans{b}.conv.weight") in sd:
                t = F.conv_transpose2d(pre(t), sd[key], stride=2, padding=1, output_padding=1)
            b += 1
        return t

    def encode(img):
        t = F.conv2d(img, sd["encoder.initial.conv1.weight"], stride=2, padding=1)
        t = F.conv2d(pre(t), sd["encoder.initial.conv2.weight"], stride=2, padding=1)
        z = F.linear(trunk(t, "encoder", False).mean(-1).mean(-1), sd["fc_enc.weight"], sd["fc_enc.bias"])
        rows = z[:, z_app:].reshape(len(z), -1, 3)
        return z[:, :z_app], F.normalize(rows[:, :z_gaze], dim=1), F.normalize(rows[:, z_gaze:], dim=1)

    app, g, h = encode(x)
    _, g_b, h_b = encode(xb)
    gaze_hat = F.linear(F.relu(F.linear(g.flatten(1), sd["gaze1.weight"], sd["gaze1.bias"])), sd["gaze2.weight"])
    gaze_hat = F.normalize(gaze_hat + sd["gaze2.bias"], dim=-1)
    zd = torch.cat([app, (g @ rga @ rgb.mT).flatten(1), (h @ rha @ rhb.mT).flatten(1)], 1)
    t = F.linear(zd, sd["fc_dec.weight"], sd["fc_dec.bias"])
    c = sd["decoder.block1.compo1.conv.weight"].shape[0]
    t = trunk(t.view(len(t), c, x.shape[2] // 32, x.shape[3] // 32), "decoder", True)  # bottleneck: 1/32 of H, W
    t = pre(F.conv_transpose2d(t, sd["decoder.last.conv1.weight"], stride=2, padding=1, output_padding=1))
    t = pre(F.conv_transpose2d(t, sd["decoder.last.conv2.weight"], stride=2, padding=1, output_padding=1))
    image_b_hat = F.conv2d(t, sd["decoder.last.conv3.weight"], padding=1)
    return {
        "z_app": app,
        "z_gaze": g,
        "z_head": h,
        "canon_gaze": g @ rga,
        "canon_head": h @ rha,
        "canon_gaze_b": g_b @ rgb,
        "canon_head_b": h_b @ rhb,
        "gaze_hat": gaze_hat,
        "image_b_hat": image_b_hat,
    }


def test_dted_equals_an_independent_official_layout_on_identical_weights() -> None:
    """Every output of DTED.forward equals a functional reimplementation of the official layout run on the same
    state dict (codes, frontalised codes of a and b, gaze estimate, decoded image). With the stacked 18-row
    normalisation of before, the gaze code differed by ~0.8 and the decoded image by ~1.6 at the official size."""
    torch.manual_seed(0)
    m = DTED(growth_rate=4, decoder_input_c=8, image_size=(32, 64)).eval()
    with torch.no_grad():
        for p in m.parameters():  # non-zero biases too, so a swapped bias would show
            p.add_(0.1 * torch.randn_like(p))
    rots = [pitchyaw_to_rotation(torch.rand(3, 2) - 0.5) for _ in range(4)]
    x, xb = torch.randn(3, 3, 32, 64), torch.randn(3, 3, 32, 64)
    with torch.no_grad():
        ours = m(x, *rots, image_b=xb)
        ref = _official_layout_dted(m.state_dict(), x, xb, *rots)
    for key, value in ref.items():
        torch.testing.assert_close(ours[key], value, atol=1e-5, rtol=1e-5, msg=lambda s, k=key: f"{k}: {s}")


def test_latent_slices_follow_the_reference_layout() -> None:
    """z = fc_enc(...) is [app (64) | 18 rows of 3 (row-major): 2 gaze rows, then 16 head rows] (spec A.3, E.4)."""
    m = DTED(growth_rate=4, decoder_input_c=8, image_size=(32, 64), normalize_3d_codes=False)
    with torch.no_grad():
        m.fc_enc.weight.zero_()
        m.fc_enc.bias.copy_(torch.arange(118.0))
    z_app, zg, zh = m.encode(torch.randn(1, 3, 32, 64))
    torch.testing.assert_close(z_app[0], torch.arange(64.0))
    torch.testing.assert_close(zg[0], torch.arange(64.0, 70.0).view(2, 3))
    torch.testing.assert_close(zh[0], torch.arange(70.0, 118.0).view(16, 3))


def test_normalize_axes() -> None:
    z = torch.tensor([[[3.0, 0.0, 1.0], [4.0, 2.0, 0.0]]])
    torch.testing.assert_close(normalize_codes(z, 1), torch.tensor([[[0.6, 0.0, 1.0], [0.8, 1.0, 0.0]]]))
    torch.testing.assert_close(normalize_codes(z, 2)[0, 0], torch.tensor([3.0, 0.0, 1.0]) / math.sqrt(10))
    torch.testing.assert_close(normalize_codes(z, 3).flatten().norm(), torch.tensor(1.0))


def test_rotate_codes_conventions() -> None:
    """Z R_a frontalises; Z R_a R_b^T moves a -> b; in column form each row z becomes R_b R_a^T z (spec A.3)."""
    g = torch.Generator().manual_seed(0)
    pa, pb = torch.rand(4, 2, generator=g, dtype=torch.float64), torch.rand(4, 2, generator=g, dtype=torch.float64)
    ra, rb = pitchyaw_to_rotation(pa), pitchyaw_to_rotation(pb)
    canonical = torch.randn(1, 5, 3, generator=g, dtype=torch.float64).expand(4, 5, 3)  # one person
    za = canonical @ ra.transpose(1, 2)  # an exactly equivariant code: rows R_a c
    zb = canonical @ rb.transpose(1, 2)
    torch.testing.assert_close(rotate_codes(za, ra), canonical)
    torch.testing.assert_close(rotate_codes(za, ra, rb), zb)
    row = za[0, 0]
    torch.testing.assert_close(rotate_codes(za, ra, rb)[0, 0], rb[0] @ ra[0].T @ row)
    # Frontalised codes of one person with a truly equivariant encoder coincide: EC sits at the clip floor (H.2).
    ec = embedding_consistency_loss(torch.cat([rotate_codes(za, ra), rotate_codes(zb, rb)]), torch.zeros(8).long())
    assert ec.item() == pytest.approx(FLOOR, rel=1e-6)


def test_gaze_mlp_forward_and_init() -> None:
    torch.manual_seed(0)
    mlp = GazeMLP()
    out = mlp(torch.randn(5, 2, 3))
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(5))
    assert mlp.layer1.bias.abs().sum() == 0 and mlp.layer2.weight.std().item() == pytest.approx(1 / 8, rel=0.3)
    with pytest.raises(ValueError, match="expects 6 input features"):
        mlp(torch.randn(2, 4))
    with pytest.raises(ValueError, match="activation"):
        GazeMLP(activation="tanh")


# ---------------------------------------------------------------------------------------------------- losses
def test_reconstruction_and_gaze_losses_by_hand() -> None:
    pred = torch.tensor([[[[0.5, -1.0]]]]).expand(1, 3, 1, 2).clone().requires_grad_(True)
    target = torch.zeros(1, 3, 1, 2, requires_grad=True)
    assert reconstruction_l1_loss(pred, target).item() == pytest.approx(0.75)
    reconstruction_l1_loss(pred, target).backward()
    assert target.grad is None  # the target is detached
    torch.testing.assert_close(pred.grad[0, 0, 0], torch.tensor([1.0, -1.0]) / 6)
    # (0, 0) -> (0, 0, 1); a prediction along x is 90 deg off, one along z is at the clip floor.
    loss = gaze_angular_loss(torch.tensor([[1.0, 0, 0], [0, 0, 2.0]]), torch.zeros(2, 2))
    assert loss.item() == pytest.approx((90.0 + FLOOR) / 2, rel=1e-5)
    with pytest.raises(ValueError, match="differ in shape"):
        reconstruction_l1_loss(torch.zeros(1, 3, 2, 2), torch.zeros(1, 3, 2, 3))


def test_embedding_consistency_is_a_max_over_same_person_pairs() -> None:
    """Hand example: F = 1 row; persons {0: codes at 0, 30, 90 deg}, {1: codes at 0, 10 deg} in the x-y plane."""
    ang = torch.tensor([0.0, 30.0, 90.0, 0.0, 10.0]) * math.pi / 180
    codes = torch.stack([torch.cos(ang), torch.sin(ang), torch.zeros(5)], -1)[:, None, :]
    person = torch.tensor([0, 0, 0, 1, 1])
    # max over same-person j: 90, 60, 90 for person 0; 10, 10 for person 1 -> mean 52
    assert embedding_consistency_loss(codes.double(), person).item() == pytest.approx(52.0, abs=1e-3)
    # F = 2 rows: d is the mean over rows
    two = torch.cat([codes, codes[[0, 0, 0, 3, 3]]], 1)  # second row identical within persons (floor)
    assert embedding_consistency_loss(two.double(), person).item() == pytest.approx((52.0 + FLOOR) / 2, abs=1e-3)
    with pytest.raises(ValueError, match=r"\(N, F, 3\)"):
        embedding_consistency_loss(codes[:, 0], person)


def test_weights_and_ramp() -> None:
    t = faze_objective(torch.tensor(2.0), torch.tensor(10.0), torch.tensor(30.0), w_ec=1.0)
    assert t.item() == pytest.approx(2.0 + 10.0 + 3.0)
    assert faze_objective(torch.tensor(2.0), torch.tensor(10.0), torch.tensor(30.0)).item() == pytest.approx(25.0)
    # Spec A.5.4: 0 -> 2 over floor(1e6 / B) steps; with B = 1536 that is 651 steps.
    steps = int(1e6 // 1536)
    assert steps == 651
    assert linear_ramp(0, steps, 2.0) == 0.0
    assert linear_ramp(325, steps, 2.0) == pytest.approx(2.0 * 325 / 651)
    assert linear_ramp(5000, steps, 2.0) == 2.0 and linear_ramp(3, 0, 2.0) == 2.0


def test_reference_learning_rate_schedule() -> None:
    """Spec B: main group base_lr -> base_lr x B_global over floor(1e6 / B) steps; gaze head fixed at base_lr."""
    from nvresearch.faze.module import FazeModule

    module = FazeModule(
        DTED(growth_rate=4, decoder_input_c=8, image_size=(32, 64)),
        optimizer=lambda groups: torch.optim.SGD(groups, lr=5e-5, momentum=0.9, nesterov=True, weight_decay=1e-4),
        batch_size=512,
    )
    conf = module.configure_optimizers()
    opt, sched = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    head = {id(p) for p in [*module.dted.gaze1.parameters(), *module.dted.gaze2.parameters()]}
    assert {id(p) for p in opt.param_groups[1]["params"]} == head
    assert opt.param_groups[0]["weight_decay"] == 1e-4  # biases included (spec E.7)
    ramp = int(1e6 // 512)  # 1953
    lrs = []
    for _ in range(ramp + 2):
        lrs.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx([5e-5, 5e-5])
    assert lrs[ramp // 2][0] == pytest.approx(5e-5 * (1 + 511 * (ramp // 2) / ramp))
    assert lrs[ramp][0] == pytest.approx(0.0256) and lrs[ramp + 1][0] == pytest.approx(0.0256)
    assert all(lr[1] == pytest.approx(5e-5) for lr in lrs)


# ---------------------------------------------------------------------------------------------------- data
def _write_fixture(path, persons=None) -> None:
    """A tiny file in the preprocessed layout: groups of uint8 (N, 32, 64, 3) pixels and float32 (N, 4) labels."""
    persons = persons or {"00002": 6, "00010": 3, "p00": 5}
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        for pid, n in persons.items():
            g = f.create_group(pid)
            g.create_dataset("pixels", data=rng.integers(0, 256, (n, 32, 64, 3), dtype=np.uint8), chunks=(1, 32, 64, 3))
            labels = np.arange(n * 4, dtype=np.float32).reshape(n, 4) / 100
            g.create_dataset("labels", data=labels, chunks=(1, 4), compression="lzf")


def test_h5_loader_reads_the_layout(tmp_path) -> None:
    path = tmp_path / "GazeCapture.h5"
    _write_fixture(path)
    h5 = FazeH5(path)
    assert h5.persons == ["00002", "00010", "p00"] and h5.sizes == {"00002": 6, "00010": 3, "p00": 5}
    assert h5.image_size == (32, 64)
    pixels, labels = h5.read("00010", 2)
    assert pixels.shape == (32, 64, 3) and pixels.dtype == np.uint8
    np.testing.assert_allclose(labels, np.arange(8, 12, dtype=np.float32) / 100)
    assert h5.select(None, min_samples=5) == ["00002", "p00"]
    ds = SampleDataset(h5, ["00010", "p00"], equalize=False, max_per_person=2)
    assert len(ds) == 4 and [ds[i]["sample"].item() for i in range(4)] == [1, 2, 3, 4]
    item = ds[0]
    with h5py.File(path) as f:
        raw = torch.from_numpy(f["00010"]["pixels"][1]).permute(2, 0, 1).float()
    torch.testing.assert_close(item["image"], raw * 2 / 255 - 1)
    torch.testing.assert_close(item["R_gaze"], pitchyaw_to_rotation(item["gaze"]))
    eq = SampleDataset(h5, ["00010"], equalize=True)[0]["image"]
    assert eq.min() >= -1 and eq.max() <= 1 and (eq - ds[0]["image"]).abs().max() > 0


def test_h5_in_memory_reads_the_same_samples(tmp_path) -> None:
    """``in_memory`` changes where samples are read from, not what they are; rotations match the labels."""
    path = tmp_path / "GazeCapture.h5"
    _write_fixture(path)
    on_disk, in_memory = FazeH5(path), FazeH5(path, in_memory=True)
    for person in on_disk.persons:
        for i in range(on_disk.sizes[person]):
            (pa, la), (pb, lb) = on_disk.read(person, i), in_memory.read(person, i)
            np.testing.assert_array_equal(pa, pb)
            np.testing.assert_array_equal(la, lb)
        rot = in_memory.rotations(person)
        assert rot.shape == (on_disk.sizes[person], 2, 3, 3)
        lab = torch.from_numpy(on_disk.labels(person)).view(-1, 2, 2)
        torch.testing.assert_close(rot, pitchyaw_to_rotation(lab))
    a = SampleDataset(on_disk, None, equalize=False)
    b = SampleDataset(in_memory, None, equalize=False)
    for i in (0, 4, len(a) - 1):
        for key in ("image", "gaze", "head", "R_gaze", "R_head"):
            torch.testing.assert_close(a[i][key], b[i][key])


def test_corrupt_chunk_names_the_file_and_person(tmp_path) -> None:
    """A damaged compressed chunk: the sample read (on disk) or the person's read (in memory) raises
    :class:`DatasetLayoutError` naming the file, the person and (on disk) the sample."""
    path = tmp_path / "GazeCapture.h5"
    with h5py.File(path, "w") as f:
        g = f.create_group("p00")
        g.create_dataset("pixels", data=np.zeros((3, 32, 64, 3), np.uint8), chunks=(1, 32, 64, 3), compression="lzf")
        g.create_dataset("labels", data=np.zeros((3, 4), np.float32))
    with h5py.File(path, "r") as f:
        chunk = f["p00"]["pixels"].id.get_chunk_info(1)
        assert chunk.filter_mask == 0  # stored compressed, so damage breaks decompression
    with open(path, "r+b") as fh:
        fh.seek(chunk.byte_offset + 4)
        fh.write(b"\xff" * 32)
    on_disk = FazeH5(path)
    assert on_disk.read("p00", 0)[0].shape == (32, 64, 3)
    with pytest.raises(DatasetLayoutError, match=r"corrupt sample 1 of person 'p00' in '.*GazeCapture\.h5'"):
        on_disk.read("p00", 1)
    with pytest.raises(DatasetLayoutError, match=r"corrupt data of person 'p00' in '.*GazeCapture\.h5'"):
        FazeH5(path, in_memory=True).read("p00", 0)


def test_h5_loader_errors_name_the_file(tmp_path) -> None:
    with pytest.raises(DatasetLayoutError, match=r"no FAZE HDF5 file at '.*missing\.h5'.*one group per person"):
        FazeH5(tmp_path / "missing.h5")
    bad = tmp_path / "bad.h5"
    with h5py.File(bad, "w") as f:
        f.create_group("00001").create_dataset("pixels", data=np.zeros((2, 8, 8, 3), np.uint8))
    with pytest.raises(DatasetLayoutError, match=r"bad\.h5' group '00001' lacks 'pixels' or 'labels'"):
        FazeH5(bad)
    with h5py.File(bad, "a") as f:
        f["00001"].create_dataset("labels", data=np.zeros((3, 4), np.float32))
    with pytest.raises(DatasetLayoutError, match=r"'labels' is \(3, 4\) for 2 images"):
        FazeH5(bad)
    noth5 = tmp_path / "junk.h5"
    noth5.write_text("not hdf5")
    with pytest.raises(DatasetLayoutError, match=r"cannot read '.*junk\.h5' as HDF5"):
        FazeH5(noth5)
    good = tmp_path / "good.h5"
    _write_fixture(good)
    with pytest.raises(DatasetLayoutError, match="persons 99999 of the split are not groups"):
        FazeH5(good).select(["00002", "99999"])


def test_split_file(tmp_path) -> None:
    path = tmp_path / "gazecapture_split.json"
    path.write_text(json.dumps({"train": ["00002"], "val": [], "test": ["p00"], "train-phone": ["00002"]}))
    split = load_split(path)
    assert split["train"] == ["00002"] and split["test"] == ["p00"] and "train-phone" in split
    with pytest.raises(DatasetLayoutError, match=r"no person split file at '.*nosplit\.json'"):
        load_split(tmp_path / "nosplit.json")
    path.write_text(json.dumps({"train": []}))
    with pytest.raises(DatasetLayoutError, match="lacks a list under 'train', 'val' or 'test'"):
        load_split(path)
    path.write_text("{")
    with pytest.raises(DatasetLayoutError, match="is not valid JSON"):
        load_split(path)


def test_pair_sampling(tmp_path) -> None:
    """Spec A.6: b is another sample of a's person, uniform, reproducible from (seed, epoch, index)."""
    path = tmp_path / "GazeCapture.h5"
    _write_fixture(path)
    ds = PairDataset(FazeH5(path), ["00002", "00010", "p00"], min_samples=4, seed=3, equalize=False)
    assert ds.persons == ["00002", "p00"] and len(ds) == 11
    seen = set()
    for epoch in range(60):
        item = ds[(epoch, 2)]  # person 00002, sample 2
        assert item["person"].item() == 0
        assert not torch.equal(item["image_a"], item["image_b"])
        j = int(round(item["gaze_b"][0].item() * 100 / 4))  # labels encode the sample index
        assert 0 <= j < 6 and j != 2
        seen.add(j)
    assert seen == {0, 1, 3, 4, 5}
    torch.testing.assert_close(ds[(7, 9)]["image_b"], ds[(7, 9)]["image_b"])
    assert ds[(7, 9)]["person"].item() == 1
    assert set(ds[0]) >= {"image_a", "image_b", "gaze_a", "head_b", "R_gaze_a", "R_head_b", "person"}


def test_eye_strip_world_is_deterministic_and_in_the_layout(tmp_path) -> None:
    a = render_person(np.random.default_rng((5, 1)), 6, 32, 64)
    b = render_person(np.random.default_rng((5, 1)), 6, 32, 64)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    pixels, labels, person = a
    assert person.shape == (6,) and np.all(person[2:] == 0)  # no eye-shape spread asked: gain and curve 0
    assert pixels.shape == (6, 32, 64, 3) and pixels.dtype == np.uint8 and labels.shape == (6, 4)
    assert np.abs(labels[:, 1]).max() <= math.radians(25) and np.abs(labels[:, 2:]).max() <= math.radians(20)
    params = dict(num_persons={"train": 2, "val": 1, "test": 1}, samples={"train": 5, "val": 3, "test": 7}, seed=1)
    h5_path, split_path = ensure_eye_strip_world(tmp_path, **params)
    mtime = h5_path.stat().st_mtime_ns
    assert ensure_eye_strip_world(tmp_path, **params) == (h5_path, split_path)
    assert h5_path.stat().st_mtime_ns == mtime  # cached
    h5 = FazeH5(h5_path)
    split = load_split(split_path)
    assert split == {"train": ["00000", "00001"], "val": ["00002"], "test": ["00003"]}
    assert h5.sizes["00003"] == 7 and h5.image_size == (32, 64)
    with h5py.File(h5_path) as f:
        assert f["00000"]["pixels"].chunks == (1, 32, 64, 3) and f["00000"]["pixels"].compression == "lzf"
        np.testing.assert_array_equal(f["00001"]["pixels"][:], render_person(np.random.default_rng((1, 1)), 5)[0])


def test_iris_follows_the_optical_axis() -> None:
    """The rendered iris (darkest pixels) moves right/left with the yaw of the gaze relative to the head."""
    rng = np.random.default_rng(0)
    pixels, labels, _ = render_person(rng, 400, 32, 64, head_range_deg=(0.0, 0.0), kappa_std_deg=(0.0, 0.0))
    dark = pixels.astype(float).sum(-1) < np.percentile(pixels.astype(float).sum(-1), 3, axis=(1, 2))[:, None, None]
    xs = np.array([np.nonzero(d)[1].mean() for d in dark])
    assert np.corrcoef(xs, np.sin(labels[:, 1]))[0, 1] > 0.8


def test_kappa_is_a_fixed_rotation_of_the_visual_axis() -> None:
    """R_kappa maps straight ahead to kappa and every direction by the same rotation: angles between axes are kept,
    and away from straight ahead the visual axis is not the optical axis plus kappa."""
    kappa = np.radians([3.0, 0.0])
    rot = kappa_rotation(kappa)
    np.testing.assert_allclose(rot @ rot.T, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(optical_axis(kappa[None], kappa), [[0.0, 0.0]], atol=1e-12)  # v(kappa) = R v(0, 0)
    # Optical axis (0, 30 deg) rotated about the x axis by 3 deg: pitch asin(cos 30 sin 3), yaw atan2(sin 30,
    # cos 30 cos 3). An additive offset would give (3 deg, 30 deg).
    phi, k = math.radians(30.0), math.radians(3.0)
    pitch, yaw = math.asin(math.cos(phi) * math.sin(k)), math.atan2(math.sin(phi), math.cos(phi) * math.cos(k))
    visual = np.array([[pitch, yaw]])
    np.testing.assert_allclose(optical_axis(visual, kappa), [[0.0, phi]], atol=1e-12)
    assert abs(math.degrees(visual[0, 0]) - 2.598) < 1e-3
    # A rotation keeps the angle between any two axes.
    rng = np.random.default_rng(0)
    g = rng.uniform(-0.5, 0.5, size=(50, 2))
    o = optical_axis(g, np.radians([1.5, -4.0]))
    vg, vo = pitchyaw_to_vector(torch.from_numpy(g)), pitchyaw_to_vector(torch.from_numpy(o))
    torch.testing.assert_close(vg @ vg.T, vo @ vo.T, atol=1e-12, rtol=0)


def test_eye_shape_changes_large_angles_more_than_small_ones() -> None:
    """The person-specific eye shape shifts the shown rotation by nothing straight ahead and by more the larger the
    angle, in the formula and in the rendered images (same person, same draws, with and without the eye shape)."""
    o = np.radians([[0.0, 0.0], [2.0, -2.0], [20.0, -25.0]])
    shift = np.degrees(apparent_rotation(o, np.array([0.2, 0.2]), np.array([0.3, 0.3])) - o)
    np.testing.assert_allclose(shift[0], [0.0, 0.0])
    quad = math.degrees(0.3 * math.radians(2.0) ** 2)  # curve o |o| keeps the sign of o
    np.testing.assert_allclose(shift[1], [0.4 + quad, -0.4 - quad])
    assert np.abs(shift[2]).min() > 10 * np.abs(shift[1]).max()

    # Seed 7 draws gains of -0.57 (pitch) and -0.39 (yaw) at this spread.
    plain = render_person(np.random.default_rng(7), 300, kappa_std_deg=(0.0, 0.0), head_range_deg=(0.0, 0.0))
    shaped = render_person(
        np.random.default_rng(7), 300, kappa_std_deg=(0.0, 0.0), head_range_deg=(0.0, 0.0), eye_gain_std=(0.3, 0.3)
    )
    np.testing.assert_array_equal(plain[1], shaped[1])  # the same labels: the eye shape is hidden in the image
    assert np.all(plain[2][2:4] == 0) and np.all(np.abs(shaped[2][2:4]) > 0.3)
    diff = np.abs(plain[0].astype(float) - shaped[0].astype(float)).mean(axis=(1, 2, 3))
    angle = np.degrees(np.linalg.norm(plain[1][:, :2], axis=1))
    small, large = diff[angle < 6.0], diff[angle > 20.0]
    assert len(small) >= 10 and len(large) >= 10
    assert large.mean() > 3 * small.mean() and np.corrcoef(angle, diff)[0, 1] > 0.8


def test_sensor_noise_and_brightness_jitter_are_the_given_parameters() -> None:
    """Same person and draws: the per-pixel noise std and the per-image brightness factor are the arguments (in
    8-bit steps, away from clipping), and the labels do not depend on them."""
    kw = dict(kappa_std_deg=(0.0, 0.0), head_range_deg=(0.0, 0.0))
    clean = render_person(np.random.default_rng(3), 40, noise=0.0, brightness_range=(1.0, 1.0), **kw)
    for std in (0.02, 0.01):
        noisy = render_person(np.random.default_rng(3), 40, noise=std, brightness_range=(1.0, 1.0), **kw)
        np.testing.assert_array_equal(clean[1], noisy[1])
        c, x = clean[0].astype(float), noisy[0].astype(float)
        mid = (c > 30) & (c < 225)
        assert abs((x - c)[mid].std() - std * 255) < 0.1 * std * 255
    dim = render_person(np.random.default_rng(3), 40, noise=0.0, brightness_range=(0.5, 0.5), **kw)
    np.testing.assert_allclose(dim[0].astype(float).mean(axis=(1, 2, 3)), 0.5 * clean[0].mean(axis=(1, 2, 3)), atol=1)
    jitter = render_person(np.random.default_rng(3), 40, noise=0.0, brightness_range=(0.9, 1.1), **kw)
    ratio = jitter[0].astype(float).mean(axis=(1, 2, 3)) / clean[0].mean(axis=(1, 2, 3))
    assert 0.89 < ratio.min() < 0.95 and 1.05 < ratio.max() < 1.11


# ---------------------------------------------------------------------------------------------------- stage 2
def _toy_persons(n_persons: int, n: int, seed: int, kappa_deg: float = 6.0) -> list[PersonCodes]:
    """Features = exact gaze vector of the optical axis; label = visual axis = optical + a per-person offset."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for p in range(n_persons):
        kappa = torch.randn(2, generator=g) * math.radians(kappa_deg)
        gaze = (torch.rand(n, 2, generator=g) - 0.5) * math.radians(40)
        optical = pitchyaw_to_vector(gaze - kappa)
        feats = torch.cat([optical, optical], 1)
        out.append(PersonCodes(f"{p:05d}", feats, pitchyaw_to_vector(gaze), gaze))
    return out


def test_personalization_curve_protocol_on_a_known_toy() -> None:
    """Persons differ only by a constant offset: k = 0 error ~ |kappa|; adaptation with k >= 3 removes most of it."""
    train, test = _toy_persons(20, 64, 0), _toy_persons(8, 80, 1)
    cfg = AdaGENConfig(joint_steps=600, joint_batch=256, seed=1)
    with torch_threads(1):  # tiny-tensor work: a second thread only adds overhead (4x the CPU time under load)
        joint = joint_train(train, cfg)
        curve = personalization_curve(joint, test, [0, 3, 9, 200], test_last=40, repeats=2, steps=150, lr=3e-4, seed=0)
    by_k = {c.k: c for c in curve}
    assert set(by_k) == {0, 3, 9}  # k = 200 exceeds every calibration pool (80 - 40) and is left out
    assert by_k[0].std == 0.0 and by_k[0].persons == 8
    assert by_k[3].mean < 0.8 * by_k[0].mean and by_k[9].mean < 0.7 * by_k[0].mean
    # the k = 0 point is exactly the unadapted error of the last test_last samples
    with torch.no_grad():
        err = torch.cat(
            [torch.rad2deg(torch.acos((joint(p.features[-40:]) * p.targets[-40:]).sum(-1).clamp(-1, 1))) for p in test]
        )
    assert by_k[0].mean == pytest.approx(err.mean().item(), abs=1e-3)
    with pytest.raises(ValueError, match="no test person has more than test_last=100"):
        personalization_curve(joint, test, [0], test_last=100)


def test_select_adapt_lr_picks_each_initialisations_own_step_size() -> None:
    """The score of a candidate is the mean of the protocol's errors over the ks on the given persons; the best is
    the smallest score. A step that overshoots loses to one that corrects the offset."""
    persons = _toy_persons(6, 60, seed=3)
    torch.manual_seed(0)
    joint = joint_train(_toy_persons(20, 64, 0), AdaGENConfig(joint_steps=300, joint_batch=256, seed=1))
    kw = dict(test_last=30, repeats=2, steps=20, seed=5)
    with torch_threads(1):
        best, scores = select_adapt_lr(joint, persons, [1e-6, 3e-4, 0.5], [3, 9], **kw)
        expected = {
            lr: sum(c.mean for c in personalization_curve(joint, persons, [3, 9], lr=lr, **kw)) / 2
            for lr in (1e-6, 3e-4, 0.5)
        }
    assert scores == pytest.approx(expected)
    assert best == 3e-4 and scores[3e-4] < scores[1e-6] and scores[3e-4] < scores[0.5]
    with pytest.raises(ValueError, match="at least one candidate"):
        select_adapt_lr(joint, persons, [], [3], test_last=30)


def test_none_baseline_starts_from_the_dted_gaze_head() -> None:
    """The official "NONE" initialisation is the DT-ED gaze head (ReLU) itself: the same predictions, and a copy."""
    torch.manual_seed(0)
    dted = DTED(growth_rate=4, decoder_input_c=8, image_size=(32, 64))
    mlp = mlp_from_dted_head(dted.gaze1, dted.gaze2)
    z = F.normalize(torch.randn(5, 2, 3), dim=1)
    torch.testing.assert_close(mlp(z), dted.estimate_gaze(z))
    assert mlp.activation == "relu" and mlp.layer1.weight.data_ptr() != dted.gaze1.weight.data_ptr()


def test_personalization_curve_draws_as_the_official_protocol() -> None:
    """Official 2_meta_learning.py: random reseeded for each k, then person by person its repeats of k calibration
    samples drawn from all but the last test_last; each draw adapts a copy with full-batch SGD. The curve equals that
    loop written out with core.meta.adapt, and one k's result does not depend on which other ks are evaluated."""
    import random

    from nvresearch.core.geometry import angular_error
    from nvresearch.core.meta import adapt

    test = _toy_persons(3, 50, seed=5)
    torch.manual_seed(0)
    mlp = GazeMLP()
    kw = dict(test_last=20, repeats=3, steps=4, lr=1e-3, seed=11)
    with torch_threads(1):
        alone = personalization_curve(mlp, test, [3], **kw)[0]
        among = {c.k: c for c in personalization_curve(mlp, test, [0, 1, 3], **kw)}
        rng, errs = random.Random(11), []
        for p in test:
            for _ in range(3):
                idx = rng.sample(range(30), 3)
                mine = adapt(mlp, (p.features[idx], p.targets[idx]), lambda a, b: angular_error(a, b).mean(), 4, 1e-3)
                with torch.no_grad():
                    errs.append(angular_error(mine(p.features[-20:]), p.targets[-20:]))
    err = torch.stack(errs).view(3, 3, 20)  # (person, repeat, sample)
    assert among[3].mean == pytest.approx(alone.mean, abs=1e-6)
    assert alone.mean == pytest.approx(err.mean().item(), abs=1e-4)
    assert alone.std == pytest.approx(err.mean(dim=(0, 2)).std(unbiased=False).item(), abs=1e-4)


def test_offset_correction_curve_removes_a_constant_offset_and_shares_the_draws() -> None:
    """A model that returns the optical axis is wrong by each person's constant (pitch, yaw) offset: subtracting the
    mean error of k >= 1 samples removes it exactly; k = 0 keeps it; the draws are personalization_curve's."""
    import random

    from nvresearch.core.geometry import angular_error, vector_to_pitchyaw
    from nvresearch.faze.metrics import offset_correction_curve

    class Optical(torch.nn.Module):
        def forward(self, x):
            return x[:, :3]

    test = _toy_persons(4, 50, seed=7)
    curve = {c.k: c for c in offset_correction_curve(Optical(), test, [0, 1, 3], test_last=20, repeats=3, seed=2)}
    assert curve[0].mean > 3.0 and curve[0].std == 0.0  # |kappa| of 6 deg std per axis
    assert curve[1].mean < 0.2 and curve[3].mean < 0.2
    # the same calibration samples as the protocol's loop: one biased label per draw shows which samples were used
    biased = [PersonCodes(p.person, p.features, p.targets.clone(), p.gaze) for p in test]
    for p in biased:
        p.targets[:30] = pitchyaw_to_vector(p.gaze[:30] + torch.arange(30.0)[:, None] * 0.01)
    got = offset_correction_curve(Optical(), biased, [3], test_last=20, repeats=3, seed=2)[0]
    rng, errs = random.Random(2), []
    for p in biased:
        pred = vector_to_pitchyaw(p.features[:, :3])
        for _ in range(3):
            idx = rng.sample(range(30), 3)
            off = (vector_to_pitchyaw(p.targets[idx]) - pred[idx]).mean(0)
            errs.append(angular_error(pitchyaw_to_vector(pred[-20:] + off), p.targets[-20:]))
    assert got.mean == pytest.approx(torch.cat(errs).mean().item(), abs=1e-4)


@pytest.mark.parametrize("first_order", [True, False])
@pytest.mark.parametrize("activation", ["selu", "relu"])
def test_mlp_meta_loss_equals_the_generic_batched_meta_loss(first_order: bool, activation: str) -> None:
    """The GazeMLP-specific meta-objective (stacked matrix products) is core.meta's vmapped one, value and grads."""
    from nvresearch.core.geometry import mean_angular_error
    from nvresearch.core.meta import batched_meta_loss
    from nvresearch.faze.adagen import mlp_meta_loss

    torch.manual_seed(0)
    mlp = GazeMLP(activation=activation)
    sx, qx = torch.randn(4, 3, 6), torch.randn(4, 7, 6)
    sy, qy = F.normalize(torch.randn(4, 3, 3), dim=-1), F.normalize(torch.randn(4, 7, 3), dim=-1)
    grads = []
    for loss in (
        mlp_meta_loss(mlp, sx, sy, qx, qy, 3, 1e-2, first_order),
        batched_meta_loss(mlp, sx, sy, qx, qy, mean_angular_error, 3, 1e-2, first_order),
    ):
        grads.append((loss.detach(), torch.autograd.grad(loss, list(mlp.parameters()))))
    (mine, mine_g), (ref, ref_g) = grads
    torch.testing.assert_close(mine, ref)
    for a, b in zip(mine_g, ref_g):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    # the inner loop moves the parameters: the adapted query loss differs from the unadapted one
    assert not torch.allclose(mine, mlp_meta_loss(mlp, sx, sy, qx, qy, 0, 1e-2).detach())


def test_meta_train_runs_both_modes_and_changes_the_mlp() -> None:
    train = _toy_persons(6, 40, 2)
    for mode in ("faithful", "textbook"):
        cfg = AdaGENConfig(meta_steps=5, query_size=10, inner_lr=1e-4, mode=mode, per_k=False, train_ks=(2, 3))
        mlp = meta_train(train, cfg)
        torch.manual_seed(cfg.seed % 2**31)
        fresh = GazeMLP()  # the initialisation meta_train starts from
        assert (mlp.layer1.weight - fresh.layer1.weight).abs().max() > 1e-5
    with pytest.raises(ValueError, match="too few for k=50"):
        meta_train(train, AdaGENConfig(meta_steps=1, train_ks=(50,), query_size=5))


def test_personalize_and_predict_api() -> None:
    torch.manual_seed(0)
    dted = DTED(growth_rate=4, decoder_input_c=8, image_size=(32, 64))
    model = FazeGazeEstimator(dted, GazeMLP())
    pixels, labels, _ = render_person(np.random.default_rng(0), 12, 32, 64)
    py = predict(model, pixels)  # uint8 (B, H, W, 3) patches as stored in the HDF5 files
    assert py.shape == (12, 2)
    gaze = torch.from_numpy(labels[:, :2])
    mine = personalize(model, pixels, gaze, k=9, steps=50, lr=1e-3)
    assert mine is not model and mine.dted is model.dted
    before = gaze_angular_loss(pitchyaw_to_vector(predict(model, pixels)), gaze).item()
    after = gaze_angular_loss(pitchyaw_to_vector(predict(mine, pixels)), gaze).item()
    assert after < before
    same = personalize(model, pixels, gaze, k=0)
    torch.testing.assert_close(predict(same, pixels), py)
    with pytest.raises(ValueError, match="k=20 calibration samples requested but 12 were given"):
        personalize(model, pixels, gaze, k=20)
    with pytest.raises(ValueError, match=r"gaze_labels must be \(N, 2\)"):
        personalize(model, pixels, gaze[:5], k=2)
    with pytest.raises(ValueError, match=r"float images must be \(B, 3, H, W\)"):
        predict(model, torch.zeros(2, 32, 64))


def test_error_curve_png(tmp_path) -> None:
    import cv2

    path = draw_error_curve(
        [0, 1, 3, 9],
        {"a": [5.0, 6.0, 4.0, 3.0], "b": [5.5, 6.5, 4.5, 3.5]},
        tmp_path / "curve.png",
        hlines={"ref": 5.2},
    )
    img = cv2.imread(str(path))
    assert img is not None and img.shape == (480, 760, 3) and (img < 128).any()


def _softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def _planar(angles_deg: list[float]) -> torch.Tensor:
    """One-row codes ``(N, 1, 3)``: unit vectors in the x-y plane at the given angles."""
    r = [math.radians(a) for a in angles_deg]
    return torch.tensor([[[math.cos(a), math.sin(a), 0.0]] for a in r])


def test_batch_hard_triplet_loss_by_hand() -> None:
    """Angular: codes at 0, 10 (person 0), 40, 70 degrees (person 1), and a lone person far away (no positive: no
    anchor, but a negative for no one nearer). Anchors' (d+, d-): (10, 40), (10, 30), (30, 30), (30, 60)."""
    from nvresearch.faze.losses import batch_hard_triplet_loss

    codes = _planar([0, 10, 40, 70, 180])
    person = torch.tensor([0, 0, 1, 1, 2])
    pairs = [(10, 40), (10, 30), (30, 30), (30, 60)]
    for margin in (0.0, 20.0):
        want = sum(_softplus(p - n + margin) for p, n in pairs) / 4
        got = batch_hard_triplet_loss(codes, person, margin=margin)
        assert float(got) == pytest.approx(want, abs=2e-3), margin
    got = batch_hard_triplet_loss(codes, person, margin=20.0, regularize_within=True)
    assert float(got) == pytest.approx(sum(_softplus(p - n + 20) for p, n in pairs) / 4 + 20.0, abs=2e-3)
    # Euclidean, two rows (the second all zero, so d = |dx| / 2): x = 0, 1 | 4, 6 | 100
    x = torch.tensor([0.0, 1.0, 4.0, 6.0, 100.0])
    codes = torch.zeros(5, 2, 3)
    codes[:, 0, 0] = x
    pairs = [(0.5, 2.0), (0.5, 1.5), (1.0, 1.5), (1.0, 2.5)]
    got = batch_hard_triplet_loss(codes, person, distance="euclidean")
    assert float(got) == pytest.approx(sum(_softplus(p - n) for p, n in pairs) / 4, abs=1e-5)
    # one person only: no triplet, zero loss that still back-propagates
    codes.requires_grad_(True)
    zero = batch_hard_triplet_loss(codes[:2], torch.tensor([0, 0]), distance="euclidean")
    zero.backward()
    assert float(zero.detach()) == 0.0 and codes.grad is not None
    with pytest.raises(ValueError, match="distance must be 'angular' or 'euclidean'"):
        batch_hard_triplet_loss(codes, person, distance="cosine")


def test_all_frontals_equal_loss_by_hand() -> None:
    """Codes e1, e2, e1: the mean (2/3, 1/3, 0) is atan(1/2) from e1 and atan(2) from e2; the loss is the unbiased
    std of the three angles. Codes e1, e1, -e1: the mean is e1 / 3, and the official lower clip of the cosine (1e-6)
    counts the opposite code as 90 degrees, not 180."""
    import statistics

    from nvresearch.faze.losses import all_frontals_equal_loss

    codes = _planar([0, 90, 0])
    a, b = math.degrees(math.atan(0.5)), math.degrees(math.atan(2.0))
    assert float(all_frontals_equal_loss(codes)) == pytest.approx(statistics.stdev([a, b, a]), abs=1e-3)
    codes = _planar([0, 0, 180])
    near, far = math.degrees(math.acos(1 - 1e-6)), math.degrees(math.acos(1e-6))
    assert float(all_frontals_equal_loss(codes)) == pytest.approx(statistics.stdev([near, near, far]), abs=1e-3)
    # two rows: the per-code angle is the mean over rows (the second row equal in all codes adds the clip floor)
    two = torch.cat([_planar([0, 90, 0]), _planar([5, 5, 5])], dim=1)
    want = statistics.stdev([(a + near) / 2, (b + near) / 2, (a + near) / 2])
    assert float(all_frontals_equal_loss(two)) == pytest.approx(want, abs=1e-3)


def _find_block(picture: np.ndarray, block: np.ndarray) -> list[tuple[int, int]]:
    """Every (y, x) where ``block`` ``(h, w, 3)`` appears exactly in ``picture`` ``(H, W, 3)``."""
    h, w = block.shape[:2]
    ys, xs = np.nonzero((picture == block[0, 0]).all(-1))
    return [
        (int(y), int(x))
        for y, x in zip(ys, xs)
        if y + h <= picture.shape[0] and x + w <= picture.shape[1] and (picture[y : y + h, x : x + w] == block).all()
    ]


def test_pictures_show_the_model_input_pixels_in_rgb_enlarged_and_in_row_order(tmp_path) -> None:
    """The input cells of reconstructions.png and gaze_rotation.png are the stored RGB patches exactly (the model
    input (2 p / 255 - 1) mapped back by (x + 1) / 2), enlarged by a whole factor to 128 px high, one per row in the
    batch's order, below the column captions and right of the row captions. A channel swap, a wrong de-normalisation
    or a picture without captions would fail."""
    from PIL import Image

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(4, 32, 64, 3), dtype=np.uint8)
    gaze = torch.tensor([[0.1, -0.2], [0.0, 0.3], [-0.1, 0.1], [0.2, 0.0]])
    batch = {
        "image": torch.stack([preprocess_pixels(p, equalize=False) for p in pixels]),
        "person": torch.tensor([0, 0, 1, 1]),
        "gaze": gaze,
        "R_gaze": pitchyaw_to_rotation(gaze),
        "R_head": pitchyaw_to_rotation(torch.zeros(4, 2)),
    }
    torch.manual_seed(0)
    dted = DTED(growth_rate=4, decoder_input_c=8, image_size=(32, 64)).eval()
    rec = save_reconstructions(dted, batch, tmp_path / "reconstructions.png", num=6)
    rot = save_gaze_rotation(dted, batch, tmp_path / "gaze_rotation.png", num=3)
    big = [p.repeat(4, axis=0).repeat(4, axis=1) for p in pixels]  # nearest-neighbour x4: 128 x 256
    for path, shown, cells_per_row in ((rec, [0, 2], 3), (rot, [0, 1, 2], 10)):
        picture = np.asarray(Image.open(path).convert("RGB"))
        assert picture.shape[1] > cells_per_row * 256, picture.shape  # cells enlarged, plus a row-caption band
        places = [_find_block(picture, big[i]) for i in shown]
        assert all(len(p) == 1 for p in places), (path.name, places)
        ys = [p[0][0] for p in places]
        xs = {p[0][1] for p in places}
        assert ys == sorted(ys) and len(xs) == 1, (path.name, places)  # one per row, in order, in one column
        assert ys[0] > 0 and min(xs) > 0  # column captions above, row captions to the left
        assert (picture[: ys[0], min(xs) :] < 128).any() and (picture[ys[0] :, : min(xs)] < 128).any()  # text


def test_rotation_x_moves_code_rows() -> None:
    """Rotating a frontalised gaze code by +-45 deg about x changes it (the latent walk of the samples)."""
    z = F.normalize(torch.randn(1, 2, 3), dim=1)
    r = rotation_x(torch.tensor([math.radians(45)]))
    assert (rotate_codes(z, torch.eye(3)[None], r) - z).abs().max() > 0.1


# ---------------------------------------------------------------------------------------------------- official files
def _official_dted_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict with the official DT-ED's 51 names and shapes (spec F), as DataParallel saves it."""
    g = torch.Generator().manual_seed(seed)
    return {f"module.{k}": torch.randn(v.shape, generator=g) for k, v in DTED().state_dict().items()}


def test_load_official_dted_and_maml_checkpoints(tmp_path) -> None:
    from nvresearch.faze import load_official

    state = _official_dted_state()
    torch.save(state, tmp_path / "at_step_0057101.pth.tar")
    dted = load_official(tmp_path / "at_step_0057101.pth.tar")
    assert isinstance(dted, DTED) and not dted.training
    for key, value in dted.state_dict().items():
        assert torch.equal(value, state[f"module.{key}"]), key
    # The MAML MLP as 2_meta_learning.py saves it: layerNN.weights / layerNN.bias.
    g = torch.Generator().manual_seed(1)
    maml = {
        "layer01.weights": torch.randn(64, 6, generator=g),
        "layer01.bias": torch.randn(64, generator=g),
        "layer02.weights": torch.randn(3, 64, generator=g),
        "layer02.bias": torch.randn(3, generator=g),
    }
    torch.save(maml, tmp_path / "maml.pth.tar")
    mlp = load_official(tmp_path / "maml.pth.tar")
    assert isinstance(mlp, GazeMLP) and mlp.activation == "selu"
    x = torch.randn(5, 6)
    expected = F.normalize(
        F.linear(
            F.selu(F.linear(x, maml["layer01.weights"], maml["layer01.bias"])),
            maml["layer02.weights"],
            maml["layer02.bias"],
        ),
        dim=-1,
    )
    torch.testing.assert_close(mlp(x), expected)


def test_load_official_reports_what_did_not_map(tmp_path) -> None:
    from nvresearch.faze import OfficialCheckpointError, load_official

    state = _official_dted_state()
    del state["module.gaze1.weight"]
    state["module.fc_enc.weight"] = torch.zeros(100, 640)
    state["module.triplet_head.weight"] = torch.zeros(3)
    torch.save(state, tmp_path / "bad.pth.tar")
    with pytest.raises(OfficialCheckpointError) as err:
        load_official(tmp_path / "bad.pth.tar")
    msg = str(err.value)
    assert "bad.pth.tar" in msg and "1 missing: gaze1.weight" in msg and "1 unexpected: triplet_head.weight" in msg
    assert "1 wrong shape: fc_enc.weight (100, 640) (ours (118, 640))" in msg
    (tmp_path / "junk.pth.tar").write_bytes(b"not a checkpoint")
    with pytest.raises(OfficialCheckpointError, match="cannot read .*junk.pth.tar"):
        load_official(tmp_path / "junk.pth.tar")
    with pytest.raises(FileNotFoundError, match="no official FAZE checkpoint at"):
        load_official(tmp_path / "absent.pth.tar")
