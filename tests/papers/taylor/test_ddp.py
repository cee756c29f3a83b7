"""Taylor pruning under data parallelism: two CPU processes (gloo) prune the same channels (masks, not surgery,
during training, so DDP's wrapper keeps its parameters) and write one run folder with the pruned network."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("criterion", ["taylor_fo_fg"])
def test_ddp_cpu_prunes_and_writes_one_run_folder(tmp_path, criterion):
    res = run_cli(
        [
            "-m", "nvresearch.train", "paper=taylor", "trainer=ddp_cpu", "logger=csv",
            "trainer.max_epochs=2", "trainer.num_sanity_val_steps=0", "trainer.enable_progress_bar=false",
            "+trainer.limit_train_batches=8", "callbacks.pruning.start_epoch=1", "callbacks.pruning.frequency=2",
            f"callbacks.pruning.criterion={criterion}", f"paths.output_root={tmp_path}",
        ],
        cwd=tmp_path,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-4000:]
    runs = list((tmp_path / "taylor" / "runs").iterdir())
    assert len(runs) == 1, runs
    run = runs[0]
    assert (run / "checkpoints" / "last.ckpt").is_file() and (run / "pruned_model.pt").is_file()
    metrics = json.loads((run / "metrics.json").read_text())["metrics"]
    assert {"test/acc", "test/acc_top5", "test/macs_ratio"} <= set(metrics)
    pruning = json.loads((run / "pruning.json").read_text())
    assert pruning["channels_removed"] > 0 and metrics["test/channels_removed"] == pruning["channels_removed"]
