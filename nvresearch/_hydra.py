"""Where the entry points find their configs: the checkout's top-level ``configs/`` or the copy inside the wheel."""

from __future__ import annotations

from pathlib import Path

_SOURCE_CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def config_path() -> str:
    """Absolute path of ``<repo>/configs`` when running from a checkout, else ``pkg://nvresearch.configs``."""
    if (_SOURCE_CONFIGS / "train.yaml").is_file():
        return str(_SOURCE_CONFIGS)
    return "pkg://nvresearch.configs"


def cli_overrides() -> list[str]:
    """The overrides given on the command line of the current Hydra job (empty outside Hydra)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return []
    return list(HydraConfig.get().overrides.task)
