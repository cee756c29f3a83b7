"""FUNIT evaluation (Liu et al., ICCV 2019, Sec. 4): translation accuracy of a classifier trained on real images of
the target classes (top-1 / top-5, K-shot), and content preservation measured against known poses."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def foreground_weights(images: Tensor, low: float = 0.12, high: float = 0.3) -> Tensor:
    """Soft foreground mask of creatures on grey backgrounds: the chroma (max - min over RGB, in [0, 1] units),
    mapped linearly from ``low`` (0) to ``high`` (1).

    Shape:
        images: ``(B, 3, H, W)`` in [-1, 1]; returns ``(B, H, W)`` in [0, 1].
    """
    x = (images.float() + 1) / 2
    chroma = x.amax(1) - x.amin(1)
    return ((chroma - low) / (high - low)).clamp(0, 1)


def estimate_pose(images: Tensor) -> Tensor:
    """Centroid and principal-axis angle of the foreground (image moments of :func:`foreground_weights`).

    The angle is that of the major axis measured from the vertical, in radians in ``(-pi/2, pi/2]`` (creatures
    stand upright at rotation 0 and are taller than wide).

    Shape:
        images: ``(B, 3, H, W)``; returns ``(B, 3)`` = (centre x, centre y, angle), pixel units.
    """
    w = foreground_weights(images)
    b, h, wd = w.shape
    ys, xs = torch.meshgrid(
        torch.arange(h, device=w.device) + 0.5, torch.arange(wd, device=w.device) + 0.5, indexing="ij"
    )
    mass = w.sum((1, 2)).clamp_min(1e-6)
    cx = (w * xs).sum((1, 2)) / mass
    cy = (w * ys).sum((1, 2)) / mass
    dx, dy = xs - cx[:, None, None], ys - cy[:, None, None]
    mxx = (w * dx * dx).sum((1, 2)) / mass
    myy = (w * dy * dy).sum((1, 2)) / mass
    mxy = (w * dx * dy).sum((1, 2)) / mass
    # orientation of the major axis, measured from the y axis (clockwise on screen = positive rotation)
    angle = 0.5 * torch.atan2(-2 * mxy, myy - mxx)
    return torch.stack([cx, cy, angle], 1)


def colour_transfer(content: Tensor, shots: Tensor) -> Tensor:
    """Trivial probe with no learning: paint each content image's foreground with the mean foreground colour of
    its K shots (the strongest method that only transfers colour; the claim must beat it).

    Foreground is :func:`foreground_weights` (soft); the shots' colour is the foreground-weighted mean over all K
    shots, and the content's foreground is replaced by it in proportion to its weight, keeping the background.

    Shape:
        content: ``(B, 3, H, W)`` in [-1, 1]; shots: ``(B, K, 3, H, W)``; returns ``(B, 3, H, W)``.
    """
    if shots.dim() != 5 or shots.shape[0] != content.shape[0]:
        raise ValueError(f"shots must be (B, K, 3, H, W) with B = {content.shape[0]}, got {tuple(shots.shape)}")
    w = foreground_weights(shots.flatten(0, 1)).view(*shots.shape[:2], 1, *shots.shape[-2:])
    colour = (w * shots).sum((1, 3, 4)) / w.sum((1, 3, 4)).clamp_min(1e-6)  # (B, 3)
    m = foreground_weights(content)[:, None]
    return content * (1 - m) + colour[:, :, None, None] * m


def pose_error(pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """Per-image centroid distance (pixels) and absolute angle difference (degrees, modulo 180).

    Shape:
        pred, target: ``(B, 3)`` from :func:`estimate_pose`; returns two ``(B,)`` tensors.
    """
    dist = (pred[:, :2] - target[:, :2]).norm(dim=1)
    d = (pred[:, 2] - target[:, 2] + math.pi / 2) % math.pi - math.pi / 2
    return dist, d.abs() * 180 / math.pi


class SmallClassifier(nn.Module):
    """A compact CNN classifier for the translation-accuracy protocol (the paper fine-tunes Inception-V3; with no
    pretrained weights available offline we train this from scratch on real images of the target classes).

    Shape:
        x: ``(B, 3, H, W)`` in [-1, 1]; returns logits ``(B, num_classes)``.
    """

    def __init__(self, num_classes: int, width: int = 32, num_downs: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        ch_in, ch = 3, width
        for _ in range(num_downs):
            layers += [nn.Conv2d(ch_in, ch, 3, padding=1), nn.BatchNorm2d(ch), nn.ReLU(), nn.MaxPool2d(2)]
            ch_in, ch = ch, ch * 2
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(ch_in, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.features(x).mean((2, 3)))


def train_classifier(
    images: Tensor,
    labels: Tensor,
    num_classes: int,
    steps: int = 300,
    batch_size: int = 64,
    lr: float = 3e-3,
    seed: int = 0,
    width: int = 32,
    colour_augment: bool = False,
) -> SmallClassifier:
    """Train a :class:`SmallClassifier` with Adam on ``images`` (random flips and +-2 px shifts) and return it in
    eval mode.

    ``colour_augment`` also permutes the RGB channels of each image at random, so that the judge recognises classes
    whose colours vary (the embedded creatures draw colours independently of the species) by texture and shape.

    Shape:
        images: ``(N, 3, H, W)`` in [-1, 1]; labels: ``(N,)`` in ``[0, num_classes)``.
    """
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels")
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SmallClassifier(num_classes, width).to(images.device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    model.train()
    n = images.shape[0]
    for _ in range(steps):
        idx = torch.randint(0, n, (min(batch_size, n),), generator=g).to(images.device)
        x = images[idx]
        flip = torch.rand(x.shape[0], generator=g).to(x.device) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        sx, sy = (int(v) for v in torch.randint(-2, 3, (2,), generator=g))
        x = torch.roll(x, shifts=(sy, sx), dims=(2, 3))
        if colour_augment:
            perm = torch.rand(x.shape[0], 3, generator=g).argsort(1).to(x.device)
            x = x.gather(1, perm[:, :, None, None].expand_as(x))
        loss = F.cross_entropy(model(x), labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return model.eval()


def kshot_sets(num_pool: Sequence[int], k: int, generator: torch.Generator, repeats: int = 1) -> list[list[Tensor]]:
    """Draw ``repeats`` K-image index sets (without replacement) for each target class from pools of the given
    sizes. Returns ``[class][repeat] -> (k,)`` indices (:func:`nested_kshot_sets` with one K)."""
    return nested_kshot_sets(num_pool, [k], generator, repeats)[k]


def nested_kshot_sets(
    num_pool: Sequence[int], ks: Sequence[int], generator: torch.Generator, repeats: int = 1
) -> dict[int, list[list[Tensor]]]:
    """K-shot index sets for several K that are *paired*: for each target class and repeat one random order of the
    pool is drawn, and the K-set is its first K entries, so every smaller set is a subset of every larger one (each
    set is still a uniform random K-subset). Comparing K then measures the effect of the extra shots, not of
    different draws. Returns ``{K: [class][repeat] -> (K,) indices}``."""
    if not ks:
        raise ValueError("nested_kshot_sets needs at least one K")
    k_max = max(ks)
    out: dict[int, list[list[Tensor]]] = {k: [] for k in ks}
    for n in num_pool:
        if n < k_max:
            raise ValueError(f"a target class has {n} example images, fewer than K = {k_max}")
        orders = [torch.randperm(n, generator=generator)[:k_max] for _ in range(repeats)]
        for k in ks:
            out[k].append([order[:k] for order in orders])
    return out


def cluster_mean_se(sums: Tensor, counts: Tensor) -> tuple[float, float]:
    """Mean of per-item values grouped in clusters, and its cluster-robust standard error.

    The mean is ``sum(sums) / sum(counts)``; the standard error treats the cluster means as the independent
    observations (``std(cluster means) / sqrt(#clusters)``, clusters weighted by their counts), which is the honest
    error when the items of a cluster share a random draw (e.g. all translations made with one K-shot set).
    Clusters with no items are ignored; with fewer than two clusters the error is ``nan``.

    Shape:
        sums, counts: ``(C,)`` per-cluster sums of the values and item counts.
    """
    keep = counts > 0
    s, c = sums[keep].double(), counts[keep].double()
    mean = float(s.sum() / c.sum()) if c.numel() else float("nan")
    n = c.numel()
    if n < 2:
        return mean, float("nan")
    w = c / c.sum()
    m = s / c
    # variance of a ratio estimator over clusters (equal counts: the plain variance of the cluster means / n)
    var = float((w**2 * (m - mean) ** 2).sum() * n / (n - 1))
    return mean, math.sqrt(var)


@torch.no_grad()
def translate_to_classes(translate: Callable[[Tensor, Tensor], Tensor], content: Tensor, shots: Tensor) -> Tensor:
    """Translate every content image into each target class given by K shots.

    Args:
        translate: ``(content (B, 3, H, W), class images (B, K, 3, H, W)) -> (B, 3, H, W)``.
        shots: ``(T, K, 3, H, W)``: K example images of each of T target classes.

    Shape:
        returns ``(T, B, 3, H, W)``.
    """
    b = content.shape[0]
    outs = [translate(content, shots[t][None].expand(b, *shots.shape[1:])) for t in range(shots.shape[0])]
    return torch.stack(outs)


def mean_code_translation(gen: nn.Module, content_code: Tensor, class_codes: Tensor) -> Tensor:
    """FUNIT minus its class conditioning (the claim's ablation): decode each content code with the mean of the
    target classes' codes, so that the decoder's AdaIN parameters no longer depend on the target class. One image per
    content image serves every target class.

    Args:
        gen: a :class:`~nvresearch.funit.models.FewShotGenerator` (``decode(content code, class code)``).

    Shape:
        content_code: ``(B, C, h, w)`` from ``gen.encode_content``; class_codes: ``(T, D)``, one code per target
        class; returns ``(B, 3, H, W)``.
    """
    if class_codes.dim() != 2:
        raise ValueError(f"class_codes must be (T, D), one code per target class, got {tuple(class_codes.shape)}")
    return gen.decode(content_code, class_codes.mean(0, keepdim=True).expand(content_code.shape[0], -1))
