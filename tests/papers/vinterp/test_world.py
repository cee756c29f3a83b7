"""The embedded sprite world (spec H.1, H.2): deterministic, written in the frame-folder layout, two domains that
differ in motion, and a frame blend far from the ground truth (a trivial method cannot fake the metric)."""

from __future__ import annotations

from pathlib import Path

import torch

from nvresearch.vinterp import data
from nvresearch.vinterp.data import (
    SOURCE_DOMAIN,
    TARGET_DOMAIN,
    CycleTriplets,
    EvalWindows,
    SupervisedWindows,
    ensure_sprite_world,
    find_videos,
    render_sprite_clip,
)
from nvresearch.vinterp.metrics import frame_metrics

CLIPS = {"source_train": 2, "source_test": 1, "target_train": 2, "target_test": 2}


def test_render_is_deterministic_and_exact_at_any_time() -> None:
    a = render_sprite_clip(TARGET_DOMAIN, 5, [0.0, 3.5, 8.0], size=32, supersample=2)
    b = render_sprite_clip(TARGET_DOMAIN, 5, [3.5], size=32, supersample=2)
    assert a.shape == (3, 3, 32, 32) and 0 <= a.min() and a.max() <= 255
    assert torch.equal(a[1], b[0])  # a frame depends on its time only: exact ground truth between any two frames
    assert not torch.equal(a[0], render_sprite_clip(TARGET_DOMAIN, 6, [0.0], size=32, supersample=2)[0])


def test_target_moves_more_than_source_and_blend_is_far_from_the_truth() -> None:
    motion, blend = {}, {}
    for name, domain in (("source", SOURCE_DOMAIN), ("target", TARGET_DOMAIN)):
        diffs, psnrs = [], []
        for seed in range(3):
            f = render_sprite_clip(domain, seed, [0.0, 4.0, 8.0], size=32, supersample=2)
            diffs.append((f[2] - f[0]).abs().mean())
            psnrs.append(frame_metrics(((f[0] + f[2]) / 2)[None], f[1][None])["psnr"].item())
        motion[name], blend[name] = float(torch.stack(diffs).mean()), sum(psnrs) / len(psnrs)
    assert motion["target"] > 1.5 * motion["source"]
    assert blend["target"] < 26.0 and blend["target"] < blend["source"] - 3.0  # measured: 20.7 vs 28.8 dB at 64 px


def test_world_layout_and_readers(tmp_path: Path, monkeypatch) -> None:
    root = ensure_sprite_world(tmp_path, clips=CLIPS, size=32, seed=1, supersample=2)
    assert [len(v) for v in find_videos(root / "source" / "train")] == [17, 17]
    assert [len(v) for v in find_videos(root / "target" / "train")] == [5, 5]
    assert len(SupervisedWindows.from_root(root / "source" / "train", num_interp=7)) == 2 * 2
    assert len(CycleTriplets.from_root(root / "target" / "train", num_interp=7, sample_rate=0)) == 2 * 3
    windows = EvalWindows.from_root(root / "target" / "test", num_interp=7)
    assert len(windows) == 2 and windows[0]["frames"].shape == (9, 3, 32, 32)
    assert ensure_sprite_world(tmp_path, clips=CLIPS, size=32, seed=2, supersample=2) != root

    def no_write(*args: object, **kwargs: object) -> None:
        raise AssertionError("the cached world was written again")

    monkeypatch.setattr(data, "write_sprite_world", no_write)
    assert ensure_sprite_world(tmp_path, clips=CLIPS, size=32, seed=1, supersample=2) == root
