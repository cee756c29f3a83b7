"""Two CPU processes (gloo) train together and write one run folder, not one per process."""

from __future__ import annotations

import json

import pytest
from conftest import PAC_FAST, run_cli

pytestmark = pytest.mark.slow


def test_ddp_cpu_trains_into_one_run_folder(tmp_path):
    res = run_cli(
        [
            "-m",
            "nvresearch.train",
            *[o for o in PAC_FAST if not o.startswith("trainer=")],
            "trainer=ddp_cpu",
            "trainer.max_epochs=1",
            "+trainer.limit_train_batches=2",
            "+trainer.limit_val_batches=1",
            "+trainer.limit_test_batches=1",
            "trainer.num_sanity_val_steps=0",
            f"paths.output_root={tmp_path}",
        ],
        cwd=tmp_path,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-4000:]
    runs = list((tmp_path / "pac" / "runs").iterdir())
    assert len(runs) == 1, runs
    run = runs[0]
    assert (run / "checkpoints" / "last.ckpt").is_file()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["global_step"] == 2 and "test/rmse" in metrics["metrics"]
    assert "world_size=2" in res.stdout + res.stderr or "distributed_backend=gloo" in res.stdout + res.stderr
