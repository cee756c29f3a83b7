"""Lightning pattern for GANs: alternating discriminator / generator updates with manual optimisation.

It lives in :mod:`nvresearch.core.training` because it imports Lightning; :mod:`nvresearch.core.gan` stays torch-only.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import nullcontext
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from nvresearch.core.gan.ema import ema_copy, ema_update
from nvresearch.core.training.module import NVModule, OptimizerFactory, SchedulerFactory


class GANModule(NVModule):
    """Base class of GAN papers: one discriminator step, then one generator step, per training batch.

    Subclasses define :attr:`generator` and :attr:`discriminator` (``nn.Module`` attributes) and implement
    :meth:`discriminator_losses` and :meth:`generator_losses`, each returning a dict of named scalar terms that
    contains the total under ``"loss"``. This class does the rest:

    * two optimisers from the ``optimizer_g`` / ``optimizer_d`` factories (``_partial_: true`` configs), optional
      schedulers stepped once per epoch;
    * ``requires_grad`` of the other network switched off during each step (no wasted gradients, and the
      generator step does not leave gradients in the discriminator);
    * mixed precision: losses go through ``manual_backward`` and the optimisers through Lightning, so the AMP
      gradient scaler (``precision=16-mixed``) scales, unscales and skips overflowing steps; :meth:`amp_scale` gives
      the current scale for penalties that differentiate inside the loss (R1). ``32-true`` and ``bf16-mixed``
      (CPU) need no scaler;
    * the non-finite-loss guard and ``train/d_*`` / ``train/g_*`` logging of :meth:`NVModule.log_losses`. Under a
      gradient scaler (``16-mixed``) a non-finite loss is first treated as a scale overflow, as AMP does: the step
      goes ahead, the scaler skips it and lowers its scale (counted in ``train/amp_skipped``); only
      ``amp_overflow_patience`` consecutive non-finite steps stop the run;
    * an exponential moving average of the generator (:attr:`generator_ema`) updated after each generator step
      when ``ema_decay`` is set;
    * optional gradient-norm clipping (``grad_clip_norm``) of each network before its step;
    * data parallelism (``trainer=ddp``): gradients are averaged over the processes explicitly, for the network
      being stepped, after each ``manual_backward`` (see :meth:`sync_gradients`), so the replicas stay identical.

    Note: Lightning counts ``global_step`` once per optimiser step, i.e. twice per batch here.
    """

    def __init__(
        self,
        optimizer_g: OptimizerFactory | None = None,
        optimizer_d: OptimizerFactory | None = None,
        scheduler_g: SchedulerFactory | None = None,
        scheduler_d: SchedulerFactory | None = None,
        ema_decay: float | None = None,
        d_steps: int = 1,
        grad_clip_norm: float | None = None,
        amp_overflow_patience: int = 8,
    ) -> None:
        super().__init__(optimizer=None, scheduler=None, grad_clip_norm=None)
        self.automatic_optimization = False
        self.optimizer_g_factory, self.optimizer_d_factory = optimizer_g, optimizer_d
        self.scheduler_g_factory, self.scheduler_d_factory = scheduler_g, scheduler_d
        self.ema_decay = ema_decay
        self.d_steps = int(d_steps)
        self.gan_grad_clip_norm = grad_clip_norm
        self.generator_ema: nn.Module | None = None
        self.amp_overflow_patience = int(amp_overflow_patience)
        self._amp_overflows: dict[str, int] = {}  # consecutive skipped steps per network

    # ------------------------------------------------------------------ to implement
    def discriminator_losses(self, batch: Any) -> dict[str, Tensor]:
        raise NotImplementedError

    def generator_losses(self, batch: Any) -> dict[str, Tensor]:
        raise NotImplementedError

    # ------------------------------------------------------------------ set-up
    def init_ema(self) -> None:
        """Make :attr:`generator_ema` a copy of the (initialised) generator; call at the end of ``__init__``."""
        if self.ema_decay is not None:
            self.generator_ema = ema_copy(self.generator)

    def generator_parameters(self) -> Iterable[nn.Parameter]:
        return self.generator.parameters()

    def discriminator_parameters(self) -> Iterable[nn.Parameter]:
        return self.discriminator.parameters()

    def configure_optimizers(self) -> Any:
        if self.optimizer_g_factory is None or self.optimizer_d_factory is None:
            raise ValueError(f"{type(self).__name__} needs optimizer_g and optimizer_d (set model.optimizer_g/_d)")
        opt_g = self.optimizer_g_factory([p for p in self.generator_parameters() if p.requires_grad])
        opt_d = self.optimizer_d_factory([p for p in self.discriminator_parameters() if p.requires_grad])
        scheds = []
        for opt, factory in ((opt_g, self.scheduler_g_factory), (opt_d, self.scheduler_d_factory)):
            if factory is not None:
                scheds.append({"scheduler": factory(opt), "interval": "epoch"})
        return [opt_g, opt_d], scheds

    # ------------------------------------------------------------------ training
    def grad_scaler(self) -> Any:
        """The trainer's enabled AMP gradient scaler (``16-mixed``), or None."""
        if self._trainer is None:
            return None
        scaler = getattr(getattr(self.trainer, "precision_plugin", None), "scaler", None)
        return scaler if scaler is not None and scaler.is_enabled() else None

    def amp_scale(self) -> float:
        """The AMP gradient-scaler's current scale (1 without a scaler)."""
        scaler = self.grad_scaler()
        return float(scaler.get_scale()) if scaler is not None else 1.0

    def _log_terms(self, terms: dict[str, Tensor], prefix: str, batch_size: int | None) -> None:
        """Log the terms (raising on non-finite ones), except for a scale overflow under a gradient scaler."""
        if self.grad_scaler() is not None:  # without a scaler, log_losses alone checks the terms
            if all(bool(torch.isfinite(v.detach()).all()) for v in terms.values()):
                self._amp_overflows[prefix] = 0
            elif self._amp_overflows.get(prefix, 0) < self.amp_overflow_patience:
                # the scaler finds non-finite gradients, skips this step and lowers its scale
                self._amp_overflows[prefix] = self._amp_overflows.get(prefix, 0) + 1
                self.log("train/amp_skipped", 1.0, on_step=False, on_epoch=True, reduce_fx="sum", batch_size=batch_size)
                return
        self.log_losses({f"{prefix}_{k}": v for k, v in terms.items()}, "train", batch_size=batch_size)

    def backward_unreduced(self, loss: Tensor) -> None:
        """``manual_backward`` with DDP's gradient reduction off; :meth:`sync_gradients` averages afterwards.

        One training_step runs a discriminator and a generator forward/backward pair (each using only part of the
        module, the penalty a double backward) inside a single DDP forward. DDP's reducer expects every registered
        parameter to receive a gradient in each backward and stops at the first step that leaves the other network
        out ("parameters that were not used in producing the loss"); ``find_unused_parameters`` would search the
        whole graph twice per batch to paper over it. Reducing exactly the network being stepped is both correct
        and cheaper.
        """
        model = self.trainer.strategy.model if self._trainer is not None else None
        with model.no_sync() if isinstance(model, DistributedDataParallel) else nullcontext():
            self.manual_backward(loss)

    def sync_gradients(self, params: Iterable[nn.Parameter]) -> None:
        """Average the gradients of ``params`` over the data-parallel processes (nothing in one process).

        A parameter without a gradient on some process (not used there) counts as a zero gradient; one without a
        gradient on every process keeps ``grad=None``, so the optimiser skips it as it would in one process.
        """
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return
        params = [p for p in params if p.requires_grad]
        if not params:
            return
        device = params[0].device
        has = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=device)
        dist.all_reduce(has)
        used = [p for p, h in zip(params, has.tolist(), strict=True) if h > 0]
        if not used:
            return
        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in used])
        dist.all_reduce(flat)  # one collective for the whole network (SUM; gloo has no AVG)
        flat /= dist.get_world_size()
        offset = 0
        for p in used:
            n = p.numel()
            p.grad = flat[offset : offset + n].view_as(p).to(p.dtype)
            offset += n

    def _step(self, optimizer: Any, terms: dict[str, Tensor], params: Iterable[nn.Parameter]) -> None:
        optimizer.zero_grad(set_to_none=True)
        self.backward_unreduced(terms["loss"])
        self.sync_gradients(params)
        if self.gan_grad_clip_norm:
            self.clip_gradients(optimizer, gradient_clip_val=self.gan_grad_clip_norm, gradient_clip_algorithm="norm")
        optimizer.step()

    def training_step(self, batch: Any, batch_idx: int) -> None:
        opt_g, opt_d = self.optimizers()
        batch_size = _batch_size(batch)
        for _ in range(self.d_steps):
            self.toggle_optimizer(opt_d)
            d_terms = self.discriminator_losses(batch)
            self._log_terms(d_terms, "d", batch_size)
            self._step(opt_d, d_terms, self.discriminator_parameters())
            self.untoggle_optimizer(opt_d)

        self.toggle_optimizer(opt_g)
        g_terms = self.generator_losses(batch)
        self._log_terms(g_terms, "g", batch_size)
        self._step(opt_g, g_terms, self.generator_parameters())
        self.untoggle_optimizer(opt_g)
        if self.generator_ema is not None and self.ema_decay is not None:
            ema_update(self.generator_ema, self.generator, self.ema_decay)

    def on_train_epoch_end(self) -> None:
        schedulers = self.lr_schedulers()
        if schedulers is None:
            return
        for s in schedulers if isinstance(schedulers, list) else [schedulers]:
            s.step()


def _batch_size(batch: Any) -> int | None:
    if isinstance(batch, Tensor):
        return batch.shape[0]
    if isinstance(batch, dict):
        for v in batch.values():
            if isinstance(v, Tensor) and v.dim() > 0:
                return v.shape[0]
    if isinstance(batch, list | tuple) and batch and isinstance(batch[0], Tensor):
        return batch[0].shape[0]
    return None


__all__ = ["GANModule"]
