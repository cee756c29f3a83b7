"""DGNetModule: DG-Net's two-stage training (teacher, then joint generation and re-id) with manual optimisation."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from nvresearch.core.training.gan import GANModule
from nvresearch.core.training.module import OptimizerFactory
from nvresearch.core.utils.visual import save_grid
from nvresearch.dgnet.data import IMAGENET_MEAN, IMAGENET_STD, random_erasing
from nvresearch.dgnet.losses import DGNetLossWeights, cross_entropy_pair, identity_loss
from nvresearch.dgnet.metrics import extract_features, market_evaluate
from nvresearch.dgnet.models import AppearanceEncoder, DGNetDiscriminator, DGNetGenerator, TeacherNet, upscale_small
from nvresearch.dgnet.step import dgnet_forward, discriminator_objective, generator_objective
from nvresearch.dgnet.world import colour_histogram_features, person_colour_features, swap_pairs, swap_scores

__all__ = ["DGNetModule"]

SchedulerFactory = Callable[[torch.optim.Optimizer], Any]


class DGNetModule(GANModule):
    """DG-Net (Zheng et al., CVPR 2019) as the official trainer runs it, in two stages.

    **Stage 1, teacher** (first ``teacher_steps`` batches; official: a separately trained ``ft_net``): the teacher
    learns identity cross-entropy on the real training images (SGD, ``optimizer_teacher``, head lr x
    ``head_lr_scale``). Alternatively ``teacher_path`` loads a trained teacher's state dict and ``teacher_steps: 0``
    skips the stage; ``teacher: null`` trains without the teacher term (official ``teacher: ""``).

    **Stage 2, joint** (every later batch): the batch is cut into ``x_a`` (first half) and ``x_b`` (second half),
    with their positives; :func:`~nvresearch.dgnet.step.dgnet_forward`, one discriminator step (Adam), then one
    backward of :func:`~nvresearch.dgnet.step.generator_objective` and two steps: Adam for the generator (E_s, G, the
    MLPs) and SGD Nesterov for E_a (heads at ``head_lr_scale`` x the trunk's lr). The loss weights follow
    :class:`~nvresearch.dgnet.losses.DGNetLossWeights` at the joint iteration (ramps after ``warm_iter``). The
    schedulers step once per joint iteration (official MultiStepLR in iterations), after the optimisers' steps
    (the official trainer steps them first: its milestones fall one iteration earlier).

    **Warm start** (``warm_start_appearance=True``, ours): in stage 1, E_a also takes the ablation's step on each
    batch, so that the joint stage starts from the ablation's E_a at the same batch.

    **Ablation** (``use_generated=False``, the claim's baseline): no generated data at all. Every batch (no teacher
    stage) trains E_a alone with the identity losses on real images, ``L^s_id`` and ``L_pid`` at their weights of
    that iteration (random erasing on), with the same optimiser; G, D and the teacher do not move.

    Validation and test: DG-Net's test feature (flip sum, per-half normalisation, ``alpha`` on the query's fine
    half) on the query + gallery sets, Market protocol: ``{val,test}/rank1``, ``rank5``, ``rank10``, ``mAP``; the
    colour-histogram probe on the same images as ``{val,test}/colour_rank1``, ``colour_mAP`` (the trivial baseline of
    docs/papers/dgnet.md); where the evaluation set carries the world's part masks (``"mask"``), the person-pixel
    colour probe (:func:`~nvresearch.dgnet.world.person_colour_features`, the strongest colour-only matcher) as
    ``{val,test}/person_colour_*`` and, at test, the swap scores on the world's ground truth
    (:func:`~nvresearch.dgnet.world.swap_scores` on :func:`~nvresearch.dgnet.world.swap_pairs` of the queries) as
    ``test/swap_*``; ``samples/{val_epochNNN,test}_swap.png``: the appearance of each row's image on the
    structure of each column's image.

    Args:
        generator / discriminator / appearance_encoder / teacher: the networks (teacher None: no teacher term).
        optimizer_g / optimizer_d: factories for the generator and D (official Adam lr 1e-4, betas (0, 0.999),
            weight decay 5e-4).
        optimizer_id: factory for E_a, called with two parameter groups (trunk, heads with lr x ``head_lr_scale``):
            official SGD lr 0.002, momentum 0.9, Nesterov, weight decay 5e-4.
        optimizer_teacher: factory for the teacher in stage 1 (the same two groups).
        scheduler_g / scheduler_d / scheduler_id: per-iteration schedulers (official MultiStepLR [60k, 90k], 0.1).
        weights: overrides of :class:`~nvresearch.dgnet.losses.DGNetLossWeights` fields (e.g. ``warm_iter``).
        teacher_steps: stage-1 batches. teacher_path: a teacher state dict to load (``TeacherNet`` names).
        teacher_style: the soft-label style (0: the official dynamic soft label).
        encoder_again_p: probability of the official structure re-encoding branch (``use_encoder_again`` 0.5).
        erasing_p: random-erasing probability on the re-id inputs (official 0.5).
        upscale_height: E_a sees inputs no taller than this up-sampled x2 (official 128; 0: never).
        head_lr_scale: heads' lr over the trunk's, for E_a and the teacher (10; a randomly initialised trunk
            needs 1, see configs/model/dgnet/tiny.yaml).
        use_generated: False trains the ablation without generated data (above).
        warm_start_appearance: True lets E_a take the ablation's step (identity losses on real images) on every
            stage-1 batch besides the teacher's (ours, not official: the official E_a starts from ImageNet weights
            and waits for the joint stage); the teacher then draws its erasing and dropout from its own generators,
            so that E_a after stage 1 equals the ablation's E_a after as many batches (a paired comparison whose
            two runs differ only in the joint stage's generated data).
        generated_bn_stats: whether E_a's passes on generated images update its BatchNorm running statistics
            (official: True; False keeps the statistics used at test to the real images, ours for short runs).
        alpha: weight of the query's fine-grained half at test (official 0.5 for Market / Duke).
        num_samples: rows and columns of the swap grid.
    """

    def __init__(
        self,
        generator: DGNetGenerator,
        discriminator: DGNetDiscriminator,
        appearance_encoder: AppearanceEncoder,
        teacher: TeacherNet | None = None,
        optimizer_g: OptimizerFactory | None = None,
        optimizer_d: OptimizerFactory | None = None,
        optimizer_id: OptimizerFactory | None = None,
        optimizer_teacher: OptimizerFactory | None = None,
        scheduler_g: SchedulerFactory | None = None,
        scheduler_d: SchedulerFactory | None = None,
        scheduler_id: SchedulerFactory | None = None,
        weights: dict[str, float] | None = None,
        teacher_steps: int = 0,
        teacher_path: str | None = None,
        teacher_style: int = 0,
        encoder_again_p: float = 0.5,
        erasing_p: float = 0.5,
        upscale_height: int = 128,
        head_lr_scale: float = 10.0,
        use_generated: bool = True,
        warm_start_appearance: bool = False,
        generated_bn_stats: bool = True,
        alpha: float = 0.5,
        num_samples: int = 4,
        seed: int = 0,
    ) -> None:
        super().__init__(optimizer_g, optimizer_d, scheduler_g, scheduler_d)
        self.generator, self.discriminator = generator, discriminator
        self.appearance_encoder, self.teacher = appearance_encoder, teacher
        self.optimizer_id_factory, self.optimizer_teacher_factory = optimizer_id, optimizer_teacher
        self.scheduler_id_factory = scheduler_id
        try:
            self.loss_weights = DGNetLossWeights(**(weights or {}))
        except TypeError as err:
            raise TypeError(f"model.weights: {err}") from err
        if teacher_steps > 0 and teacher is None:
            raise ValueError("model.teacher_steps > 0 needs a model.teacher to train")
        if teacher_path is not None:
            if teacher is None:
                raise ValueError("model.teacher_path given but model.teacher is null")
            path = Path(teacher_path)
            if not path.is_file():
                raise FileNotFoundError(f"model.teacher_path: no file '{path}'")
            teacher.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        self.teacher_steps, self.teacher_style = int(teacher_steps), int(teacher_style)
        self.encoder_again_p, self.erasing_p = float(encoder_again_p), float(erasing_p)
        self.upscale_height, self.head_lr_scale = int(upscale_height), float(head_lr_scale)
        self.use_generated = bool(use_generated)
        self.warm_start_appearance = bool(warm_start_appearance)
        self.generated_bn_stats = bool(generated_bn_stats)
        if not self.use_generated:  # the ablation needs no teacher: every batch trains E_a on real images
            self.teacher_steps = 0
        self.alpha, self.num_samples, self.seed = float(alpha), int(num_samples), int(seed)
        # batches trained so far (both stages), saved with the checkpoint so that ramps and stages resume right
        self.register_buffer("iteration", torch.zeros((), dtype=torch.long))
        self._rng = torch.Generator().manual_seed(self.seed)
        self._eval: dict[str, list[Tensor]] = {}

    # ------------------------------------------------------------------ optimisers
    def _groups(self, net: nn.Module, heads: Iterable[str], lr_scale: float) -> list[dict[str, Any]]:
        head_ids = {id(p) for name in heads for p in getattr(net, name).parameters()}
        trunk = [p for p in net.parameters() if id(p) not in head_ids]
        head = [p for p in net.parameters() if id(p) in head_ids]
        return [{"params": trunk, "lr_scale": 1.0}, {"params": head, "lr_scale": lr_scale}]

    @staticmethod
    def _scaled(factory: OptimizerFactory, groups: list[dict[str, Any]]) -> torch.optim.Optimizer:
        opt = factory([{"params": g["params"]} for g in groups])
        for group, spec in zip(opt.param_groups, groups, strict=True):
            group["lr"] = group["lr"] * spec["lr_scale"]
            group["initial_lr"] = group["lr"]
        return opt

    def configure_optimizers(self) -> Any:
        for key in ("optimizer_g_factory", "optimizer_d_factory", "optimizer_id_factory"):
            if getattr(self, key) is None:
                raise ValueError(f"DGNetModule needs model.{key.removesuffix('_factory')}")
        opt_g = self.optimizer_g_factory(list(self.generator.parameters()))
        opt_d = self.optimizer_d_factory(list(self.discriminator.parameters()))
        opt_id = self._scaled(
            self.optimizer_id_factory,
            self._groups(self.appearance_encoder, ("classifier1", "classifier2"), self.head_lr_scale),
        )
        optimisers = [opt_g, opt_d, opt_id]
        if self.teacher is not None and self.teacher_steps > 0:
            if self.optimizer_teacher_factory is None:
                raise ValueError("DGNetModule needs model.optimizer_teacher when model.teacher_steps > 0")
            optimisers.append(
                self._scaled(
                    self.optimizer_teacher_factory, self._groups(self.teacher, ("classifier",), self.head_lr_scale)
                )
            )
        scheds = []
        for opt, factory in zip(optimisers, (self.scheduler_g_factory, self.scheduler_d_factory,
                                             self.scheduler_id_factory), strict=False):  # fmt: skip
            if factory is not None:
                scheds.append({"scheduler": factory(opt), "interval": "step"})
        return optimisers, scheds

    def on_train_epoch_end(self) -> None:
        """Nothing: the schedulers step per iteration (in :meth:`training_step`)."""

    # ------------------------------------------------------------------ training
    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        optimisers = self.optimizers()
        it = int(self.iteration)
        self.iteration += 1
        if it < self.teacher_steps:
            if self.warm_start_appearance and self.use_generated:
                # E_a takes the ablation's step on this batch; the teacher draws from its own generators (erasing
                # keyed by seed and iteration, dropout in a forked global RNG), so that E_a's draws and hence its
                # weights after stage 1 are the ablation's after as many batches
                self._real_only_step(optimisers[2], batch, it)
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(self.seed * 1_000_003 + it)
                    self._teacher_step(optimisers[3], batch, torch.Generator().manual_seed(self.seed * 7919 + it))
                return
            self._teacher_step(optimisers[3], batch)
            return
        opt_g, opt_d, opt_id = optimisers[:3]
        if not self.use_generated:
            self._real_only_step(opt_id, batch, it)
            return
        x, labels, pos = batch["image"], batch["label"], batch["positive"]
        half = x.shape[0] // 2
        x_a, x_b, l_a, l_b = x[:half], x[half : 2 * half], labels[:half], labels[half : 2 * half]
        xp_a, xp_b = pos[:half], pos[half : 2 * half]
        erase = (lambda t: random_erasing(t, self._rng, self.erasing_p)) if self.erasing_p > 0 else None
        fwd = dgnet_forward(self.generator, self.appearance_encoder, x_a, x_b, xp_a, xp_b, erase, self.upscale_height)

        # discriminator (official dis_update: on the detached x_ba, x_ab)
        self.discriminator.requires_grad_(True)
        d_loss, d_reg = discriminator_objective(self.discriminator, fwd, x_a, x_b, gan_weight=self.loss_weights.gan)
        # logged (and checked for non-finite values) before each step, so that a bad step is never applied
        self.log_losses({"d_loss": d_loss, "d_reg": d_reg}, "train", batch_size=x.shape[0])
        self._step(opt_d, {"loss": d_loss}, self.discriminator.parameters())

        # generator + E_a (official gen_update): one backward, two optimiser steps
        weights = self.loss_weights.at(it - self.teacher_steps)
        again = bool(torch.rand((), generator=self._rng) < self.encoder_again_p)
        teacher = self.teacher if self.teacher is not None else None
        if teacher is not None:
            teacher.eval()
            for m in teacher.modules():  # official train_bn: the teacher's BatchNorm on the generated batch
                if isinstance(m, _BatchNorm):
                    m.train()
        self.discriminator.requires_grad_(False)
        g_loss, terms = generator_objective(
            self.generator, self.appearance_encoder, self.discriminator, teacher, fwd, x_a, x_b, l_a, l_b,
            weights, again, self.teacher_style, self.upscale_height, self.generated_bn_stats,
        )  # fmt: skip
        self.discriminator.requires_grad_(True)
        logged = {"g_loss": g_loss, **{f"g_{k}": v for k, v in terms.items() if isinstance(v, Tensor)}}
        self.log_losses(logged, "train", batch_size=x.shape[0])
        opt_g.zero_grad(set_to_none=True)
        opt_id.zero_grad(set_to_none=True)
        self.backward_unreduced(g_loss)
        self.sync_gradients(self.generator.parameters())
        self.sync_gradients(self.appearance_encoder.parameters())
        opt_g.step()
        opt_id.step()
        schedulers = self.lr_schedulers()
        for s in schedulers if isinstance(schedulers, list) else [schedulers] if schedulers is not None else []:
            s.step()

        self.log("train/teacher_w", weights["teacher"], on_step=True, on_epoch=False, batch_size=x.shape[0])

    def _real_only_step(self, opt_id: Any, batch: dict[str, Tensor], it: int) -> None:
        """The ablation's step: E_a learns ``L^s_id + L_pid`` on the real halves and positives (official weights of
        iteration ``it``), as in the joint stage but with no generated image anywhere."""
        x, labels, pos = batch["image"], batch["label"], batch["positive"]
        half = x.shape[0] // 2
        l_a, l_b = labels[:half], labels[half : 2 * half]
        up = (lambda t: upscale_small(t, self.upscale_height)) if self.upscale_height > 0 else (lambda t: t)
        erase = (lambda t: random_erasing(t, self._rng, self.erasing_p)) if self.erasing_p > 0 else (lambda t: t)
        ida = self.appearance_encoder
        ida.train()
        p_a, p_b = ida(erase(up(x[:half])))[1:], ida(erase(up(x[half : 2 * half])))[1:]
        pp_a, pp_b = ida(erase(up(pos[:half])))[1:], ida(erase(up(pos[half : 2 * half])))[1:]
        weights = self.loss_weights.at(it)
        terms = {
            "id": identity_loss(*p_a, l_a, *p_b, l_b, fine_weight=weights["fine_real"]),
            "pid": cross_entropy_pair(pp_a[0], l_a, pp_b[0], l_b),
        }
        loss = weights["id"] * terms["id"] + weights["pid"] * terms["pid"]
        self.log_losses({"g_loss": loss, **{f"g_{k}": v for k, v in terms.items()}}, "train", batch_size=x.shape[0])
        opt_id.zero_grad(set_to_none=True)
        self.backward_unreduced(loss)
        self.sync_gradients(ida.parameters())
        opt_id.step()
        schedulers = self.lr_schedulers()
        inner = getattr(opt_id, "optimizer", opt_id)  # Lightning's wrapper around the torch optimiser
        for sch in schedulers if isinstance(schedulers, list) else [schedulers] if schedulers is not None else []:
            if sch.optimizer is inner:  # only E_a's schedule: G and D do not step here
                sch.step()

    def _teacher_step(self, opt: Any, batch: dict[str, Tensor], rng: torch.Generator | None = None) -> None:
        """Stage 1: the teacher baseline learns identity cross-entropy on the real images (random erasing on, drawn
        from ``rng``, by default the module's generator)."""
        assert self.teacher is not None
        self.teacher.train()
        x = batch["image"]
        if self.erasing_p > 0:
            x = random_erasing(x, self._rng if rng is None else rng, self.erasing_p)
        up = upscale_small(x, self.upscale_height) if self.upscale_height > 0 else x
        loss = F.cross_entropy(self.teacher(up), batch["label"])
        self.log_losses({"teacher_ce": loss}, "train", batch_size=x.shape[0])
        opt.zero_grad(set_to_none=True)
        self.backward_unreduced(loss)
        self.sync_gradients(self.teacher.parameters())
        opt.step()

    # ------------------------------------------------------------------ evaluation
    def _features(self, images: Tensor) -> Tensor:
        up = upscale_small(images, self.upscale_height) if self.upscale_height > 0 else images
        return extract_features(self.appearance_encoder, up)

    def _eval_step(self, batch: dict[str, Tensor], stage: str, batch_idx: int) -> None:
        keep = self.eval_keep_mask(batch["image"].shape[0], batch_idx)
        with torch.no_grad():
            feats = self._features(batch["image"])
        pixels = _unnormalise(batch["image"])
        parts = {
            "f": feats, "c": colour_histogram_features(pixels.cpu()), "l": batch["label"], "cam": batch["camera"],
            "q": batch["is_query"],
        }  # fmt: skip
        if "mask" in batch:  # the embedded world: the person-pixel probe, and the images for the swap scores
            masks = batch["mask"].bool()
            parts["pc"] = person_colour_features(pixels.cpu(), masks[:, 2:3].cpu())
            parts["m"], parts["x"] = masks, batch["image"]
        for k, v in parts.items():
            self._eval.setdefault(k, []).append(v[keep].cpu())
        if "images" not in self._eval:  # spread over the batch: the query set lists each person's cameras in turn
            stride = max(1, batch["image"].shape[0] // max(1, self.num_samples))
            self._eval["images"] = [batch["image"][::stride][: self.num_samples].cpu()]

    def _eval_end(self, stage: str) -> None:
        if not self._eval:
            return
        data = {k: torch.cat(v) for k, v in self._eval.items() if k != "images"}
        data = {k: self.all_gather(v).flatten(0, 1) if self._gathers() else v for k, v in data.items()}
        q = data["q"].bool()
        if bool(q.all()) or not bool(q.any()):  # e.g. the sanity check's first batches: queries only
            self._eval = {}
            return
        probes = [("", data["f"], self.alpha), ("colour_", data["c"], None)]
        if "pc" in data:
            probes.append(("person_colour_", data["pc"], None))
        for prefix, feats, alpha in probes:
            res = market_evaluate(
                feats[q], data["l"][q], data["cam"][q], feats[~q], data["l"][~q], data["cam"][~q], alpha=alpha
            ).as_dict()
            for key, value in res.items():
                self.log(f"{stage}/{prefix}{key}", float(value))
        if stage == "test" and "m" in data:
            for key, value in self._swap_scores(data["x"][q], data["m"][q], data["l"][q], data["cam"][q]).items():
                self.log(f"test/swap_{key}", value)
        if self.trainer.is_global_zero and not self.trainer.sanity_checking:
            name = f"val_epoch{self.current_epoch:03d}_swap.png" if stage == "val" else "test_swap.png"
            self._swap_grid(self._eval["images"][0].to(self.device), self.samples_dir / name)
        self._eval = {}

    def _gathers(self) -> bool:
        return self._trainer is not None and self.trainer.world_size > 1

    def _swap_scores(self, images: Tensor, masks: Tensor, persons: Tensor, cameras: Tensor) -> dict[str, float]:
        """:func:`~nvresearch.dgnet.world.swap_scores` of DG-Net's swaps on the query images' pairs, and of the two
        copying probes (``copy_structure``: the structure image itself; ``copy_appearance``: the appearance image)."""
        pixels = _unnormalise(images)
        pairs = swap_pairs(persons, cameras, pixels, masks)
        a, b = pairs[:, 0], pairs[:, 1]
        swapped = torch.cat([
            _unnormalise(self.swap(images[a][k : k + 64].to(self.device), images[b][k : k + 64].to(self.device))).cpu()
            for k in range(0, a.numel(), 64)
        ])  # fmt: skip
        out = {}
        for name, x in (("", swapped), ("copy_structure_", pixels[b]), ("copy_appearance_", pixels[a])):
            for key, value in swap_scores(x, pixels[a], pixels[b], masks[a], masks[b]).items():
                out[f"{name}{key}"] = value
        return out

    @torch.no_grad()
    def swap(self, appearance: Tensor, structure: Tensor) -> Tensor:
        """``G(E_s(gray structure), E_a(appearance))``: the clothing of ``appearance`` on the pose and background of
        ``structure``.

        Shape:
            appearance, structure: ``(B, 3, H, W)`` ImageNet-normalised; returns ``(B, 3, H, W)``.
        """
        from nvresearch.dgnet.models import to_gray

        was = self.appearance_encoder.training, self.generator.training
        self.appearance_encoder.eval()
        self.generator.eval()
        try:
            up = upscale_small(appearance, self.upscale_height) if self.upscale_height > 0 else appearance
            return self.generator.decode(self.generator.encode(to_gray(structure)), self.appearance_encoder.encode(up))
        finally:
            self.appearance_encoder.train(was[0])
            self.generator.train(was[1])

    def _swap_grid(self, images: Tensor, path: Path) -> None:
        n = images.shape[0]
        rows = [[_unnormalise(images[i])[0].cpu() for i in range(n)]]  # first row: the structure providers
        for i in range(n):
            out = self.swap(images[i : i + 1].expand(n, -1, -1, -1), images)
            rows.append([_unnormalise(images[i])[0].cpu(), *(_unnormalise(o)[0].cpu() for o in out)])
        rows[0] = [torch.ones_like(rows[0][0]), *rows[0]]
        save_grid(rows, path)

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "val", batch_idx)

    def on_validation_epoch_end(self) -> None:
        self._eval_end("val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "test", batch_idx)

    def on_test_epoch_end(self) -> None:
        self._eval_end("test")

    # ------------------------------------------------------------------ checkpoint
    RNG_KEY = "dgnet_rng_state"

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Save the state of the generator that draws random erasing and the structure re-encoding branch, so that a
        resumed run draws what the uninterrupted run would have (the positives and the batch order are keyed by
        epoch and index already)."""
        checkpoint[self.RNG_KEY] = self._rng.get_state()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore the generator's state (a checkpoint written before it was saved leaves the seeded state)."""
        state = checkpoint.get(self.RNG_KEY)
        if state is not None:
            self._rng.set_state(state)


def _unnormalise(x: Tensor) -> Tensor:
    """ImageNet-normalised ``(B, 3, H, W)`` or ``(3, H, W)`` -> ``(B, 3, H, W)`` in [0, 1]."""
    x = x if x.dim() == 4 else x[None]
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return (x.float() * std + mean).clamp(0, 1)
