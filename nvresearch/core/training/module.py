"""The LightningModule base class that every paper's module extends."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.distributed as dist
from torch import Tensor
from torch.utils.data import DistributedSampler


class NonFiniteLossError(FloatingPointError):
    """Raised when a loss term becomes NaN or infinite; training stops before the bad step is applied."""


OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., Any]


def shard_keep_mask(local_index: Tensor, rank: int, world_size: int, total: int) -> Tensor:
    """Which items of a ``DistributedSampler`` shard are real rather than padding (``drop_last=False``).

    The sampler pads its order to a multiple of ``world_size`` by repeating items and gives rank ``r`` the positions
    ``r, r + W, r + 2W, ...``: local item ``j`` is at global position ``j * W + r``, real if below ``total``.

    Shape:
        local_index: ``(B,)`` positions within this rank's shard; returns ``(B,)`` bool.
    """
    return local_index * int(world_size) + int(rank) < int(total)


def unshard(gathered: Tensor, total: int) -> Tensor:
    """Per-item tensors of all ranks' ``DistributedSampler`` shards back in the sampler's order, padding removed.

    Shape:
        gathered: ``(W, N_local, ...)`` (``all_gather`` of equal shards); returns ``(min(total, W N_local), ...)``
            (fewer than ``total`` when the evaluation was cut short with ``limit_*_batches``).
    """
    return gathered.transpose(0, 1).reshape(-1, *gathered.shape[2:])[:total]


class NVModule(pl.LightningModule):
    """Common behaviour of the papers' modules.

    * ``optimizer`` / ``scheduler`` are factories (``_partial_: true`` configs) applied to the trainable parameters.
    * :meth:`log_losses` logs every loss term under ``<stage>/<name>`` and, in training, stops the run with a
      :class:`NonFiniteLossError` naming the step and the term as soon as one term is NaN or infinite, before the
      optimiser applies it. The last checkpoint written before that step is left untouched.
    * :meth:`parameter_groups` lets a paper give parts of the network their own learning rate (``lr_scale``).
    * ``grad_clip_norm`` clips the global gradient norm before each optimiser step (after AMP unscaling).
    * :attr:`samples_dir` is where pictures go (``<run>/samples``).
    * Evaluation under DDP: Lightning shards the validation / test loaders with a ``DistributedSampler``, which pads
      the shards to equal size by repeating items. :meth:`eval_keep_mask` tells the real items of a batch from the
      padding (for metric objects, which are reduced over processes when computed), and :meth:`gather_eval`
      reassembles per-item tensors of all processes in the dataset's order (for evaluation code that needs the
      whole set, e.g. per-person fitting). One process: all items kept, tensors unchanged.
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

    # ------------------------------------------------------------------ data parallelism
    @property
    def ddp_find_unused_parameters(self) -> bool:
        """Whether DDP must look for parameters that a training step leaves unused (a module whose steps train
        different parts in different phases says so here; the search costs a graph traversal per step)."""
        return False

    def configure_model(self) -> None:
        # Lightning calls this after setup() and before the strategy wraps the module in DDP: the one place where a
        # module can choose the wrapper's find_unused_parameters for its own training recipe.
        strategy = self.trainer.strategy if self._trainer is not None else None
        kwargs = getattr(strategy, "_ddp_kwargs", None)
        if isinstance(kwargs, dict) and self.ddp_find_unused_parameters:
            kwargs["find_unused_parameters"] = True

    # ------------------------------------------------------------------ distributed evaluation
    def _eval_sampler(self, dataloader_idx: int) -> DistributedSampler | None:
        """The ``DistributedSampler`` of the current evaluation loader, if there is one."""
        if self._trainer is None:
            return None
        trainer = self.trainer
        loaders = trainer.test_dataloaders if trainer.testing else trainer.val_dataloaders
        if loaders is None:
            return None
        loader = loaders[dataloader_idx] if isinstance(loaders, list | tuple) else loaders
        batch_sampler = getattr(loader, "batch_sampler", None)
        for sampler in (getattr(loader, "sampler", None), getattr(batch_sampler, "sampler", None)):
            if isinstance(sampler, DistributedSampler) and sampler.num_replicas > 1:
                return sampler
        return None

    def eval_keep_mask(self, batch_size: int, batch_idx: int, dataloader_idx: int = 0) -> Tensor:
        """Which items of this evaluation batch are real (``True``) rather than a ``DistributedSampler``'s padding.

        The sampler lays the (padded) order out as ``W`` interleaved shards: item ``j`` of rank ``r`` is at global
        position ``j * W + r``, and positions from the dataset's length on repeat earlier items. Assumes the loader's
        fixed ``batch_size`` for all batches but the last, as ``DataLoader`` does.

        Shape:
            returns ``(batch_size,)`` bool, on the module's device.
        """
        keep = torch.ones(batch_size, dtype=torch.bool, device=self.device)
        sampler = self._eval_sampler(dataloader_idx)
        if sampler is None or getattr(sampler, "drop_last", False):
            return keep
        loaders = self.trainer.test_dataloaders if self.trainer.testing else self.trainer.val_dataloaders
        loader = loaders[dataloader_idx] if isinstance(loaders, list | tuple) else loaders
        local = batch_idx * int(loader.batch_size) + torch.arange(batch_size, device=self.device)
        return shard_keep_mask(local, sampler.rank, sampler.num_replicas, len(sampler.dataset))  # type: ignore[arg-type]

    def gather_eval(self, items: Mapping[str, Tensor], dataloader_idx: int = 0) -> dict[str, Tensor]:
        """Per-item tensors of every process, in the evaluation loader's order, padding removed.

        ``items`` holds this process's tensors, concatenated over its batches in order (first dimension = item).
        Every process ends with the same, complete tensors, equal to those of a one-process run.

        Shape:
            items: ``{name: (N_local, ...)}``; returns ``{name: (N, ...)}`` on the input's device.
        """
        sampler = self._eval_sampler(dataloader_idx)
        if sampler is None or not dist.is_initialized():
            return dict(items)
        world, total = sampler.num_replicas, len(sampler.dataset)  # type: ignore[arg-type]
        out = {}
        for name, value in items.items():
            # (W, N_local, ...): the sampler makes all shards equally long
            gathered = self.all_gather(value.to(self.device))
            if gathered.shape[0] != world:
                raise RuntimeError(f"gather_eval: '{name}' gathered from {gathered.shape[0]} of {world} processes")
            out[name] = unshard(gathered, total).to(value.device)
        return out

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
