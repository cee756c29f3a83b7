"""Callbacks every run uses."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl

from nvresearch._version import __version__
from nvresearch.core.training.checkpoint import CONFIG_KEY


class EmbedConfig(pl.Callback):
    """Writes the resolved run config into every checkpoint, so ``load_checkpoint(path)`` can rebuild the model."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        checkpoint[CONFIG_KEY] = {"config": self.config, "version": __version__}
