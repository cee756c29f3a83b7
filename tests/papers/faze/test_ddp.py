"""FAZE under data parallelism: stage 1 in two CPU processes (gloo), then stage 2 on the test features gathered
from both processes in order; its error-vs-k equals one process evaluating the same checkpoint."""

from __future__ import annotations

import json
import math

import pytest
from conftest import run_cli

pytestmark = pytest.mark.slow

# FAZE_FAST (tests/papers/faze/test_module.py) on two processes; 3 test persons x 60 samples and 2 x 8 validation
# samples, in evaluation batches of 64 and 6: shards of unequal real length, padded by the DistributedSampler.
FAZE_DDP = [
    "paper=faze",
    "trainer=ddp_cpu",
    "trainer.max_epochs=1",
    "trainer.num_sanity_val_steps=0",
    "trainer.enable_progress_bar=false",
    "+trainer.limit_train_batches=2",
    "logger=csv",
    "data.dataset.num_persons={train: 4, val: 2, test: 3}",
    "data.dataset.samples={train: 40, val: 8, test: 61}",
    "data.min_samples=8",
    "data.stage2_min_samples=39",
    "data.test_last=30",
    "data.batch_size=4",
    "data.eval_batch_size=64",
    "model.dted.growth_rate=4",
    "model.stage2.meta_steps=10",
    "model.stage2.query_size=10",
    "model.stage2.train_ks=[1,3]",
    "model.stage2.joint_steps=10",
    "model.stage2.adapt_steps=5",
    "model.stage2.repeats=2",
    "model.stage2.select_last=4",
    "model.stage2.ks=[0,1,3,9]",
]


def test_ddp_cpu_trains_faze_and_stage2_equals_one_process(tmp_path):
    res = run_cli(
        [
            "-m",
            "nvresearch.train",
            *FAZE_DDP,
            f"data.dataset.cache_dir={tmp_path / 'cache'}",
            f"paths.output_root={tmp_path}",
        ],
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr[-4000:]
    runs = list((tmp_path / "faze" / "runs").iterdir())
    assert len(runs) == 1, runs
    ckpt = runs[0] / "checkpoints" / "last.ckpt"
    assert ckpt.is_file() and (runs[0] / "error_vs_k.csv").is_file()
    ddp = json.loads((runs[0] / "metrics.json").read_text())
    keys = ["test/dted_error", "test/error_k0", "test/error_k3", "test/joint_error_k9", "val/gaze_error"]
    assert set(keys) <= set(ddp["metrics"])

    one_out = tmp_path / "eval_one"
    res = run_cli(
        ["-m", "nvresearch.eval", "paper=faze", f"ckpt_path={ckpt}", "trainer=cpu", "logger=csv",
         "trainer.enable_progress_bar=false", f"paths.output_root={one_out}"],
        cwd=tmp_path,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-4000:]
    one = json.loads(next(one_out.rglob("metrics.json")).read_text())
    for key in keys[:-1]:
        assert math.isclose(ddp["metrics"][key], one["metrics"][key], rel_tol=1e-3), (key, ddp, one)
