"""What ``nvresearch.train`` and ``nvresearch.eval`` do with a composed config (Hydra-free: takes a DictConfig)."""

from __future__ import annotations

import json
import logging
import math
import re
import shutil
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf

from nvresearch.core.training.callbacks import EmbedConfig, ProgressBar
from nvresearch.core.training.checkpoint import CheckpointError, checkpoint_config, load_checkpoint, read_checkpoint
from nvresearch.core.training.console import log_to_files
from nvresearch.core.training.errors import DeviceError, NoCheckpointError, user_error_types
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
    return dict(sorted(out.items(), key=lambda kv: _natural_key(kv[0])))


def _natural_key(name: str) -> tuple:
    """Sort key that orders numbers inside names by value: k1, k2, k16, k128 (not k1, k128, k16, k2)."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", name) if part)


def _write_metrics(trainer: pl.Trainer, out_dir: Path, metrics: dict[str, float], extra: dict[str, Any]) -> None:
    if not trainer.is_global_zero:
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps({**extra, "metrics": metrics}, indent=2) + "\n")


def _report(title: str, out_dir: Path, metrics: dict[str, float]) -> None:
    lines = [f"{title}: run folder {out_dir}"] + [f"  {k:<32s} {v:.6g}" for k, v in metrics.items()]
    lines.append(f"  metrics: {out_dir / 'metrics.json'}")
    print("\n".join(lines), flush=True)
    log_to_files("\n".join(lines))  # the run's log file keeps the final metrics too


def find_last_checkpoint(runs_dir: Path, exclude: Path | None = None) -> Path:
    """The newest ``checkpoints/last.ckpt`` below ``runs_dir`` (for ``ckpt_path=last``)."""
    candidates = [
        p for p in Path(runs_dir).glob("*/checkpoints/last.ckpt") if exclude is None or exclude not in p.parents
    ]
    if not candidates:
        raise NoCheckpointError(
            f"ckpt_path=last: no earlier run with a checkpoint ('*/checkpoints/last.ckpt') under '{runs_dir}'"
        )
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
        raise NoCheckpointError(f"ckpt_path: no checkpoint file at '{p}'")
    read_checkpoint(p)  # a file that is no checkpoint fails here in one line, not deep inside Lightning's resume
    return str(p)


def check_data_and_device(cfg: DictConfig, datamodule: Any) -> None:
    """Fail in one line, before anything heavy is built, on a missing dataset and then on a missing GPU.

    A dataset root that does not exist makes the datamodule's own layout check run now (its error names the path and
    the expected layout); a trainer asking for a GPU on a machine without CUDA names the override that runs on CPU.
    """
    data = cfg.get("data") or {}
    root = data.get("root") or (data.get("dataset") or {}).get("root")
    if root is not None and not Path(str(root)).expanduser().exists() and hasattr(datamodule, "setup"):
        datamodule.setup("fit")  # raises DatasetLayoutError on the missing root
    accelerator = str(cfg.get("trainer", {}).get("accelerator", "auto")).lower()
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise DeviceError(
            f"trainer.accelerator={accelerator} but this machine has no CUDA GPU (torch.cuda.is_available() is "
            "False); add trainer=cpu to the command line (or trainer=ddp_cpu for two CPU processes)"
        )


def _with_progress(callbacks: list[pl.Callback], trainer_cfg: DictConfig) -> list[pl.Callback]:
    """Add the progress output (bar on a terminal, a line per epoch otherwise) unless a progress bar is configured."""
    if not trainer_cfg.get("enable_progress_bar", True):
        return callbacks
    if any(isinstance(c, pl.callbacks.ProgressBar) for c in callbacks):
        return callbacks
    return [*callbacks, ProgressBar()]


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
    check_data_and_device(cfg, datamodule)
    module = instantiate(cfg.model)
    module.config = resolved
    callbacks = _with_progress(_build_callbacks(cfg.get("callbacks")) + [EmbedConfig(resolved)], cfg.trainer)
    trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=_build_loggers(cfg.get("logger")))

    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    metrics = _scalar_metrics(trainer.callback_metrics, ("val/",))
    if cfg.get("test", True):
        best = getattr(trainer.checkpoint_callback, "best_model_path", "") or None
        # verbose=False: _report prints the metrics (Lightning's table repeats epoch-level metrics once per test
        # dataloader, e.g. FAZE's two loaders of stage 2 showed two identical columns).
        trainer.test(module, datamodule=datamodule, ckpt_path=best, weights_only=True, verbose=False)
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
        raise CheckpointError(
            f"checkpoint '{ckpt_file}' was trained for paper={ckpt_cfg.get('paper_name')}, not paper={cfg.paper_name}"
        )
    pl.seed_everything(int(cfg.seed), workers=True)
    module = load_checkpoint(ckpt_file)
    data_cfg = ckpt_cfg["data"] if data_from_checkpoint else cfg.data
    datamodule = instantiate(data_cfg)
    check_data_and_device(OmegaConf.merge(cfg, {"data": data_cfg}), datamodule)
    trainer: pl.Trainer = instantiate(
        cfg.trainer,
        callbacks=_with_progress(_build_callbacks(cfg.get("callbacks")), cfg.trainer),
        logger=_build_loggers(cfg.get("logger")),
    )
    trainer.test(module, datamodule=datamodule, verbose=False)
    metrics = _scalar_metrics(trainer.callback_metrics, ("test/",))
    _write_metrics(trainer, out_dir, metrics, {"paper": cfg.paper_name, "task": "eval", "checkpoint": ckpt_file})
    if trainer.is_global_zero:
        _report(f"[{cfg.paper_name}] evaluation done", out_dir, metrics)
    return metrics


def run_entry(task: Callable[[], Any], out_dir: str | Path, output_root: str | Path | None = None) -> Any:
    """Run ``task`` for an entry point: an error the user can fix becomes one line on stderr and exit status 1.

    The run folder Hydra made is removed when the error came before the run wrote anything (it holds only
    ``.hydra/`` and the log), with the folders above it that are left empty up to ``output_root``, so failed attempts
    leave nothing behind.
    Any other exception is a bug and keeps its traceback.
    """
    try:
        return task()
    except user_error_types() as err:
        message = str(err).strip() or type(err).__name__
        log_to_files(f"error: {message}")
        print(f"error: {message}", file=sys.stderr, flush=True)
        _remove_if_unused(Path(out_dir), None if output_root is None else Path(output_root))
        raise SystemExit(1) from None


def _remove_if_unused(run_dir: Path, output_root: Path | None) -> None:
    if not run_dir.is_dir() or any(p.name != ".hydra" and p.suffix != ".log" for p in run_dir.iterdir()):
        return
    for handler in logging.getLogger().handlers:  # release the log file before its folder goes
        if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename).parent == run_dir:
            handler.close()
    shutil.rmtree(run_dir, ignore_errors=True)
    if output_root is None:
        return
    root, parent = output_root.resolve(), run_dir.resolve().parent
    while root in parent.parents and not any(parent.iterdir()):  # <output_root>/<slug>/runs made for this run
        parent.rmdir()
        parent = parent.parent
