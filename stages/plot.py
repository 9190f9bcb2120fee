"""plot: PNG figures of the training curves and of the test metrics by model."""

import _bootstrap  # noqa: F401  (project Python and this checkout's src/)

import json
from pathlib import Path

import pandas as pd

from ncf.config import load_params
from ncf.errors import DataError
from ncf.plots import model_comparison, training_curves
from ncf.registry import NEURAL
from ncf.stage import log, parser, run


def main():
    p = parser(__doc__)
    p.add_argument("--curves", required=True, type=Path, help="input: folder of per-model epoch TSVs")
    p.add_argument("--metrics", required=True, type=Path, help="input: metrics/evaluate.json")
    p.add_argument("--out", required=True, type=Path, help="output folder for the PNGs")
    args = p.parse_args()
    load_params(args.params)
    curves = {m: pd.read_csv(args.curves / f"{m}.tsv", sep="\t") for m in NEURAL}
    metrics = json.loads(args.metrics.read_text())
    lacking = [model for model, values in metrics.items() if "hr@10" not in values or "ndcg@10" not in values]
    if lacking:  # `dvc repro -s evaluate` skips validate, which refuses such ks
        raise DataError(f"{args.metrics}: no hr@10 / ndcg@10 for {lacking[0]}; evaluate.ks must include 10: "
                        "fix params.yaml, then run dvc repro")
    training_curves(curves, args.out / "training_curves.png")
    model_comparison(metrics, args.out / "models.png")
    log("plot", f"wrote {args.out}/training_curves.png and {args.out}/models.png")


if __name__ == "__main__":
    run(main)
