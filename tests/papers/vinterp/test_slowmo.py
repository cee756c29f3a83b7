"""The slow-motion command (scripts/vinterp_slowmo.py) and its torch helper on a tiny video and a tiny model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import load_script

from nvresearch.core.training.checkpoint import CONFIG_KEY
from nvresearch.vinterp.inference import interpolate_pair
from nvresearch.vinterp.models import SuperSloMo
from nvresearch.vinterp.module import VInterpModule

ROOT = Path(__file__).resolve().parents[3]
cv2 = pytest.importorskip("cv2")


@pytest.fixture(scope="module")
def script():
    return load_script(ROOT / "scripts" / "vinterp_slowmo.py")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint in the format nvresearch.train writes: the state dict and the embedded model config."""
    torch.manual_seed(0)
    module = VInterpModule(base_channels=4, flow_scale=1.0)
    config = {"model": {"_target_": "nvresearch.vinterp.module.VInterpModule", "base_channels": 4, "flow_scale": 1.0}}
    path = tmp_path_factory.mktemp("slowmo") / "tiny.ckpt"
    torch.save({"state_dict": module.state_dict(), CONFIG_KEY: {"config": config}}, path)
    return path


def _frames(n: int, h: int = 24, w: int = 40) -> list[np.ndarray]:
    """A square moving right over a gradient (sides not multiples of 32: the command must pad)."""
    out = []
    for i in range(n):
        f = np.zeros((h, w, 3), np.uint8)
        f[..., 1] = np.linspace(0, 200, w, dtype=np.uint8)[None]
        f[8:16, 4 + 4 * i : 12 + 4 * i] = (30, 60, 250)
        out.append(f)
    return out


def _read_video(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


def test_interpolate_pair_times_padding_and_errors() -> None:
    seen: list[tuple[tuple[int, ...], list[float]]] = []

    def blend(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        seen.append((tuple(a.shape), t.tolist()))
        return (1 - t.view(-1, 1, 1, 1)) * a + t.view(-1, 1, 1, 1) * b

    a, b = torch.zeros(3, 20, 40), torch.full((3, 20, 40), 200.0)
    out = interpolate_pair(blend, a, b, 4, multiple=32)
    assert seen == [((3, 3, 32, 64), [0.25, 0.5, 0.75])]  # one batch, padded bottom/right to 32
    assert out.shape == (3, 3, 20, 40)
    torch.testing.assert_close(out[:, 0, 0, 0], torch.tensor([50.0, 100.0, 150.0]))
    with pytest.raises(ValueError, match="factor must be an integer >= 2, got 1"):
        interpolate_pair(blend, a, b, 1)
    with pytest.raises(ValueError, match=r"\(3, 20, 40\) and \(3, 20, 41\)"):
        interpolate_pair(blend, a, torch.zeros(3, 20, 41), 2)
    net = SuperSloMo(base_channels=4).eval()  # a real network: the crop returns the input size, values clamped
    mids = interpolate_pair(net, a, b, 2, net.size_multiple)
    assert mids.shape == (1, 3, 20, 40) and 0 <= mids.min() and mids.max() <= 255


@pytest.mark.parametrize("factor", [2, 4])
def test_video_to_frames_keeps_inputs_at_their_positions(script, checkpoint: Path, tmp_path: Path, factor: int) -> None:
    frames = _frames(3)
    video = tmp_path / "in.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (40, 24))
    for f in frames:
        writer.write(f)
    writer.release()
    decoded = _read_video(video)  # MJPG is lossy: compare with what the command decodes
    out = tmp_path / "out"
    assert script.main(["--checkpoint", str(checkpoint), "--input", str(video), "--factor", str(factor),
                        "--output", str(out)]) == 0  # fmt: skip
    written = sorted(out.glob("*.png"))
    assert len(written) == (3 - 1) * factor + 1
    for i, frame in enumerate(decoded):
        np.testing.assert_array_equal(cv2.imread(str(written[i * factor])), frame)
    assert not np.array_equal(cv2.imread(str(written[1])), decoded[0])  # an intermediate is not a copy


def test_folder_to_video_frame_rate(script, checkpoint: Path, tmp_path: Path, capsys) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, f in enumerate(_frames(3)):
        cv2.imwrite(str(folder / f"frame_{i + 9}.png"), f)  # natural order: 9, 10, 11
    (folder / "notes.txt").write_text("not a frame")
    out = tmp_path / "slow.mp4"
    argv = ["--checkpoint", str(checkpoint), "--input", str(folder), "--output", str(out), "--input-fps", "12"]
    assert script.main([*argv, "--factor", "8"]) == 0
    assert len(_read_video(out)) == 17
    assert cv2.VideoCapture(str(out)).get(cv2.CAP_PROP_FPS) == pytest.approx(12)  # slow motion: rate kept
    assert "17 frames" in capsys.readouterr().out
    assert script.main([*argv, "--factor", "2", "--keep-duration"]) == 0
    assert cv2.VideoCapture(str(out)).get(cv2.CAP_PROP_FPS) == pytest.approx(24)  # same duration: rate x2


def test_clear_errors(script, checkpoint: Path, tmp_path: Path, capsys) -> None:
    base = ["--checkpoint", str(checkpoint), "--output", str(tmp_path / "o.mp4")]
    with pytest.raises(FileNotFoundError, match="missing.mp4: no such video file or folder"):
        script.main([*base, "--input", str(tmp_path / "missing.mp4")])
    with pytest.raises(SystemExit):
        script.main([*base, "--input", str(tmp_path), "--factor", "3"])
    assert "--factor: invalid choice: 3" in capsys.readouterr().err
    one = tmp_path / "one"
    one.mkdir()
    cv2.imwrite(str(one / "0.png"), _frames(1)[0])
    with pytest.raises(ValueError, match="one: a single frame"):
        script.main([*base, "--input", str(one)])
    other = tmp_path / "linear.ckpt"  # a checkpoint of another model
    config = {"model": {"_target_": "torch.nn.Linear", "in_features": 2, "out_features": 1}}
    torch.save({"state_dict": torch.nn.Linear(2, 1).state_dict(), CONFIG_KEY: {"config": config}}, other)
    with pytest.raises(ValueError, match="linear.ckpt: not a vinterp checkpoint"):
        script.main(["--checkpoint", str(other), "--input", str(one), "--output", "x"])
    with pytest.raises(FileNotFoundError, match="nope.ckpt"):
        script.main(["--checkpoint", str(tmp_path / "nope.ckpt"), "--input", str(one), "--output", "x"])
