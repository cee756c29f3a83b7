"""Reading one dataset image: values, modes and the errors that name the file."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from nvresearch.core.data import DatasetLayoutError, read_image


def test_rgb_and_gray_values_and_shapes(tmp_path) -> None:
    rgb = torch.randint(0, 256, (4, 5, 3), dtype=torch.uint8)
    Image.fromarray(rgb.numpy()).save(tmp_path / "a.png")
    out = read_image(tmp_path / "a.png")
    assert out.dtype == torch.uint8 and out.shape == (3, 4, 5)
    assert torch.equal(out, rgb.permute(2, 0, 1))
    gray = read_image(tmp_path / "a.png", "L")
    assert gray.shape == (4, 5)
    with Image.open(tmp_path / "a.png") as im:
        assert torch.equal(gray, torch.from_numpy(np.asarray(im.convert("L"))))


def test_errors_name_the_file_and_what_it_is(tmp_path) -> None:
    with pytest.raises(DatasetLayoutError, match=r"frame not found: '.*b.png'"):
        read_image(tmp_path / "b.png", name="frame")
    with pytest.raises(DatasetLayoutError, match=r"image listed but not found: '.*b.png'"):
        read_image(tmp_path / "b.png", missing="image listed but not found")
    (tmp_path / "c.png").write_bytes(b"not an image")
    with pytest.raises(DatasetLayoutError, match=r"corrupt or unreadable saliency map: '.*c.png'"):
        read_image(tmp_path / "c.png", "L", "saliency map")
