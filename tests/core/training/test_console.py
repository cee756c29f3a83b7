"""What a run shows: progress lines off a terminal, metrics in natural order, checkpoints named by iteration."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from nvresearch.core.training.callbacks import IterationCheckpoint, ProgressBar
from nvresearch.core.training.run import _scalar_metrics


class _Toy(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):  # noqa: ANN001, ANN201
        loss = self.lin(batch[0]).square().mean()
        self.log("train/loss", loss, on_epoch=True, on_step=False, prog_bar=True)
        return loss

    def configure_optimizers(self):  # noqa: ANN201
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _fit(tmp_path, bar: ProgressBar, epochs: int = 2, extra=()) -> None:  # noqa: ANN001
    loader = DataLoader(TensorDataset(torch.randn(8, 2)), batch_size=2)
    trainer = pl.Trainer(
        max_epochs=epochs,
        callbacks=[bar, *extra],
        logger=False,
        enable_checkpointing=bool(extra),
        default_root_dir=tmp_path,
        enable_model_summary=False,
    )
    trainer.fit(_Toy(), loader)


def test_progress_off_a_terminal_is_one_line_per_epoch(tmp_path, capsys):
    _fit(tmp_path, ProgressBar(tty=False))
    out = capsys.readouterr()
    lines = [line for line in out.out.splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in lines] == ["1/2", "2/2"], out.out
    assert all("train/loss" in line and line.endswith(" s)") for line in lines)
    assert "\r" not in out.out + out.err  # no bar redraws in a log file


def test_progress_every_n_steps_adds_batch_lines(tmp_path, capsys):
    _fit(tmp_path, ProgressBar(tty=False, every_n_steps=2), epochs=1)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch ")]
    assert [line.split()[:4] for line in lines[:2]] == [["epoch", "1/1", "batch", "2"], ["epoch", "1/1", "batch", "4"]]
    assert len(lines) == 3  # two batch lines and the epoch line


def test_progress_on_a_terminal_prints_no_lines(tmp_path, capsys):
    _fit(tmp_path, ProgressBar(tty=True), epochs=1)
    assert not [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch 1/1")]


def test_metrics_in_natural_order():
    metrics = {f"test/error_k{k}": float(k) for k in (1, 128, 16, 2)} | {"test/dted_error": 0.0, "val/x_step": 1.0}
    assert list(_scalar_metrics(metrics, ("test/",))) == [
        "test/dted_error",
        "test/error_k1",
        "test/error_k2",
        "test/error_k16",
        "test/error_k128",
    ]


def test_checkpoint_names_can_count_iterations(tmp_path):
    ckpt = IterationCheckpoint(
        dirpath=tmp_path / "ckpt", filename="it_{iteration:04d}", save_top_k=-1, auto_insert_metric_name=False
    )
    _fit(tmp_path, ProgressBar(tty=False), epochs=2, extra=[ckpt])
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["it_0004.ckpt", "it_0008.ckpt"]
