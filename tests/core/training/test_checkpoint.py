"""read_checkpoint on files a user may pass by mistake: each gets a one-line reason, and only real pickles are
called pickled objects."""

from __future__ import annotations

import pytest
import torch

from nvresearch.core.training.checkpoint import CheckpointError, read_checkpoint
from nvresearch.core.training.errors import NoCheckpointError, UserError


class _Anything:
    pass


def test_random_bytes_are_not_a_readable_checkpoint(tmp_path):
    path = tmp_path / "noise.ckpt"
    path.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(CheckpointError, match="is not a readable checkpoint") as info:
        read_checkpoint(path)
    assert "pickled" not in str(info.value) and "\n" not in str(info.value)
    assert isinstance(info.value, UserError)


def test_empty_file_names_the_reason(tmp_path):
    path = tmp_path / "empty.ckpt"
    path.touch()
    with pytest.raises(CheckpointError, match="the file is empty"):
        read_checkpoint(path)


def test_truncated_checkpoint_is_damaged(tmp_path):
    path = tmp_path / "cut.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(64)}}, path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError, match=r"is not a readable checkpoint \(damaged or truncated: .+\)"):
        read_checkpoint(path)


def test_pickled_objects_are_refused_and_named(tmp_path):
    path = tmp_path / "objects.ckpt"
    torch.save({"thing": _Anything()}, path)
    with pytest.raises(CheckpointError, match="refusing to load .*pickled Python objects.*_Anything") as info:
        read_checkpoint(path)
    assert "\n" not in str(info.value)


def test_missing_file_is_a_user_error_and_a_file_not_found_error(tmp_path):
    with pytest.raises(NoCheckpointError, match="checkpoint not found") as info:
        read_checkpoint(tmp_path / "nope.ckpt")
    assert isinstance(info.value, FileNotFoundError)
