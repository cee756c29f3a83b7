"""FAZE's ablations of the official code on the embedded eye-strip world: personalisation error against k for the
default method and for each option of the official ``2_meta_learning.py`` / ``1_train_dt_ed.py`` that the paper
discusses (Park et al., ICCV 2019, Sec. 5.2 and the official scripts' flags).

    python scripts/reproduce/faze/ablations.py --small                      # all rows, CPU, one run each
    python scripts/reproduce/faze/ablations.py --small --only before_z meta_sgd

Rows (each a complete run, ``python -m nvresearch.train paper=faze`` plus its overrides):

- ``default``: the gaze code ``vec(Z_g)`` into the MLP, textbook first-order MAML (the CPU default).
- ``before_z``: the official ``--select-z before_z``: the encoder's pooled features into an MLP that starts as the
  DT-ED's ``fc_enc`` and gaze head (``model.stage2.select_z=before_z``).
- ``meta_sgd``: the official ``--meta-learner Meta-SGD``: a learned step multiplier per parameter
  (``model.stage2.meta_sgd=true``).
- ``triplet`` / ``all_equal``: the stage-1 losses of the official code (``model.triplet_loss=angular model.w_ec=0``,
  ``model.all_frontals_equal=true``).

The paper reports no number for these variants on real data; the script prints ours (error at k = 0, 1, 3, 9, the
person-independent error and the k = 3 / k = 9 gains) and writes ``table.json``. Full (GPU) mode passes the same
overrides to ``experiment=faze/gazecapture`` with ``--data-dir``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from nvresearch.core.utils.report import print_table, reproduce_output, write_json

VARIANTS: dict[str, list[str]] = {
    "default": [],
    "before_z": ["model.stage2.select_z=before_z"],
    "meta_sgd": ["model.stage2.meta_sgd=true"],
    "triplet": ["model.triplet_loss=angular", "model.w_ec=0"],
    "all_equal": ["model.all_frontals_equal=true"],
}


def run(name: str, small: bool, data_dir: str | None, out_dir: Path, extra: list[str]) -> dict[str, float]:
    from nvresearch._hydra import compose
    from nvresearch.core.training.run import train

    base = ["paper=faze", "trainer=cpu"] if small else ["experiment=faze/gazecapture", f"paths.data_dir={data_dir}"]
    return train(compose([*base, f"paths.output_dir={out_dir / name}", *VARIANTS[name], *extra]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help="embedded eye-strip world on the CPU")
    parser.add_argument("--data-dir", help="folder holding faze/GazeCapture.h5 ... (full mode)")
    parser.add_argument("--only", nargs="+", choices=list(VARIANTS), default=None, help="run only these rows")
    parser.add_argument("--out", type=Path, default=None, help="output folder")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every row, e.g. seed=2")
    args = parser.parse_args(argv)
    out = reproduce_output(parser, args, "outputs/faze/ablations")
    results = {name: run(name, args.small, args.data_dir, out, args.overrides) for name in args.only or VARIANTS}
    rows = []
    for name, m in results.items():
        pi = m["test/person_independent_error"]
        rows.append(
            [
                name,
                *(m.get(f"test/error_k{k}") for k in (0, 1, 3, 9)),
                pi,
                f"{100 * (1 - m['test/error_k3'] / pi):.1f} %",
                f"{100 * (1 - m['test/error_k9'] / pi):.1f} %",
                m.get("test/offset_error_k9"),
            ]
        )
    print_table(
        "FAZE ablations: mean angular error (deg) of the meta-learned MLP after personalisation with k samples",
        ["variant", "k=0", "k=1", "k=3", "k=9", "person-indep.", "gain k=3", "gain k=9", "offset k=9"],
        rows,
    )
    write_json(out, {"ours": results, "variants": VARIANTS})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
