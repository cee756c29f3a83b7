"""LightningModule for semantic segmentation with PAC-CRF / PAC-FCN (Su et al., CVPR 2019, Sec. 5.3)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torchmetrics.classification import MulticlassJaccardIndex

from nvresearch.core.training.module import NVModule, OptimizerFactory, SchedulerFactory
from nvresearch.core.utils.visual import save_grid
from nvresearch.pac.segmentation.data import IGNORE_INDEX, colorize_labels, export_voc_predictions, from_network_input
from nvresearch.pac.segmentation.losses import segmentation_loss
from nvresearch.pac.segmentation.models import FCNWithCRF, load_weights


class SegmentationModule(NVModule):
    """Trains an :class:`~nvresearch.pac.segmentation.models.FCNWithCRF` with per-pixel cross-entropy on its logits.

    Training can run in phases within one run (the embedded recipe, docs/papers/pac.md):

    1. epochs ``< unary_epochs``: only the backbone, with the loss on its own logits (this stands in for the
       pretrained FCN-8s of the paper, which the embedded task does not have);
    2. later epochs: the loss is on the CRF output (``log Q``); with ``freeze_backbone`` the backbone gets no
       gradient (stage 1 of the paper's recipe) but keeps its dropout active, as the official code (which only
       sets ``requires_grad=False``), unless ``frozen_backbone_eval``. Without ``freeze_backbone`` everything
       trains jointly (stage 2).

    ``val/miou`` and ``test/miou`` (torchmetrics ``MulticlassJaccardIndex``: one dataset-level confusion matrix,
    background included, void ignored) score the network's output; ``*/miou_unary`` scores the backbone's logits
    alone on the same images, so the CRF's gain is ``miou - miou_unary``.

    Args:
        net: The segmentation network.
        optimizer / scheduler: Factories, see :class:`~nvresearch.core.training.NVModule`.
        num_classes: Classes, background included.
        unary_epochs: Epochs of phase 1.
        freeze_backbone: Do not train the backbone after phase 1.
        frozen_backbone_eval: Run the frozen backbone in eval mode (no dropout) after phase 1; not the reference.
        loss_focus: ``fce_{t}`` threshold of :func:`~nvresearch.pac.segmentation.losses.segmentation_loss`
            (None: plain CE).
        crf_lr_scale: Learning-rate multiplier of the CRF parameters.
        num_samples: Images in each picture written to ``samples/``.
        backbone_weights: File loaded into the backbone when fitting starts: ``fcn8s_from_caffe.pth``, a torchvision
            VGG-16 state dict, or a Lightning checkpoint of this module (see ``seg_models.load_weights``).
        weights: File loaded into the whole network afterwards, e.g. the stage-1 checkpoint for stage 2 (a tied CRF
            fills every step of a loose one). Both are read in :meth:`setup`, so building the module touches no file,
            and a resumed run's checkpoint overrides them.
        export_dir: If set, the test and predict passes write each prediction (cropped back to the image's size) as
            a VOC palette PNG ``<export_dir>/results/VOC2012/Segmentation/comp6_test_cls/<id>.png``, the layout of
            the VOC evaluation server (:func:`~nvresearch.pac.segmentation.data.export_voc_predictions`).
    """

    def __init__(
        self,
        net: FCNWithCRF,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        num_classes: int = 21,
        unary_epochs: int = 0,
        freeze_backbone: bool = False,
        loss_focus: float | None = None,
        crf_lr_scale: float = 1.0,
        num_samples: int = 4,
        grad_clip_norm: float | None = None,
        backbone_weights: str | None = None,
        weights: str | None = None,
        export_dir: str | None = None,
        frozen_backbone_eval: bool = False,
    ) -> None:
        super().__init__(optimizer=optimizer, scheduler=scheduler, grad_clip_norm=grad_clip_norm)
        self.net = net
        self.num_classes = int(num_classes)
        self.unary_epochs = int(unary_epochs)
        self.freeze_backbone = bool(freeze_backbone)
        self.frozen_backbone_eval = bool(frozen_backbone_eval)
        self.loss_focus = loss_focus
        self.crf_lr_scale = float(crf_lr_scale)
        self.num_samples = int(num_samples)
        self.backbone_weights = backbone_weights
        self.weights = weights
        self.export_dir = export_dir

        def jaccard() -> MulticlassJaccardIndex:
            return MulticlassJaccardIndex(self.num_classes, average="macro", ignore_index=IGNORE_INDEX)

        self.val_metrics = nn.ModuleDict({"miou": jaccard(), "miou_unary": jaccard()})
        self.test_metrics = nn.ModuleDict({"miou": jaccard(), "miou_unary": jaccard()})

    def parameter_groups(self) -> list[dict[str, Any]]:
        if self.crf_lr_scale == 1.0:
            return super().parameter_groups()
        crf_ids = {id(p) for p in self.net.crf_parameters()}
        rest = [p for p in self.parameters() if p.requires_grad and id(p) not in crf_ids]
        crf = [p for p in self.net.crf_parameters() if p.requires_grad]
        return [{"params": rest}, {"params": crf, "lr_scale": self.crf_lr_scale}]

    @property
    def ddp_find_unused_parameters(self) -> bool:
        # The phases train different parts of one network: the backbone alone (the CRF unused), then the CRF on a
        # frozen backbone (the backbone unused). DDP registers its parameters once, so it must look for the unused
        # ones; a one-phase recipe that trains everything jointly does not pay for the search.
        return self.net.crf is not None and (self.unary_epochs > 0 or self.freeze_backbone)

    def setup(self, stage: str) -> None:
        if stage != "fit":
            return
        if self.backbone_weights:
            load_weights(self.net.backbone, self.backbone_weights, ("net.backbone.", "backbone.", ""))
        if self.weights:
            load_weights(self.net, self.weights, ("net.", ""))

    def forward(self, image: Tensor) -> Tensor:
        return self.net(image)

    @property
    def in_unary_phase(self) -> bool:
        return self.current_epoch < self.unary_epochs

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        image, label = batch["image"], batch["label"]
        if self.in_unary_phase or self.net.crf is None:
            logits = self.net.backbone(image)
        else:
            if self.freeze_backbone:
                if self.frozen_backbone_eval:
                    self.net.backbone.eval()
                with torch.no_grad():
                    unary = self.net.backbone(image)
            else:
                unary = self.net.unary(image)
            logits = self.net.refine(unary, image)
        loss = segmentation_loss(logits, label, IGNORE_INDEX, self.loss_focus)
        self.log_losses({"loss": loss, "ce": loss}, "train", batch_size=image.shape[0])
        return loss

    def _eval_step(self, batch: dict[str, Tensor], batch_idx: int, stage: str) -> None:
        metrics = self.val_metrics if stage == "val" else self.test_metrics
        image, label = batch["image"], batch["label"]
        unary = self.net.backbone(image)
        logits = self.net.refine(unary, image)
        pred, pred_unary = logits.argmax(1), unary.argmax(1)
        keep = self.eval_keep_mask(label.shape[0], batch_idx)  # DDP's padded duplicates do not count
        metrics["miou"].update(pred[keep], label[keep])
        metrics["miou_unary"].update(pred_unary[keep], label[keep])
        if batch_idx == 0 and self.trainer.is_global_zero and not self.trainer.sanity_checking:
            tag = "test" if stage == "test" else f"val_epoch{self.current_epoch:03d}"
            self._save_samples(image, label, pred_unary, pred, tag)

        if stage == "test" and self.export_dir:
            self.export_predictions(batch, pred)

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, batch_idx, "val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, batch_idx, "test")

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Any]:
        """Class maps (cropped back to each image's size) with their ids; exported if ``export_dir`` is set."""
        pred = self.net(batch["image"]).argmax(1)
        maps = self._uncrop(batch, pred)
        if self.export_dir:
            export_voc_predictions(self.export_dir, list(batch["id"]), maps)
        return {"id": list(batch["id"]), "pred": maps}

    @staticmethod
    def _uncrop(batch: dict[str, Tensor], pred: Tensor) -> list[Tensor]:
        """Each prediction cut to its image's original size (evaluation pads small images up to ``test_crop``)."""
        maps = []
        for i, (h, w) in enumerate(batch["size"].tolist()):
            if h > pred.shape[-2] or w > pred.shape[-1]:
                raise ValueError(
                    f"image {batch['id'][i]!r} is {h}x{w} but its prediction only {tuple(pred.shape[-2:])}: the "
                    "evaluation crop cut it; export with data.test_crop=null (whole images) or a larger crop"
                )
            maps.append(pred[i, :h, :w].cpu())
        return maps

    def export_predictions(self, batch: dict[str, Tensor], pred: Tensor) -> list[str]:
        """Write a batch's predictions as VOC palette PNGs under ``export_dir`` (one ``<id>.png`` per image)."""
        if not self.export_dir:
            raise ValueError("export_dir is not set")
        return export_voc_predictions(self.export_dir, list(batch["id"]), self._uncrop(batch, pred))

    def _log_metrics(self, stage: str) -> None:
        metrics = self.val_metrics if stage == "val" else self.test_metrics
        for name, metric in metrics.items():
            self.log(f"{stage}/{name}", metric.compute(), prog_bar=name == "miou")
            metric.reset()

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val")

    def on_test_epoch_end(self) -> None:
        self._log_metrics("test")

    @torch.no_grad()
    def _save_samples(self, image: Tensor, label: Tensor, unary: Tensor, pred: Tensor, tag: str) -> None:
        """One row per image: image | ground truth | unary (backbone) | output (after the CRF)."""
        n = min(self.num_samples, image.shape[0])
        rows = [
            [from_network_input(image[i]).cpu(), colorize_labels(label[i]), colorize_labels(unary[i]),
             colorize_labels(pred[i])]
            for i in range(n)
        ]  # fmt: skip
        save_grid(rows, self.samples_dir / f"{tag}.png", col_labels=["image", "ground truth", "unary", "PAC-CRF"])
