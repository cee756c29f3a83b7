"""LightningModule for the Taylor-pruning experiments: a classifier whose network the pruning callback shrinks."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torchmetrics import MeanMetric

from nvresearch.core.metrics import topk_correct
from nvresearch.core.training.module import NVModule, OptimizerFactory, SchedulerFactory
from nvresearch.taylor.losses import classification_loss


class PruningClassifierModule(NVModule):
    """Trains ``net`` with the batch-mean cross-entropy; logs ``{val,test}/acc`` (top-1) and ``acc_top5``.

    The pruning itself is done by :class:`nvresearch.taylor.callback.TaylorPruning`, which works on any module that
    exposes its network as ``net`` and an ``example_input_array``.

    Args:
        net: The classifier (``(B, C, H, W) -> (B, K)``).
        input_shape: ``(C, H, W)`` of one input, used for tracing and MAC counting.
        optimizer / scheduler: factories, see :class:`~nvresearch.core.training.NVModule`.
    """

    def __init__(
        self,
        net: nn.Module,
        input_shape: Sequence[int] = (1, 8, 8),
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        grad_clip_norm: float | None = None,
    ) -> None:
        super().__init__(optimizer=optimizer, scheduler=scheduler, grad_clip_norm=grad_clip_norm)
        self.net = net
        self.input_shape = tuple(int(s) for s in input_shape)
        self.example_input_array = torch.zeros(2, *self.input_shape)
        self.metrics = nn.ModuleDict(
            {f"{stage}_{name}": MeanMetric() for stage in ("val", "test") for name in ("acc", "acc_top5", "loss")}
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        logits = self(x)
        loss = classification_loss(logits, y)
        acc = topk_correct(logits.detach(), y).mean()
        self.log_losses({"loss": loss}, "train", batch_size=x.shape[0])
        self.log("train/acc", acc, on_step=False, on_epoch=True, batch_size=x.shape[0])
        return loss

    def _eval_step(self, batch: tuple[Tensor, Tensor], batch_idx: int, stage: str) -> None:
        x, y = batch
        keep = self.eval_keep_mask(x.shape[0], batch_idx)  # DDP's padded duplicates do not count
        logits, y = self(x)[keep], y[keep]
        n = int(keep.sum())
        if n == 0:
            return
        # per-item means weighted by the item count: MeanMetric reduces sums and weights over processes
        self.metrics[f"{stage}_acc"].update(topk_correct(logits, y, 1).mean(), n)
        self.metrics[f"{stage}_acc_top5"].update(topk_correct(logits, y, 5).mean(), n)
        self.metrics[f"{stage}_loss"].update(classification_loss(logits, y), n)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, batch_idx, "val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, batch_idx, "test")

    def _log_metrics(self, stage: str) -> None:
        for name in ("acc", "acc_top5", "loss"):
            metric = self.metrics[f"{stage}_{name}"]
            self.log(f"{stage}/{name}", metric.compute(), prog_bar=name == "acc", sync_dist=False)
            metric.reset()

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val")

    def on_test_epoch_end(self) -> None:
        self._log_metrics("test")
