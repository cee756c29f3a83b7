"""VInterpModule: supervised pretraining on the source domain, then adaptation on unlabelled target triplets with
cycle consistency and pseudo-supervision (Reda et al., ICCV 2019, Sec. 3), in one Lightning run.

Epochs ``[0, pretrain_epochs)`` train SuperSloMo with the supervised loss (official ``HJSuperSloMo``) on the source
windows; at the first adaptation epoch the frozen teacher is set to a copy of the network (the official ``--resume`` of
the pretrained checkpoint) and the remaining epochs minimise the cycle-consistency loss plus ``pseudo_weight`` times the
pseudo-supervised loss (official ``CycleHJSuperSloMo``) on the target triplets. ``adapt="cycle"`` drops the
pseudo-supervision (w_PS = 0), ``adapt="ps"`` drops the cycle term (only the pseudo-supervised anchor trains on the
target triplets: fine-tuning without the cycle loss), ``adapt="none"`` keeps supervised training on the source
throughout (the source-pretrained baseline). Validation and test score the target domain's windows under the official
protocol (PSNR, SSIM, IE after uint8 truncation), the frame blend baseline ``(1 - t) I0 + t I1`` and the copy probe (the
nearer input frame).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torchmetrics import MeanMetric

from nvresearch.core.training.checkpoint import read_checkpoint
from nvresearch.core.training.module import NVModule, OptimizerFactory, SchedulerFactory
from nvresearch.core.utils.visual import save_grid
from nvresearch.vinterp.losses import LossWeights, cycle_consistency_loss, supervised_loss
from nvresearch.vinterp.metrics import frame_metrics, interpolate_window
from nvresearch.vinterp.models import PerceptualFeatures, SuperSloMo, cycle_times, time_from_index
from nvresearch.vinterp.official import load_official

__all__ = ["VInterpModule", "load_init_weights"]

_ADAPT = ("cycle+ps", "cycle", "ps", "none")


def load_init_weights(net: SuperSloMo, path: str | os.PathLike) -> None:
    """Fill ``net`` from a released ``.pth`` (official names, strict) or a ``.ckpt`` of :class:`VInterpModule`.

    Raises:
        FileNotFoundError: no file at ``path``. ValueError: a ``.ckpt`` without the module's ``net.*`` weights.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model.init_weights: no file at '{path}'")
    if path.suffix != ".ckpt":
        load_official(path, net.flow_scale, net.align_corners, model=net)
        net.train()
        return
    state = read_checkpoint(path).get("state_dict", {})  # core's safe reader: one-line errors for bad files
    weights = {k.removeprefix("net."): v for k, v in state.items() if k.startswith("net.")}
    if not weights:
        raise ValueError(f"model.init_weights: '{path}' holds no 'net.*' weights of a VInterpModule checkpoint")
    net.load_state_dict(weights, strict=True)


class VInterpModule(NVModule):
    """SuperSloMo trained as the paper does: supervised on the source, then cycle consistency (+ pseudo-supervision).

    Args:
        base_channels / flow_scale / align_corners: the network (:class:`~nvresearch.vinterp.models.SuperSloMo`;
            reference 32 / 2 / True).
        num_interp: N of the time grid ``t = k / (N + 1)`` for training and evaluation (7).
        pretrain_epochs: supervised epochs on the source domain before adaptation starts.
        adapt: ``cycle+ps`` (the paper), ``cycle`` (no pseudo-supervision), ``ps`` (no cycle term) or ``none`` (no
            adaptation).
        rec_weight / warp_weight / perceptual_weight / smooth_weight / pseudo_weight: the loss weights (official
            0.8 / 0.4 / 0.005 / 1.0 / 0.8).
        vgg_weights: a torchvision VGG16 state-dict file for the perceptual term; None leaves the term out (0).
        init_weights: the network's starting weights, read when training starts (not when a run resumes): a
            released ``.pth`` (:func:`~nvresearch.vinterp.official.load_official`, e.g. the Adobe baseline for the
            adaptation runs) or a ``.ckpt`` of this module (e.g. our Adobe pretraining); None: random initialisation.
        optimizer / scheduler: factories (official: Adam lr 1e-4, no weight decay; MultiStepLR [250, 450] x0.1).
        check_finite / grad_clip_norm: see :class:`~nvresearch.core.training.module.NVModule`.
    """

    def __init__(
        self,
        base_channels: int = 32,
        flow_scale: float = 2.0,
        align_corners: bool = True,
        num_interp: int = 7,
        pretrain_epochs: int = 1,
        adapt: str = "cycle+ps",
        rec_weight: float = 0.8,
        warp_weight: float = 0.4,
        perceptual_weight: float = 0.005,
        smooth_weight: float = 1.0,
        pseudo_weight: float = 0.8,
        vgg_weights: str | None = None,
        init_weights: str | None = None,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        check_finite: bool = True,
        grad_clip_norm: float | None = None,
    ) -> None:
        super().__init__(optimizer, scheduler, "epoch", check_finite, grad_clip_norm)
        if adapt not in _ADAPT:
            raise ValueError(f"adapt must be one of {_ADAPT}, got {adapt!r}")
        self.save_hyperparameters(ignore=["optimizer", "scheduler"])
        self.net = SuperSloMo(base_channels, flow_scale, align_corners)
        # The frozen pretrained copy of the pseudo-supervised loss; filled when adaptation starts (kept in the
        # checkpoint so that a resumed adaptation uses the same anchor).
        self.teacher = SuperSloMo(base_channels, flow_scale, align_corners).requires_grad_(False).eval()
        self.features = PerceptualFeatures(vgg_weights) if vgg_weights else None
        self.num_interp, self.pretrain_epochs, self.adapt = int(num_interp), int(pretrain_epochs), adapt
        self.init_weights = init_weights
        self.weights = LossWeights(rec_weight, warp_weight, perceptual_weight, smooth_weight, pseudo_weight)
        self.metrics = torch.nn.ModuleDict(
            {
                f"{stage}_{name}": MeanMetric()
                for stage in ("val", "test")
                for name in ("psnr", "ssim", "ie", "psnr_blend", "psnr_copy")
            }
        )

    def forward(self, frame0: Tensor, frame1: Tensor, t: Tensor | float) -> Tensor:
        """The intermediate frame at t. Shape: frames ``(B, 3, H, W)`` in 0-255, t ``(B,)``; returns the same."""
        return self.net(frame0, frame1, t)

    def train(self, mode: bool = True) -> VInterpModule:
        super().train(mode)
        self.teacher.eval()  # always frozen
        return self

    def setup(self, stage: str) -> None:
        # Lightning restores a resumed checkpoint after setup, so init_weights only seeds a fresh run.
        if stage == "fit" and self.init_weights:
            load_init_weights(self.net, self.init_weights)

    @property
    def adapting(self) -> bool:
        """Whether the current epoch trains on the target triplets (after ``pretrain_epochs``)."""
        return self.adapt != "none" and self.current_epoch >= self.pretrain_epochs

    def on_train_epoch_start(self) -> None:
        if self.adapt != "none" and self.current_epoch == self.pretrain_epochs:
            self.teacher.load_state_dict(self.net.state_dict())  # the student starts from the teacher (--resume)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        part = "target" if self.adapting else "source"
        if part not in batch:
            raise KeyError(
                f"epoch {self.current_epoch} trains on the {part} domain (adapt={self.adapt!r}, pretrain_epochs="
                f"{self.pretrain_epochs}) but the data has no {part} videos: set data.dataset.{part}_root"
            )
        if self.adapting:
            sample = batch["target"]
            frames = sample["frames"]
            t, t_back = cycle_times(sample["index"].cpu(), self.num_interp)
            teacher = self.teacher if self.adapt in ("cycle+ps", "ps") else None
            terms, _ = cycle_consistency_loss(
                self.net,
                frames[:, 0],
                frames[:, 1],
                frames[:, 2],
                t.to(frames.device),
                t_back.to(frames.device),
                teacher,
                self.features,
                self.weights,
            )
            if self.adapt == "ps":  # the ablation without the cycle term: the other terms are logged, not trained
                terms["total"] = self.weights.pseudo * terms["pseudo"]
        else:
            sample = batch["source"]
            frames = sample["frames"]
            t = time_from_index(sample["index"].cpu(), self.num_interp).to(frames.device)
            terms, _ = supervised_loss(
                self.net, frames[:, 0], frames[:, 1], frames[:, 2], t, self.features, self.weights
            )
        terms = {"loss": terms.pop("total"), **terms}
        self.log_losses(terms, "train", batch_size=frames.shape[0])
        return terms["loss"]

    def _evaluate(self, batch: dict[str, Any], stage: str, batch_idx: int) -> None:
        frames = batch["frames"]  # (B, N + 2, 3, H, W)
        n = frames.shape[1] - 2
        preds = interpolate_window(self.net, frames[:, 0], frames[:, -1], n, self.net.size_multiple)
        for k, pred in enumerate(preds, start=1):
            gt = frames[:, k]
            t = k / (n + 1)
            m = frame_metrics(pred, gt)
            blend = frame_metrics((1 - t) * frames[:, 0] + t * frames[:, -1], gt)
            copy = frame_metrics(frames[:, 0] if t <= 0.5 else frames[:, -1], gt)  # the nearer input (t = 1/2: I0)
            for name in ("psnr", "ssim", "ie"):
                self.metrics[f"{stage}_{name}"].update(m[name].float())
            self.metrics[f"{stage}_psnr_blend"].update(blend["psnr"].float())
            self.metrics[f"{stage}_psnr_copy"].update(copy["psnr"].float())
        for name in ("psnr", "ssim", "ie", "psnr_blend", "psnr_copy"):
            self.log(f"{stage}/{name}", self.metrics[f"{stage}_{name}"], batch_size=frames.shape[0])
        if batch_idx == 0 and self.trainer.is_global_zero:
            self._save_strip(frames[:4], preds, stage)

    def _save_strip(self, frames: Tensor, preds: list[Tensor], stage: str) -> None:
        rows = []
        for i in range(frames.shape[0]):
            rows.append([f / 255 for f in frames[i]])  # ground truth: inputs and the high-frame-rate frames
            rows.append([frames[i, 0] / 255] + [p[i].clamp(0, 255) / 255 for p in preds] + [frames[i, -1] / 255])
        name = f"{stage}_epoch{self.current_epoch:03d}.png" if stage == "val" else f"{stage}_strips.png"
        labels = ["I0"] + [f"t={k}/{len(preds) + 1}" for k in range(1, len(preds) + 1)] + ["I1"]
        save_grid(rows, self.samples_dir / name, col_labels=labels)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, "val", batch_idx)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, "test", batch_idx)

    def parameter_groups(self) -> list[dict[str, Any]]:
        return [{"params": [p for p in self.net.parameters() if p.requires_grad]}]
