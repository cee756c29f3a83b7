"""LightningModule for PAC joint depth and optical-flow upsampling (Su et al., CVPR 2019, Sec. 5.1)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MeanMetric

from nvresearch.core.training.module import NVModule, OptimizerFactory, SchedulerFactory
from nvresearch.core.utils.visual import colorize, save_grid
from nvresearch.pac.upsampling.losses import normalized_l2_loss
from nvresearch.pac.upsampling.metrics import denormalize, per_image_epe, per_image_rmse

_BASELINES = ("bilinear", "bicubic")
# Captions of the sample grids' columns (the PNG explains itself without the README).
_COLUMNS = ("guide", "low resolution", "bicubic", "PAC", "ground truth", "error")


class JointUpsamplingModule(NVModule):
    """Trains a joint upsampling network with the reference's L2 loss in LR-min-max-normalised space.

    Reports the per-image error (averaged over images, ``metric_scale`` x the data's units after cropping
    ``eval_border`` pixels) for the network and for bilinear and bicubic upsampling of the same low-resolution
    input, under ``val/`` and ``test/``: ``rmse``, ``rmse_bilinear``, ``rmse_bicubic`` for depth, or ``epe``,
    ``epe_bilinear``, ``epe_bicubic`` (end-point error) for flow. If the guide is not the low-resolution size times
    the factor (Sintel's 436 rows), the network runs on the guide resized to that size and its output is resized
    back (as the official ``apply_model``).

    Args:
        net: maps ``(lowres (B,C,h,w) in [0,1], guide (B,3,H,W))`` to the HR prediction in normalised space.
        optimizer / scheduler: factories, see :class:`~nvresearch.core.training.NVModule`.
        eval_border: pixels cropped on every side before computing RMSE and the training loss (6 for NYU, as the
            reference).
        metric_scale: multiplies RMSE (100: metres -> centimetres, the unit of the paper's table).
        num_samples: images in each picture written to ``samples/``.
        guidance_lr_scale: learning-rate multiplier of the guidance branch (``net.guidance_parameters()``); 1 is
            the reference. The CPU configuration uses 0.1 together with ``guide_init_gain`` (see docs/papers/pac.md).
        grad_clip_norm: clip the gradient norm (None: no clipping, as the reference).
        metric: ``rmse`` (depth) or ``epe`` (optical flow).
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        eval_border: int = 0,
        metric_scale: float = 1.0,
        num_samples: int = 4,
        guidance_lr_scale: float = 1.0,
        grad_clip_norm: float | None = None,
        metric: str = "rmse",
    ) -> None:
        super().__init__(optimizer=optimizer, scheduler=scheduler, grad_clip_norm=grad_clip_norm)
        self.net = net
        self.eval_border = int(eval_border)
        self.metric_scale = float(metric_scale)
        self.num_samples = int(num_samples)
        self.guidance_lr_scale = float(guidance_lr_scale)
        if metric not in ("rmse", "epe"):
            raise ValueError(f"metric must be 'rmse' or 'epe', got {metric!r}")
        self.metric = metric
        names = (metric, *(f"{metric}_{b}" for b in _BASELINES))
        self.val_metrics = nn.ModuleDict({n: MeanMetric() for n in names})
        self.test_metrics = nn.ModuleDict({n: MeanMetric() for n in names})

    def parameter_groups(self) -> list[dict[str, Any]]:
        guidance = getattr(self.net, "guidance_parameters", None)
        if guidance is None or self.guidance_lr_scale == 1.0:
            return super().parameter_groups()
        g_ids = {id(p) for p in guidance()}
        rest = [p for p in self.parameters() if p.requires_grad and id(p) not in g_ids]
        g = [p for p in guidance() if p.requires_grad]
        return [{"params": rest}, {"params": g, "lr_scale": self.guidance_lr_scale}]

    def forward(self, lowres: Tensor, guide: Tensor) -> Tensor:
        return self.net(lowres, guide)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        out = self(batch["lowres"], batch["guide"])
        # the loss skips the evaluation border, as the reference's training does (6 px on NYU)
        l2 = normalized_l2_loss(out, batch["target"], batch["lr_min"], batch["lr_scale"], border=self.eval_border)
        self.log_losses({"loss": l2, "l2": l2}, "train", batch_size=out.shape[0])
        return l2

    def _predictions(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """De-normalised HR predictions of the network and of the interpolation baselines."""
        lowres, guide = batch["lowres"], batch["guide"]
        size = tuple(guide.shape[-2:])
        factor = int(getattr(self.net, "factor", round(size[0] / lowres.shape[-2])))
        model_size = (lowres.shape[-2] * factor, lowres.shape[-1] * factor)
        if model_size != size:
            out = self(lowres, F.interpolate(guide, size=model_size, mode="bilinear", align_corners=False))
            out = F.interpolate(out, size=size, mode="bilinear", align_corners=False)
        else:
            out = self(lowres, guide)
        m = self.metric
        preds = {m: out}
        for b in _BASELINES:
            preds[f"{m}_{b}"] = F.interpolate(lowres, size=size, mode=b, align_corners=False)
        return {k: denormalize(v, batch["lr_min"], batch["lr_scale"]) for k, v in preds.items()}

    def _eval_step(self, batch: dict[str, Tensor], batch_idx: int, stage: str) -> None:
        metrics = self.val_metrics if stage == "val" else self.test_metrics
        preds = self._predictions(batch)
        error = per_image_rmse if self.metric == "rmse" else per_image_epe
        keep = self.eval_keep_mask(batch["target"].shape[0], batch_idx)  # DDP's padded duplicates do not count
        for name, pred in preds.items():
            metrics[name].update((error(pred, batch["target"], border=self.eval_border) * self.metric_scale)[keep])
        if batch_idx == 0 and self.trainer.is_global_zero and not self.trainer.sanity_checking:
            tag = "test" if stage == "test" else f"val_epoch{self.current_epoch:03d}"
            save = self._save_samples if self.metric == "rmse" else self._save_flow_samples
            save(batch, preds[self.metric], preds[f"{self.metric}_bicubic"], tag)

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, batch_idx, "val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, batch_idx, "test")

    def _log_metrics(self, stage: str) -> None:
        metrics = self.val_metrics if stage == "val" else self.test_metrics
        for name, metric in metrics.items():
            # MeanMetric.compute() already reduces over processes (per image): no second reduction
            self.log(f"{stage}/{name}", metric.compute(), prog_bar=name == self.metric, sync_dist=False)
            metric.reset()

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val")

    def on_test_epoch_end(self) -> None:
        self._log_metrics("test")

    @torch.no_grad()
    def _save_samples(self, batch: dict[str, Tensor], pred: Tensor, bicubic: Tensor, tag: str) -> None:
        """One row per image: guide | LR (nearest) | bicubic | PAC | ground truth | |PAC error|."""
        n = min(self.num_samples, pred.shape[0])
        target = batch["target"][:n]
        lr = denormalize(batch["lowres"][:n], batch["lr_min"][:n], batch["lr_scale"][:n])
        lr_up = F.interpolate(lr, size=target.shape[-2:], mode="nearest")
        rows: list[list[Tensor]] = []
        for i in range(n):
            lo, hi = target[i].amin(), target[i].amax()
            err = (pred[i] - target[i]).abs()
            rows.append(
                [
                    batch["guide"][i],
                    colorize(lr_up[i, :1], lo, hi),
                    colorize(bicubic[i, :1], lo, hi),
                    colorize(pred[i, :1], lo, hi),
                    colorize(target[i, :1], lo, hi),
                    colorize(err[:1], 0.0, (hi - lo) * 0.25),
                ]
            )
        save_grid(rows, self.samples_dir / f"{tag}.png", col_labels=_COLUMNS)

    @torch.no_grad()
    def _save_flow_samples(self, batch: dict[str, Tensor], pred: Tensor, bicubic: Tensor, tag: str) -> None:
        """One row per image: guide | LR (nearest) | bicubic | PAC | ground truth | end-point error.

        Flows are drawn with ``torchvision.utils.flow_to_image``, the four fields of a row on a common scale.
        """
        from torchvision.utils import flow_to_image

        n = min(self.num_samples, pred.shape[0])
        target = batch["target"][:n]
        lr = denormalize(batch["lowres"][:n], batch["lr_min"][:n], batch["lr_scale"][:n])
        lr_up = F.interpolate(lr, size=target.shape[-2:], mode="nearest")
        rows: list[list[Tensor]] = []
        for i in range(n):
            fields = torch.stack([lr_up[i], bicubic[i], pred[i], target[i]]).float().cpu()
            pictures = flow_to_image(fields).float() / 255.0
            epe = (pred[i] - target[i]).square().sum(0, keepdim=True).sqrt()
            rows.append([batch["guide"][i].cpu(), *pictures, colorize(epe, 0.0, max(float(epe.max()), 1e-6))])
        save_grid(rows, self.samples_dir / f"{tag}.png", col_labels=(*_COLUMNS[:-1], "end-point error"))
