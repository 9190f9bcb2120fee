"""evaluate: full ranking of each user's test item over all items, for every model.

Masks the user's training and validation items, ranks the held-out item (ties count against
it), and writes HR@K / NDCG@K for NeuMF, GMF, MLP and popularity to metrics/evaluate.json,
plus every user's rank per model for paired comparisons. Beside them, for comparison with the
literature only, `sampled_hr@10` / `sampled_ndcg@10`: the paper's protocol, ranking the test
item among itself and 99 items the user never interacted with (drawn once, seeded).
"""

import _bootstrap  # noqa: F401  (project Python and this checkout's src/)

from pathlib import Path

import numpy as np
import pandas as pd

from ncf.config import load_params
from ncf.evaluate import ItemMask, Popularity, rank_held_out, rank_sampled
from ncf.io import write_json, write_parquet
from ncf.metrics import summarize
from ncf.models import count_parameters, load_checkpoint
from ncf.stage import log, parser, run
from ncf.train import resolve_device, stage_seed

SAMPLED_K = 10  # the literature reports the sampled protocol at K = 10


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
    everything = pd.concat([known, test])
    positives = ItemMask(everything["user"].to_numpy(np.int64), everything["item"].to_numpy(np.int64),
                         num_users, device=device)
    users, targets = test["user"].to_numpy(np.int64), test["item"].to_numpy(np.int64)
    shape = {"num_users": num_users, "num_items": num_items}
    chunk, sample_seed = params.evaluate.chunk_users, stage_seed(params.seed, "evaluate:sampled")

    report, ranks = {}, {"user": users, "item": targets}

    def score(name, score_all, extra=None):
        ranks[name] = rank_held_out(score_all, users, targets, mask, chunk, device)
        sampled = rank_sampled(score_all, users, targets, positives, num_items, sample_seed, chunk, device)
        ranks[f"{name}_sampled"] = sampled
        report[name] = {**summarize(ranks[name], params.evaluate.ks),
                        **{f"sampled_{k}": v for k, v in summarize(sampled, (SAMPLED_K,)).items()},
                        **(extra or {})}

    for kind in ("neumf", "gmf", "mlp"):
        model, _ = load_checkpoint(args.models / f"{kind}.pt", kind, shape)
        model.to(device).eval()
        score(kind, model.score_all, {"params": count_parameters(model)})
    score("popularity", Popularity(train["item"].to_numpy(np.int64), num_items, device).score_all)

    write_json(report, args.metrics)
    write_parquet(pd.DataFrame(ranks), args.ranks)
    log("evaluate", "test " + ", ".join(f"{m} hr@10 {r.get('hr@10', float('nan')):.4f}" for m, r in report.items())
        + f" ({len(users):,} users)")


if __name__ == "__main__":
    run(main)
