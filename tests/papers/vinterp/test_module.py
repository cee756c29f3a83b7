"""VInterpModule on a tiny embedded world: supervised pretraining, then adaptation (teacher copied at the switch),
the ablations, and the evaluation keys and pictures."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from nvresearch.vinterp.data import sprite_world_split
from nvresearch.vinterp.datamodule import VInterpDataModule
from nvresearch.vinterp.module import VInterpModule

CLIPS = {"source_train": 2, "target_train": 2, "target_val": 1, "target_test": 1}


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("vinterp_world"))  # one tiny world for the whole file


def _data(cache: str) -> VInterpDataModule:
    split = functools.partial(sprite_world_split, cache_dir=cache, clips=CLIPS, size=32, supersample=2)
    return VInterpDataModule(split, batch_size=2)


def _module(adapt: str = "cycle+ps", pretrain_epochs: int = 1) -> VInterpModule:
    torch.manual_seed(0)
    adam = functools.partial(torch.optim.Adam, lr=1e-3)
    return VInterpModule(base_channels=4, flow_scale=1.0, pretrain_epochs=pretrain_epochs, adapt=adapt, optimizer=adam)


def _trainer(tmp_path: Path, epochs: int, batches: int = 2) -> pl.Trainer:
    return pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_train_batches=batches,
        num_sanity_val_steps=0,
        default_root_dir=str(tmp_path / "run"),
    )


def test_pretrain_then_adapt_with_a_frozen_copy(tmp_path: Path, cache: str, monkeypatch) -> None:
    module, data = _module(), _data(cache)
    seen: list[tuple[int, bool]] = []
    copies: list[bool] = []
    step = module.training_step

    def spy(batch, batch_idx):
        seen.append((module.current_epoch, module.adapting))
        if module.adapting and batch_idx == 0:
            copies.append(all(torch.equal(a, b) for a, b in zip(module.teacher.parameters(), module.net.parameters())))
        return step(batch, batch_idx)

    monkeypatch.setattr(module, "training_step", spy)
    before = [p.clone() for p in module.teacher.parameters()]
    trainer = _trainer(tmp_path, 2)
    trainer.fit(module, data)
    assert seen == [(0, False), (0, False), (1, True), (1, True)]
    assert copies == [True]  # the teacher is the pretrained network when adaptation starts
    assert not all(torch.equal(a, b) for a, b in zip(before, module.teacher.parameters()))
    assert all(not p.requires_grad for p in module.teacher.parameters())
    keys = set(trainer.callback_metrics)
    assert {"train/pseudo", "val/psnr", "val/ssim", "val/ie", "val/psnr_blend", "val/psnr_copy"} <= keys
    assert 5 < trainer.callback_metrics["val/psnr"] < 60
    assert (tmp_path / "run" / "samples" / "val_epoch001.png").is_file()
    result = trainer.test(module, data, verbose=False)[0]
    assert set(result) == {"test/psnr", "test/ssim", "test/ie", "test/psnr_blend", "test/psnr_copy"}
    assert result["test/psnr_copy"] < result["test/psnr_blend"]  # the sprite world's probes: blend above copy
    assert (tmp_path / "run" / "samples" / "test_strips.png").is_file()


@pytest.mark.parametrize(("adapt", "pseudo"), [("cycle", 0.0), ("ps", None), ("none", None)])
def test_ablations(tmp_path: Path, cache: str, adapt: str, pseudo: float | None) -> None:
    """From the first epoch (pretrain_epochs 0): ``cycle`` adapts without the pseudo term, ``ps`` trains the pseudo
    term alone (the cycle terms are logged, not trained), ``none`` never adapts."""
    module = _module(adapt, pretrain_epochs=0)
    trainer = _trainer(tmp_path, 1, batches=1)
    trainer.fit(module, _data(cache))
    metrics = trainer.callback_metrics
    if adapt == "ps":
        assert metrics["train/rec"] > 1.0  # the cycle reconstruction is not what trains
        assert metrics["train/loss"].item() == pytest.approx(0.8 * metrics["train/pseudo"].item(), rel=1e-6)
    elif pseudo is None:  # supervised terms only, no cycle pass
        assert "train/pseudo" not in metrics and "train/rec" in metrics
    else:
        assert metrics["train/pseudo"].item() == pseudo


def test_bad_adapt_mode_is_named() -> None:
    with pytest.raises(ValueError, match="'cc'"):
        VInterpModule(base_channels=4, adapt="cc")


# The command line (`python -m nvresearch.train paper=vinterp`, one and two processes) is tested end to end in
# test_ddp.py (marker slow), which also runs the slow-motion command on the trained checkpoint.
