"""Datasets of the Taylor-pruning experiments.

- :class:`Digits`: scikit-learn's 8x8 digits (1797 real images that ship with the package), the embedded default;
  deterministic split, standardised, optionally resized (28x28 for LeNet, the official LeNet's MNIST size).
- :class:`Cifar10`: the standard ``cifar-10-batches-py`` pickles (``data_batch_1..5``, ``test_batch``).
- :class:`MnistIdx`: MNIST in its idx format (``train-images-idx3-ubyte[.gz]`` ...), as torchvision stores it under
  ``MNIST/raw``.
- :func:`image_folder`: ImageNet in the ``ImageFolder`` layout (``train/<wnid>/*.JPEG``, ``val/<wnid>/*.JPEG``).

Every dataset returns ``(image, label)`` and accepts ``(epoch, index)`` keys (``EpochSampler``), so that random
augmentation is seeded by ``(seed, epoch, index)``.
"""

from __future__ import annotations

import gzip
import pickle
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from nvresearch.core.data import DatasetLayoutError, split_epoch_key

__all__ = ["CIFAR10_MEAN", "CIFAR10_STD", "Cifar10", "Digits", "MnistIdx", "image_folder", "image_folder_split"]

CIFAR10_MEAN = (125.3 / 255, 123.0 / 255, 113.9 / 255)
CIFAR10_STD = (63.0 / 255, 62.1 / 255, 66.7 / 255)
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


class _Augmented(Dataset):
    """Base: ``images`` ``(N, C, H, W)`` float, ``labels`` ``(N,)``; optional crop+flip seeded by the key."""

    images: torch.Tensor
    labels: torch.Tensor

    def __init__(self, augment: bool = False, pad: int = 4, seed: int = 0) -> None:
        self.augment, self.pad, self.seed = augment, int(pad), int(seed)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, int]:
        epoch, index = split_epoch_key(key)
        image = self.images[index]
        if self.augment:
            g = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) * 10_000_019 + index)
            h, w = image.shape[-2:]
            padded = F.pad(image, (self.pad,) * 4)
            i, j = (int(v) for v in torch.randint(0, 2 * self.pad + 1, (2,), generator=g))
            image = padded[:, i : i + h, j : j + w]
            if bool(torch.rand((), generator=g) < 0.5):
                image = image.flip(-1)
        return image, int(self.labels[index])


class Digits(_Augmented):
    """scikit-learn's digits: 1797 grey 8x8 images of 10 classes (values 0-16), real data shipped with sklearn.

    A fixed permutation (``seed``) splits them into ``train`` (the first ``train_size``), ``val`` (the next
    ``val_size``) and ``test`` (the rest; 397 with the defaults, as in the comparison with the official code in
    docs/papers/taylor.md). Images are divided by 16, resized to ``size`` (bilinear) and standardised with the
    training split's mean and standard deviation.

    Shape:
        - image: ``(1, size, size)``; label: int in ``[0, 10)``.
    """

    @classmethod
    def for_split(
        cls,
        split: str,
        size: int = 8,
        train_size: int = 1200,
        val_size: int = 200,
        seed: int = 0,
        augment: bool = False,
    ) -> Digits:
        """One split (a data config's dataset component); ``augment`` applies to ``train`` only."""
        return cls(split, size, train_size, val_size, seed, augment and split == "train")

    def __init__(
        self,
        split: str = "train",
        size: int = 8,
        train_size: int = 1200,
        val_size: int = 200,
        seed: int = 0,
        augment: bool = False,
    ) -> None:
        super().__init__(augment=augment, pad=1, seed=seed)
        from sklearn.datasets import load_digits

        if split not in ("train", "val", "test"):
            raise ValueError(f"split must be train, val or test, got {split!r}")
        data = load_digits()
        images = torch.from_numpy(data.images.astype(np.float32) / 16.0).unsqueeze(1)  # (1797, 1, 8, 8)
        labels = torch.from_numpy(data.target.astype(np.int64))
        n = images.shape[0]
        if train_size + val_size >= n:
            raise ValueError(f"train_size + val_size must be below {n}")
        order = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))
        bounds = {
            "train": (0, train_size),
            "val": (train_size, train_size + val_size),
            "test": (train_size + val_size, n),
        }
        lo, hi = bounds[split]
        if size != 8:
            images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
        train = images[order[:train_size]]
        mean, std = train.mean(), train.std()
        self.images = ((images[order[lo:hi]] - mean) / std).contiguous()
        self.labels = labels[order[lo:hi]]


class Cifar10(_Augmented):
    """CIFAR-10 from the standard pickles: ``<root>/cifar-10-batches-py/{data_batch_1..5,test_batch}``.

    Normalised with the reference's mean/std (official ``main.py``); ``augment`` adds the reference's optional random
    crop 32 (pad 4) and horizontal flip.

    Shape:
        - image: ``(3, 32, 32)``; label: int in ``[0, 10)``.

    Raises:
        DatasetLayoutError: If a batch file is missing (the message names the path and the layout).
    """

    LAYOUT = "<root>/cifar-10-batches-py/{data_batch_1..data_batch_5, test_batch} (python pickles)"

    @classmethod
    def for_split(cls, split: str, root: str | Path, augment: bool = False, seed: int = 0) -> Cifar10:
        """One split (a data config's dataset component): ``train`` reads the training batches (augmented when
        ``augment``), ``val`` and ``test`` the test batch (the reference validates on it)."""
        _check_split(split)
        return cls(root, train=split == "train", augment=augment and split == "train", seed=seed)

    def __init__(self, root: str | Path, train: bool = True, augment: bool = False, seed: int = 0) -> None:
        super().__init__(augment=augment, pad=4, seed=seed)
        folder = Path(root).expanduser()
        # The batches sit in <root>/cifar-10-batches-py (as the archive unpacks); <root> itself also works. A missing
        # file is named in the layout asked for, not in <root>.
        if not (folder / "data_batch_1").is_file() and not (folder / "test_batch").is_file():
            folder = folder / "cifar-10-batches-py"
        names = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
        arrays, labels = [], []
        for name in names:
            path = folder / name
            if not path.is_file():
                raise DatasetLayoutError(f"CIFAR-10 batch not found: '{path}'. Expected layout: {self.LAYOUT}")
            try:
                with path.open("rb") as f:
                    batch = pickle.load(f, encoding="bytes")
                data = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
                arrays.append(data)
                labels.extend(int(v) for v in batch[b"labels"])
            except (pickle.UnpicklingError, KeyError, ValueError, EOFError) as err:
                raise DatasetLayoutError(f"corrupt CIFAR-10 batch '{path}': {err}") from err
        images = torch.from_numpy(np.concatenate(arrays)).float() / 255.0
        mean = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
        self.images = (images - mean) / std
        self.labels = torch.tensor(labels, dtype=torch.int64)


def _read_idx(path: Path, magic: int) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            head = f.read(8)
            got, n = struct.unpack(">ii", head)
            if got != magic:
                raise ValueError(f"magic number {got}, expected {magic}")
            if magic == 2051:
                rows, cols = struct.unpack(">ii", f.read(8))
                data = np.frombuffer(f.read(n * rows * cols), dtype=np.uint8)
                if data.size != n * rows * cols:
                    raise ValueError("file is truncated")
                return data.reshape(n, rows, cols)
            data = np.frombuffer(f.read(n), dtype=np.uint8)
            if data.size != n:
                raise ValueError("file is truncated")
            return data
    except (OSError, struct.error, ValueError) as err:
        raise DatasetLayoutError(f"corrupt MNIST idx file '{path}': {err}") from err


class MnistIdx(_Augmented):
    """MNIST from its idx files: ``<root>/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]``.

    ``root`` may also be the folder holding the four files. Normalised with the reference's mean 0.1307 and std
    0.3081.

    Shape:
        - image: ``(1, 28, 28)``; label: int in ``[0, 10)``.

    Raises:
        DatasetLayoutError: If a file is missing or corrupt.
    """

    LAYOUT = "<root>/MNIST/raw/{train,t10k}-images-idx3-ubyte[.gz] and {train,t10k}-labels-idx1-ubyte[.gz]"

    @classmethod
    def for_split(cls, split: str, root: str | Path) -> MnistIdx:
        """One split (a data config's dataset component): ``train`` the training files, ``val`` and ``test`` the
        t10k files (the reference validates on them)."""
        _check_split(split)
        return cls(root, train=split == "train")

    def __init__(self, root: str | Path, train: bool = True) -> None:
        super().__init__()
        folder = Path(root).expanduser()
        if (folder / "MNIST" / "raw").is_dir():
            folder = folder / "MNIST" / "raw"
        prefix = "train" if train else "t10k"
        found = []
        for kind in ("images-idx3", "labels-idx1"):
            base = folder / f"{prefix}-{kind}-ubyte"
            path = base if base.is_file() else base.with_name(base.name + ".gz")
            if not path.is_file():
                raise DatasetLayoutError(f"MNIST file not found: '{base}[.gz]'. Expected layout: {self.LAYOUT}")
            found.append(path)
        images = _read_idx(found[0], 2051)
        labels = _read_idx(found[1], 2049)
        if images.shape[0] != labels.shape[0]:
            raise DatasetLayoutError(
                f"'{found[0]}' has {images.shape[0]} images but '{found[1]}' {labels.shape[0]} labels"
            )
        self.images = ((torch.from_numpy(images.copy()).float() / 255.0 - MNIST_MEAN) / MNIST_STD).unsqueeze(1)
        self.labels = torch.from_numpy(labels.astype(np.int64))


class _KeyedFolder(Dataset):
    """An ``ImageFolder`` whose random transforms are seeded by ``(seed, epoch, index)``."""

    def __init__(self, folder: Dataset, seed: int) -> None:
        self.folder, self.seed = folder, int(seed)

    def __len__(self) -> int:
        return len(self.folder)  # type: ignore[arg-type]

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, int]:
        epoch, index = split_epoch_key(key)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed((self.seed * 1_000_003 + epoch) * 10_000_019 + index)
            return self.folder[index]


def image_folder(root: str | Path, split: str = "train", seed: int = 0, image_size: int = 224) -> Dataset:
    """ImageNet in the ``ImageFolder`` layout, with the reference's transforms (official ``main.py``).

    ``train``: RandomResizedCrop(``image_size``) + horizontal flip; ``val``: Resize(256/224 x size) + CenterCrop;
    both normalised with the ImageNet mean/std. Class ids are the sorted folder names (wnids).

    Raises:
        DatasetLayoutError: If ``<root>/<split>`` is missing or holds no class folders.
    """
    from torchvision import datasets, transforms

    folder = Path(root).expanduser() / split
    layout = "<root>/{train,val}/<wnid>/*.JPEG (ImageFolder; val re-foldered by class)"
    if not folder.is_dir() or not any(p.is_dir() for p in folder.iterdir()):
        raise DatasetLayoutError(f"ImageNet split not found: '{folder}'. Expected layout: {layout}")
    normalize = transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    if split == "train":
        tf: Callable = transforms.Compose(
            [
                transforms.RandomResizedCrop(image_size),
                transforms.RandomHorizontalFlip(),
                transforms.ToTensor(),
                normalize,
            ]
        )
    else:
        tf = transforms.Compose(
            [
                transforms.Resize(image_size * 256 // 224),
                transforms.CenterCrop(image_size),
                transforms.ToTensor(),
                normalize,
            ]
        )
    return _KeyedFolder(datasets.ImageFolder(str(folder), transform=tf), seed)


def image_folder_split(split: str, root: str | Path, image_size: int = 224, seed: int = 0) -> Dataset:
    """One split of ImageNet (a data config's dataset component): ``train`` reads ``<root>/train``, ``val`` and
    ``test`` read ``<root>/val`` (ImageNet's labelled evaluation images); see :func:`image_folder`."""
    _check_split(split)
    return image_folder(root, "train" if split == "train" else "val", seed=seed, image_size=image_size)


def _check_split(split: str) -> None:
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be train, val or test, got {split!r}")
