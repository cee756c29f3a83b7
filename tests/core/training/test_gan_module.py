"""The alternating discriminator / generator pattern (manual optimisation) on a 1-D toy GAN."""

from __future__ import annotations

import functools

import pytest
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from nvresearch.core.gan import d_loss_fake, d_loss_real, g_loss, r1_penalty
from nvresearch.core.training.gan import GANModule


class ToyGAN(GANModule):
    """Learn N(3, 0.5^2) from N(0, 1) noise with an affine generator; the D step also uses R1."""

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        torch.manual_seed(0)
        self.generator = nn.Linear(1, 1)
        self.discriminator = nn.Sequential(nn.Linear(1, 16), nn.LeakyReLU(0.2), nn.Linear(16, 1))
        self.init_ema()
        self.g_step_d_grads: list[bool] = []

    def discriminator_losses(self, batch):
        (real,) = batch
        z = torch.randn_like(real)
        with torch.no_grad():
            fake = self.generator(z)
        real = real.detach().requires_grad_(True)
        d_real = self.discriminator(real)
        r1 = r1_penalty(d_real, real, grad_scale=self.amp_scale())
        terms = {
            "real": d_loss_real(d_real, "nonsaturating"),
            "fake": d_loss_fake(self.discriminator(fake), "nonsaturating"),
        }
        terms["r1"] = r1
        terms["loss"] = terms["real"] + terms["fake"] + 0.1 * r1
        return terms

    def generator_losses(self, batch):
        (real,) = batch
        fake = self.generator(torch.randn_like(real))
        self.g_step_d_grads.append(any(p.requires_grad for p in self.discriminator.parameters()))
        loss = g_loss(self.discriminator(fake), "nonsaturating")
        return {"adv": loss, "loss": loss}


def _fit(tmp_path, precision: str) -> ToyGAN:
    adam = functools.partial(torch.optim.Adam, lr=0.03, betas=(0.5, 0.999))
    module = ToyGAN(optimizer_g=adam, optimizer_d=adam, ema_decay=0.9)
    data = TensorDataset(3.0 + 0.5 * torch.randn(2048, 1, generator=torch.Generator().manual_seed(1)))
    trainer = pl.Trainer(
        max_epochs=3,
        accelerator="cpu",
        precision=precision,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(module, DataLoader(data, batch_size=32, shuffle=True))
    assert trainer.global_step == 2 * 3 * 64  # one step per optimiser per batch
    return module


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_alternating_updates_learn_the_toy_distribution(tmp_path, precision):
    module = _fit(tmp_path, precision)
    with torch.no_grad():
        samples = module.generator(torch.randn(4096, 1))
        ema = module.generator_ema(torch.randn(4096, 1))
    assert abs(samples.mean().item() - 3.0) < 0.5, samples.mean()
    assert abs(ema.mean().item() - 3.0) < 0.5, ema.mean()
    # the discriminator was frozen during every generator step, and everything is trainable again afterwards
    assert module.g_step_d_grads and not any(module.g_step_d_grads)
    assert all(p.requires_grad for p in module.discriminator.parameters())
    assert not any(p.requires_grad for p in module.generator_ema.parameters())


def test_missing_optimizer_is_reported():
    module = ToyGAN()
    with pytest.raises(ValueError, match="optimizer_g and optimizer_d"):
        module.configure_optimizers()
