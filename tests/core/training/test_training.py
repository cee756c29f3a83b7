"""The LightningModule base, the non-finite-loss guard and checkpoints that rebuild their model."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from nvresearch.core.training import CheckpointError, NonFiniteLossError, NVModule, load_checkpoint, read_checkpoint
from nvresearch.core.training.callbacks import EmbedConfig


class ToyModule(NVModule):
    """Linear regression that produces a NaN loss from step ``nan_at`` on (when set)."""

    def __init__(self, nan_at: int = -1, optimizer=None) -> None:
        super().__init__(optimizer=optimizer)
        self.net = torch.nn.Linear(2, 1)
        self.nan_at = nan_at

    def training_step(self, batch, batch_idx):
        x, y = batch
        mse = torch.nn.functional.mse_loss(self.net(x), y)
        if 0 <= self.nan_at <= self.global_step:
            mse = mse * float("nan")
        self.log_losses({"loss": mse, "mse": mse}, "train", batch_size=x.shape[0])
        return mse


TOY_CONFIG = {
    "paper_name": "toy",
    "model": {
        "_target_": "tests_toy_module.ToyModule",
        "optimizer": {"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.1},
    },
}


def _loader() -> DataLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 2, generator=g)
    return DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=4)


def _trainer(tmp_path: Path, config: dict, **kw) -> pl.Trainer:
    ckpt = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "checkpoints", save_last=True, every_n_train_steps=2)
    return pl.Trainer(
        default_root_dir=tmp_path,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[ckpt, EmbedConfig(config)],
        **kw,
    )


@pytest.fixture
def toy_importable(monkeypatch):
    """Make ToyModule importable under a stable module path, as a config `_target_` requires."""
    import sys
    import types

    mod = types.ModuleType("tests_toy_module")
    mod.ToyModule = ToyModule
    monkeypatch.setitem(sys.modules, "tests_toy_module", mod)
    return mod


def test_nan_loss_stops_with_step_and_term_and_keeps_last_good_checkpoint(tmp_path):
    module = ToyModule(nan_at=5, optimizer=lambda p: torch.optim.SGD(p, lr=0.1))
    trainer = _trainer(tmp_path, TOY_CONFIG, max_epochs=3)
    with pytest.raises(NonFiniteLossError, match=r"global step 5 .*loss=nan.*mse=nan"):
        trainer.fit(module, _loader())
    last = read_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    assert last["global_step"] == 4  # written after step 4; the failing step 5 was never applied nor saved
    assert all(torch.isfinite(v).all() for v in last["state_dict"].values())


def test_log_losses_accepts_non_finite_outside_training():
    module = ToyModule()
    # validation metrics may be NaN (e.g. an undefined class IoU); only training refuses them
    module.log = lambda *a, **k: None
    module.log_losses({"loss": torch.tensor(float("nan"))}, "val")


def test_checkpoint_embeds_config_and_load_checkpoint_rebuilds(tmp_path, toy_importable):
    module = ToyModule(optimizer=lambda p: torch.optim.SGD(p, lr=0.1))
    trainer = _trainer(tmp_path, TOY_CONFIG, max_steps=4)
    trainer.fit(module, _loader())
    path = tmp_path / "checkpoints" / "last.ckpt"
    rebuilt = load_checkpoint(path, extra_allowed_targets=("tests_toy_module.",))
    assert isinstance(rebuilt, ToyModule) and not rebuilt.training
    assert rebuilt.config["paper_name"] == "toy"
    for a, b in zip(module.state_dict().values(), rebuilt.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_tampered_checkpoint_with_pickled_object_is_refused(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("this would have run",))

    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "nvresearch": {"config": {}}, "x": Payload()}, path)
    with pytest.raises(CheckpointError, match="pickled Python objects"):
        load_checkpoint(path)


def test_checkpoint_config_cannot_build_arbitrary_targets(tmp_path):
    path = tmp_path / "evil_config.ckpt"
    torch.save(
        {"state_dict": {}, "nvresearch": {"config": {"model": {"_target_": "os.system", "_args_": ["true"]}}}}, path
    )
    with pytest.raises(PermissionError, match="refusing to build 'os.system'"):
        load_checkpoint(path)


def test_checkpoint_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "missing.ckpt")
    torch.save({"state_dict": {}}, tmp_path / "foreign.ckpt")
    with pytest.raises(CheckpointError, match="no embedded nvresearch config"):
        load_checkpoint(tmp_path / "foreign.ckpt")
    (tmp_path / "garbage.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        read_checkpoint(tmp_path / "garbage.ckpt")


def test_checkpoint_config_follows_moved_import_paths():
    from nvresearch.core.training.checkpoint import CONFIG_KEY, checkpoint_config

    old = {
        "model": {
            "_target_": "nvresearch.pac.module.JointUpsamplingModule",
            "net": {"_target_": "nvresearch.pac.models.PacJointUpsample", "factor": 4},
            "optimizer": {"_target_": "torch.optim.Adam", "_partial_": True},
        },
        "data": {"_target_": "nvresearch.pac.seg_datamodule.SegmentationDataModule", "items": [{"_target_": "x.y"}]},
    }
    cfg = checkpoint_config({CONFIG_KEY: {"config": old}})
    assert cfg["model"]["_target_"] == "nvresearch.pac.upsampling.module.JointUpsamplingModule"
    assert cfg["model"]["net"]["_target_"] == "nvresearch.pac.upsampling.models.PacJointUpsample"
    assert cfg["model"]["optimizer"]["_target_"] == "torch.optim.Adam"
    assert cfg["data"]["_target_"] == "nvresearch.pac.segmentation.datamodule.SegmentationDataModule"
    assert cfg["data"]["items"] == [{"_target_": "x.y"}]
