"""vinterp readers on tiny fixtures written in each dataset's layout (spec C.1, C.2); frame j is filled with 10 j."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nvresearch.core.data import DatasetLayoutError
from nvresearch.vinterp.data import (
    CycleTriplets,
    EvalWindows,
    SupervisedWindows,
    extract_video_frames,
    find_videos,
    load_frame,
    middlebury_windows,
    ucf101_windows,
    vimeo_triplet_windows,
    window_count,
)


def _png(path: Path, value: int, size: tuple[int, int] = (8, 12)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.full((*size, 3), value, np.uint8)
    arr[0, 0] = (value, 255 - value, 7)  # a pixel that tells the channel order and the flips
    Image.fromarray(arr).save(path)


def _video(folder: Path, n: int, name: str = "{}.png") -> None:
    for j in range(n):
        _png(folder / name.format(j), 10 * j)


def _numbers(frames: torch.Tensor) -> list[int]:
    return [int(f[0, 0, 0].item()) // 10 for f in frames]  # channel 0 is 10 j everywhere


def test_find_videos_natural_order_nested_and_hidden(tmp_path: Path) -> None:
    _video(tmp_path / "clip10", 3)
    _video(tmp_path / "clip2", 12)  # names 0.png .. 11.png: natural order 2 < 10
    _video(tmp_path / "deeper" / "clip1", 2)
    _png(tmp_path / "clip2" / ".hidden.png", 0)
    (tmp_path / "clip2" / "notes.txt").write_text("not a frame")
    _video(tmp_path / ".cache" / "x", 3)
    videos = find_videos(tmp_path)
    assert [v[0].parent.name for v in videos] == ["clip2", "clip10", "clip1"]
    assert [p.name for p in videos[0]][:4] == ["0.png", "1.png", "2.png", "3.png"]
    assert [p.name for p in videos[0]][-2:] == ["10.png", "11.png"]
    assert len(videos[0]) == 12
    with pytest.raises(DatasetLayoutError, match="no video folder at .*missing"):
        find_videos(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetLayoutError, match="no frames under .*empty"):
        find_videos(tmp_path / "empty")


def test_load_frame_rgb_0_255_and_corrupt_file(tmp_path: Path) -> None:
    _png(tmp_path / "a.png", 30)
    frame = load_frame(tmp_path / "a.png")
    assert frame.shape == (3, 8, 12) and frame.dtype == torch.float32
    assert frame[:, 0, 0].tolist() == [30.0, 225.0, 7.0] and frame[0, 3, 3].item() == 30.0
    (tmp_path / "bad.png").write_bytes(b"garbage")
    with pytest.raises(DatasetLayoutError, match="bad.png"):
        load_frame(tmp_path / "bad.png")


def test_window_count_official_formula() -> None:
    assert window_count(17, 7, 1, 8) == 2  # (17 - 8 - 1) // 8 + 1
    assert window_count(9, 7, 1, 8) == 1  # a SlowFlow test clip: 9 frames, one window
    assert window_count(5, 7, 0, 1) == 4  # sample_rate 0: (5 - 1 - 1) // 1 + 1
    assert window_count(3, 7, 1, 8) == 0


def test_eval_windows(tmp_path: Path) -> None:
    _video(tmp_path / "a", 18)
    ds = EvalWindows.from_root(tmp_path, num_interp=7, sample_rate=1)
    assert len(ds) == 2
    sample = ds[1]
    assert sample["frames"].shape == (9, 3, 8, 12) and sample["size"] == (8, 12)
    assert _numbers(sample["frames"]) == list(range(8, 17))
    with pytest.raises(DatasetLayoutError, match="too few"):
        EvalWindows.from_root(tmp_path, num_interp=20)


def test_supervised_windows_target_index_reversal_and_determinism(tmp_path: Path) -> None:
    _video(tmp_path / "a", 9)
    plain = SupervisedWindows.from_root(tmp_path, num_interp=7, flip=False, reverse=False, seed=3)
    assert len(plain) == 1
    for epoch in range(6):
        s = plain[(epoch, 0)]
        assert _numbers(s["frames"]) == [0, s["index"], 8]  # target k frames after the first input
    ks = {plain[(epoch, 0)]["index"] for epoch in range(20)}
    assert len(ks) > 3 and ks <= set(range(1, 8))
    aug = SupervisedWindows.from_root(tmp_path, num_interp=7, crop=(4, 6), seed=3)
    seen_reversed = False
    for epoch in range(12):
        s = aug[(epoch, 0)]
        assert s["frames"].shape == (3, 3, 4, 6)
        nums = _numbers(s["frames"])
        if nums[0] == 8:  # reversed: k counts from the new first frame
            seen_reversed = True
            assert nums == [8, 8 - s["index"], 0]
        else:
            assert nums == [0, s["index"], 8]
        assert torch.equal(aug[(epoch, 0)]["frames"], s["frames"])  # a function of (seed, epoch, index)
    assert seen_reversed
    flips = SupervisedWindows.from_root(tmp_path, num_interp=7, reverse=False, seed=3)
    corners = set()
    for epoch in range(12):
        blue = flips[(epoch, 0)]["frames"][0, 2]  # frame 0: blue is 0 except the marker pixel (7)
        corners.add(tuple((blue == 7).nonzero()[0].tolist()))
    assert corners <= {(0, 0), (0, 11), (7, 0), (7, 11)}  # flipped copies of (0, 0)
    assert any(r == 7 for r, _ in corners) and any(c == 11 for _, c in corners)  # vertical and horizontal flips
    with pytest.raises(ValueError, match="crop"):
        SupervisedWindows.from_root(tmp_path, crop=(16, 16))[0]


def test_cycle_triplets_consecutive_low_fps_frames(tmp_path: Path) -> None:
    _video(tmp_path / "a", 6)
    _video(tmp_path / "b", 4)
    ds = CycleTriplets.from_root(tmp_path, num_interp=7, sample_rate=0, flip=False, reverse=False)
    assert len(ds) == 4 + 2  # n - 2 triplets per video
    assert [_numbers(ds[i]["frames"]) for i in range(len(ds))] == [
        [0, 1, 2],
        [1, 2, 3],
        [2, 3, 4],
        [3, 4, 5],
        [0, 1, 2],
        [1, 2, 3],
    ]
    assert all(1 <= ds[(e, 0)]["index"] <= 7 for e in range(5))
    spaced = CycleTriplets.from_root(tmp_path / "a", num_interp=1, sample_rate=1, flip=False, reverse=False)
    assert _numbers(spaced[0]["frames"]) == [0, 2, 4]  # offset max(1, s) + s N = 2
    assert len(spaced) == 2 and _numbers(spaced[1]["frames"]) == [1, 3, 5]  # only triplets that fit in 6 frames


def test_ucf101_layout(tmp_path: Path) -> None:
    for clip in ("1", "2"):
        for j, name in enumerate(("frame_00.png", "frame_01_gt.png", "frame_02.png")):
            _png(tmp_path / clip / name, 10 * j)
    ds = ucf101_windows(tmp_path)
    assert len(ds) == 2 and _numbers(ds[0]["frames"]) == [0, 1, 2]
    assert ds[1]["files"][1].endswith("2/frame_01_gt.png")
    _png(tmp_path / "2" / "frame_01_ours.png", 0)
    with pytest.raises(DatasetLayoutError, match="2' holds .*frame_01_ours.png"):
        ucf101_windows(tmp_path)


def test_vimeo_triplet_layout(tmp_path: Path) -> None:
    for seq in ("00001/0001", "00001/0002"):
        for i in (1, 2, 3):
            _png(tmp_path / "sequences" / seq / f"im{i}.png", 10 * (i - 1))
    (tmp_path / "tri_testlist.txt").write_text("00001/0001\n00001/0002\n\n")
    ds = vimeo_triplet_windows(tmp_path, "test")
    assert len(ds) == 2 and _numbers(ds[1]["frames"]) == [0, 1, 2]
    with pytest.raises(DatasetLayoutError, match="tri_trainlist.txt"):
        vimeo_triplet_windows(tmp_path, "train")
    (tmp_path / "tri_trainlist.txt").write_text("00001/0001\n00002/0001\n")
    with pytest.raises(DatasetLayoutError, match="00002/0001"):
        vimeo_triplet_windows(tmp_path, "train")
    (tmp_path / "tri_trainlist.txt").write_text("1/1\n")
    with pytest.raises(DatasetLayoutError, match="line 1"):
        vimeo_triplet_windows(tmp_path, "train")


def test_middlebury_layout(tmp_path: Path) -> None:
    _png(tmp_path / "other-data" / "Beanbags" / "frame10.png", 0)
    _png(tmp_path / "other-data" / "Beanbags" / "frame11.png", 20)
    _png(tmp_path / "other-gt-interp" / "Beanbags" / "frame10i11.png", 10)
    ds = middlebury_windows(tmp_path)
    assert len(ds) == 1 and _numbers(ds[0]["frames"]) == [0, 1, 2]
    _png(tmp_path / "other-gt-interp" / "Walking" / "frame10i11.png", 10)
    with pytest.raises(DatasetLayoutError, match="Walking"):
        middlebury_windows(tmp_path)
    with pytest.raises(DatasetLayoutError, match="other-gt-interp"):
        middlebury_windows(tmp_path / "nowhere")


def test_extract_video_frames(tmp_path: Path) -> None:
    import cv2

    writer = cv2.VideoWriter(str(tmp_path / "v.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 30, (32, 24))
    for j in range(6):
        writer.write(np.full((24, 32, 3), 40 * j, np.uint8))
    writer.release()
    assert extract_video_frames(tmp_path / "v.avi", tmp_path / "frames", every=2) == 3
    videos = find_videos(tmp_path / "frames")
    assert [p.name for p in videos[0]] == ["00000.png", "00001.png", "00002.png"]
    means = [load_frame(p).mean().item() for p in videos[0]]
    assert means == pytest.approx([0, 80, 160], abs=3)  # frames 0, 2, 4 (MJPEG is lossy)
    with pytest.raises(DatasetLayoutError, match="no video file at .*nope.mp4"):
        extract_video_frames(tmp_path / "nope.mp4", tmp_path / "x")
