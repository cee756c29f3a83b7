"""PAC joint upsampling through the training stack, and the paper's claim at CPU scale."""

from __future__ import annotations

import pytest
import torch
from conftest import PAC_FAST

from nvresearch.core.utils import instantiate


def test_module_step_logs_loss_and_metrics(compose):
    cfg = compose(PAC_FAST)
    module = instantiate(cfg.model)
    dm = instantiate(cfg.data)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["guide"].shape[-1] == batch["lowres"].shape[-1] * cfg.data.factor
    module.log = lambda *a, **k: None
    loss = module.training_step(batch, 0)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None for p in module.net.parameters())


def test_guidance_branch_gets_its_own_learning_rate(compose):
    cfg = compose([*PAC_FAST, "model.guidance_lr_scale=0.1", "model.optimizer.lr=0.002"])
    module = instantiate(cfg.model)
    opt = module.configure_optimizers()["optimizer"]
    lrs = sorted(g["lr"] for g in opt.param_groups)
    assert lrs == pytest.approx([0.0002, 0.002])
    n_guidance = sum(p.numel() for p in module.net.guidance_parameters())
    assert n_guidance in [sum(p.numel() for p in g["params"]) for g in opt.param_groups]


def test_paper_config_parameter_counts(compose):
    for factor, count in ((4, 183_489), (8, 221_937), (16, 260_385)):
        cfg = compose(["model=pac/default", f"data.factor={factor}"])
        net = instantiate(cfg.model).net
        assert sum(p.numel() for p in net.parameters()) == count
