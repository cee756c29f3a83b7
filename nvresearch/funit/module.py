"""LightningModule for FUNIT (Liu et al., ICCV 2019): training with alternating updates, few-shot evaluation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torchmetrics import MeanMetric, Metric

from nvresearch.core.metrics import topk_hits
from nvresearch.core.training.gan import GANModule
from nvresearch.core.training.module import OptimizerFactory, SchedulerFactory
from nvresearch.core.utils.visual import save_grid
from nvresearch.funit.losses import discriminator_losses, generator_losses
from nvresearch.funit.metrics import (
    cluster_mean_se,
    colour_transfer,
    estimate_pose,
    mean_code_translation,
    nested_kshot_sets,
    pose_error,
    train_classifier,
)
from nvresearch.funit.models import FewShotGenerator, MultiTaskDiscriminator

# Trivial probes evaluated beside FUNIT with the same judge and shots: ``colour`` paints the content's foreground
# with the shots' mean colour (:func:`~nvresearch.funit.metrics.colour_transfer`), ``copy`` returns the first shot.
PROBES = ("colour", "copy")
# FUNIT minus its key ingredient, judged alike: ``meancode`` decodes every content image with the mean of the target
# classes' K-shot codes, so the class code no longer conditions the decoder (:func:`mean_code_translation`).
ABLATIONS = ("meancode",)


class FUNITModule(GANModule):
    """FUNIT training (one D step, one G step per batch; EMA generator) and evaluation.

    Validation (on held-out source-class pairs, with the evaluated generator): ``val/recon_l1`` and, on data with
    poses, ``val/pose_angle_err`` of the translations; a grid (content | class image | translation | reconstruction)
    in ``samples/``. Test (Sec. 4 protocol): a classifier is trained on real images of the unseen target classes,
    every content image is translated into every target class from K random shots, and ``test/top1_k{K}`` /
    ``test/top5_k{K}`` report how often the classifier names the intended class; ``test/chance`` is 1 / |T|. The
    K-shot sets are nested (for each class and repeat, the K = 1 shot is among the K = 5 shots, and so on), so the
    K are compared on paired draws: ``test/top1_gain_k{K}`` is top-1 at K minus top-1 at the smallest K, and
    ``test/top1_gain_se_k{K}`` its standard error over the (class, repeat) shot draws. With poses,
    ``test/pose_center_err`` (px) and ``test/pose_angle_err`` (deg) compare the translation's pose with the
    content image's. Two trivial probes are judged alike on the same shots (:data:`PROBES`):
    ``test/top1_colour_k{K}`` and ``test/pose_*_err_colour`` for the colour transfer, ``test/top1_copy_k{K}`` and
    ``test/pose_*_err_copy`` for returning the first shot. FUNIT without its class conditioning
    (:data:`ABLATIONS`): ``test/top1_meancode_k{K}`` decodes with the mean of the target classes' codes instead of
    the target's own. ``samples/test_translations.png`` shows, per target class,
    the content image, the K = 5 shots, FUNIT's translation and the colour transfer's.

    Args:
        generator / discriminator: the networks.
        optimizer_g / optimizer_d: factories (reference: RMSprop lr 1e-4, weight decay 1e-4).
        gan_w / recon_w / fm_w / gp_w: loss weights (1, 0.1, 1, 10).
        gp_mode / gp_chunk: the gradient-penalty scaling (see :func:`nvresearch.funit.losses.gradient_penalty`).
        ema_decay: weight of the old average in the generator EMA (0.999); None disables it.
        eval_with_ema: evaluate the EMA generator (the reference's ``gen_test``).
        eval_ks: shot counts evaluated. eval_repeats: K-shot draws per class (each nested over the K).
        classifier_steps / classifier_width: Adam steps and first-layer width of the evaluation classifier.
        classifier_colour_augment: train it with random RGB channel permutations (classes whose colours vary).
        num_samples: rows in the sample grids.
    """

    def __init__(
        self,
        generator: FewShotGenerator,
        discriminator: MultiTaskDiscriminator,
        optimizer_g: OptimizerFactory | None = None,
        optimizer_d: OptimizerFactory | None = None,
        scheduler_g: SchedulerFactory | None = None,
        scheduler_d: SchedulerFactory | None = None,
        gan_w: float = 1.0,
        recon_w: float = 0.1,
        fm_w: float = 1.0,
        gp_w: float = 10.0,
        gp_mode: str = "reference",
        gp_chunk: int = 8,
        ema_decay: float | None = 0.999,
        eval_with_ema: bool = True,
        eval_ks: Sequence[int] = (1, 5, 10, 15, 20),
        eval_repeats: int = 1,
        classifier_steps: int = 300,
        classifier_width: int = 32,
        classifier_colour_augment: bool = False,
        num_samples: int = 6,
        grad_clip_norm: float | None = None,
    ) -> None:
        super().__init__(optimizer_g, optimizer_d, scheduler_g, scheduler_d, ema_decay, grad_clip_norm=grad_clip_norm)
        self.generator, self.discriminator = generator, discriminator
        self.init_ema()
        self.weights = {"gan_w": float(gan_w), "recon_w": float(recon_w), "fm_w": float(fm_w)}
        self.gp = {"gp_w": float(gp_w), "gp_mode": gp_mode, "gp_chunk": int(gp_chunk)}
        self.eval_with_ema = eval_with_ema
        self.eval_ks = [int(k) for k in eval_ks]
        self.eval_repeats, self.classifier_steps = int(eval_repeats), int(classifier_steps)
        self.classifier_width = int(classifier_width)
        self.classifier_colour_augment = bool(classifier_colour_augment)
        self.num_samples = int(num_samples)
        self.val_metrics = nn.ModuleDict({n: MeanMetric() for n in ("recon_l1", "pose_angle_err")})
        names = [f"top{t}_k{k}" for k in self.eval_ks for t in (1, 5)]
        names += [f"top1_{probe}_k{k}" for k in self.eval_ks for probe in (*PROBES, *ABLATIONS)]
        names += [f"pose_{q}_err{s}" for s in ("", "_copy", "_colour") for q in ("center", "angle")]
        names += ["classifier_top1_real"]
        self.test_metrics = nn.ModuleDict({n: MeanMetric() for n in names})
        self.gain_metrics = nn.ModuleDict()  # paired K comparisons, built at test start (their size needs the data)
        self._eval_state: dict[str, Any] = {}

    # ------------------------------------------------------------------ training
    def discriminator_losses(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        return discriminator_losses(
            self.generator,
            self.discriminator,
            batch["content"],
            batch["class_image"],
            batch["class_label"],
            gan_w=self.weights["gan_w"],
            grad_scale=self.amp_scale(),
            **self.gp,
        )

    def generator_losses(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        return generator_losses(
            self.generator,
            self.discriminator,
            batch["content"],
            batch["content_label"],
            batch["class_image"],
            batch["class_label"],
            **self.weights,
        )

    @property
    def eval_generator(self) -> FewShotGenerator:
        """The generator used for evaluation and pictures (the EMA copy when enabled)."""
        if self.eval_with_ema and self.generator_ema is not None:
            return self.generator_ema  # type: ignore[return-value]
        return self.generator

    @torch.no_grad()
    def translate(self, content: Tensor, class_images: Tensor) -> Tensor:
        """Translate content images into the class shown by K class images (codes averaged over the K shots).

        Shape:
            content: ``(B, 3, H, W)``; class_images: ``(B, 3, H, W)`` or ``(B, K, 3, H, W)``; returns ``(B, 3, H, W)``.
        """
        return self.eval_generator(content, class_images)

    # ------------------------------------------------------------------ validation
    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        gen = self.eval_generator
        with torch.no_grad():
            content = gen.encode_content(batch["content"])
            x_t = gen.decode(content, gen.encode_class(batch["class_image"]))
            x_r = gen.decode(content, gen.encode_class(batch["content"]))
        keep = self.eval_keep_mask(x_r.shape[0], batch_idx)  # DDP's padded duplicates do not count
        self.val_metrics["recon_l1"].update((x_r - batch["content"]).abs().mean((1, 2, 3))[keep])
        if "pose" in batch:
            _, ang = pose_error(estimate_pose(x_t), estimate_pose(batch["content"]))
            self.val_metrics["pose_angle_err"].update(ang[keep])
        if batch_idx == 0 and self.trainer.is_global_zero and not self.trainer.sanity_checking:
            n = min(self.num_samples, x_t.shape[0])
            rows = [
                [_img(batch["content"][i]), _img(batch["class_image"][i]), _img(x_t[i]), _img(x_r[i])] for i in range(n)
            ]
            labels = ["content", "class image", "translation", "reconstruction"]
            save_grid(rows, self.samples_dir / f"val_epoch{self.current_epoch:03d}.png", col_labels=labels)

    def on_validation_epoch_end(self) -> None:
        for name, metric in self.val_metrics.items():
            if metric.update_count:
                self.log(f"val/{name}", metric.compute(), prog_bar=name == "recon_l1")
            metric.reset()

    # ------------------------------------------------------------------ test: few-shot translation accuracy
    def on_test_start(self) -> None:
        dm = self.trainer.datamodule
        data = dm.fewshot_data()
        device = self.device
        with torch.inference_mode(False), torch.enable_grad():  # Lightning tests under inference mode
            classifier = train_classifier(
                data["classifier_images"].to(device).clone(),
                data["classifier_labels"].to(device).clone(),
                data["num_classes"],
                steps=self.classifier_steps,
                seed=int(getattr(dm, "seed", 0)),
                width=self.classifier_width,
                colour_augment=self.classifier_colour_augment,
            )
        g = torch.Generator().manual_seed(int(getattr(dm, "seed", 0)) + 12_345)
        pools = [p.to(device) for p in data["shot_pools"]]
        sets = nested_kshot_sets([p.shape[0] for p in pools], self.eval_ks, g, self.eval_repeats)
        # K -> [repeat] -> (T, K, 3, S, S)
        shots = {
            k: [torch.stack([pools[t][sets[k][t][r]] for t in range(len(pools))]) for r in range(self.eval_repeats)]
            for k in self.eval_ks
        }
        num_clusters = len(pools) * self.eval_repeats
        self.gain_metrics = nn.ModuleDict(
            {f"k{k}": _ClusterSums(num_clusters) for k in self.eval_ks if k != min(self.eval_ks)}
        ).to(device)
        with torch.no_grad():
            for t, pool in enumerate(pools):
                logits = classifier(pool)
                hits = topk_hits(logits, torch.full((pool.shape[0],), t, device=device), (1,))[1]
                self.test_metrics["classifier_top1_real"].update(hits.float())
        self._eval_state = {"classifier": classifier, "shots": shots, "has_pose": data["has_pose"], "T": len(pools)}

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        st = self._eval_state
        gen, classifier = self.eval_generator, st["classifier"]
        content = batch["image"]
        b, num_t = content.shape[0], st["T"]
        targets = torch.arange(num_t, device=content.device).repeat_interleave(b)
        # the classifier and the shots are the same in every process (seeded); each process translates its shard of
        # the content images, and DDP's padded duplicates are left out of every metric (ordered as ``targets``)
        keep = self.eval_keep_mask(b, batch_idx).repeat(num_t)
        grid_rows = None
        k0 = min(self.eval_ks)
        top1: dict[tuple[int, int], Tensor] = {}  # (K, repeat) -> top-1 hits, ordered as ``targets``
        with torch.no_grad():
            code = gen.encode_content(content)
            content_pose = estimate_pose(content) if st["has_pose"] else None
            for k in sorted(self.eval_ks):  # the smallest K first: the others are paired with it
                for r, shots in enumerate(st["shots"][k]):
                    class_codes = gen.encode_class(shots)  # (T, K, 3, S, S) -> (T, latent)
                    outs = torch.stack([gen.decode(code, class_codes[t].expand(b, -1)) for t in range(num_t)])
                    hits = topk_hits(classifier(outs.flatten(0, 1)), targets, (1, 5))
                    top1[k, r] = hits[1].float()
                    if k != k0:  # paired with the same content, class and (nested) shots at the smallest K
                        gain = top1[k, r] - top1[k0, r]
                        self.gain_metrics[f"k{k}"].update(gain[keep], (targets + num_t * r)[keep])
                    self.test_metrics[f"top1_k{k}"].update(hits[1].float()[keep])
                    self.test_metrics[f"top5_k{k}"].update(hits[5].float()[keep])
                    # the ablation: one code (the mean over the target classes) for every target class
                    out_mean = mean_code_translation(gen, code, class_codes)
                    hits_mean = topk_hits(classifier(out_mean).repeat(num_t, 1), targets, (1,))[1]
                    self.test_metrics[f"top1_meancode_k{k}"].update(hits_mean.float()[keep])
                    # trivial probes judged alike: the colour transfer, and copying the first shot (the class image)
                    colour = torch.stack(
                        [colour_transfer(content, shots[t][None].expand(b, -1, -1, -1, -1)) for t in range(num_t)]
                    )
                    hits_colour = topk_hits(classifier(colour.flatten(0, 1)), targets, (1,))[1]
                    self.test_metrics[f"top1_colour_k{k}"].update(hits_colour.float()[keep])
                    copy_logits = classifier(shots[:, 0]).repeat_interleave(b, 0)
                    self.test_metrics[f"top1_copy_k{k}"].update(topk_hits(copy_logits, targets, (1,))[1].float()[keep])
                    if content_pose is not None:
                        pose = estimate_pose(outs.flatten(0, 1))
                        ref = content_pose.repeat(num_t, 1)
                        dist, ang = pose_error(pose, ref)
                        self.test_metrics["pose_center_err"].update(dist[keep])
                        self.test_metrics["pose_angle_err"].update(ang[keep])
                        copy_pose = estimate_pose(shots[:, 0])  # baseline: output the (first) class image
                        dist_c, ang_c = pose_error(copy_pose.repeat_interleave(b, 0), ref)
                        self.test_metrics["pose_center_err_copy"].update(dist_c[keep])
                        self.test_metrics["pose_angle_err_copy"].update(ang_c[keep])
                        dist_p, ang_p = pose_error(estimate_pose(colour.flatten(0, 1)), ref)
                        self.test_metrics["pose_center_err_colour"].update(dist_p[keep])
                        self.test_metrics["pose_angle_err_colour"].update(ang_p[keep])
                    if grid_rows is None and batch_idx == 0 and k == min(5, max(self.eval_ks)):
                        grid_rows = self._grid(content, shots, outs, colour)
        if grid_rows is not None and self.trainer.is_global_zero:
            k = len(grid_rows) - 3
            rows = ["content", *(f"shot {i + 1}" for i in range(k)), "FUNIT", "colour probe"]
            cols = [f"class {t + 1}" for t in range(len(grid_rows[0]))]
            save_grid(
                grid_rows, self.samples_dir / "test_translations.png", col_labels=cols, row_labels=rows, min_cell=96
            )

    def _grid(self, content: Tensor, shots: Tensor, outs: Tensor, colour: Tensor) -> list[list[Tensor]]:
        """One column per target class (content images taken in turn); rows: the content image, the K shots of the
        class, FUNIT's translation and the colour-transfer probe's."""
        n = min(self.num_samples, content.shape[0])
        cols = [
            [_img(content[t % n]), *(_img(s) for s in shots[t]), _img(outs[t, t % n]), _img(colour[t, t % n])]
            for t in range(shots.shape[0])
        ]
        return [list(row) for row in zip(*cols, strict=True)]

    def on_test_epoch_end(self) -> None:
        for name, metric in self.test_metrics.items():
            if metric.update_count:
                self.log(f"test/{name}", metric.compute())
            metric.reset()
        for name, metric in self.gain_metrics.items():
            gain, se = cluster_mean_se(*metric.compute())
            self.log(f"test/top1_gain_{name}", gain)
            self.log(f"test/top1_gain_se_{name}", se)
            metric.reset()
        if self._eval_state:
            self.log("test/chance", 1.0 / self._eval_state["T"])
        self._eval_state = {}


class _ClusterSums(Metric):
    """Per-cluster sums and counts of per-item values (synchronised over processes), for cluster-robust errors."""

    full_state_update = False

    def __init__(self, num_clusters: int) -> None:
        super().__init__()
        # float32 holds the sums of +-1 / 0 hits and the counts exactly at any evaluation size used here
        self.add_state("sums", torch.zeros(num_clusters), dist_reduce_fx="sum")
        self.add_state("counts", torch.zeros(num_clusters), dist_reduce_fx="sum")

    def update(self, values: Tensor, clusters: Tensor) -> None:
        self.sums.index_add_(0, clusters, values.float())
        self.counts.index_add_(0, clusters, torch.ones_like(values, dtype=torch.float32))

    def compute(self) -> tuple[Tensor, Tensor]:
        return self.sums, self.counts


def _img(x: Tensor) -> Tensor:
    return (x.detach().float().cpu() + 1) / 2
