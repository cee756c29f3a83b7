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

import hydra
from omegaconf import DictConfig

from nvresearch._hydra import config_path


@hydra.main(version_base="1.3", config_path=config_path(), config_name="train")
def main(cfg: DictConfig) -> float | None:
    from nvresearch.core.training.console import quiet_console

    quiet_console()
    from nvresearch.core.training.run import run_entry, train

    # An error the user can fix (bad checkpoint, missing dataset, no GPU, NaN loss) ends in one line on stderr.
    metrics = run_entry(lambda: train(cfg), cfg.paths.output_dir, cfg.paths.output_root)
    objective = cfg.get("objective")  # the value a sweeper minimises, when a sweep names one
    return metrics.get(objective) if objective else None


if __name__ == "__main__":
    main()
