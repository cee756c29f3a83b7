"""What ``nvresearch.train`` and ``nvresearch.eval`` do with a composed config (Hydra-free: takes a DictConfig)."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf

from nvresearch.core.training.callbacks import EmbedConfig
from nvresearch.core.training.checkpoint import checkpoint_config, load_checkpoint, read_checkpoint
from nvresearch.core.utils.instantiate import instantiate
from nvresearch.core.utils.schema import ConfigError, check_config

log = logging.getLogger("nvresearch")


def _entries(cfg: DictConfig | None, group: str) -> list[tuple[str, Any]]:
    """A callbacks/logger group's ``(name, config)`` entries: ``null`` switches one off, no ``_target_`` is an error."""
    entries = []
    for name, conf in (cfg or {}).items():
        if conf is None:
            continue
        if not isinstance(conf, Mapping) or "_target_" not in conf:
            raise ConfigError(
                f"{group}.{name}: no '_target_', nothing to build (settings composed without the config that names "
                f"the class, e.g. another paper's? set {group}.{name}=null to switch it off)"
            )
        entries.append((str(name), conf))
    return entries


def _build_callbacks(cfg: DictConfig | None) -> list[pl.Callback]:
    return [instantiate(conf) for _, conf in _entries(cfg, "callbacks")]


def _build_loggers(cfg: DictConfig | None) -> list[Any]:
    loggers = []
    for name, conf in _entries(cfg, "logger"):
        try:
            loggers.append(instantiate(conf))
        except ModuleNotFoundError as err:  # TensorBoard is optional: pip install tensorboard
            log.info("logger '%s' skipped: %s", name, err)
    return loggers


def _scalar_metrics(metrics: Mapping[str, Any], prefixes: tuple[str, ...]) -> dict[str, float]:
    out = {}
    for key, value in metrics.items():
        if key.startswith(prefixes) and not key.endswith("_step"):
            v = float(value.item() if isinstance(value, torch.Tensor) else value)
            out[key.removesuffix("_epoch")] = v if math.isfinite(v) else float("nan")
    return dict(sorted(out.items()))


def _write_metrics(trainer: pl.Trainer, out_dir: Path, metrics: dict[str, float], extra: dict[str, Any]) -> None:
    if not trainer.is_global_zero:
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps({**extra, "metrics": metrics}, indent=2) + "\n")


def _report(title: str, out_dir: Path, metrics: dict[str, float]) -> None:
    lines = [f"{title}: run folder {out_dir}"] + [f"  {k:<32s} {v:.6g}" for k, v in metrics.items()]
    lines.append(f"  metrics: {out_dir / 'metrics.json'}")
    print("\n".join(lines), flush=True)


def find_last_checkpoint(runs_dir: Path, exclude: Path | None = None) -> Path:
    """The newest ``checkpoints/last.ckpt`` below ``runs_dir`` (for ``ckpt_path=last``)."""
    candidates = [
        p for p in Path(runs_dir).glob("*/checkpoints/last.ckpt") if exclude is None or exclude not in p.parents
    ]
    if not candidates:
        raise FileNotFoundError(f"ckpt_path=last: no '*/checkpoints/last.ckpt' under '{runs_dir}'")
    return max(candidates, key=lambda p: p.stat().st_mtime)


def resolve_ckpt_path(ckpt_path: str | None, cfg: DictConfig) -> str | None:
    if ckpt_path in (None, ""):
        return None
    if ckpt_path == "last":
        runs = Path(cfg.paths.output_root) / str(cfg.paper_name) / "runs"
        found = find_last_checkpoint(runs, exclude=Path(cfg.paths.output_dir))
        log.info("ckpt_path=last resolved to %s", found)
        return str(found)
    p = Path(str(ckpt_path)).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"ckpt_path: no checkpoint file at '{p}'")
    return str(p)


def train(cfg: DictConfig) -> dict[str, float]:
    """Train (and then test) the paper selected by ``cfg``; returns the final metrics also written to metrics.json."""
    check_config(cfg)  # wrong types and unknown keys fail here, naming the key, before anything is built
    out_dir = Path(cfg.paths.output_dir)
    pl.seed_everything(int(cfg.seed), workers=True)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(resolved, dict)

    # Build everything before training starts, so that a wrong key or value fails in seconds, not after an epoch.
    ckpt_path = resolve_ckpt_path(cfg.get("ckpt_path"), cfg)
    datamodule = instantiate(cfg.data)
    module = instantiate(cfg.model)
    module.config = resolved
    callbacks = _build_callbacks(cfg.get("callbacks")) + [EmbedConfig(resolved)]
    trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=_build_loggers(cfg.get("logger")))

    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    metrics = _scalar_metrics(trainer.callback_metrics, ("val/",))
    if cfg.get("test", True):
        best = getattr(trainer.checkpoint_callback, "best_model_path", "") or None
        trainer.test(module, datamodule=datamodule, ckpt_path=best, weights_only=True)
        metrics.update(_scalar_metrics(trainer.callback_metrics, ("test/",)))
    extra = {
        "paper": cfg.paper_name,
        "task": "train",
        "global_step": trainer.global_step,
        "epochs": trainer.current_epoch,
    }
    _write_metrics(trainer, out_dir, metrics, extra)
    if trainer.is_global_zero:
        _report(f"[{cfg.paper_name}] training done", out_dir, metrics)
    return metrics


def evaluate(cfg: DictConfig, data_from_checkpoint: bool = True) -> dict[str, float]:
    """Evaluate a trained checkpoint on the test split without retraining."""
    check_config(cfg)
    out_dir = Path(cfg.paths.output_dir)
    if not cfg.get("ckpt_path"):
        raise ValueError("evaluation needs ckpt_path=<file> (or ckpt_path=last)")
    ckpt_file = resolve_ckpt_path(cfg.ckpt_path, cfg)
    ckpt_cfg = checkpoint_config(read_checkpoint(ckpt_file), ckpt_file)
    if ckpt_cfg.get("paper_name") != cfg.paper_name:
        raise ValueError(
            f"checkpoint '{ckpt_file}' was trained for paper={ckpt_cfg.get('paper_name')}, not paper={cfg.paper_name}"
        )
    pl.seed_everything(int(cfg.seed), workers=True)
    module = load_checkpoint(ckpt_file)
    data_cfg = ckpt_cfg["data"] if data_from_checkpoint else cfg.data
    datamodule = instantiate(data_cfg)
    trainer: pl.Trainer = instantiate(
        cfg.trainer, callbacks=_build_callbacks(cfg.get("callbacks")), logger=_build_loggers(cfg.get("logger"))
    )
    trainer.test(module, datamodule=datamodule)
    metrics = _scalar_metrics(trainer.callback_metrics, ("test/",))
    _write_metrics(trainer, out_dir, metrics, {"paper": cfg.paper_name, "task": "eval", "checkpoint": ckpt_file})
    if trainer.is_global_zero:
        _report(f"[{cfg.paper_name}] evaluation done", out_dir, metrics)
    return metrics
