"""SCOPSModule on tiny shapes: the two optimisers (poly schedule on the network only, the head at 10x), gradient
clipping of each optimiser on its own, finite losses that move both the network and the bases, the evaluation keys
and the part-map pictures."""

from __future__ import annotations

import functools
import math
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from nvresearch.scops.data import part_objects_split
from nvresearch.scops.datamodule import SCOPSDataModule
from nvresearch.scops.module import SCOPSModule, part_overlay

TOTAL_ITERS, POWER, LR, BASIS_LR, CLIP, STEPS = 10, 0.9, 1e-3, 0.01, 1e-3, 3


class GradRecorder(pl.Callback):
    """The gradient norm of each optimiser's parameters as the optimiser steps (after clipping)."""

    def __init__(self) -> None:
        self.norms: list[tuple[int, float]] = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        params = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params]))
        self.norms.append((len(optimizer.param_groups), float(norm)))


def _module(**kw) -> SCOPSModule:
    torch.manual_seed(0)
    args = dict(
        num_parts=3,
        blocks=(1, 1, 1, 1),
        base_channels=4,
        aspp_dilations=(1, 2),
        features="random",
        feature_channels=16,
        feature_scale=10.0,
        tps_scale_range=(0.8, 1.25),
        tps_rotation_deg=30.0,
        optimizer=functools.partial(torch.optim.SGD, lr=LR, momentum=0.9, weight_decay=5e-4),
        scheduler=functools.partial(torch.optim.lr_scheduler.PolynomialLR, total_iters=TOTAL_ITERS, power=POWER),
        basis_optimizer=functools.partial(torch.optim.SGD, lr=BASIS_LR, momentum=0.9, weight_decay=5e-4),
        grad_clip_norm=CLIP,
        num_overlays=2,
    )
    return SCOPSModule(**{**args, **kw})


def _data() -> SCOPSDataModule:
    split = functools.partial(part_objects_split, train_images=8, val_images=8, test_images=8, size=32)
    return SCOPSDataModule(split, batch_size=2, eval_batch_size=4)


def _trainer(tmp_path: Path, callbacks: list[pl.Callback]) -> pl.Trainer:
    return pl.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_train_batches=STEPS,
        num_sanity_val_steps=0,
        callbacks=callbacks,
        default_root_dir=str(tmp_path / "run"),
    )


def test_two_optimisers_schedule_clipping_and_evaluation(tmp_path: Path) -> None:
    module, recorder = _module(), GradRecorder()
    net_before = [p.detach().clone() for p in module.net.parameters() if p.requires_grad]
    basis_before = module.basis.w.detach().clone()
    trainer = _trainer(tmp_path, [recorder])
    trainer.fit(module, _data())

    # every loss term finite, and both the network and the bases moved
    metrics = trainer.callback_metrics
    for name in ("loss", "sc", "on", "con", "eqv", "lmeqv"):
        assert math.isfinite(float(metrics[f"train/{name}"])), name
    moved = [not torch.equal(a, b) for a, b in zip(net_before, (p for p in module.net.parameters() if p.requires_grad))]
    assert all(moved)
    assert not torch.equal(basis_before, module.basis.w.detach())

    # each optimiser's gradients were clipped to the norm on their own (a joint clip would leave both below it)
    assert [groups for groups, _ in recorder.norms] == [2, 1] * STEPS  # network (backbone + head), then bases
    for _, norm in recorder.norms:
        assert norm == pytest.approx(CLIP, rel=1e-4)

    # poly schedule on both network groups (head at 10x), none on the bases
    opt_net, opt_basis = module.optimizers()
    expected = LR * (1 - STEPS / TOTAL_ITERS) ** POWER
    assert opt_net.param_groups[0]["lr"] == pytest.approx(expected)
    assert opt_net.param_groups[1]["lr"] == pytest.approx(10 * expected)
    assert opt_basis.param_groups[0]["lr"] == pytest.approx(BASIS_LR)

    # evaluation: part agreement and landmark error on the validation images, and the overlays
    for name in ("nmi", "ari", "fg_nmi", "fg_ari", "landmark_error"):
        assert math.isfinite(float(metrics[f"val/{name}"])), name
    assert 0 <= float(metrics["val/fg_nmi"]) <= 1
    assert (tmp_path / "run" / "samples" / "val_epoch000.png").is_file()
    result = trainer.test(module, _data(), verbose=False)[0]
    assert set(result) == {f"test/{n}" for n in ("nmi", "ari", "fg_nmi", "fg_ari", "landmark_error")}
    assert (tmp_path / "run" / "samples" / "test_parts.png").is_file()


def test_evaluation_scores_perfect_parts_as_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module, data = _module(num_parts=4), _data()
    data.setup("test")
    labels = data.get_split("test").labels

    def perfect(images: torch.Tensor) -> torch.Tensor:  # logits whose argmax is the ground truth
        index = [i for i in range(labels.shape[0]) if torch.equal(data.get_split("test")[i]["image"], images[0])][0]
        return torch.nn.functional.one_hot(labels[index : index + images.shape[0]], 5).permute(0, 3, 1, 2).float() * 50

    monkeypatch.setattr(module.net, "forward", perfect)
    result = _trainer(tmp_path, []).test(module, data, verbose=False)[0]
    assert result["test/nmi"] == pytest.approx(1.0)
    assert result["test/fg_ari"] == pytest.approx(1.0)


def test_a_part_without_mass_gives_a_nan_landmark_error_not_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Saturated logits (seen in the claim's run without equivariance): part 1 underflows to 0 everywhere, its centre
    # is 0 / 0 as in the official evaluation, and the least-squares fit would fail on it.
    module, data = _module(num_parts=3), _data()

    def saturated(images: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(images.shape[0], 4, 9, 9)
        logits[:, 1] = -1e4
        return logits

    monkeypatch.setattr(module.net, "forward", saturated)
    result = _trainer(tmp_path, []).test(module, data, verbose=False)[0]
    assert math.isnan(result["test/landmark_error"])
    assert math.isfinite(result["test/fg_nmi"])


def test_configuration_errors_and_ddp_flag() -> None:
    with pytest.raises(ValueError, match="features must be one of"):
        _module(features="resnet")
    with pytest.raises(ValueError, match="model.optimizer and model.basis_optimizer"):
        _module(basis_optimizer=None).configure_optimizers()
    assert not _module().ddp_find_unused_parameters
    assert _module(terms=("con", "eqv", "lmeqv")).ddp_find_unused_parameters  # the bases take no part


def test_feature_choices_and_their_arguments() -> None:
    from nvresearch.scops.models import RandomFeatures, TextureFeatures

    texture = _module(features="texture", feature_periods=(2.0, 3.0, 5.0), feature_stride=4, feature_scale=2.0)
    feats = texture.objective.features
    assert isinstance(feats, TextureFeatures) and (feats.out_channels, feats.stride, feats.scale) == (3, 4, 2.0)
    assert texture.basis.w.shape == (3, 3)  # K = 3 parts over the 3 texture channels
    random = _module(feature_stride=4).objective.features
    assert isinstance(random, RandomFeatures) and random(torch.zeros(1, 3, 32, 32)).shape == (1, 16, 8, 8)


def test_part_overlay_colours_parts_only() -> None:
    rgb = torch.full((3, 2, 2), 0.5)
    out = part_overlay(rgb, torch.tensor([[0, 1], [2, 0]]))
    assert torch.equal(out[:, 0, 0], rgb[:, 0, 0]) and torch.equal(out[:, 1, 1], rgb[:, 1, 1])
    assert not torch.equal(out[:, 0, 1], out[:, 1, 0])
