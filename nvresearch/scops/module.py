"""SCOPSModule: self-supervised co-part segmentation trained as the official SCOPS trainer does (Hung et al., CVPR
2019, Sec. 3; official ``scops_trainer.py``), in one Lightning run.

Each training step computes every loss term of :class:`~nvresearch.scops.losses.SCOPSObjective` (semantic
consistency against frozen features, orthonormality of the part bases, geometric concentration, equivariance under a
random colour jitter + similarity TPS warp) and updates two optimisers, as the official trainer: the network (SGD,
the ASPP head at ``head_lr_scale`` times the backbone rate, a poly schedule stepped every iteration) and the part
bases (their own SGD, no schedule), each with its own gradient-norm clipping. Validation and test score the parts
against ground-truth part labels where the data has them (NMI / ARI, over all pixels and on the foreground only)
and, where it has landmarks, the landmark regression error from the part centres; they write part-map overlays.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from nvresearch.core.training.module import NVModule, OptimizerFactory, SchedulerFactory
from nvresearch.core.utils.visual import save_grid
from nvresearch.scops.data import CAFFE_MEAN_RGB
from nvresearch.scops.losses import LOSS_WEIGHTS, SCOPSObjective
from nvresearch.scops.metrics import landmark_centers, landmark_regression_error, part_agreement
from nvresearch.scops.models import (
    ASPP_DILATIONS,
    CaffeInputVGG,
    PartBasis,
    PartSegmenter,
    RandomFeatures,
    TextureFeatures,
    upsample_logits,
)

__all__ = ["SCOPSModule", "part_overlay"]

_FEATURES = ("vgg19", "random", "texture")
# Part colours of the overlays (background black); cycled when K exceeds the table.
_PALETTE = torch.tensor(
    [
        [0.0, 0.0, 0.0],
        [0.90, 0.10, 0.10],
        [0.10, 0.70, 0.10],
        [0.15, 0.35, 0.95],
        [0.95, 0.80, 0.10],
        [0.80, 0.20, 0.85],
        [0.10, 0.85, 0.85],
        [0.95, 0.50, 0.10],
        [0.55, 0.35, 0.20],
        [1.00, 1.00, 1.00],
        [0.50, 0.50, 0.50],
        [0.60, 0.90, 0.40],
    ]
)


def part_overlay(rgb: Tensor, labels: Tensor, alpha: float = 0.55) -> Tensor:
    """The picture blended with one colour per part label (label 0, the background, is left as it is).

    Shape:
        rgb: ``(3, H, W)`` in [0, 1]; labels: ``(H, W)`` long; returns ``(3, H, W)`` in [0, 1].
    """
    colours = _PALETTE[1:][(labels.cpu() - 1).clamp(min=0) % (_PALETTE.shape[0] - 1)].permute(2, 0, 1)
    fg = (labels.cpu() > 0).to(rgb.dtype)
    return (rgb.cpu() * (1 - alpha * fg) + alpha * fg * colours.to(rgb.dtype)).clamp(0, 1)


class SCOPSModule(NVModule):
    """The part segmentation network and its part bases, trained with the SCOPS objective.

    Args:
        num_parts / blocks / base_channels / aspp_dilations / pretrained: the network
            (:class:`~nvresearch.scops.models.PartSegmenter`; official K = 8, ResNet-50, ASPP 6/12/18/24, the
            ``resnet50-caffe`` weights from a local file).
        features: the frozen semantic features, ``vgg19`` (:class:`~nvresearch.scops.models.CaffeInputVGG`, the
            paper; ImageNet weights from the local file ``feature_weights``), ``texture``
            (:class:`~nvresearch.scops.models.TextureFeatures` with ``feature_periods``, ``feature_stride`` and
            ``feature_scale``: the embedded world's stand-in, features that tell its parts apart) or ``random``
            (:class:`~nvresearch.scops.models.RandomFeatures` with ``feature_channels``, ``feature_stride`` and
            ``feature_scale``; they encode the colours an image's parts share, not the parts).
        basis_normalize: L2-normalise the part bases (official ``ref_norm``, off).
        con_weight / eqv_weight / lmeqv_weight / sc_weight / on_weight: the loss weights (official 10 / 1000 / 100 /
            1e4 / 0.1, :data:`~nvresearch.scops.losses.LOSS_WEIGHTS`).
        terms: the loss terms to compute (an ablation leaves some out).
        saliency_masking / jitter: see :class:`~nvresearch.scops.losses.SCOPSObjective`.
        tps_sigma / tps_scale_range / tps_rotation_deg / tps_translation / tps_mirror: the random warp
            (official 0.01 / (0.7, 2.0) / 60 / 0.1 / off).
        optimizer: factory of the network's optimiser, given two groups (backbone, ASPP head); official SGD lr
            1e-5, momentum 0.9, weight decay 5e-4.
        head_lr_scale: the ASPP head's learning rate over the backbone's (10).
        scheduler: factory of the network's schedule, stepped every iteration (official poly, power 0.9, over 100 K
            iterations: ``torch.optim.lr_scheduler.PolynomialLR``).
        basis_optimizer: factory of the part bases' optimiser (official SGD lr 0.01, momentum 0.9, weight decay 5e-4,
            no schedule).
        grad_clip_norm: global gradient-norm clip applied to the network and to the bases separately (5; a pilot run
            found it load-bearing: without it the bases die).
        check_finite: stop on a non-finite loss term (see :class:`~nvresearch.core.training.module.NVModule`).
        num_overlays: images in the part-map pictures of each evaluation.
    """

    def __init__(
        self,
        num_parts: int = 8,
        blocks: Sequence[int] = (3, 4, 6, 3),
        base_channels: int = 64,
        aspp_dilations: Sequence[int] = ASPP_DILATIONS,
        pretrained: str | None = None,
        features: str = "vgg19",
        feature_weights: str | None = None,
        feature_channels: int = 64,
        feature_scale: float = 1.0,
        feature_stride: int = 8,
        feature_periods: Sequence[float] = (1.5, 2.5, 3.5, 5.0),
        basis_normalize: bool = False,
        con_weight: float = LOSS_WEIGHTS["con"],
        eqv_weight: float = LOSS_WEIGHTS["eqv"],
        lmeqv_weight: float = LOSS_WEIGHTS["lmeqv"],
        sc_weight: float = LOSS_WEIGHTS["sc"],
        on_weight: float = LOSS_WEIGHTS["on"],
        terms: Sequence[str] = tuple(LOSS_WEIGHTS),
        saliency_masking: bool = True,
        jitter: bool = True,
        tps_sigma: float = 0.01,
        tps_scale_range: Sequence[float] = (0.7, 2.0),
        tps_rotation_deg: float = 60.0,
        tps_translation: float = 0.1,
        tps_mirror: bool = False,
        optimizer: OptimizerFactory | None = None,
        head_lr_scale: float = 10.0,
        scheduler: SchedulerFactory | None = None,
        basis_optimizer: OptimizerFactory | None = None,
        grad_clip_norm: float | None = 5.0,
        check_finite: bool = True,
        num_overlays: int = 8,
    ) -> None:
        super().__init__(optimizer, scheduler, "step", check_finite, grad_clip_norm=None)
        if features not in _FEATURES:
            raise ValueError(f"features must be one of {_FEATURES}, got {features!r}")
        self.save_hyperparameters(ignore=["optimizer", "scheduler", "basis_optimizer"])
        # Two optimisers with their own clipping: stepped by hand (Lightning's automatic loop clips all at once).
        self.automatic_optimization = False
        self.net = PartSegmenter(num_parts, blocks, base_channels, aspp_dilations, pretrained)
        if features == "vgg19":
            feats: torch.nn.Module = CaffeInputVGG(feature_weights)
        elif features == "texture":
            feats = TextureFeatures(tuple(feature_periods), stride=feature_stride, scale=feature_scale)
        else:
            feats = RandomFeatures(feature_channels, stride=feature_stride, scale=feature_scale)
        self.basis = PartBasis(num_parts, feats.out_channels, basis_normalize)
        weights = {"con": con_weight, "eqv": eqv_weight, "lmeqv": lmeqv_weight, "sc": sc_weight, "on": on_weight}
        tps = {
            "sigma": tps_sigma,
            "scale_range": tuple(tps_scale_range),
            "rotation_deg": tps_rotation_deg,
            "translation": tps_translation,
            "mirror": tps_mirror,
        }
        self.objective = SCOPSObjective(feats, self.basis, tuple(terms), weights, saliency_masking, jitter, tps)
        self.basis_optimizer_factory = basis_optimizer
        self.head_lr_scale = float(head_lr_scale)
        self.clip_norm = float(grad_clip_norm) if grad_clip_norm else None
        self.num_overlays = int(num_overlays)
        self._eval: dict[str, list[Tensor]] = {}

    def forward(self, images: Tensor) -> Tensor:
        """Part logits at the input size. Shape: images ``(B, 3, H, W)``; returns ``(B, K + 1, H, W)``."""
        return upsample_logits(self.net(images), images.shape[-2:])

    # ------------------------------------------------------------------ optimisation
    @property
    def ddp_find_unused_parameters(self) -> bool:
        return not ({"sc", "on"} & set(self.objective.terms))  # the bases take no part without these terms

    def configure_optimizers(self) -> Any:
        if self.optimizer_factory is None or self.basis_optimizer_factory is None:
            raise ValueError(f"{type(self).__name__} needs model.optimizer and model.basis_optimizer")
        head = {id(p) for p in self.net.aspp.parameters()}
        backbone = [p for p in self.net.parameters() if p.requires_grad and id(p) not in head]
        opt_net = self.optimizer_factory([{"params": backbone}, {"params": list(self.net.aspp.parameters())}])
        opt_net.param_groups[1]["lr"] *= self.head_lr_scale  # before the scheduler records the initial rates
        opt_basis = self.basis_optimizer_factory(list(self.basis.parameters()))
        if self.scheduler_factory is None:
            return [opt_net, opt_basis]
        return [opt_net, opt_basis], [{"scheduler": self.scheduler_factory(opt_net), "interval": "step"}]

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        opt_net, opt_basis = self.optimizers()
        images = batch["image"]
        terms = self.objective(self.net, images, batch.get("saliency"))
        terms = {"loss": terms.pop("loss"), **terms}
        self.log_losses(terms, "train", batch_size=images.shape[0])
        opt_net.zero_grad(set_to_none=True)
        opt_basis.zero_grad(set_to_none=True)
        self.manual_backward(terms["loss"])
        for opt in (opt_net, opt_basis):
            if self.clip_norm:
                self.clip_gradients(opt, gradient_clip_val=self.clip_norm, gradient_clip_algorithm="norm")
            opt.step()
        scheduler = self.lr_schedulers()
        if scheduler is not None:
            scheduler.step()  # poly: once per iteration, as the official adjust_learning_rate
        self.log("train/lr", opt_net.param_groups[0]["lr"], on_step=True, on_epoch=False, batch_size=images.shape[0])
        return terms["loss"].detach()

    # ------------------------------------------------------------------ evaluation
    def on_validation_epoch_start(self) -> None:
        self._eval = {}

    def on_test_epoch_start(self) -> None:
        self._eval = {}

    def _evaluate(self, batch: dict[str, Any], stage: str, batch_idx: int) -> None:
        images = batch["image"]
        logits = self.net(images)
        z = upsample_logits(logits, images.shape[-2:])
        items: dict[str, Tensor] = {}
        if "labels" in batch:
            items["pred"] = z.argmax(dim=1).to(torch.uint8)
            items["pred_fg"] = (z[:, 1:].argmax(dim=1) + 1).to(torch.uint8)  # the parts only, for FG scores
            items["labels"] = batch["labels"].to(torch.uint8)
        if "landmarks" in batch:
            items["centres"] = landmark_centers(logits, images.shape[-2:]).float()
            items["landmarks"] = batch["landmarks"].float()
        for name, value in items.items():  # all items, DDP padding included: gather_eval removes it in order
            self._eval.setdefault(name, []).append(value)
        if batch_idx == 0 and self.trainer.is_global_zero:
            self._save_overlays(images, z.argmax(dim=1), batch.get("labels"), stage)

    def _save_overlays(self, images: Tensor, pred: Tensor, labels: Tensor | None, stage: str) -> None:
        n = min(self.num_overlays, images.shape[0])
        mean = torch.tensor(CAFFE_MEAN_RGB, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
        rgb = ((images[:n] + mean) / 255.0).clamp(0, 1).cpu()
        rows = []
        for i in range(n):
            row = [rgb[i], part_overlay(rgb[i], pred[i])]
            if labels is not None:
                row.append(part_overlay(rgb[i], labels[i].long()))
            rows.append(row)
        cols = ["image", "parts"] + (["ground truth"] if labels is not None else [])
        name = f"{stage}_epoch{self.current_epoch:03d}.png" if stage == "val" else f"{stage}_parts.png"
        save_grid(rows, self.samples_dir / name, col_labels=cols)

    def _finish(self, stage: str) -> None:
        local = {name: torch.cat(values) for name, values in self._eval.items()}
        self._eval = {}
        if not local:
            return
        every = self.gather_eval(local)
        metrics: dict[str, float] = {}
        if "labels" in every:
            labels = every["labels"].long()
            both = part_agreement(every["pred"].long(), labels)
            fg = part_agreement(every["pred_fg"].long(), labels, foreground=labels > 0)
            metrics.update(nmi=both["nmi"], ari=both["ari"], fg_nmi=fg["nmi"], fg_ari=fg["ari"])
        if "centres" in every and every["centres"].shape[0] >= 4:
            # The regressor is fitted on the first half of the evaluation images and scored on the second half
            # (the official protocol fits on a separate train split; the split's own halves stand in for it here).
            half = every["centres"].shape[0] // 2
            c, lm = every["centres"], every["landmarks"]
            if torch.isfinite(c).all():
                _, err = landmark_regression_error(c[:half], lm[:half], c[half:], lm[half:])
            else:
                # a part with no mass anywhere in an image (its softmax underflows to 0) has no centre (0 / 0, the
                # official evaluation has no epsilon): no regression can be fitted; NaN says so instead of crashing
                err = float("nan")
            metrics["landmark_error"] = err
        for name, value in metrics.items():
            self.log(f"{stage}/{name}", float(value), on_step=False, on_epoch=True, sync_dist=False)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, "val", batch_idx)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, "test", batch_idx)

    def on_validation_epoch_end(self) -> None:
        self._finish("val")

    def on_test_epoch_end(self) -> None:
        self._finish("test")
