"""evaluate: full ranking of each user's test item over all items, for every model.

Masks the user's training and validation items, ranks the held-out item (ties count against
it), and writes HR@K / NDCG@K for NeuMF, GMF, MLP and popularity to metrics/evaluate.json,
plus every user's rank per model for paired comparisons.
"""

import _bootstrap  # noqa: F401  (project Python and this checkout's src/)

from pathlib import Path

import numpy as np
import pandas as pd

from ncf.config import load_params
from ncf.evaluate import ItemMask, Popularity, rank_held_out
from ncf.io import write_json, write_parquet
from ncf.metrics import summarize
from ncf.models import count_parameters, load_checkpoint
from ncf.stage import log, parser, run
from ncf.train import resolve_device


def main():
    p = parser(__doc__)
    p.add_argument("--split", required=True, type=Path, help="input: the split stage's folder")
    p.add_argument("--models", required=True, type=Path, help="input: folder with gmf.pt, mlp.pt, neumf.pt")
    p.add_argument("--metrics", required=True, type=Path, help="output: metrics JSON")
    p.add_argument("--ranks", required=True, type=Path, help="output: per-user ranks parquet")
    args = p.parse_args()
    params = load_params(args.params)
    device = resolve_device(params.device)
    train = pd.read_parquet(args.split / "train.parquet")
    valid = pd.read_parquet(args.split / "valid.parquet")
    test = pd.read_parquet(args.split / "test.parquet")
    num_users = len(pd.read_parquet(args.split / "users.parquet"))
    num_items = len(pd.read_parquet(args.split / "items.parquet"))
    known = pd.concat([train[["user", "item"]], valid])
    mask = ItemMask(known["user"].to_numpy(np.int64), known["item"].to_numpy(np.int64), num_users, device=device)
    users, targets = test["user"].to_numpy(np.int64), test["item"].to_numpy(np.int64)
    shape = {"num_users": num_users, "num_items": num_items}

    def ranks_of(score_all):
        return rank_held_out(score_all, users, targets, mask, params.evaluate.chunk_users, device)

    report, ranks = {}, {"user": users, "item": targets}
    for kind in ("neumf", "gmf", "mlp"):
        model, _ = load_checkpoint(args.models / f"{kind}.pt", kind, shape)
        model.to(device).eval()
        ranks[kind] = ranks_of(model.score_all)
        report[kind] = {**summarize(ranks[kind], params.evaluate.ks), "params": count_parameters(model)}
    ranks["popularity"] = ranks_of(Popularity(train["item"].to_numpy(np.int64), num_items, device).score_all)
    report["popularity"] = summarize(ranks["popularity"], params.evaluate.ks)

    write_json(report, args.metrics)
    write_parquet(pd.DataFrame(ranks), args.ranks)
    log("evaluate", "test " + ", ".join(f"{m} hr@10 {r.get('hr@10', float('nan')):.4f}" for m, r in report.items())
        + f" ({len(users):,} users)")


if __name__ == "__main__":
    run(main)
