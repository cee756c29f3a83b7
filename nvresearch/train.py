"""Train a paper: ``python -m nvresearch.train paper=<slug> [overrides]``.

Examples::

    python -m nvresearch.train paper=pac                              # embedded data, CPU, a few minutes
    python -m nvresearch.train paper=pac trainer.max_epochs=2 data.batch_size=4
    python -m nvresearch.train paper=pac data=pac/nyu paths.data_dir=/data trainer=gpu model=pac/default
    python -m nvresearch.train -m paper=pac model.optimizer.lr=1e-3,1e-4   # a sweep
    python -m nvresearch.train paper=pac ckpt_path=last                   # resume the newest run of this paper
    python -m nvresearch.train paper=pac --cfg job                        # print the composed config
"""

from __future__ import annotations

import logging
import sys

import hydra
from omegaconf import DictConfig

from nvresearch._hydra import config_path

log = logging.getLogger("nvresearch")


@hydra.main(version_base="1.3", config_path=config_path(), config_name="train")
def main(cfg: DictConfig) -> float | None:
    from nvresearch.core.training import NonFiniteLossError
    from nvresearch.core.training.run import train
    from nvresearch.core.utils.schema import ConfigError

    try:
        metrics = train(cfg)
    except (NonFiniteLossError, ConfigError) as err:
        log.error("%s", err)
        print(f"error: {err}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None
    objective = cfg.get("objective")  # the value a sweeper minimises, when a sweep names one
    return metrics.get(objective) if objective else None


if __name__ == "__main__":
    main()
