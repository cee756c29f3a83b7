"""The LightningModule base class that every paper's module extends."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor


class NonFiniteLossError(FloatingPointError):
    """Raised when a loss term becomes NaN or infinite; training stops before the bad step is applied."""


OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., Any]


class NVModule(pl.LightningModule):
    """Common behaviour of the papers' modules.

    * ``optimizer`` / ``scheduler`` are factories (``_partial_: true`` configs) applied to the trainable parameters.
    * :meth:`log_losses` logs every loss term under ``<stage>/<name>`` and, in training, stops the run with a
      :class:`NonFiniteLossError` naming the step and the term as soon as one term is NaN or infinite, before the
      optimiser applies it. The last checkpoint written before that step is left untouched.
    * :meth:`parameter_groups` lets a paper give parts of the network their own learning rate (``lr_scale``).
    * ``grad_clip_norm`` clips the global gradient norm before each optimiser step (after AMP unscaling).
    * :attr:`samples_dir` is where pictures go (``<run>/samples``).
    """

    def __init__(
        self,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        scheduler_interval: str = "epoch",
        check_finite: bool = True,
        grad_clip_norm: float | None = None,
    ) -> None:
        super().__init__()
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        if scheduler_interval not in ("epoch", "step"):
            raise ValueError(f"scheduler_interval must be 'epoch' or 'step', got {scheduler_interval!r}")
        self.scheduler_interval = scheduler_interval
        self.check_finite = check_finite
        self.grad_clip_norm = grad_clip_norm

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self) -> Any:
        if self.optimizer_factory is None:
            raise ValueError(f"{type(self).__name__} has no optimizer configured (set model.optimizer)")
        optimizer = self.optimizer_factory(self.parameter_groups())
        for group in optimizer.param_groups:  # before the scheduler records its initial learning rates
            group["lr"] *= group.pop("lr_scale", 1.0)
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": self.scheduler_interval}}

    def parameter_groups(self) -> list[dict[str, Any]]:
        """Optimizer parameter groups; a group may carry ``lr_scale`` (multiplies the optimizer's learning rate)."""
        return [{"params": [p for p in self.parameters() if p.requires_grad]}]

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.grad_clip_norm:
            torch.nn.utils.clip_grad_norm_([p for p in self.parameters() if p.grad is not None], self.grad_clip_norm)

    # ------------------------------------------------------------------ logging
    def log_losses(self, terms: Mapping[str, Tensor], stage: str, batch_size: int | None = None) -> None:
        """Log each loss term as ``<stage>/<name>``; in training, refuse non-finite terms."""
        if stage == "train" and self.check_finite:
            bad = [name for name, value in terms.items() if not bool(torch.isfinite(value.detach()).all())]
            if bad:
                values = ", ".join(f"{n}={terms[n].detach().float().mean().item():.4g}" for n in bad)
                raise NonFiniteLossError(
                    f"non-finite loss at global step {self.global_step} (epoch {self.current_epoch}): {values}. "
                    "Training stopped before this step was applied; the last checkpoint holds the last good weights."
                )
        on_step = stage == "train"
        for name, value in terms.items():
            self.log(
                f"{stage}/{name}",
                value.detach(),
                on_step=on_step,
                on_epoch=True,
                prog_bar=name == "loss",
                batch_size=batch_size,
                sync_dist=stage != "train",
            )

    # ------------------------------------------------------------------ outputs
    @property
    def output_dir(self) -> Path:
        """The run folder (``trainer.default_root_dir``)."""
        if self._trainer is None:
            raise RuntimeError("output_dir is only known while the module is attached to a Trainer")
        return Path(self.trainer.default_root_dir)

    @property
    def samples_dir(self) -> Path:
        path = self.output_dir / "samples"
        path.mkdir(parents=True, exist_ok=True)
        return path
