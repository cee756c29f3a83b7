"""Taylor pruning paper package: networks, datasets (tiny fixtures in the real layouts), loss and metrics."""

from __future__ import annotations

import gzip
import pickle
import struct

import numpy as np
import pytest
import torch

from nvresearch.core.data import DatasetLayoutError
from nvresearch.core.utils import instantiate
from nvresearch.taylor import (
    Cifar10,
    DependencyGraph,
    Digits,
    DigitsCNN,
    LeNet3,
    MnistIdx,
    classification_loss,
    image_folder,
    torchvision_classifier,
)


def _n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_lenet3_parameters_and_prunable_units() -> None:
    # conv 1->16 k5, conv 16->32 k5, fc 512->120, 120->84, 84->10 (+ biases)
    mnist = LeNet3(1, 10, 28)
    assert _n_params(mnist) == (16 * 25 + 16) + (16 * 32 * 25 + 32) + (512 * 120 + 120) + (120 * 84 + 84) + 850
    assert _n_params(mnist) == 85_822
    assert _n_params(LeNet3(3, 10, 32)) == 121_182
    graph = DependencyGraph(mnist, torch.zeros(1, 1, 28, 28))
    assert [g.size for g in graph.groups] == [16, 32, 120, 84]  # the reference's 252 gated units (spec A.4)
    assert mnist(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    with pytest.raises(ValueError):
        LeNet3(1, 10, 12)


def test_digits_cnn_and_default_config_counts(compose) -> None:
    net = DigitsCNN()
    assert _n_params(net) == 32 * 9 + 64 + 64 * 32 * 9 + 128 + 128 * 64 * 9 + 256 + 128 * 64 + 64 + 64 * 10 + 10
    graph = DependencyGraph(net, torch.zeros(1, 1, 8, 8))
    assert [g.size for g in graph.groups] == [32, 64, 128, 64]
    cfg = compose(["paper=taylor", "model=taylor/default"])
    module = instantiate(cfg.model)
    assert _n_params(module.net) == 25_557_032  # torchvision ResNet-50 = the paper's 25.56 M (spec D)


def test_torchvision_classifier_options(tmp_path) -> None:
    net = torchvision_classifier("resnet18", num_classes=10, cifar_stem=True)
    assert net.conv1.kernel_size == (3, 3) and isinstance(net.maxpool, torch.nn.Identity)
    assert net(torch.zeros(1, 3, 32, 32)).shape == (1, 10)
    path = tmp_path / "w.pth"
    torch.save(net.state_dict(), path)
    again = torchvision_classifier("resnet18", num_classes=10, weights_path=str(path), cifar_stem=True)
    torch.testing.assert_close(again.fc.weight, net.fc.weight)
    with pytest.raises(FileNotFoundError, match="nosuch.pth"):
        torchvision_classifier("resnet18", weights_path=str(tmp_path / "nosuch.pth"))
    with pytest.raises(ValueError, match="unknown arch"):
        torchvision_classifier("alexnet")


def test_digits_splits_are_deterministic_and_standardised() -> None:
    train, val, test = Digits("train"), Digits("val"), Digits("test")
    assert (len(train), len(val), len(test)) == (1200, 200, 397)
    assert abs(float(train.images.mean())) < 1e-5 and abs(float(train.images.std()) - 1) < 1e-4
    x, y = train[5]
    assert x.shape == (1, 8, 8) and 0 <= y < 10
    torch.testing.assert_close(Digits("train")[5][0], x)
    assert not torch.equal(Digits("train", seed=1).images[:5], train.images[:5])
    assert Digits("test", size=28)[0][0].shape == (1, 28, 28)
    aug = Digits("train", augment=True)
    torch.testing.assert_close(aug[(3, 7)][0], aug[(3, 7)][0])  # seeded by (seed, epoch, index)
    assert any(not torch.equal(aug[(e, 7)][0], aug[(0, 7)][0]) for e in range(1, 6))


def _write_cifar(root, rows: int = 2) -> None:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (rows, 3072), dtype=np.uint8), b"labels": list(range(rows))}
        with (folder / name).open("wb") as f:
            pickle.dump(batch, f)


def test_cifar10_pickles_fixture(tmp_path) -> None:
    _write_cifar(tmp_path)
    train, test = Cifar10(tmp_path, train=True), Cifar10(tmp_path / "cifar-10-batches-py", train=False)
    assert len(train) == 10 and len(test) == 2
    x, y = test[1]
    assert x.shape == (3, 32, 32) and y == 1
    with (tmp_path / "cifar-10-batches-py" / "test_batch").open("rb") as f:
        raw = pickle.load(f)[b"data"][1].reshape(3, 32, 32)
    expected = (raw[0, 0, 0] / 255 - 125.3 / 255) / (63.0 / 255)
    assert float(x[0, 0, 0]) == pytest.approx(expected, rel=1e-5)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DatasetLayoutError, match="data_batch_3.*cifar-10-batches-py"):
        Cifar10(tmp_path, train=True)


def _idx(path, magic: int, array: np.ndarray, compress: bool) -> None:
    head = struct.pack(">ii", magic, array.shape[0])
    if magic == 2051:
        head += struct.pack(">ii", *array.shape[1:])
    data = head + array.astype(np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)


def test_mnist_idx_fixture(tmp_path) -> None:
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    images = np.arange(3 * 28 * 28).reshape(3, 28, 28) % 256
    _idx(raw / "train-images-idx3-ubyte", 2051, images, compress=True)
    _idx(raw / "train-labels-idx1-ubyte", 2049, np.array([7, 2, 1]), compress=False)
    ds = MnistIdx(tmp_path, train=True)
    x, y = ds[2]
    assert len(ds) == 3 and x.shape == (1, 28, 28) and y == 1
    assert float(x[0, 0, 5]) == pytest.approx((images[2, 0, 5] / 255 - 0.1307) / 0.3081, rel=1e-5)
    with pytest.raises(DatasetLayoutError, match="t10k-images-idx3-ubyte"):
        MnistIdx(tmp_path, train=False)
    _idx(raw / "t10k-images-idx3-ubyte", 2049, images, compress=False)  # wrong magic number
    _idx(raw / "t10k-labels-idx1-ubyte", 2049, np.array([7, 2, 1]), compress=False)
    with pytest.raises(DatasetLayoutError, match="corrupt MNIST idx file.*t10k-images"):
        MnistIdx(raw, train=False)


def test_image_folder_fixture(tmp_path) -> None:
    from PIL import Image

    for split in ("train", "val"):
        for wnid in ("n01", "n02"):
            (tmp_path / split / wnid).mkdir(parents=True)
            for i in range(2):
                Image.fromarray(np.full((40, 50, 3), 60 * i, dtype=np.uint8)).save(
                    tmp_path / split / wnid / f"{i}.JPEG"
                )
    train = image_folder(tmp_path, "train", image_size=32)
    val = image_folder(tmp_path, "val", image_size=32)
    assert len(train) == 4 and train[(0, 3)][0].shape == (3, 32, 32) and train[(0, 3)][1] == 1
    torch.testing.assert_close(train[(2, 1)][0], train[(2, 1)][0])
    assert val[0][0].shape == (3, 32, 32)
    with pytest.raises(DatasetLayoutError, match="test.*ImageFolder"):
        image_folder(tmp_path, "test")


def test_loss_by_hand() -> None:
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 0.0, 3.0]])
    labels = torch.tensor([1, 2])
    expected = (-(1.0 - torch.logsumexp(logits[0], 0)) - (3.0 - torch.logsumexp(logits[1], 0))) / 2
    assert float(classification_loss(logits, labels)) == pytest.approx(float(expected))
    with pytest.raises(ValueError):
        classification_loss(logits, labels[:1])
