"""Reproduce the semantic segmentation table of PAC (Su et al., CVPR 2019; mIoU on PASCAL VOC 2012 val11_sbd).

Full (GPU, VOC 2012 + SBD under <data_dir>/voc, fcn8s_from_caffe.pth under <data_dir>/pretrained): the README's
two-stage recipe for PAC-CRF (stage 1: frozen FCN-8s + tied CRF, 40 epochs; stage 2: loose CRF and FCN-8s jointly,
30 epochs from stage 1), and the PAC-FCN hot-swap (20 epochs):

    python scripts/reproduce/pac/segmentation.py --data-dir /datasets

Small (CPU, the embedded procedural scenes, a few minutes; not comparable with VOC, but shows the paper's effect:
PAC-CRF raises mIoU over the unary FCN-8s it refines):

    python scripts/reproduce/pac/segmentation.py --small

Prints our mIoU beside the paper's and writes ``table.json`` in the output folder.

``--export DIR`` also writes the final PacCRF network's predictions as VOC palette PNGs, one ``<id>.png`` per image
under ``DIR/results/VOC2012/Segmentation/comp6_test_cls/`` (the evaluation server's layout: archive
``DIR/results`` and upload it). Full mode predicts the VOC 2012 test images (``VOC2012test.tar`` extracted into the
same ``VOCdevkit``; ``--export-split`` picks another split); small mode the embedded test scenes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from nvresearch.core.utils.report import print_table, reproduce_output, write_json

# The paper's VOC 2012 mIoU (%), val = val11_sbd (736 images), from the official README.
PAPER = {
    "FCN-8s backbone": {"val": 65.51, "test": 67.20},
    "PacCRF": {"val": 68.90, "test": 69.82},
    "PacCRF-32": {"val": 68.52, "test": 69.41},
    "PacFCN (hot-swap)": {"val": 67.44, "test": 69.18},
    "PacFCN + PacCRF": {"val": 69.87, "test": 71.34},
}


def _train(overrides: list[str]) -> dict[str, float]:
    from nvresearch._hydra import compose
    from nvresearch.core.training.run import train

    return train(compose(overrides))


def export_predictions(checkpoint: Path, export_dir: Path, split: str | None = None) -> int:
    """Predict a split with a trained checkpoint and write VOC palette PNGs under ``export_dir``; returns the count.

    ``split`` replaces the run's ``data.dataset.test_split`` (e.g. ``test``, the VOC 2012 test images); None keeps it.
    """
    import torch

    from nvresearch.core.training import load_checkpoint
    from nvresearch.core.utils import instantiate

    module = load_checkpoint(checkpoint)
    module.export_dir = str(export_dir)
    data_cfg = module.config["data"]
    extra = {"dataset": instantiate(data_cfg["dataset"], test_split=split)} if split is not None else {}
    data = instantiate(data_cfg, **extra)
    data.setup("predict")
    count = 0
    with torch.no_grad():
        for i, batch in enumerate(data.test_dataloader()):
            count += len(module.predict_step(batch, i)["id"])
    return count


def run_small(out: Path, extra: list[str]) -> dict[str, float]:
    metrics = _train(["experiment=pac/seg_synthetic", "trainer=cpu", f"paths.output_dir={out / 'paccrf'}", *extra])
    return {"FCN-8s backbone": metrics["test/miou_unary"], "PacCRF": metrics["test/miou"]}


def run_full(data_dir: str, out: Path, extra: list[str]) -> dict[str, float]:
    common = [f"paths.data_dir={data_dir}", *extra]
    stage1 = _train(["experiment=pac/voc_paccrf_stage1", f"paths.output_dir={out / 'stage1'}", *common])
    stage2 = _train(
        [
            "experiment=pac/voc_paccrf_stage2",
            f"paths.output_dir={out / 'stage2'}",
            f"model.weights={out / 'stage1' / 'checkpoints' / 'last.ckpt'}",
            *common,
        ]
    )
    pacfcn = _train(["experiment=pac/voc_pacfcn", f"paths.output_dir={out / 'pacfcn'}", *common])
    return {
        "FCN-8s backbone": stage1["test/miou_unary"],
        "PacCRF (stage 1)": stage1["test/miou"],
        "PacCRF": stage2["test/miou"],
        "PacFCN (hot-swap)": pacfcn["test/miou"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help="embedded procedural scenes on the CPU")
    parser.add_argument("--data-dir", help="folder holding voc/ and pretrained/ (full mode)")
    parser.add_argument("--out", type=Path, default=None, help="output folder")
    parser.add_argument("--export", type=Path, default=None, help="write VOC palette PNGs of the PacCRF predictions")
    parser.add_argument("--export-split", default=None, help="split to export (default: test in full mode)")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides, e.g. trainer.max_epochs=2")
    args = parser.parse_args(argv)
    out = reproduce_output(parser, args, "outputs/pac/reproduce_seg")
    ours = run_small(out, args.overrides) if args.small else run_full(args.data_dir, out, args.overrides)

    data = "embedded procedural scenes (CPU)" if args.small else "VOC 2012 val (our val split)"
    rows = [[name, 100 * value, PAPER.get(name, {}).get("val")] for name, value in ours.items()]
    print_table(
        f"Semantic segmentation, mIoU in %. Ours: {data}. Paper: VOC 2012 val11_sbd.", ["model", "ours", "paper"], rows
    )
    base = ours["FCN-8s backbone"]
    print(f"PacCRF gain over the backbone: ours {100 * (ours['PacCRF'] - base):+.2f}, paper +3.39")
    if args.export is not None:
        final = out / ("paccrf" if args.small else "stage2") / "checkpoints" / "last.ckpt"
        split = args.export_split if (args.export_split or args.small) else "test"
        n = export_predictions(final, args.export, split)
        print(f"exported {n} predictions to {args.export / 'results' / 'VOC2012' / 'Segmentation' / 'comp6_test_cls'}")
    write_json(out, {"data": data, "ours": ours, "paper": PAPER})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
