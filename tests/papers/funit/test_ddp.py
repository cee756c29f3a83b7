"""FUNIT under data parallelism: manual-optimisation GAN training in two CPU processes (gloo), one run folder, and
the K-shot test metrics of the two processes equal to one process evaluating the same checkpoint."""

from __future__ import annotations

import json
import math

import pytest
from conftest import run_cli

pytestmark = pytest.mark.slow

FUNIT_DDP = [
    "paper=funit",
    "trainer=ddp_cpu",
    "trainer.max_epochs=1",
    "trainer.num_sanity_val_steps=0",
    "trainer.enable_progress_bar=false",
    "+trainer.limit_train_batches=2",
    "logger=csv",
    "data.dataset.images_per_class=4",
    "data.val_size=5",  # odd sizes: the DistributedSampler pads a shard with a repeated item
    "data.eval_content=5",
    "data.unseen_per_class=12",
    "data.batch_size=2",
    "model.generator.nf=4",
    "model.discriminator.nf=4",
    "model.eval_ks=[1,5]",
    "model.eval_repeats=1",
    "model.classifier_steps=5",
]


def test_ddp_cpu_trains_funit_and_reduces_the_kshot_metrics(tmp_path):
    res = run_cli(["-m", "nvresearch.train", *FUNIT_DDP, f"paths.output_root={tmp_path}"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-4000:]
    runs = list((tmp_path / "funit" / "runs").iterdir())
    assert len(runs) == 1, runs
    ckpt = runs[0] / "checkpoints" / "last.ckpt"
    assert ckpt.is_file()
    ddp = json.loads((runs[0] / "metrics.json").read_text())
    assert ddp["global_step"] == 4  # 2 batches x (D step + G step)
    keys = ["test/top1_k1", "test/top1_k5", "test/top5_k5", "test/pose_angle_err", "test/top1_gain_k5"]
    assert set(keys) <= set(ddp["metrics"]) and "val/recon_l1" in ddp["metrics"]

    one_out = tmp_path / "eval_one"
    res = run_cli(
        ["-m", "nvresearch.eval", "paper=funit", f"ckpt_path={ckpt}", "trainer=cpu", "logger=csv",
         "trainer.enable_progress_bar=false", f"paths.output_root={one_out}"],
        cwd=tmp_path,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-4000:]
    one = json.loads(next(one_out.rglob("metrics.json")).read_text())
    for key in keys:
        assert math.isclose(ddp["metrics"][key], one["metrics"][key], rel_tol=1e-4, abs_tol=1e-5), (key, ddp, one)
