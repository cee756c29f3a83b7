"""Real-data runs on tiny fixtures in the datasets' layouts: ``video_split`` (the factory of the
``data=vinterp/<set>`` configs), ``model.init_weights``, and the paper's experiments training a step each."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from nvresearch.core.training.run import train
from nvresearch.vinterp.data import AdaptationPairs, video_split
from nvresearch.vinterp.models import SuperSloMo
from nvresearch.vinterp.module import VInterpModule, load_init_weights


def _video(folder: Path, n: int, size: tuple[int, int] = (32, 48), seed: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    for i in range(n):
        arr = torch.randint(0, 256, (*size, 3), generator=g, dtype=torch.uint8).numpy()
        Image.fromarray(arr).save(folder / f"{i:05d}.png")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Adobe-240fps (17-frame train videos, a 9-frame test window), SlowFlow (5-frame low-frame-rate train videos,
    a 9-frame test window) and UCF101 (one triplet), 32 x 48 frames (the evaluation pads to the network's multiple)."""
    root = tmp_path_factory.mktemp("vinterp_data")
    for v in range(2):
        _video(root / "adobe240fps" / "train" / f"v{v}", 17, seed=v)
        _video(root / "slowflow" / "train" / f"c{v}", 5, seed=10 + v)
    _video(root / "adobe240fps" / "test" / "v0", 9, seed=20)
    _video(root / "slowflow" / "test" / "c0", 9, seed=21)
    ucf = root / "ucf101" / "1"
    ucf.mkdir(parents=True)
    for name in ("frame_00.png", "frame_01_gt.png", "frame_02.png"):
        Image.fromarray(torch.zeros(32, 32, 3, dtype=torch.uint8).numpy()).save(ucf / name)
    return root


def test_video_split_trains_on_either_domain_and_evaluates_each_layout(data_dir: Path) -> None:
    both = video_split("train", str(data_dir / "adobe240fps/train"), str(data_dir / "slowflow/train"), crop=[32, 32])
    assert isinstance(both, AdaptationPairs) and set(both[(0, 0)]) == {"source", "target"}
    # 2 videos x 2 supervised windows (stride N + 1 = 8 in 17 frames); 2 videos x 3 consecutive triplets
    assert len(both.source) == 4 and len(both.target) == 6 and len(both) == 6
    assert both[(0, 0)]["target"]["frames"].shape == (3, 3, 32, 32)  # the crop
    adapt_only = video_split("train", None, str(data_dir / "slowflow/train"))
    assert set(adapt_only[(0, 0)]) == {"target"} and adapt_only[(0, 0)]["target"]["frames"].shape == (3, 3, 32, 48)
    test = video_split("test", test_root=str(data_dir / "slowflow/test"), eval_num_interp=7)
    assert len(test) == 1 and test[0]["frames"].shape == (9, 3, 32, 48)
    ucf = video_split("test", test_root=str(data_dir / "ucf101"), eval_format="ucf101")
    assert ucf[0]["frames"].shape == (3, 3, 32, 32)


def test_video_split_errors_name_the_key(data_dir: Path) -> None:
    with pytest.raises(ValueError, match="source_root .* or target_root"):
        video_split("train")
    with pytest.raises(ValueError, match="val_root is null"):
        video_split("val", test_root=str(data_dir / "slowflow/test"))
    with pytest.raises(ValueError, match="eval_format .* 'avi'"):
        video_split("test", test_root=str(data_dir), eval_format="avi")


def test_init_weights_from_a_checkpoint_and_clear_errors(tmp_path: Path) -> None:
    module = VInterpModule(base_channels=4, flow_scale=1.0)
    path = tmp_path / "run.ckpt"
    torch.save({"state_dict": module.state_dict()}, path)
    net = SuperSloMo(4, 1.0)
    load_init_weights(net, path)
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), module.net.state_dict().values()))
    with pytest.raises(FileNotFoundError, match="model.init_weights: no file at"):
        load_init_weights(net, tmp_path / "missing.ckpt")
    torch.save({"state_dict": {"other.weight": torch.zeros(1)}}, tmp_path / "other.ckpt")
    with pytest.raises(ValueError, match="no 'net.\\*' weights"):
        load_init_weights(net, tmp_path / "other.ckpt")


TINY_RUN = [
    "trainer=fast",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=1",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "logger=csv",
    "model.base_channels=4",
    "model.flow_scale=1.0",
    "data.num_workers=0",
    "data.dataset.crop=[32,32]",
]


def test_adobe_pretraining_then_slowflow_adaptation_train_a_step(compose, tmp_path: Path, data_dir: Path) -> None:
    """``experiment=vinterp/adobe_supervised`` trains a supervised step on the Adobe fixture and tests on its
    window; ``experiment=vinterp/slowflow_cc_ps`` starts from that run's checkpoint (``model.init_weights``) and
    trains a CC+PS step on the SlowFlow fixture, with the teacher equal to the loaded weights."""
    out = tmp_path / "adobe"
    cfg = compose(["experiment=vinterp/adobe_supervised", f"paths.data_dir={data_dir}", *TINY_RUN], out=out)
    metrics = train(cfg)
    assert {"test/psnr", "test/psnr_blend", "test/psnr_copy"} <= set(metrics) and metrics["test/psnr"] > 0
    ckpt = out / "checkpoints" / "last.ckpt"
    assert ckpt.is_file()
    cfg = compose(
        ["experiment=vinterp/slowflow_cc_ps", f"paths.data_dir={data_dir}", f"model.init_weights={ckpt}", *TINY_RUN],
        out=tmp_path / "slowflow",
    )
    metrics = train(cfg)
    assert metrics["test/psnr"] > 0
    adapted = torch.load(tmp_path / "slowflow" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    pretrained = {k[4:]: v for k, v in torch.load(ckpt, weights_only=True)["state_dict"].items() if k[:4] == "net."}
    assert all(torch.equal(adapted[f"teacher.{k}"], v) for k, v in pretrained.items())  # the frozen copy
    assert not all(torch.equal(adapted[f"net.{k}"], v) for k, v in pretrained.items())  # the student took a step
