"""Callbacks every run uses."""

from __future__ import annotations

import time
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint, TQDMProgressBar

from nvresearch._version import __version__
from nvresearch.core.training.checkpoint import CONFIG_KEY
from nvresearch.core.training.console import interactive, log_to_files


class EmbedConfig(pl.Callback):
    """Writes the resolved run config into every checkpoint, so ``load_checkpoint(path)`` can rebuild the model."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        checkpoint[CONFIG_KEY] = {"config": self.config, "version": __version__}


class ProgressBar(TQDMProgressBar):
    """Lightning's TQDM bar on a terminal; one line per epoch (and optionally per N steps) when output is a file.

    Redirected output (nohup, SLURM, CI) would otherwise hold thousands of carriage-return updates. The line reads
    ``epoch 3/10  train/loss 0.123  val/rmse 37.2  (12.3 s)`` with the metrics the bar would show; it goes to
    stdout and into the run's log file.

    Args:
        tty: show the bar (True) or the lines (False); ``None`` decides from stdout (a terminal or a notebook).
        every_n_steps: when printing lines, also print one every this many training batches (0: per epoch only).
        refresh_rate: batches between bar updates (as Lightning's bar).
    """

    def __init__(self, tty: bool | None = None, every_n_steps: int = 0, refresh_rate: int = 1) -> None:
        super().__init__(refresh_rate=refresh_rate)
        self.tty = interactive() if tty is None else tty
        self.every_n_steps = int(every_n_steps)
        self._epoch_start = time.monotonic()
        if not self.tty:
            self.disable()

    def _line(self, trainer: pl.Trainer, pl_module: pl.LightningModule, head: str) -> None:
        if self.tty or not trainer.is_global_zero:
            return
        metrics = {}
        for key, value in self.get_metrics(trainer, pl_module).items():
            if key == "v_num" or key.endswith("_step"):
                continue
            metrics[key.removesuffix("_epoch")] = value
        shown = "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items())
        line = f"{head}  {shown}  ({time.monotonic() - self._epoch_start:.1f} s)".replace("    ", "  ")
        print(line, flush=True)
        log_to_files(line)

    def _epochs(self, trainer: pl.Trainer) -> str:
        return f"{trainer.current_epoch + 1}/{trainer.max_epochs if trainer.max_epochs not in (None, -1) else '?'}"

    def on_train_epoch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        self._epoch_start = time.monotonic()
        super().on_train_epoch_start(trainer, *args)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        if self.every_n_steps > 0 and (batch_idx + 1) % self.every_n_steps == 0:
            self._line(trainer, pl_module, f"epoch {self._epochs(trainer)} batch {batch_idx + 1}")

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        self._line(trainer, pl_module, f"epoch {self._epochs(trainer)}")


class IterationCheckpoint(ModelCheckpoint):
    """Lightning's ``ModelCheckpoint`` whose file name may also use ``{iteration}``: training batches done.

    A GAN steps two optimisers per batch, so Lightning's ``{step}`` counts each iteration twice (step 1152 after
    576 iterations); ``{iteration}`` counts batches, and is restored with the loop state on resume.
    """

    def _monitor_candidates(self, trainer: pl.Trainer) -> dict[str, torch.Tensor]:
        candidates = super()._monitor_candidates(trainer)
        done = trainer.fit_loop.epoch_loop.batch_progress.total.completed
        candidates.setdefault("iteration", torch.tensor(done))
        return candidates
