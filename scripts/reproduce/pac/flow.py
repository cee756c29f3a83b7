"""Reproduce the joint optical-flow upsampling table of PAC (Su et al., CVPR 2019; EPE on MPI Sintel val).

Full (GPU, MPI-Sintel-complete extracted at <data_dir>/sintel, 5000 epochs per factor):

    python scripts/reproduce/pac/flow.py --data-dir /datasets --factors 4 8 16

Small (CPU, the embedded procedural flow scenes at x8, a few minutes; not comparable with Sintel, but shows the same
ordering: PAC below bicubic and bilinear; ``--ablations`` adds the same network with zero guidance, i.e. plain
transposed convolutions, and DJIF, trained alike):

    python scripts/reproduce/pac/flow.py --small [--ablations]

Prints our end-point error beside the paper's and writes ``table.json`` in the output folder.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from nvresearch.core.utils.report import print_table, reproduce_output, write_json

# The paper's Sintel validation EPE (133 pairs), from the official README.
PAPER = {
    "Bilinear": {4: 0.4650, 8: 0.9011, 16: 1.6281},
    "DJIF": {4: 0.1760, 8: 0.4382, 16: 1.0422},
    "PacJointUpsample": {4: 0.1042, 8: 0.2558, 16: 0.5921},
}
OURS_KEYS = {"Bilinear": "test/epe_bilinear", "Bicubic": "test/epe_bicubic", "PacJointUpsample": "test/epe"}
# Small-mode ablations: the same recipe without guidance (constant kernels: plain transposed convolutions), and
# DJIF in the official layout (paddings, names; Adam 1e-3 with the paper config's schedule) with the same residual aid
# as PAC, which experiment=pac/flow_synthetic sets; each reported as its run's test/epe.
ABLATIONS = {
    "PAC, zero guidance": ("zero_guidance", ["+model.net.zero_guidance=true"]),
    "DJIF": ("djif", ["model=pac/djif", "model.net.channels=2", "model.optimizer.lr=1e-3"]),
}


def run_factor(
    factor: int, small: bool, data_dir: str | None, out_dir: Path, extra: list[str], ablations: bool = False
) -> dict[str, float]:
    from nvresearch._hydra import compose
    from nvresearch.core.training.run import train

    if small:
        overrides = ["experiment=pac/flow_synthetic", "trainer=cpu", f"data.factor={factor}"]
    else:
        overrides = [f"experiment=pac/sintel_x{factor}", f"paths.data_dir={data_dir}"]
    results = train(compose([*overrides, f"paths.output_dir={out_dir / f'x{factor}'}", *extra]))
    if small and ablations:
        for name, (folder, more) in ABLATIONS.items():
            metrics = train(compose([*overrides, *more, f"paths.output_dir={out_dir / f'x{factor}_{folder}'}", *extra]))
            results[name] = metrics["test/epe"]
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help="embedded procedural flow scenes on the CPU")
    parser.add_argument("--data-dir", help="folder holding sintel/ (full mode)")
    parser.add_argument("--factors", type=int, nargs="+", default=None, help="default: 8 (small), 4 8 16 (full)")
    parser.add_argument("--ablations", action="store_true", help="small mode: also zero guidance and DJIF")
    parser.add_argument("--out", type=Path, default=None, help="output folder")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides, e.g. trainer.max_epochs=2")
    args = parser.parse_args(argv)
    out = reproduce_output(parser, args, "outputs/pac/reproduce_flow")
    factors = args.factors or ([8] if args.small else [4, 8, 16])
    results = {f: run_factor(f, args.small, args.data_dir, out, args.overrides, args.ablations) for f in factors}

    data = "embedded procedural flow scenes (CPU)" if args.small else "MPI Sintel val (133 pairs)"
    names = ["Bilinear", "Bicubic", "PacJointUpsample", *(ABLATIONS if args.small and args.ablations else ())]
    rows = [
        [name, *(v for f in factors for v in (results[f].get(OURS_KEYS.get(name, name)), PAPER.get(name, {}).get(f)))]
        for name in names
    ]
    columns = ["model", *(c for f in factors for c in (f"x{f} ours", f"x{f} paper"))]
    print_table(f"Joint optical-flow upsampling, EPE in pixels. Ours: {data}. Paper: Sintel val.", columns, rows, 4)
    write_json(out, {"data": data, "ours": results, "paper": PAPER})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
