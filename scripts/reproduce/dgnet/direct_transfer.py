"""Reproduce DG-Net's direct-transfer rows (Zheng et al., CVPR 2019; the official README): a model trained on one
dataset, evaluated without adaptation on another's query and gallery (rank-1 and mAP).

Full (real data in their released layouts under ``--data-dir``, see ``reid_table.py``; GPU). Give a trained model per
source dataset (ours ``last.ckpt`` or the official ``id_*.pt``); a source without one is trained first, as in
``reid_table.py`` (pass the trunk and teacher overrides):

    python scripts/reproduce/dgnet/direct_transfer.py --data-dir /datasets --device cuda \\
        --checkpoint market=market/id_00100000.pt --checkpoint duke=duke/id_00100000.pt --pairs market:duke duke:market

Small (CPU, minutes): two ``python -m nvresearch.train paper=dgnet`` runs on two embedded persons worlds that differ
in their identities, clothing palette draws, cameras and backgrounds (``data.dataset.world_seed`` 0 and 1), each
evaluated on its own world and on the other. NOT comparable with the paper's numbers (procedural 64 x 32 persons,
a tiny network, minutes of CPU); it shows the same comparison (within-domain vs transferred):

    python scripts/reproduce/dgnet/direct_transfer.py --small [trainer.max_epochs=8 ...]
    python scripts/reproduce/dgnet/direct_transfer.py --small --checkpoint world0=run0/last.ckpt \\
        --checkpoint world1=run1/last.ckpt   # evaluate two finished runs

Prints our numbers (per cent) beside the paper's and writes ``table.json`` in the output folder.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path
from typing import Any

from nvresearch.core.training.checkpoint import CONFIG_KEY, read_checkpoint
from nvresearch.core.utils.report import print_table, reproduce_output, write_json


def _sibling(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"dgnet_reproduce_{name}", Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


table = _sibling("reid_table")

# Official README "Direct transfer" (source -> target), per cent: (rank-1, mAP).
PAPER = {
    ("market", "duke"): (42.62, 24.25),
    ("duke", "market"): (56.12, 26.83),
    ("market", "msmt17"): (17.11, 5.41),
    ("msmt17", "market"): (61.76, 33.62),
    ("duke", "msmt17"): (20.59, 6.35),
    ("msmt17", "duke"): (61.89, 40.69),
}
PAPER_SOURCE = "the official README (NVlabs/DG-Net), direct-transfer table"
WORLDS = {"world0": 0, "world1": 1}


def parse_pairs(items: list[str]) -> list[tuple[str, str]]:
    pairs = []
    for item in items:
        src, _, tgt = item.partition(":")
        if src not in table.DATASETS or tgt not in table.DATASETS or src == tgt:
            raise SystemExit(f"--pairs {item!r}: need SOURCE:TARGET, two different of {', '.join(table.DATASETS)}")
        pairs.append((src, tgt))
    return pairs


def full(args: argparse.Namespace, out: Path) -> dict[str, dict[str, float]]:
    pairs = parse_pairs(args.pairs)
    ckpts = table.parse_checkpoints(args.checkpoint, tuple(table.DATASETS))
    for src in dict.fromkeys(s for s, _ in pairs):
        if src not in ckpts:
            table.warn_without_teacher(args.overrides)
            _, ckpts[src] = table.train([*table.train_overrides(src, args.data_dir, out / src), *args.overrides])
    results = {}
    for src, tgt in pairs:
        query, gallery = table.released_split(tgt, args.data_dir, ckpts[src])
        results[f"{src}->{tgt}"] = table.evaluate_on(ckpts[src], query, gallery, args.device)
        print(f"evaluated {src} -> {tgt}: {results[f'{src}->{tgt}']}")
    return results


def world_split(checkpoint: str | Path, world_seed: int) -> tuple[Any, Any]:
    """Query and gallery of the embedded world the checkpoint's run trained on, with another ``world_seed``."""
    from nvresearch.dgnet.world import SyntheticPersons

    ckpt = read_checkpoint(checkpoint)
    dataset = ckpt.get(CONFIG_KEY, {}).get("config", {}).get("data", {}).get("dataset", {})
    if dataset.get("_target_") != "nvresearch.dgnet.data.persons_split":
        raise SystemExit(f"{checkpoint}: not trained on the embedded persons world (data.dataset is not persons_split)")
    kw = {k: v for k, v in dataset.items() if not k.startswith("_")}
    kw["world_seed"] = world_seed
    return SyntheticPersons("query", **kw), SyntheticPersons("gallery", **kw)


def small(args: argparse.Namespace, out: Path) -> dict[str, dict[str, float]]:
    ckpts = table.parse_checkpoints(args.checkpoint, tuple(WORLDS))
    for name, seed in WORLDS.items():
        if name not in ckpts:
            overrides = ["paper=dgnet", "trainer=cpu", f"data.dataset.world_seed={seed}", *args.overrides]
            _, ckpts[name] = table.train([*overrides, f"paths.output_dir={out / name}"])
    results = {}
    for src in WORLDS:
        for tgt, seed in WORLDS.items():
            query, gallery = world_split(ckpts[src], seed)
            results[f"{src}->{tgt}"] = table.evaluate_on(ckpts[src], query, gallery, args.device)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help="two embedded persons worlds on the CPU")
    parser.add_argument("--data-dir", help="folder holding the released datasets (full mode)")
    parser.add_argument(
        "--pairs", nargs="+", default=[f"{s}:{t}" for s, t in PAPER], help="SOURCE:TARGET pairs (full mode)"
    )
    parser.add_argument("--checkpoint", action="append", default=[], help="SOURCE=PATH: evaluate instead of training")
    parser.add_argument("--device", default="cpu", help="torch device for the evaluation, e.g. cuda")
    parser.add_argument("--out", type=Path, default=None, help="output folder")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for the training runs")
    args = parser.parse_args(argv)
    out = reproduce_output(parser, args, "outputs/dgnet/reproduce_transfer")
    pct = table.pct

    if args.small:
        results = small(args, out)
        rows = []
        for key, r in results.items():
            src, tgt = key.split("->")
            rows.append([f"{src} -> {tgt}", "within" if src == tgt else "transfer", pct(r["rank1"]), pct(r["mAP"])])
        print_table(
            "Direct transfer (%), ours between two embedded persons worlds (NOT comparable with the paper's "
            "Market / Duke / MSMT17 rows: procedural 64x32 persons, a tiny network, minutes of CPU)",
            ["train -> test", "kind", "rank-1", "mAP"],
            rows,
        )
        paper = {f"{s}->{t}": v for (s, t), v in PAPER.items()}
        write_json(out, {"ours": results, "paper": paper, "note": "not comparable (embedded worlds)"})
        return 0

    results = full(args, out)
    rows = []
    for key, r in results.items():
        paper = PAPER.get(tuple(key.split("->")), (None, None))
        rows.append([key.replace("->", " -> "), pct(r["rank1"]), paper[0], pct(r["mAP"]), paper[1]])
    print_table(
        "Direct transfer (%, single query, alpha 0.5): ours beside the paper's",
        ["source -> target", "rank-1 ours", "rank-1 paper", "mAP ours", "mAP paper"],
        rows,
    )
    print(f"paper: {PAPER_SOURCE}")
    write_json(out, {"ours": results, "paper": {f"{s}->{t}": v for (s, t), v in PAPER.items()}})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
