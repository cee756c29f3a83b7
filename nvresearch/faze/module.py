"""LightningModule for FAZE: stage 1 (DT-ED) in ``fit``, stage 2 (AdaGEN meta-learning + personalisation) in ``test``.

``fit`` trains the DT-ED on same-person pairs with the reference losses, weights, EC warm-up and learning-rate schedule
(official ``src/1_train_dt_ed.py``) and validates its gaze head's angular error on validation persons. ``test`` runs the
frozen encoder over the meta-training persons (loader 0), the test persons (loader 1) and the validation persons (loader
2), then meta-trains the gaze MLP, trains the joint (non-meta) baseline, and personalises both and the DT-ED gaze head
(the official "NONE" baseline) on every test person for each k (as ``2_meta_learning.py``), each at its own step size
chosen on the validation persons. It logs ``test/error_k<k>`` (meta-learned init), ``test/joint_error_k<k>``,
``test/none_error_k<k>``, ``test/offset_error_k<k>`` (offset correction), ``test/<init>_adapt_lr``, ``test/dted_error``
(the DT-ED gaze head, person-independent) and ``test/person_independent_error``, and writes ``error_vs_k.csv``,
``stage2.pt``, ``estimator.pt`` (for :meth:`~nvresearch.faze.inference.FazeGazeEstimator.load`) and pictures in
``samples/``.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import math
from collections import defaultdict
from typing import Any

import torch
from torch import Tensor
from torchmetrics import MeanMetric

from nvresearch.core.geometry import gaze_angular_error, pitchyaw_to_vector
from nvresearch.core.training.console import log_to_files
from nvresearch.core.training.module import NVModule, OptimizerFactory, SchedulerFactory
from nvresearch.core.utils.threads import torch_threads
from nvresearch.faze.adagen import (
    AdaGENConfig,
    PersonCodes,
    joint_train,
    meta_train,
    mlp_from_dted_before_z,
    mlp_from_dted_head,
)
from nvresearch.faze.inference import FazeGazeEstimator
from nvresearch.faze.losses import (
    all_frontals_equal_loss,
    batch_hard_triplet_loss,
    embedding_consistency_loss,
    faze_objective,
    gaze_angular_loss,
    linear_ramp,
    reconstruction_l1_loss,
)
from nvresearch.faze.metrics import offset_correction_curve, personalization_curve, select_adapt_lr
from nvresearch.faze.models import DTED, GazeMLP
from nvresearch.faze.visual import draw_error_curve, save_gaze_rotation, save_reconstructions

log = logging.getLogger("nvresearch")


class FazeModule(NVModule):
    """FAZE stage 1 + stage 2.

    Args:
        dted: the DT-ED network.
        stage2: stage-2 settings (:class:`~nvresearch.faze.adagen.AdaGENConfig`).
        optimizer / scheduler: factories; the reference is SGD (momentum 0.9, Nesterov, weight decay 1e-4) at
            ``base_lr`` 5e-5. ``scheduler`` replaces the built-in schedule below when given.
        w_recon / w_ec / w_gaze: loss weights (1, 2, 0.1).
        ec_warmup_samples: the EC weight ramps from 0 over ``floor(ec_warmup_samples / B_global)`` steps (1e6).
        scale_lr_by_batch: peak lr = base lr x global batch, reached linearly over
            ``floor(lr_warmup_samples / B_global)`` steps; the gaze-head group stays at the base lr (as the reference).
        lr_warmup_samples: see above (1e6).
        batch_size: per-device training batch (to compute ``B_global``).
        num_samples: images per picture in ``samples/``.
        grad_clip_norm: optional gradient clipping (None in the reference).
        triplet_loss: ablation (official ``--triplet-loss-type``): None (the reference), ``"angular"`` or
            ``"euclidean"`` adds the batch-hard triplet loss of the frontalised gaze codes and of the head codes, each
            with weight 1 (:func:`~nvresearch.faze.losses.batch_hard_triplet_loss`). The official code uses it
            *instead of* EC (set ``w_ec: 0``), ``"angular"`` with normalised codes and ``"euclidean"`` without.
        triplet_margin: its margin (official ``--triplet-loss-margin``, 0).
        triplet_regularize_within: also add the mean within-person distance (``--triplet-regularize-d-within``).
        all_frontals_equal: ablation (official ``--all-equal-embeddings``): add, with weight 1, the
            :func:`~nvresearch.faze.losses.all_frontals_equal_loss` of the gaze codes and of the head codes.
    """

    def __init__(
        self,
        dted: DTED,
        stage2: AdaGENConfig | None = None,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        w_recon: float = 1.0,
        w_ec: float = 2.0,
        w_gaze: float = 0.1,
        ec_warmup_samples: float = 1e6,
        scale_lr_by_batch: bool = True,
        lr_warmup_samples: float = 1e6,
        batch_size: int = 64,
        num_samples: int = 6,
        grad_clip_norm: float | None = None,
        triplet_loss: str | None = None,
        triplet_margin: float = 0.0,
        triplet_regularize_within: bool = False,
        all_frontals_equal: bool = False,
    ) -> None:
        super().__init__(
            optimizer=optimizer, scheduler=scheduler, scheduler_interval="step", grad_clip_norm=grad_clip_norm
        )
        if triplet_loss not in (None, "angular", "euclidean"):
            raise ValueError(f"model.triplet_loss must be null, 'angular' or 'euclidean', got {triplet_loss!r}")
        self.dted = dted
        self.triplet_loss, self.triplet_margin = triplet_loss, float(triplet_margin)
        self.triplet_regularize_within = bool(triplet_regularize_within)
        self.all_frontals_equal = bool(all_frontals_equal)
        self.stage2 = stage2 or AdaGENConfig()
        if self.stage2.select_z == "before_z":  # stage 2's MLP; receives the meta-learned weights in test
            mlp = self._before_z_mlp()
        else:
            mlp = GazeMLP(3 * dted.z_gaze, self.stage2.hidden, self.stage2.activation, meta_sgd=self.stage2.meta_sgd)
        self.gaze_mlp = mlp
        self.w_recon, self.w_ec, self.w_gaze = float(w_recon), float(w_ec), float(w_gaze)
        self.ec_warmup_samples, self.lr_warmup_samples = float(ec_warmup_samples), float(lr_warmup_samples)
        self.scale_lr_by_batch = scale_lr_by_batch
        self.batch_size = int(batch_size)
        self.num_samples = int(num_samples)
        self.val_error = MeanMetric()
        self.results: dict[str, Any] = {}
        self._test_store: dict[int, dict[str, list[Tensor]]] = {}
        self._picture_batch: dict[str, Tensor] | None = None

    # ------------------------------------------------------------------ optimisation
    @property
    def global_batch(self) -> int:
        world = self.trainer.world_size if self._trainer is not None else 1
        return self.batch_size * world

    def _ramp_steps(self, samples: float) -> int:
        return int(samples // self.global_batch)

    def parameter_groups(self) -> list[dict[str, Any]]:
        head = [p for n, p in self.dted.named_parameters() if n.startswith(("gaze1.", "gaze2."))]
        ids = {id(p) for p in head}
        rest = [p for p in self.dted.parameters() if id(p) not in ids]
        return [{"params": rest}, {"params": head}]

    def configure_optimizers(self) -> Any:
        if self.scheduler_factory is not None or not self.scale_lr_by_batch:
            return super().configure_optimizers()
        if self.optimizer_factory is None:
            raise ValueError("FazeModule has no optimizer configured (set model.optimizer)")
        optimizer = self.optimizer_factory(self.parameter_groups())
        peak, ramp = float(self.global_batch), max(1, self._ramp_steps(self.lr_warmup_samples))

        def main_group(step: int) -> float:  # base_lr -> base_lr * B_global, linearly over the warm-up
            return 1.0 + (peak - 1.0) * min(1.0, step / ramp)

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, [main_group, lambda step: 1.0])
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def _before_z_mlp(self, meta_sgd: bool | None = None) -> GazeMLP:
        """The official ``before_z`` MLP from the current DT-ED (``fc_enc`` and the gaze head copied)."""
        d = self.dted
        meta_sgd = self.stage2.meta_sgd if meta_sgd is None else meta_sgd
        return mlp_from_dted_before_z(d.fc_enc, d.gaze1, d.gaze2, d.z_app, self.stage2.activation, meta_sgd)

    def ec_weight(self) -> float:
        return linear_ramp(self.global_step, self._ramp_steps(self.ec_warmup_samples), self.w_ec)

    # ------------------------------------------------------------------ stage 1
    def compute_losses(self, batch: dict[str, Tensor], w_ec: float | None = None) -> dict[str, Tensor]:
        """All DT-ED loss terms of a pair batch and their weighted total (FAZE Eq. 5)."""
        out = self.dted(
            batch["image_a"],
            batch["R_gaze_a"],
            batch["R_head_a"],
            batch["R_gaze_b"],
            batch["R_head_b"],
            image_b=batch["image_b"],
        )
        recon = reconstruction_l1_loss(out["image_b_hat"], batch["image_b"])
        pool = torch.cat([out["canon_gaze"], out["canon_gaze_b"]])
        ec = embedding_consistency_loss(pool, torch.cat([batch["person"], batch["person"]]))
        gaze = gaze_angular_loss(out["gaze_hat"], batch["gaze_a"])
        w = self.w_ec if w_ec is None else w_ec
        total = faze_objective(recon, ec, gaze, self.w_recon, w, self.w_gaze)
        terms = {"recon_l1": recon, "ec_gaze": ec, "gaze_deg": gaze}
        if self.triplet_loss is not None or self.all_frontals_equal:
            persons = torch.cat([batch["person"], batch["person"]])
            for mode in ("gaze", "head"):  # the ablations act on both codes, as in the official code
                codes = torch.cat([out[f"canon_{mode}"], out[f"canon_{mode}_b"]])
                if self.triplet_loss is not None:
                    terms[f"triplet_{mode}"] = batch_hard_triplet_loss(
                        codes, persons, self.triplet_margin, self.triplet_loss, self.triplet_regularize_within
                    )
                    total = total + terms[f"triplet_{mode}"]
                if self.all_frontals_equal:
                    terms[f"all_equal_{mode}"] = all_frontals_equal_loss(codes)
                    total = total + terms[f"all_equal_{mode}"]
        return {"loss": total, **terms}

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        w = self.ec_weight()
        terms = self.compute_losses(batch, w)
        self.log_losses(terms, "train", batch_size=batch["image_a"].shape[0])
        self.log("train/w_ec", w, on_step=True, on_epoch=False)
        return terms["loss"]

    def setup(self, stage: str) -> None:
        # The gaze MLP only receives stage 2's result (in test); fit never uses it. Frozen while fitting, it stays
        # outside DDP's gradient reduction, which otherwise stops at its unused parameters. Restored in teardown.
        if stage == "fit":
            self.gaze_mlp.requires_grad_(False)

    def teardown(self, stage: str) -> None:
        if stage == "fit":
            self.gaze_mlp.requires_grad_(True)

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        _, z_gaze, _ = self.dted.encode(batch["image"])
        keep = self.eval_keep_mask(batch["image"].shape[0], batch_idx)  # DDP's padded duplicates do not count
        self.val_error.update(gaze_angular_error(self.dted.estimate_gaze(z_gaze), batch["gaze"])[keep])

    def on_validation_epoch_end(self) -> None:
        self.log("val/gaze_error", self.val_error.compute(), prog_bar=True)
        self.val_error.reset()

    # ------------------------------------------------------------------ stage 2
    def on_test_epoch_start(self) -> None:
        self._test_store = {0: defaultdict(list), 1: defaultdict(list), 2: defaultdict(list)}
        self._picture_batch = None

    def test_step(self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        pooled = self.dted.pooled_features(batch["image"])
        _, z_gaze, _ = self.dted.codes_from_features(pooled)
        store = self._test_store[dataloader_idx]
        features = pooled if self.stage2.select_z == "before_z" else z_gaze.flatten(1)
        store["features"].append(features.float().cpu())
        store["gaze"].append(batch["gaze"].float().cpu())
        store["person"].append(batch["person"].cpu())
        if dataloader_idx == 1:
            store["dted_error"].append(gaze_angular_error(self.dted.estimate_gaze(z_gaze), batch["gaze"]).cpu())
            if self._picture_batch is None:
                self._picture_batch = {k: v[: 4 * self.num_samples] for k, v in batch.items()}

    def _codes(self, idx: int, names: list[str]) -> list[PersonCodes]:
        store = self._test_store[idx]
        # clone(): the stored tensors were made under inference mode and cannot enter autograd otherwise
        feats, gaze, person = (torch.cat(store[k]).clone() for k in ("features", "gaze", "person"))
        out = []
        for p in torch.unique(person).tolist():
            m = person == p
            out.append(PersonCodes(names[p], feats[m], pitchyaw_to_vector(gaze[m]), gaze[m]))
        return out

    def _gather_test_store(self) -> None:
        """Under DDP, give every process the test features of all processes, in the loaders' order (padding removed).

        Stage 2 groups samples per person and fits on the first and scores the last of each person's samples, so
        it needs the whole, ordered set; every process then runs the same (deterministic) stage 2 on it and logs the
        same numbers as a one-process run.
        """
        for idx, store in self._test_store.items():
            names = [k for k in ("features", "gaze", "person", "dted_error") if store.get(k)]
            if not names:
                continue
            full = self.gather_eval({k: torch.cat(store[k]) for k in names}, dataloader_idx=idx)
            self._test_store[idx] = defaultdict(list, {k: [v.cpu()] for k, v in full.items()})

    def on_test_epoch_end(self) -> None:
        self._gather_test_store()
        # Stage 2 works on a 643-parameter MLP: intra-op threads cost more than they save (measured 4x the CPU time
        # with 2 threads on a loaded 2-core machine), so it runs on one thread.
        with torch_threads(1), torch.inference_mode(False), torch.enable_grad():  # stage 2 trains while testing
            self._run_stage2()

    def _run_stage2(self) -> None:
        dm = self.trainer.datamodule
        train_codes = self._codes(0, dm.person_names("meta_train"))
        test_codes = self._codes(1, dm.person_names("test"))
        cfg = self.stage2
        ks = [int(k) for k in cfg.ks]
        # DT-ED's own gaze head on the same test samples (the last test_last of each person).
        store = self._test_store[1]
        person, dted_err = torch.cat(store["person"]), torch.cat(store["dted_error"])
        last = torch.zeros_like(person, dtype=torch.bool)
        for p in torch.unique(person).tolist():
            where = (person == p).nonzero().flatten()
            last[where[-cfg.test_last :]] = True
        dted_error = float(dted_err[last].mean())

        start = None
        if cfg.select_z == "before_z":
            # before_z: every initialisation starts from the DT-ED's fc_enc and gaze head (the official code requires
            # --maml-use-pretrained-mlp), and "NONE" is that MLP fine-tuned without meta-training.
            start = self._before_z_mlp()
            joint = joint_train(train_codes, cfg, init=self._before_z_mlp(meta_sgd=False))
            none = self._before_z_mlp(meta_sgd=False)
        else:
            joint = joint_train(train_codes, cfg)
            none = mlp_from_dted_head(self.dted.gaze1, self.dted.gaze2)  # the official "NONE" baseline
        if cfg.per_k:
            # One model per k > 0; k = 0 (no adaptation) evaluates the smallest k's model instead of training a
            # duplicate of it.
            inits = {k: meta_train(train_codes, cfg, k=k, init=start) for k in ks if k > 0}
            meta = inits[min(inits)] if inits else meta_train(train_codes, cfg, k=1, init=start)
            if 0 in ks:
                inits[0] = meta
        else:
            meta = meta_train(train_codes, cfg, init=start)
            inits = None
        select_codes = self._codes(2, dm.person_names("val")) if self._test_store[2].get("features") else []
        # MAML's step size is the one it was meta-learned for (its inner loop is the personalisation); the other two
        # initialisations get their own best one.
        lrs = {"meta": float(cfg.adapt_lr), **self._select_adapt_lrs(select_codes, {"joint": joint, "none": none})}
        common = dict(test_last=cfg.test_last, repeats=cfg.repeats, steps=cfg.adapt_steps, seed=cfg.seed)
        meta_curve = personalization_curve(meta, test_codes, ks, inits=inits, lr=lrs["meta"], **common)
        joint_curve = personalization_curve(joint, test_codes, ks, lr=lrs["joint"], **common)
        none_curve = personalization_curve(none, test_codes, ks, lr=lrs["none"], **common)
        # The trivial probe: the jointly trained MLP plus the mean error of the k samples (no learning).
        offset_curve = offset_correction_curve(
            joint, test_codes, ks, test_last=cfg.test_last, repeats=cfg.repeats, seed=cfg.seed
        )
        self.gaze_mlp.load_state_dict(meta.state_dict())

        joint_k0 = next((c.mean for c in joint_curve if c.k == 0), math.inf)
        person_independent = min(dted_error, joint_k0)
        metrics = {"dted_error": dted_error, "person_independent_error": person_independent}
        metrics |= {f"{name}_adapt_lr": lr for name, lr in lrs.items()}
        curves = {"": meta_curve, "joint_": joint_curve, "none_": none_curve, "offset_": offset_curve}
        for prefix, curve in curves.items():
            for c in curve:
                metrics[f"{prefix}error_k{c.k}"] = c.mean
        for name, value in metrics.items():
            self.log(f"test/{name}", value, add_dataloader_idx=False)
        self.results = {
            "metrics": metrics,
            "meta_curve": [dataclasses.asdict(c) for c in meta_curve],
            "joint_curve": [dataclasses.asdict(c) for c in joint_curve],
            "none_curve": [dataclasses.asdict(c) for c in none_curve],
            "offset_curve": [dataclasses.asdict(c) for c in offset_curve],
            "adapt_lrs": lrs,
            "adapt_lr_scores": self._lr_scores,
            "test_persons": len(test_codes),
            "meta_train_persons": len(train_codes),
        }
        if self.trainer.is_global_zero:
            self._write_stage2(meta, joint, meta_curve, joint_curve, dted_error)

    def _select_adapt_lrs(self, persons: list[PersonCodes], inits: dict[str, GazeMLP]) -> dict[str, float]:
        """Each initialisation's personalisation step size among ``stage2.adapt_lrs``, chosen on ``persons`` (the
        validation persons: their last ``select_last`` samples held out); ``stage2.adapt_lr`` for all when no
        candidates are configured.

        Not on the meta-training persons: both initialisations were trained on their samples, so there the jointly
        trained MLP needs no adaptation and the smallest step always wins (measured: docs/papers/faze.md).
        """
        cfg = self.stage2
        self._lr_scores: dict[str, dict[float, float]] = {}
        if not cfg.adapt_lrs:
            return {name: float(cfg.adapt_lr) for name in inits}
        if not persons:
            raise ValueError("model.stage2.adapt_lrs needs validation persons to choose on (data.val_persons > 0)")
        held_out = int(cfg.select_last) or int(cfg.test_last)
        out = {}
        for name, mlp in inits.items():
            out[name], self._lr_scores[name] = select_adapt_lr(
                mlp, persons, cfg.adapt_lrs, cfg.select_ks, held_out, cfg.repeats, cfg.adapt_steps, cfg.seed
            )
        return out

    def _write_stage2(self, meta: GazeMLP, joint: GazeMLP, meta_curve: list, joint_curve: list, dted: float) -> None:
        out = self.output_dir
        joint_by_k = {c.k: c for c in joint_curve}
        none_by_k = {c["k"]: c for c in self.results.get("none_curve", [])}
        offset_by_k = {c["k"]: c for c in self.results.get("offset_curve", [])}
        with open(out / "error_vs_k.csv", "w", newline="") as f:
            writer = csv.writer(f)
            header = ["k", "meta_mean_deg", "meta_std_deg", "joint_mean_deg", "joint_std_deg"]
            header += ["none_mean_deg", "none_std_deg", "offset_mean_deg", "offset_std_deg"]
            writer.writerow([*header, "persons"])
            for c in meta_curve:
                row = [c.k, f"{c.mean:.4f}", f"{c.std:.4f}"]
                j = joint_by_k.get(c.k)
                row += [f"{j.mean:.4f}", f"{j.std:.4f}"] if j else ["", ""]
                for other in (none_by_k.get(c.k), offset_by_k.get(c.k)):
                    row += [f"{other['mean']:.4f}", f"{other['std']:.4f}"] if other else ["", ""]
                writer.writerow([*row, c.persons])
        torch.save(
            {"meta_mlp": meta.state_dict(), "joint_mlp": joint.state_dict(), "results": self.results}, out / "stage2.pt"
        )
        # The estimator records the run's preprocessing so that predict() on uint8 patches sees what training saw.
        equalize = bool(getattr(self.trainer.datamodule, "equalize", True))
        FazeGazeEstimator(self.dted, meta, equalize).save(out / "estimator.pt")
        ks = [c.k for c in meta_curve]
        lrs = self.results.get("adapt_lrs", {})
        nan = {"mean": math.nan}
        rows = {
            f"MAML init, lr {lrs.get('meta', math.nan):.0e}": [c.mean for c in meta_curve],
            f"joint init, lr {lrs.get('joint', math.nan):.0e}": [joint_by_k[k].mean for k in ks],
            f"NONE (DT-ED head), lr {lrs.get('none', math.nan):.0e}": [none_by_k.get(k, nan)["mean"] for k in ks],
            "offset correction": [offset_by_k.get(k, nan)["mean"] for k in ks],
        }
        draw_error_curve(ks, rows, self.samples_dir / "error_vs_k.png", hlines={"DT-ED (k=0)": dted})
        lines = [f"{'k':>5s} {'MAML init':>10s} {'joint init':>10s} {'NONE':>10s} {'offset corr.':>12s}"]
        widths = (9, 9, 9, 11)
        for i, k in enumerate(ks):
            lines.append(f"{k:>5d}" + "".join(f" {v[i]:>{w}.2f}°" for w, v in zip(widths, rows.values())))
        chosen = ", ".join(f"{name} {lr:g}" for name, lr in lrs.items())
        lines.append(f"personalisation step sizes (chosen on the validation persons): {chosen}")
        lines.append(f"DT-ED gaze head (person-independent): {dted:.2f}°")
        table = "FAZE error vs k (test persons):\n" + "\n".join(lines)
        print(table, flush=True)  # once on the console (Hydra's log handler would repeat a log.info there)
        log_to_files(table)
        if self._picture_batch is not None:
            self._save_pictures(self._picture_batch)

    def _save_pictures(self, batch: dict[str, Tensor]) -> None:
        """``reconstructions.png`` (a | b | decoded a->b) and ``gaze_rotation.png`` (gaze code rotated, decoded)."""
        save_reconstructions(self.dted, batch, self.samples_dir / "reconstructions.png", self.num_samples)
        save_gaze_rotation(self.dted, batch, self.samples_dir / "gaze_rotation.png", self.num_samples)
