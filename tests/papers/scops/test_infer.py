"""Part maps for the user's images (scops/infer.py, scripts/scops_parts.py) on a tiny folder and tiny models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import load_script
from PIL import Image
from torch import nn

from nvresearch.core.training.checkpoint import CONFIG_KEY, CheckpointError, load_checkpoint
from nvresearch.scops.data import load_rgb
from nvresearch.scops.infer import PartCheckpointError, load_part_model, predict_parts, preprocess
from nvresearch.scops.models import PartSegmenter
from nvresearch.scops.module import SCOPSModule

ROOT = Path(__file__).resolve().parents[3]
TINY = {"num_parts": 3, "blocks": [1, 1, 1, 1], "base_channels": 4, "aspp_dilations": [1, 2, 3, 4]}


@pytest.fixture(scope="module")
def script():
    return load_script(ROOT / "scripts" / "scops_parts.py")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint in the format nvresearch.train writes: the module's state dict and the run config (32-px data)."""
    torch.manual_seed(0)
    module = SCOPSModule(**TINY, features="random", feature_channels=8)
    with torch.no_grad():  # BN running statistics away from (0, 1), so that eval mode matters
        for m in module.net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    config = {
        "model": {"_target_": "nvresearch.scops.module.SCOPSModule", **TINY, "features": "random",
                  "feature_channels": 8},
        "data": {"dataset": {"_target_": "nvresearch.scops.data.part_objects_split", "size": 32}},
    }  # fmt: skip
    path = tmp_path_factory.mktemp("scops_infer") / "tiny.ckpt"
    torch.save({"state_dict": module.state_dict(), CONFIG_KEY: {"config": config}}, path)
    return path


def _folder(root: Path) -> Path:
    root.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (20, 36, 3), dtype=np.uint8)).save(root / "a.png")
    Image.fromarray(rng.integers(0, 256, (30, 30), dtype=np.uint8)).save(root / "b.jpg")  # grayscale JPEG
    (root / "notes.txt").write_text("not an image")
    return root


class ColourParts(nn.Module):
    """A network whose output is known: part 1 where the input is red, part 2 where it is green, else background
    (pointwise on the Caffe-normalised input, at stride 1)."""

    num_parts = 2

    def __init__(self) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1))  # a device to read

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rgb = x + torch.tensor([122.68, 116.67, 104.01]).view(1, 3, 1, 1)
        red = rgb[:, 0] - rgb[:, 1] - rgb[:, 2]
        green = rgb[:, 1] - rgb[:, 0] - rgb[:, 2]
        return torch.stack([torch.full_like(red, 50.0), red, green], dim=1)


def _red_green(h: int = 20, w: int = 36) -> torch.Tensor:
    img = torch.zeros(3, h, w, dtype=torch.uint8)
    img[0, 4:16, 2:14] = 255  # a red box: x 2..13, y 4..15
    img[1, 2:10, 20:34] = 255  # a green box: x 20..33, y 2..9
    return img


def test_known_model_gives_known_labels_and_centres_at_the_image_size() -> None:
    img = _red_green()
    out = predict_parts(ColourParts(), img, image_size=64)
    assert out["probs"].shape == (3, 20, 36) and out["labels"].shape == (20, 36)
    torch.testing.assert_close(out["probs"].sum(0), torch.ones(20, 36))
    expected = torch.zeros(20, 36, dtype=torch.long)
    expected[4:16, 2:14] = 1
    expected[2:10, 20:34] = 2
    inner = torch.zeros(20, 36, dtype=torch.bool)  # away from the box edges, where the resizes blend
    inner[1:19, 1:35] = True
    for y0, y1, x0, x1 in ((4, 16, 2, 14), (2, 10, 20, 34)):
        inner[max(y0 - 1, 0) : y1 + 1, max(x0 - 1, 0) : x1 + 1] = False
        inner[y0 + 1 : y1 - 1, x0 + 1 : x1 - 1] = True
    assert torch.equal(out["labels"][inner], expected[inner])
    # centres (x, y) in the image's pixels: the box centres (pixel j spans [j, j+1): centre of 2..13 is 7.5)
    torch.testing.assert_close(out["centres"], torch.tensor([[8.0, 10.0], [27.0, 6.0]]), atol=0.6, rtol=0)


def test_preprocess_is_the_training_readers(tmp_path: Path) -> None:
    from nvresearch.scops.data import PartImageFolder

    folder = _folder(tmp_path / "imgs")
    sample = PartImageFolder(folder, image_size=24)[0]
    torch.testing.assert_close(preprocess(load_rgb(folder / "a.png"), 24), sample["image"])
    with pytest.raises(ValueError, match=r"\(3, H, W\), got \(20, 36\)"):
        preprocess(torch.zeros(20, 36, dtype=torch.uint8), 24)


def test_load_run_checkpoint_rebuilds_the_trained_network(checkpoint: Path) -> None:
    net, size = load_part_model(checkpoint)
    assert size == 32 and isinstance(net, PartSegmenter) and net.num_parts == 3 and not net.training
    reference = load_checkpoint(checkpoint).net  # the library's own loader (Lightning) agrees
    x = torch.randn(2, 3, 32, 32) * 50
    torch.testing.assert_close(net(x), reference(x))
    assert load_part_model(checkpoint, image_size=48)[1] == 48


def test_load_official_state_dict(tmp_path: Path) -> None:
    torch.manual_seed(0)
    ours = PartSegmenter(num_parts=2).eval()
    state = {k.replace("aspp.convs.", "layer5.conv2d_list."): v for k, v in ours.state_dict().items()}
    path = tmp_path / "model_100000.pth"
    torch.save({f"module.{k}": v for k, v in state.items()}, path)
    net, size = load_part_model(path)
    assert size == 256 and net.num_parts == 2 and not net.training
    x = torch.randn(1, 3, 40, 40) * 50
    torch.testing.assert_close(net(x), ours(x))


def test_wrong_or_unreadable_checkpoints_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="checkpoint not found: '.*nope.ckpt'"):
        load_part_model(tmp_path / "nope.ckpt")
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.ckpt' is not a readable checkpoint"):  # core's reader
        load_part_model(junk)
    other = tmp_path / "linear.ckpt"
    config = {"model": {"_target_": "torch.nn.Linear", "in_features": 2, "out_features": 1}}
    torch.save({"state_dict": nn.Linear(2, 1).state_dict(), CONFIG_KEY: {"config": config}}, other)
    with pytest.raises(
        PartCheckpointError, match="linear.ckpt' is not a SCOPS checkpoint: its model is 'torch.nn.Linear'"
    ):
        load_part_model(other)
    plain = tmp_path / "resnet.pth"
    torch.save(nn.Linear(2, 1).state_dict(), plain)
    with pytest.raises(PartCheckpointError, match="no 'layer5.conv2d_list.0.weight': not a SCOPS DeepLab"):
        load_part_model(plain)


def test_wrong_weights_for_the_config_are_a_clear_error(checkpoint: Path, tmp_path: Path) -> None:
    ckpt = torch.load(checkpoint, weights_only=True)
    ckpt[CONFIG_KEY]["config"]["model"]["num_parts"] = 5  # the config no longer fits the weights
    bad = tmp_path / "bad.ckpt"
    torch.save(ckpt, bad)
    with pytest.raises(
        PartCheckpointError, match=r"bad.ckpt': the network weights do not match its config .*size mismatch"
    ):
        load_part_model(bad)


def test_command_writes_labels_overlays_and_centres(script, checkpoint: Path, tmp_path: Path, capsys) -> None:
    folder = _folder(tmp_path / "imgs")
    out = tmp_path / "out"
    assert (
        script.main(["--checkpoint", str(checkpoint), "--input", str(folder), "--output", str(out), "--centres"]) == 0
    )
    assert sorted(p.name for p in out.iterdir()) == [
        "a_overlay.png", "a_parts.png", "b_overlay.png", "b_parts.png", "centres.json"
    ]  # fmt: skip
    for stem, shape in (("a", (20, 36)), ("b", (30, 30))):
        labels = np.asarray(Image.open(out / f"{stem}_parts.png"))
        overlay = np.asarray(Image.open(out / f"{stem}_overlay.png"))
        assert labels.shape == shape and labels.dtype == np.uint8 and labels.max() <= 3
        assert overlay.shape == (*shape, 3)
        # the labels are the network's: the same as predict_parts on the image
        net, size = load_part_model(checkpoint)
        expected = predict_parts(net, load_rgb(folder / f"{stem}.{'png' if stem == 'a' else 'jpg'}"), size)
        np.testing.assert_array_equal(labels, expected["labels"].numpy())
    centres = json.loads((out / "centres.json").read_text())
    assert sorted(centres) == ["a.png", "b.jpg"] and np.asarray(centres["a.png"]).shape == (3, 2)
    assert "2 image(s)" in capsys.readouterr().out


def test_command_with_a_known_model(script, tmp_path: Path, monkeypatch) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(_red_green().permute(1, 2, 0).numpy()).save(folder / "rg.png")
    monkeypatch.setattr(script, "load_part_model", lambda path, size: (ColourParts(), 64))
    out = tmp_path / "out"
    assert script.main(["--checkpoint", "any", "--input", str(folder), "--output", str(out)]) == 0
    labels = np.asarray(Image.open(out / "rg_parts.png"))
    assert labels[9, 7] == 1 and labels[5, 27] == 2 and labels[18, 18] == 0 and set(np.unique(labels)) == {0, 1, 2}
    overlay = np.asarray(Image.open(out / "rg_overlay.png")).astype(int)
    img = _red_green().permute(1, 2, 0).numpy().astype(int)
    assert (overlay[18, 18] == img[18, 18]).all() and not (overlay[9, 7] == img[9, 7]).all()  # background untouched


def test_command_help_and_errors(script, checkpoint: Path, tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        script.main(["--help"])
    assert exit_info.value.code == 0 and "_parts.png" in capsys.readouterr().out
    base = ["--checkpoint", str(checkpoint), "--output", str(tmp_path / "out")]
    with pytest.raises(FileNotFoundError, match="missing: no such folder or image"):
        script.main([*base, "--input", str(tmp_path / "missing")])
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images here")
    with pytest.raises(ValueError, match="empty: no image in the folder"):
        script.main([*base, "--input", str(empty)])
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "x.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(ValueError, match="x.jpg: not a readable image"):
        script.main([*base, "--input", str(broken)])
    twins = tmp_path / "twins"
    twins.mkdir()
    for name in ("p.png", "p.jpg"):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(twins / name)
    with pytest.raises(ValueError, match="share the stem 'p'"):
        script.main([*base, "--input", str(twins)])
