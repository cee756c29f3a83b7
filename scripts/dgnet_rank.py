#!/usr/bin/env python
"""Rank a folder of gallery images for each image of a query folder with a trained DG-Net (person re-id).

Examples::

    python scripts/dgnet_rank.py --checkpoint outputs/dgnet/runs/<run>/checkpoints/last.ckpt \\
        --query my_queries/ --gallery my_gallery/ --output ranked/ --top 10
    python scripts/dgnet_rank.py --checkpoint checkpoints/id_00100000.pt \\
        --query Market-1501-v15.09.15/query --gallery Market-1501-v15.09.15/bounding_box_test --output ranked/

Checkpoint: one written by ``python -m nvresearch.train paper=dgnet`` (the images are resized to the run's size)
or the official appearance encoder ``id_*.pt`` (256 x 128). Folders: the images directly in each folder (.jpg,
.jpeg, .png), cropped persons of any size. The feature is DG-Net's test feature (primary + fine-grained halves,
flip averaging, normalisation; the query's fine half weighted by --alpha, default the run's, 0.5).

Output folder:
  rankings.csv   one line per query and rank: query, rank, gallery, distance, score
  rankings.json  the same per query, with the settings (and the scores below when ids are known)
  ranking.png    each query (first column) with its top K gallery images; with ids known, a green frame marks
                 the same person, red another person
Distance: 1 - score / score of an identical image (0: identical feature, at most 2); score: the official one.
When the file names carry person and camera ids (Market-1501 ``0002_c1s1_000451_03.jpg``, DukeMTMC-reID
``0005_c2_f0046985.jpg``, MSMT17), the Market protocol's rank-1/5/10 and mAP are printed too (same-camera images of
the query's person and person -1 are left out of the score, as in the benchmark).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

if __package__ in (None, ""):  # run as a file from a source checkout: make ``nvresearch`` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from nvresearch.core.data import DatasetLayoutError  # noqa: E402
from nvresearch.dgnet.data import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402
from nvresearch.dgnet.rank import RankedQuery, RankingResult, load_reid_model, rank_folders  # noqa: E402

GREEN, RED = (0.1, 0.75, 0.1), (0.9, 0.1, 0.1)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Rank gallery images for each query image with a trained DG-Net appearance encoder.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Checkpoint:" + __doc__.split("Checkpoint:", 1)[1] if __doc__ else None,
    )
    parser.add_argument("--checkpoint", required=True, help="nvresearch.train checkpoint or official id_*.pt")
    parser.add_argument("--query", required=True, help="folder of query images")
    parser.add_argument("--gallery", required=True, help="folder of gallery images")
    parser.add_argument("--output", required=True, help="folder for rankings.csv, rankings.json, ranking.png")
    parser.add_argument("--top", type=int, default=10, help="gallery images kept per query (10)")
    parser.add_argument("--alpha", type=float, default=None, help="query fine-half weight (default: the run's)")
    parser.add_argument("--picture-queries", type=int, default=16, help="queries shown in ranking.png (16)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per forward pass (64)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    return parser


def _pixels(x: torch.Tensor) -> torch.Tensor:
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (x * std + mean).clamp(0, 1)


def _framed(x: torch.Tensor, colour: tuple[float, float, float] | None) -> torch.Tensor:
    if colour is None:
        return x
    out, w = x.clone(), max(1, min(x.shape[-2:]) // 16)
    c = torch.tensor(colour).view(3, 1, 1)
    out[:, :w], out[:, -w:], out[:, :, :w], out[:, :, -w:] = c, c, c, c
    return out


def write_picture(result: RankingResult, path: Path, num_queries: int) -> Path:
    """Each of the first ``num_queries`` queries with its ranked gallery images (frames: same person or not)."""
    from nvresearch.core.utils.visual import save_grid

    known = result.metrics is not None
    rows, labels = [], []
    for i, ranked in enumerate(result.queries[:num_queries]):
        person = result.query_images.records[i].person
        row = [_pixels(result.query_images[i][0])]
        for j in ranked.gallery_index:
            same = result.gallery_images.records[j].person == person
            row.append(_framed(_pixels(result.gallery_images[j][0]), (GREEN if same else RED) if known else None))
        rows.append(row)
        labels.append(ranked.query.stem[:16])
    k = max(len(r) for r in rows) - 1
    return save_grid(rows, path, col_labels=["query", *(str(r) for r in range(1, k + 1))], row_labels=labels)


def _pairs(ranked: RankedQuery) -> list[tuple[Path, float]]:
    return list(zip(ranked.gallery, ranked.distances, strict=True))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.top < 1:
        raise ValueError(f"--top must be >= 1, got {args.top}")
    model = load_reid_model(args.checkpoint)
    if args.alpha is not None:
        model.alpha = args.alpha
    result = rank_folders(model, args.query, args.gallery, args.top, args.batch_size, args.device)
    out = Path(args.output).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "rankings.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["query", "rank", "gallery", "distance", "score"])
        self_score = 1.0 if model.alpha == -1 else 1.0 + model.alpha
        for ranked in result.queries:
            for r, (g, d) in enumerate(_pairs(ranked), start=1):
                writer.writerow([ranked.query.name, r, g.name, f"{d:.6f}", f"{(1 - d) * self_score:.6f}"])
    summary = {
        "checkpoint": str(args.checkpoint),
        "query_folder": str(args.query),
        "gallery_folder": str(args.gallery),
        "alpha": model.alpha,
        "image_size": [model.height, model.width],
        "metrics": result.metrics.as_dict() if result.metrics is not None else None,
        "queries": [
            {"query": q.query.name, "ranked": [{"gallery": g.name, "distance": d} for g, d in _pairs(q)]}
            for q in result.queries
        ],
    }
    (out / "rankings.json").write_text(json.dumps(summary, indent=1))
    picture = write_picture(result, out / "ranking.png", args.picture_queries)
    n_q, n_g = len(result.query_images), len(result.gallery_images)
    print(f"ranked {n_g} gallery images for {n_q} queries (top {min(args.top, n_g)} kept, alpha {model.alpha:g})")
    if result.metrics is not None:
        m = result.metrics
        print(
            f"person/camera ids from the file names: rank-1 {100 * m.rank1:.2f}  rank-5 {100 * m.rank5:.2f}  "
            f"rank-10 {100 * m.rank10:.2f}  mAP {100 * m.mAP:.2f} (%, Market protocol)"
        )
    print(f"wrote {out / 'rankings.csv'}, {out / 'rankings.json'} and {picture}")
    return 0


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    try:
        sys.exit(main())
    except (FileNotFoundError, ValueError, OSError, DatasetLayoutError) as err:  # a message, not a traceback
        sys.exit(f"error: {err}")
