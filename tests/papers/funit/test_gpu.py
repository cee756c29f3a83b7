"""FUNIT under mixed precision through the real GANModule / Lightning path.

The ``gpu`` tests run on CUDA (skipped without it), a few steps each: ``32-true``, ``16-mixed`` (gradient scaler)
and ``bf16-mixed`` training, the few-shot evaluation on the device, and autocast outputs against float32 at
initialisation. The CPU tests drive the same scaler path with a CPU ``GradScaler`` so that it is covered everywhere.
"""

from __future__ import annotations

import math

import pytest
import pytorch_lightning as pl
import torch

from nvresearch.core.training.module import NonFiniteLossError
from nvresearch.core.utils import instantiate, torch_threads
from nvresearch.funit.losses import discriminator_losses

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

# The tiny CPU model on a small slice of the embedded creatures (batch 8, so each step is a full-size batch).
SMALL = [
    "paper=funit",
    "data.dataset.images_per_class=4",
    "data.batch_size=8",
    "data.val_size=8",
    "data.eval_content=8",
    "data.unseen_per_class=12",
    "model.eval_ks=[1,5]",
    "model.classifier_steps=10",
]
STEPS = 4  # training batches: 4 D steps and 4 G steps


def _build(compose, *overrides: str):
    cfg = compose([*SMALL, *overrides])
    torch.manual_seed(0)
    module, dm = instantiate(cfg.model), instantiate(cfg.data)
    return module, dm


def _record_amp_scale(module) -> tuple[list[float], set[str]]:
    """Wrap ``module.amp_scale`` (what the R1 penalty is computed with) to record every value it returns, and the
    device types of all parameters and buffers (EMA copy included) at that moment of training."""
    seen: list[float] = []
    devices: set[str] = set()
    original = module.amp_scale

    def recording() -> float:
        value = original()
        seen.append(value)
        devices.update(t.device.type for t in (*module.parameters(), *module.buffers()))
        return value

    module.amp_scale = recording
    return seen, devices


def _snapshot(module) -> dict[str, torch.Tensor]:
    return {k: v.detach().float().cpu().clone() for k, v in module.state_dict().items() if v.is_floating_point()}


def _fit(module, dm, tmp_path, precision: str, accelerator: str, plugins=None) -> pl.Trainer:
    kwargs = {"precision": precision} if plugins is None else {"plugins": plugins}
    trainer = pl.Trainer(
        accelerator=accelerator,
        devices=1,
        max_epochs=1,
        limit_train_batches=STEPS,
        limit_val_batches=1,
        limit_test_batches=1,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        **kwargs,
    )
    trainer.fit(module, datamodule=dm)
    return trainer


def _check_training(trainer: pl.Trainer, module, before: dict[str, torch.Tensor]) -> None:
    assert trainer.global_step == 2 * STEPS  # one D and one G optimiser step per batch
    m = trainer.callback_metrics
    for key in ("train/d_loss", "train/d_gp", "train/g_loss", "train/g_recon", "val/recon_l1"):
        value = m.get(f"{key}_epoch", m.get(key))
        assert value is not None and math.isfinite(float(value)), (key, value)
    after = _snapshot(module)
    for prefix in ("generator.", "discriminator.", "generator_ema."):
        keys = [k for k in before if k.startswith(prefix)]
        assert keys and any(not torch.equal(before[k], after[k]) for k in keys), f"{prefix} did not change"
        assert all(torch.isfinite(after[k]).all() for k in keys), f"{prefix} has non-finite weights"
    for p in module.parameters():  # master weights stay float32 under mixed precision
        assert p.dtype == torch.float32


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("precision", ["32-true", "16-mixed", "bf16-mixed"])
def test_cuda_training_and_evaluation(compose, tmp_path, precision):
    module, dm = _build(compose)
    before = _snapshot(module)
    seen, devices = _record_amp_scale(module)
    trainer = _fit(module, dm, tmp_path, precision, "gpu")
    assert devices == {"cuda"}  # during training (Lightning moves the module back to the CPU after fit)
    _check_training(trainer, module, before)
    assert len(seen) == STEPS
    scaler = trainer.precision_plugin.scaler if precision == "16-mixed" else None
    if precision == "16-mixed":
        assert scaler is not None and scaler.is_enabled()
        assert seen[0] == 2.0**16  # torch's initial scale: R1 differentiated the scaled logits
        assert all(s >= 1.0 for s in seen)
    else:
        assert getattr(trainer.precision_plugin, "scaler", None) is None and seen == [1.0] * STEPS

    # the few-shot evaluation (classifier, K-shot code averaging, pose) on the device
    results = trainer.test(module, datamodule=dm, verbose=False)[0]
    for key in ("test/top1_k1", "test/top1_k5", "test/top5_k5", "test/pose_center_err", "test/chance"):
        assert key in results and math.isfinite(results[key]), (key, results)
    assert (tmp_path / "samples" / "test_translations.png").is_file()


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize(("dtype", "mean_tol", "max_tol"), [("float16", 0.01, 0.1), ("bfloat16", 0.04, 0.4)])
def test_cuda_autocast_close_to_float32_at_init(compose, dtype, mean_tol, max_tol):
    """At initialisation the autocast generator output (K = 5 shots), discriminator logits and features, and the R1
    penalty (differentiated at the AMP scale 2^16) are close to float32. Tolerances are ~4x the differences measured
    with CPU autocast (float16: mean 0.001, max 0.016; bfloat16: mean 0.009, max 0.10; R1 within 0.3 %)."""
    module, dm = _build(compose)
    dm.setup("fit")
    batch = {k: v.cuda() for k, v in next(iter(dm.train_dataloader())).items()}
    g, d = module.generator.cuda(), module.discriminator.cuda()
    shots = batch["class_image"][:, None].expand(-1, 5, -1, -1, -1)

    def run() -> list[torch.Tensor]:
        y = g(batch["content"], shots)
        logits, feats = d(batch["class_image"], batch["class_label"])
        gp = discriminator_losses(
            g, d, batch["content"], batch["class_image"], batch["class_label"], gp_mode="clean", grad_scale=2.0**16
        )["gp"]
        return [t.detach().float() for t in (y, logits, feats, gp)]

    ref = run()
    with torch.autocast("cuda", dtype=getattr(torch, dtype)):
        out = run()
    for name, a, r in zip(("image", "logits", "features"), out[:3], ref[:3], strict=True):
        scale = max(1.0, float(r.abs().mean()))  # logits / features grow to ~2 at init
        assert torch.isfinite(a).all(), name
        assert float((a - r).abs().mean()) < mean_tol * scale, (name, float((a - r).abs().mean()))
        assert float((a - r).abs().max()) < max_tol * scale, (name, float((a - r).abs().max()))
    assert torch.isfinite(out[3]) and abs(float(out[3] - ref[3])) < 0.02 * float(ref[3]), (out[3], ref[3])


# ---------------------------------------------------------------------------------------------------- CPU
@pytest.mark.slow
def test_gradient_scaler_path_on_cpu(compose, tmp_path):
    """The 16-mixed path with a CPU GradScaler: R1 uses the scaler's scale, both networks and the EMA train.
    (Float16 convolutions are slow on CPU: a narrower model at batch 4.)"""
    from pytorch_lightning.plugins.precision import MixedPrecision

    module, dm = _build(compose, "model.generator.nf=4", "model.discriminator.nf=4", "data.batch_size=4")
    before = _snapshot(module)
    seen, devices = _record_amp_scale(module)
    scaler = torch.amp.GradScaler("cpu")
    with torch_threads(1):  # tiny convolutions: a second thread only spin-waits on a loaded host
        trainer = _fit(module, dm, tmp_path, "16-mixed", "cpu", plugins=[MixedPrecision("16-mixed", "cpu", scaler)])
    _check_training(trainer, module, before)
    assert trainer.precision_plugin.scaler is scaler
    assert len(seen) == STEPS and seen[0] == 2.0**16 and all(s >= 1.0 for s in seen)
    assert devices == {"cpu"}


def test_scale_overflow_is_skipped_then_reported(compose):
    """Under a scaler, a non-finite loss is a scale overflow (the scaler skips the step) up to the patience; without
    a scaler, or beyond the patience, training stops with NonFiniteLossError."""
    module, _ = _build(compose)
    module.log = lambda *args, **kwargs: None  # no trainer attached
    bad, good = {"loss": torch.tensor(float("inf"))}, {"loss": torch.tensor(1.0)}
    with pytest.raises(NonFiniteLossError, match="d_loss=inf"):
        module._log_terms(bad, "d", 8)
    module.grad_scaler = lambda: object()
    for _ in range(module.amp_overflow_patience):
        module._log_terms(bad, "d", 8)
    module._log_terms(good, "g", 8)  # the generator's finite step does not reset the discriminator's count
    with pytest.raises(NonFiniteLossError, match="d_loss=inf"):
        module._log_terms(bad, "d", 8)
    module._log_terms(good, "d", 8)  # a finite step does
    module._log_terms(bad, "d", 8)
