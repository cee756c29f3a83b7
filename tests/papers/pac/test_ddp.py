"""PAC under data parallelism: two CPU processes (gloo) write one run folder whose metrics equal one process's.

Both tasks: depth upsampling end to end against a one-process run on the same global batch (2 x 2 = 4), and
segmentation (``experiment=pac/seg_synthetic``: a dataset-level confusion matrix reduced over processes).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from conftest import PAC_FAST, run_cli

pytestmark = pytest.mark.slow

DDP = ["trainer=ddp_cpu", "trainer.max_epochs=1", "trainer.num_sanity_val_steps=0", "trainer.enable_progress_bar=false"]


def _train(tmp_path: Path, name: str, overrides: list[str]) -> tuple[dict, str]:
    """Run ``nvresearch.train`` into ``tmp_path/name``; returns (metrics.json, output) after checking the run folder.

    metrics.json gets the final weights under ``"_state"`` (from ``last.ckpt``) for comparisons.
    """
    out = tmp_path / name
    res = run_cli(["-m", "nvresearch.train", *overrides, f"paths.output_root={out}"], cwd=tmp_path, timeout=600)
    assert res.returncode == 0, res.stderr[-4000:]
    slug = next(o.split("=", 1)[1] for o in overrides if o.startswith("paper="))
    runs = list((out / slug / "runs").iterdir())
    assert len(runs) == 1, runs  # one run folder, not one per process
    ckpt = runs[0] / "checkpoints" / "last.ckpt"
    assert ckpt.is_file()
    metrics = json.loads((runs[0] / "metrics.json").read_text())
    metrics["_state"] = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
    return metrics, res.stdout + res.stderr


def test_ddp_cpu_depth_equals_one_process_on_the_same_global_batch(tmp_path):
    base = [
        o
        for o in PAC_FAST
        if not o.startswith(("trainer=", "data.batch_size", "data.dataset.test_size", "data.dataset.val_size"))
    ]
    # 5 evaluation images over 2 processes: the DistributedSampler pads one shard with a repeated image
    sizes = ["data.dataset.val_size=5", "data.dataset.test_size=5", "+trainer.limit_train_batches=2"]
    ddp, log = _train(tmp_path, "ddp", [*base, *sizes, *DDP, "data.batch_size=2"])
    assert "world_size=2" in log or "distributed_backend=gloo" in log
    one_process = [o.replace("trainer=ddp_cpu", "trainer=cpu") for o in DDP]
    one, _ = _train(tmp_path, "one", [*base, *sizes, *one_process, "data.batch_size=4"])
    assert ddp["global_step"] == one["global_step"] == 2
    # the same samples in the same global batches (EpochSampler), gradients averaged over the two halves: the weights
    # after two Adam steps agree to float precision (different batches would move them by about the learning rate)
    for key, value in one["_state"].items():
        torch.testing.assert_close(ddp["_state"][key], value, rtol=1e-4, atol=1e-6, msg=key)
    for key in ("test/rmse", "test/rmse_bilinear", "test/rmse_bicubic", "val/rmse"):
        assert math.isclose(ddp["metrics"][key], one["metrics"][key], rel_tol=1e-4), (key, ddp, one)


def test_ddp_cpu_segmentation_trains_both_phases_and_reports_miou(tmp_path):
    # epoch 0 trains the backbone alone (the CRF unused), epoch 1 the CRF on the frozen backbone (the backbone unused)
    metrics, _ = _train(
        tmp_path,
        "seg",
        [
            "paper=pac",
            "experiment=pac/seg_synthetic",
            "logger=csv",
            *[o for o in DDP if not o.startswith("trainer.max_epochs")],
            "trainer.max_epochs=2",
            "model.unary_epochs=1",
            "model.freeze_backbone=true",
            "+trainer.limit_train_batches=1",
            "data.dataset.train_size=16",
            "data.batch_size=4",
            "data.dataset.val_size=5",
            "data.dataset.test_size=5",
            "data.eval_batch_size=4",
        ],
    )
    assert metrics["global_step"] == 2 and metrics["epochs"] == 2
    assert 0.0 <= metrics["metrics"]["test/miou"] <= 1.0 and "test/miou_unary" in metrics["metrics"]
