"""vinterp end to end through the command line: ``python -m nvresearch.train paper=vinterp`` in two CPU processes
(gloo) and in one, on the same global batch (2 x 2 = 4); one run folder each with metrics and strips; equal weights
and target-domain metrics; then the slow-motion command on the trained checkpoint."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from conftest import REPO, load_script, run_cli

pytestmark = pytest.mark.slow

# One supervised step (epoch 0) and one cycle-consistency step (epoch 1, teacher copied at the switch) on a 32 px
# world; 2 validation and 2 test windows, so that each process evaluates one and no shard is padded with a repeated
# window. Without pseudo-supervision (adapt=cycle): at the first adaptation step the teacher equals the student, the
# pseudo term is float noise (about 5e-6, grad mode vs no_grad) and its L1 gradient the sign of that noise, which
# depends on how the batch is split, so with it two exact runs differ by one Adam step on some weights.
VINTERP_DDP = [
    "paper=vinterp",
    "trainer.max_epochs=2",
    "trainer.num_sanity_val_steps=0",
    "trainer.enable_progress_bar=false",
    "+trainer.limit_train_batches=1",
    "logger=csv",
    "model.pretrain_epochs=1",
    "model.adapt=cycle",
    "data.dataset.clips={source_train: 2, target_train: 2, target_val: 2, target_test: 2}",
    "data.dataset.size=32",
    "data.dataset.supersample=2",
    "data.eval_batch_size=1",
]


def _train(tmp_path: Path, name: str, overrides: list[str]) -> tuple[dict, str, Path]:
    """Run ``nvresearch.train`` into ``tmp_path/name``; returns (metrics.json with the final weights under
    ``"_state"``, the output, the checkpoint) after checking the run folder."""
    out = tmp_path / name
    res = run_cli(
        ["-m", "nvresearch.train", *overrides, f"paths.output_root={out}", f"data.dataset.cache_dir={tmp_path}"],
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr[-4000:]
    runs = list((out / "vinterp" / "runs").iterdir())
    assert len(runs) == 1, runs  # one run folder, not one per process
    ckpt = runs[0] / "checkpoints" / "last.ckpt"
    assert ckpt.is_file() and (runs[0] / "samples" / "test_strips.png").is_file()
    metrics = json.loads((runs[0] / "metrics.json").read_text())
    assert {"test/psnr", "test/ssim", "test/ie", "test/psnr_blend"} <= set(metrics["metrics"])
    metrics["_state"] = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    return metrics, res.stdout + res.stderr, ckpt


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[dict, str, Path]]:
    tmp_path = tmp_path_factory.mktemp("vinterp_e2e")
    return {
        "ddp": _train(tmp_path, "ddp", [*VINTERP_DDP, "trainer=ddp_cpu", "data.batch_size=2"]),
        "one": _train(tmp_path, "one", [*VINTERP_DDP, "trainer=cpu", "data.batch_size=4"]),
    }


def test_ddp_cpu_equals_one_process_on_the_same_global_batch(runs) -> None:
    (ddp, log, _), (one, _, _) = runs["ddp"], runs["one"]
    assert "distributed_backend=gloo" in log or "world_size=2" in log
    assert ddp["global_step"] == one["global_step"] == 2
    # the same windows and triplets in the same global batches, gradients averaged over the two halves: the student
    # and the teacher (copied at the switch) agree to float precision after the supervised and the adaptation step
    state = one["_state"]
    assert not torch.equal(
        state["net.flow_net.unet.encoders.0.0.weight"], state["teacher.flow_net.unet.encoders.0.0.weight"]
    )
    for key, value in state.items():
        torch.testing.assert_close(ddp["_state"][key], value, rtol=1e-4, atol=1e-6, msg=key)
    for key in ("test/psnr", "test/ssim", "test/ie", "test/psnr_blend", "val/psnr"):
        assert math.isclose(ddp["metrics"][key], one["metrics"][key], rel_tol=1e-4), (key, ddp, one)


def test_slow_motion_command_on_the_trained_checkpoint(runs, tmp_path: Path, capsys) -> None:
    cv2 = pytest.importorskip("cv2")

    import numpy as np

    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):
        cv2.imwrite(str(frames / f"{i}.png"), np.full((20, 36, 3), 60 * i, np.uint8))
    script_path = REPO / "scripts" / "vinterp_slowmo.py"
    script = load_script(script_path)
    out = tmp_path / "slow.avi"
    args = ["--checkpoint", str(runs["one"][2]), "--input", str(frames), "--factor", "2", "--output", str(out)]
    assert script.main(args) == 0  # the checkpoint written by the command line rebuilds the network
    assert "5 frames" in capsys.readouterr().out and out.is_file()
    # as a command: a missing input is one line on stderr, not a traceback (checked before any model is loaded)
    res = run_cli([str(script_path), *args[:2], "--input", str(tmp_path / "missing"), "--output", str(out)], tmp_path)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines()[-1] == f"error: {tmp_path / 'missing'}: no such video file or folder"
