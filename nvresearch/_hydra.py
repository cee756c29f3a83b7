"""Where the entry points find their configs: the checkout's top-level ``configs/`` or the copy inside the wheel."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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


def compose(overrides: list[str] | tuple[str, ...] = (), config_name: str = "train") -> Any:
    """Compose a config outside ``@hydra.main`` (scripts, notebooks). Set ``paths.output_dir`` in the overrides."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir, initialize_config_module

    path = config_path()
    if path.startswith("pkg://"):
        ctx = initialize_config_module(config_module=path.removeprefix("pkg://"), version_base="1.3")
    else:
        ctx = initialize_config_dir(config_dir=path, version_base="1.3")
    with ctx:
        return hydra_compose(config_name, overrides=list(overrides))
