"""Picture grids: captions above each column and left of each row, small cells enlarged so captions fit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from nvresearch.core.utils.visual import save_grid


def _rows(n_rows: int = 2, n_cols: int = 3, size: int = 32) -> list[list[torch.Tensor]]:
    return [[torch.full((3, size, size), 0.5) for _ in range(n_cols)] for _ in range(n_rows)]


def test_grid_without_captions_keeps_its_size(tmp_path):
    img = np.asarray(Image.open(save_grid(_rows(), tmp_path / "plain.png", pad=2)))
    assert img.shape == (2 + 2 * 34, 2 + 3 * 34, 3)


def test_captions_are_drawn_over_their_columns_and_rows(tmp_path):
    labels = ["guide", "low resolution", "PAC"]
    img = np.asarray(Image.open(save_grid(_rows(), tmp_path / "cap.png", col_labels=labels, row_labels=["a", "b"])))
    plain = np.asarray(Image.open(save_grid(_rows(), tmp_path / "plain.png")))
    # 32-pixel cells enlarged 3x to 96 (the minimum cell), the grid at the bottom right, captions above and left
    grid_h, grid_w = 2 + 2 * 98, 2 + 3 * 98
    top, left = img.shape[0] - grid_h, img.shape[1] - grid_w
    assert top > 0 and left > 0 and plain.shape[:2] == (2 + 2 * 34, 2 + 3 * 34)
    assert (img[top + 2 : top + 98, left + 2 : left + 98] == 128).all()  # a cell, enlarged, untouched
    dark = img.min(axis=2) < 128
    band, column = dark[:top, left:], (img.shape[1] - left) // 3
    for c in range(3):  # some ink above every column, none in the band's corner
        assert band[:, c * column : (c + 1) * column].any(), c
    assert not dark[:top, :left].any()
    assert dark[top:, :left].any()  # the row captions


def test_caption_counts_must_match(tmp_path):
    with pytest.raises(ValueError, match="2 column labels for 3 columns"):
        save_grid(_rows(), tmp_path / "x.png", col_labels=["a", "b"])
    with pytest.raises(ValueError, match="1 row labels for 2 rows"):
        save_grid(_rows(), tmp_path / "x.png", row_labels=["a"])
