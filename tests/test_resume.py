"""Stopping a run and resuming it from last.ckpt gives exactly the weights of an uninterrupted run."""

from __future__ import annotations

import pytest
import torch
from conftest import PAC_FAST

from nvresearch.core.training import read_checkpoint
from nvresearch.core.training.run import train

pytestmark = pytest.mark.slow

COMMON = [*PAC_FAST, "trainer.deterministic=true", "trainer.limit_train_batches=3", "test=false", "seed=7"]


def test_resume_matches_uninterrupted_run(compose, tmp_path):
    full = tmp_path / "full"
    train(compose([*COMMON, "trainer.max_epochs=3"], out=full))

    part = tmp_path / "part"
    # the same run, "killed" after two of its three epochs (the schedule still plans for three)
    train(
        compose(
            [
                *COMMON,
                "trainer.max_epochs=3",
                "+callbacks.stop._target_=conftest.StopAfterEpochs",
                "+callbacks.stop.epochs=2",
            ],
            out=part,
        )
    )
    stopped = read_checkpoint(part / "checkpoints" / "last.ckpt")
    assert stopped["epoch"] == 1 and stopped["global_step"] == 6

    resumed = tmp_path / "resumed"
    last = part / "checkpoints" / "last.ckpt"
    train(compose([*COMMON, "trainer.max_epochs=3", f"ckpt_path={last}"], out=resumed))

    a = read_checkpoint(full / "checkpoints" / "last.ckpt")
    b = read_checkpoint(resumed / "checkpoints" / "last.ckpt")
    assert a["global_step"] == b["global_step"] == 9
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key in a["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key
    # and resuming really continued: the partial run's weights differ from the final ones
    assert any(not torch.equal(stopped["state_dict"][k], a["state_dict"][k]) for k in a["state_dict"])


def test_ckpt_path_last_finds_newest_run(compose, tmp_path):
    from nvresearch.core.training.run import resolve_ckpt_path

    cfg = compose(["paper=pac"], out=tmp_path / "outputs" / "pac" / "runs" / "new")
    with pytest.raises(FileNotFoundError, match="no earlier run"):
        resolve_ckpt_path("last", cfg)
    old = tmp_path / "outputs" / "pac" / "runs" / "old" / "checkpoints"
    old.mkdir(parents=True)
    (old / "last.ckpt").write_bytes(b"x")
    assert resolve_ckpt_path("last", cfg) == str(old / "last.ckpt")
