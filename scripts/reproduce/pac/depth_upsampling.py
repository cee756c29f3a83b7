"""Reproduce the joint depth upsampling table of PAC (Su et al., CVPR 2019; RMSE in cm on NYU Depth v2).

Full (GPU, NYU Depth v2 at <data_dir>/nyu_depth_v2/nyu_depth_v2_labeled.mat, 5000 epochs per factor):

    python scripts/reproduce/pac/depth_upsampling.py --data-dir /datasets --factors 4 8 16

Small (CPU, the embedded synthetic scenes, a few minutes per factor; the numbers are not comparable with the
paper's, which are on NYU, but show the same ordering: PAC below bicubic and bilinear):

    python scripts/reproduce/pac/depth_upsampling.py --small

``--models pac lite djif`` also trains the PacJointUpsampleLite and DJIF rows of the table (in ``--small`` mode with
Adam 1e-3 and no schedule); ``zero`` adds the ablation: PacJointUpsample with zero guidance (constant kernels, i.e.
plain transposed convolutions), trained exactly like PAC. Prints our RMSE beside the paper's for each factor and
writes ``table.json`` in the output folder.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from nvresearch.core.utils.report import print_table, reproduce_output, write_json

# The paper's NYU Depth v2 test RMSE (cm, 449 images, 6-px border), from the official README.
PAPER = {
    "Bilinear": {4: 5.43, 8: 8.36, 16: 12.90},
    "DJIF (reference reimplementation)": {4: 2.64, 8: 5.15, 16: 9.39},
    "PacJointUpsampleLite": {4: 2.55, 8: 4.82, 16: 8.52},
    "PacJointUpsample": {4: 2.39, 8: 4.59, 16: 8.09},
}
OURS_KEYS = {"Bilinear": "test/rmse_bilinear", "Bicubic": "test/rmse_bicubic", "PacJointUpsample": "test/rmse"}
ROWS = {
    "lite": "PacJointUpsampleLite",
    "djif": "DJIF (reference reimplementation)",
    "zero": "PacJointUpsample, zero guidance",
}


def run_factor(
    factor: int, small: bool, data_dir: str | None, out_dir: Path, extra: list[str], model: str = "pac"
) -> dict[str, float]:
    from nvresearch._hydra import compose
    from nvresearch.core.training.run import train

    if model in ("pac", "zero"):
        overrides = ["paper=pac", "trainer=cpu"] if small else [f"experiment=pac/nyu_x{factor}"]
        overrides += ["+model.net.zero_guidance=true"] if model == "zero" else []
    elif small:
        overrides = [
            "paper=pac",
            "trainer=cpu",
            f"model=pac/{model}",
            "model.optimizer.lr=1e-3",
            "model.scheduler=null",
        ]
    else:
        overrides = [f"experiment=pac/nyu_{model}_x8"]
    overrides += [f"data.factor={factor}"] + ([] if small else [f"paths.data_dir={data_dir}"])
    overrides += [f"paths.output_dir={out_dir / f'{model}_x{factor}'}", *extra]
    return train(compose(overrides))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help="embedded synthetic scenes on the CPU")
    parser.add_argument("--data-dir", help="folder holding nyu_depth_v2/ (full mode)")
    parser.add_argument("--factors", type=int, nargs="+", default=None, help="default: 8 (small), 4 8 16 (full)")
    parser.add_argument(
        "--models", nargs="+", default=["pac"], choices=["pac", "lite", "djif", "zero"], help="networks"
    )
    parser.add_argument("--out", type=Path, default=None, help="output folder")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides, e.g. trainer.max_epochs=2")
    args = parser.parse_args(argv)
    out = reproduce_output(parser, args, "outputs/pac/reproduce")
    factors = args.factors or ([8] if args.small else [4, 8, 16])
    results = {}
    for f in factors:
        results[f] = {}
        for model in args.models:
            metrics = run_factor(f, args.small, args.data_dir, out, args.overrides, model)
            if model == "pac":
                results[f].update(metrics)
            else:
                results[f][ROWS[model]] = metrics["test/rmse"]

    data = "embedded synthetic scenes (CPU)" if args.small else "NYU Depth v2 test"
    names = ("Bilinear", "Bicubic", *(ROWS[m] for m in args.models if m != "pac"), "PacJointUpsample")
    rows = [
        [name, *(v for f in factors for v in (results[f].get(OURS_KEYS.get(name, name)), PAPER.get(name, {}).get(f)))]
        for name in names
    ]
    columns = ["model", *(c for f in factors for c in (f"x{f} ours", f"x{f} paper"))]
    title = f"Joint depth upsampling, RMSE in cm. Ours: {data}. Paper: NYU Depth v2 test."
    print_table(title, columns, rows, precision=[0, *[3, 2] * len(factors)])
    write_json(out, {"data": data, "ours": results, "paper": PAPER})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
