"""Evaluate a trained checkpoint: ``python -m nvresearch.eval paper=<slug> ckpt_path=<file|last>``.

The model is rebuilt from the config embedded in the checkpoint. The test data is the checkpoint's own data config
unless the command line changes it (``data=...`` or ``data.<key>=...``).
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from nvresearch._hydra import cli_overrides, config_path


@hydra.main(version_base="1.3", config_path=config_path(), config_name="eval")
def main(cfg: DictConfig) -> None:
    from nvresearch.core.training.console import quiet_console

    quiet_console()
    from nvresearch.core.training.run import evaluate, run_entry

    data_overridden = any(o.lstrip("+~").startswith(("data=", "data.", "data/")) for o in cli_overrides())
    run_entry(
        lambda: evaluate(cfg, data_from_checkpoint=not data_overridden), cfg.paths.output_dir, cfg.paths.output_root
    )


if __name__ == "__main__":
    main()
