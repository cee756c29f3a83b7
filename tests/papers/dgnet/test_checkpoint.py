"""DGNetModule's checkpoint hooks: a resumed run draws random erasing and the re-encoding branch as the uninterrupted
run does (the generator's state travels in the checkpoint)."""

from __future__ import annotations

import functools
from pathlib import Path

import pytorch_lightning as pl
import torch

from nvresearch.dgnet.data import persons_split
from nvresearch.dgnet.datamodule import DGNetDataModule
from nvresearch.dgnet.models import AppearanceEncoder, DGNetDiscriminator, DGNetGenerator, TeacherNet
from nvresearch.dgnet.module import DGNetModule

NUM_IDS, BATCHES = 4, 2


def _module() -> DGNetModule:
    torch.manual_seed(0)
    adam = functools.partial(torch.optim.Adam, lr=1e-3, betas=(0.0, 0.999))
    sgd = functools.partial(torch.optim.SGD, lr=0.01, momentum=0.9)
    return DGNetModule(
        generator=DGNetGenerator(base_channels=8, num_downsample=1, appearance_dim=512, mlp_dim=16),
        discriminator=DGNetDiscriminator(base_channels=8, num_res=1, num_scales=1),
        appearance_encoder=AppearanceEncoder(NUM_IDS, backbone="tiny"),
        teacher=TeacherNet(NUM_IDS, backbone="tiny"),
        optimizer_g=adam, optimizer_d=adam, optimizer_id=sgd, optimizer_teacher=sgd,
        teacher_steps=1, upscale_height=0, seed=3,
    )  # fmt: skip


class Draws(pl.Callback):
    """The module's random-draw generator state after every training batch."""

    def __init__(self) -> None:
        self.states: list[torch.Tensor] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.states.append(pl_module._rng.get_state().clone())


def _fit(module: DGNetModule, epochs: int, root: Path, ckpt_path: Path | None = None) -> tuple[Draws, pl.Trainer]:
    draws = Draws()
    trainer = pl.Trainer(
        max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_train_batches=BATCHES, limit_val_batches=0, num_sanity_val_steps=0,
        callbacks=[draws], default_root_dir=str(root),
    )  # fmt: skip
    data = DGNetDataModule(functools.partial(persons_split, num_ids=NUM_IDS, images_per_camera=2), batch_size=4)
    trainer.fit(module, data, ckpt_path=None if ckpt_path is None else str(ckpt_path), weights_only=True)
    return draws, trainer


def test_resumed_run_draws_as_the_uninterrupted_one(tmp_path: Path) -> None:
    full, _ = _fit(_module(), 2, tmp_path / "full")
    assert len(full.states) == 2 * BATCHES
    assert not torch.equal(full.states[BATCHES - 1], full.states[-1])  # the second epoch draws

    _, trainer = _fit(_module(), 1, tmp_path / "part")
    ckpt = tmp_path / "part.ckpt"
    trainer.save_checkpoint(ckpt)
    resumed_module = _module()  # a fresh process: the generator starts from its seed
    resumed, _ = _fit(resumed_module, 2, tmp_path / "resumed", ckpt)
    assert len(resumed.states) == BATCHES and int(resumed_module.iteration) == 2 * BATCHES
    for a, b in zip(full.states[BATCHES:], resumed.states, strict=True):
        assert torch.equal(a, b)


def test_checkpoint_without_the_state_keeps_the_seeded_generator() -> None:
    module = _module()
    start = module._rng.get_state().clone()
    module.on_load_checkpoint({"state_dict": {}})  # written before the state was saved
    assert torch.equal(module._rng.get_state(), start)
    torch.rand(3, generator=module._rng)
    saved: dict = {}
    module.on_save_checkpoint(saved)
    other = _module()
    other.on_load_checkpoint(saved)
    assert torch.equal(torch.rand(5, generator=other._rng), torch.rand(5, generator=module._rng))
