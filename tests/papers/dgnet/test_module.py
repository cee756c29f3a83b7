"""DGNetModule in-process: the teacher stage, the joint stage's optimisers and schedules, and the evaluation."""

from __future__ import annotations

import functools
import math
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from nvresearch.dgnet.data import persons_split
from nvresearch.dgnet.datamodule import DGNetDataModule
from nvresearch.dgnet.models import AppearanceEncoder, DGNetDiscriminator, DGNetGenerator, TeacherNet, to_gray
from nvresearch.dgnet.module import DGNetModule

NUM_IDS, TEACHER_STEPS, JOINT_STEPS, LR_ID = 4, 2, 2, 0.01


def _module(**kw) -> DGNetModule:
    torch.manual_seed(0)
    args = dict(
        generator=DGNetGenerator(base_channels=8, num_downsample=1, appearance_dim=512, mlp_dim=16),
        discriminator=DGNetDiscriminator(base_channels=8, num_res=1, num_scales=1),
        appearance_encoder=AppearanceEncoder(NUM_IDS, backbone="tiny"),
        teacher=TeacherNet(NUM_IDS, backbone="tiny"),
        optimizer_g=functools.partial(torch.optim.Adam, lr=1e-3, betas=(0.0, 0.999)),
        optimizer_d=functools.partial(torch.optim.Adam, lr=1e-3, betas=(0.0, 0.999)),
        optimizer_id=functools.partial(torch.optim.SGD, lr=LR_ID, momentum=0.9, nesterov=True),
        optimizer_teacher=functools.partial(torch.optim.SGD, lr=0.01, momentum=0.9),
        scheduler_id=functools.partial(torch.optim.lr_scheduler.MultiStepLR, milestones=[1], gamma=0.1),
        # the post-warm-up weights from the first joint iteration: every term on (teacher, cycle, code recon.)
        weights={"recon_f": 1.0, "recon_s": 1.0, "recon_x_cyc": 2.0, "teacher": 2.0},
        teacher_steps=TEACHER_STEPS,
        upscale_height=0,
        num_samples=2,
    )
    return DGNetModule(**{**args, **kw})


def _data() -> DGNetDataModule:
    split = functools.partial(persons_split, num_ids=NUM_IDS, images_per_camera=2)
    return DGNetDataModule(split, batch_size=4, eval_batch_size=16)


class Snapshots(pl.Callback):
    """Parameters of every network after each training batch."""

    def __init__(self) -> None:
        self.states: list[dict[str, list[torch.Tensor]]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.states.append(_params(pl_module))


def _params(m: DGNetModule) -> dict[str, list[torch.Tensor]]:
    nets = ("generator", "discriminator", "appearance_encoder", "teacher")
    return {n: [p.detach().clone() for p in getattr(m, n).parameters()] for n in nets}


def _moved(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return any(not torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_teacher_stage_then_joint_stage_and_market_evaluation(tmp_path: Path) -> None:
    module, snaps = _module(), Snapshots()
    start = _params(module)
    trainer = pl.Trainer(
        max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_train_batches=TEACHER_STEPS + JOINT_STEPS, num_sanity_val_steps=0,
        callbacks=[snaps], default_root_dir=str(tmp_path / "run"),
    )  # fmt: skip
    trainer.fit(module, _data())

    # stage 1 moves the teacher only; stage 2 moves E_s/G, D and E_a and leaves the teacher's weights alone
    teacher_done = snaps.states[TEACHER_STEPS - 1]
    assert _moved(start["teacher"], teacher_done["teacher"])
    for net in ("generator", "discriminator", "appearance_encoder"):
        assert not _moved(start[net], teacher_done[net]), net
        assert _moved(teacher_done[net], snaps.states[-1][net]), net
    assert not _moved(teacher_done["teacher"], snaps.states[-1]["teacher"])
    assert int(module.iteration) == TEACHER_STEPS + JOINT_STEPS

    metrics = trainer.callback_metrics
    for name in ("d_loss", "g_loss", "g_teacher", "g_recon_x_cyc", "g_recon_f", "g_recon_s", "g_gan", "teacher_ce"):
        assert math.isfinite(float(metrics[f"train/{name}_epoch"])), name
    assert float(metrics["train/g_teacher_epoch"]) > 0  # the teacher term is on

    # E_a: SGD with the heads at 10x the trunk's lr, MultiStepLR per joint iteration (milestone 1 passed)
    opt_id = module.optimizers()[2]
    assert opt_id.param_groups[0]["lr"] == pytest.approx(0.1 * LR_ID)
    assert opt_id.param_groups[1]["lr"] == pytest.approx(LR_ID)
    assert opt_id.param_groups[0]["nesterov"]

    # evaluation: the Market protocol for DG-Net's feature and the colour probe, and the swap grid
    keys = {"rank1", "rank5", "rank10", "mAP"}
    for name in keys:
        value = float(metrics[f"val/{name}"])
        assert 0 <= value <= 1, name
    assert (tmp_path / "run" / "samples" / "val_epoch000_swap.png").is_file()
    assert 0 <= float(metrics["val/person_colour_mAP"]) <= 1  # the world's masks reach the person-pixel probe
    result = trainer.test(module, _data(), verbose=False)[0]
    swap_keys = {"colour_to_appearance", "colour_to_structure", "colour_win", "pose_to_structure", "pose_to_appearance",
                 "pose_win"}  # fmt: skip
    assert set(result) == {f"test/{p}{k}" for p in ("", "colour_", "person_colour_") for k in keys} | {
        f"test/swap_{p}{k}" for p in ("", "copy_structure_", "copy_appearance_") for k in swap_keys
    }
    # the copying probes score as they must: the structure copy keeps the pose and not the clothes, and vice versa
    assert result["test/swap_copy_structure_pose_win"] == 1 and result["test/swap_copy_structure_colour_win"] == 0
    assert result["test/swap_copy_appearance_pose_win"] == 0 and result["test/swap_copy_appearance_colour_win"] >= 0.5
    assert (tmp_path / "run" / "samples" / "test_swap.png").is_file()


def test_ablation_without_generated_data_trains_the_appearance_encoder_only(tmp_path: Path) -> None:
    """``use_generated=False``: no teacher stage, every batch moves E_a (identity losses on real images) and nothing
    else; no generated image, no D or teacher term is logged."""
    module, snaps = _module(use_generated=False), Snapshots()
    start = _params(module)
    trainer = pl.Trainer(
        max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_train_batches=2, limit_val_batches=0, num_sanity_val_steps=0,
        callbacks=[snaps], default_root_dir=str(tmp_path / "run"),
    )  # fmt: skip
    trainer.fit(module, _data())
    assert module.teacher_steps == 0
    assert _moved(start["appearance_encoder"], snaps.states[0]["appearance_encoder"])  # from the first batch on
    assert _moved(snaps.states[0]["appearance_encoder"], snaps.states[1]["appearance_encoder"])
    for net in ("generator", "discriminator", "teacher"):
        assert not _moved(start[net], snaps.states[-1][net]), net
    metrics = trainer.callback_metrics
    assert math.isfinite(float(metrics["train/g_id_epoch"])) and math.isfinite(float(metrics["train/g_pid_epoch"]))
    assert not any(k.startswith(("train/d_", "train/g_gan", "train/g_teacher", "train/teacher_ce")) for k in metrics)


def test_warm_start_gives_the_joint_stage_the_ablations_appearance_encoder(tmp_path: Path) -> None:
    """``warm_start_appearance=True``: in stage 1 E_a takes the ablation's step on each batch while the teacher
    learns, and E_a after stage 1 is the ablation's E_a after as many batches, to the bit (the paired comparison
    of the claim: the teacher's erasing and dropout must not shift E_a's draws)."""

    def fit(module: DGNetModule) -> Snapshots:
        snaps = Snapshots()
        trainer = pl.Trainer(
            max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
            enable_model_summary=False, limit_train_batches=TEACHER_STEPS, limit_val_batches=0,
            num_sanity_val_steps=0, callbacks=[snaps], default_root_dir=str(tmp_path / "run"),
        )  # fmt: skip
        trainer.fit(module, _data())
        return snaps

    warm = _module(warm_start_appearance=True)
    start = _params(warm)
    warm_snaps = fit(warm)
    ablation_snaps = fit(_module(use_generated=False))
    for i in range(TEACHER_STEPS):
        got, want = warm_snaps.states[i]["appearance_encoder"], ablation_snaps.states[i]["appearance_encoder"]
        assert all(torch.equal(x, y) for x, y in zip(got, want, strict=True)), f"E_a differs after batch {i}"
    assert _moved(start["teacher"], warm_snaps.states[-1]["teacher"])  # the teacher still learns
    for net in ("generator", "discriminator"):
        assert not _moved(start[net], warm_snaps.states[-1][net]), net
    # without the warm start E_a waits for the joint stage
    assert not _moved(start["appearance_encoder"], fit(_module()).states[-1]["appearance_encoder"])


def test_swap_dresses_the_structure_in_the_appearance() -> None:
    module = _module()
    x = torch.randn(2, 3, 64, 32)
    out = module.swap(x[:1].expand(2, -1, -1, -1), x)  # image 0's appearance on the structures of images 0 and 1
    assert module.generator.training and module.appearance_encoder.training  # modes restored
    module.eval()
    code = module.appearance_encoder.encode(x[:1]).expand(2, -1)
    expected = module.generator.decode(module.generator.encode(to_gray(x)), code)
    torch.testing.assert_close(out, expected)
    assert not torch.allclose(out, module.swap(x, x[:1].expand(2, -1, -1, -1)))  # the roles are not symmetric


def test_configuration_errors() -> None:
    with pytest.raises(ValueError, match="teacher_steps > 0 needs a model.teacher"):
        _module(teacher=None)
    with pytest.raises(FileNotFoundError, match="model.teacher_path: no file"):
        _module(teacher_path="/nonexistent/net_last.pth", teacher_steps=0)
    with pytest.raises(TypeError, match="model.weights"):
        _module(weights={"no_such_weight": 1.0})
    with pytest.raises(ValueError, match="data.batch_size must be even"):
        DGNetDataModule(functools.partial(persons_split), batch_size=3)


def test_a_non_finite_loss_stops_before_the_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import nvresearch.dgnet.module as dgnet_module
    from nvresearch.core.training.module import NonFiniteLossError

    real = dgnet_module.discriminator_objective

    def nan_objective(*args, **kwargs):
        loss, reg = real(*args, **kwargs)
        return loss * float("nan"), reg

    monkeypatch.setattr(dgnet_module, "discriminator_objective", nan_objective)
    module = _module(teacher_steps=0)
    before = _params(module)["discriminator"]
    trainer = pl.Trainer(
        max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_train_batches=1, limit_val_batches=0, num_sanity_val_steps=0,
        default_root_dir=str(tmp_path / "run"),
    )  # fmt: skip
    with pytest.raises(NonFiniteLossError, match="d_loss=nan"):
        trainer.fit(module, _data())
    assert not _moved(before, _params(module)["discriminator"])
