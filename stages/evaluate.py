"""evaluate: full ranking of each user's test item over all items, for every model.

Masks the user's training and validation items, ranks the held-out item (ties count against
it), and writes HR@K / NDCG@K for NeuMF, GMF, MLP, popularity and the baselines stage's EASE,
iALS and ItemKNN to metrics/evaluate.json, with the standard error over users of HR@10 and
NDCG@10 (`hr@10_se`, `ndcg@10_se`), plus every user's rank per model for paired comparisons.
Beside them, for comparison with the
literature only, `sampled_hr@10` / `sampled_ndcg@10`: the paper's protocol, ranking the test
item among itself and 99 items the user never interacted with (drawn once, seeded).
For review, a few users' held-out item, its rank and NeuMF's top 10 go to a markdown sample.
"""

import _bootstrap  # noqa: F401  (project Python and this checkout's src/)

from pathlib import Path

import numpy as np
import pandas as pd

from ncf import baselines
from ncf.config import check_runnable, load_params
from ncf.evaluate import ItemMask, Popularity, draw_negatives, rank_test
from ncf.io import output_file, write_json, write_parquet
from ncf.metrics import standard_errors, summarize
from ncf.models import count_parameters, load_checkpoint
from ncf.registry import BASELINES, NEURAL
from ncf.recommend import describe, top_k
from ncf.runtime import setup, stage_seed
from ncf.stage import log, parser, run

SAMPLED_K = 10  # the literature reports the sampled protocol at K = 10
SAMPLE_USERS = 5


def main():
    p = parser(__doc__)
    p.add_argument("--split", required=True, type=Path, help="input: the split stage's folder")
    p.add_argument("--catalog", required=True, type=Path, help="input: items with titles (split stage)")
    p.add_argument("--models", required=True, type=Path, help="input: folder with gmf.pt, mlp.pt, neumf.pt")
    p.add_argument("--baselines", required=True, type=Path, help="input: folder with ease.pt, ials.pt, itemknn.pt")
    p.add_argument("--metrics", required=True, type=Path, help="output: metrics JSON")
    p.add_argument("--ranks", required=True, type=Path, help="output: per-user ranks parquet")
    p.add_argument("--sample", required=True, type=Path, help="output: markdown sample of recommendations")
    args = p.parse_args()
    params = load_params(args.params)
    check_runnable(params)  # as validate does; `dvc repro -s evaluate` runs without it
    device = setup(params)
    train = pd.read_parquet(args.split / "train.parquet")
    valid = pd.read_parquet(args.split / "valid.parquet")
    test = pd.read_parquet(args.split / "test.parquet")
    users_frame = pd.read_parquet(args.split / "users.parquet")
    items_frame = pd.read_parquet(args.catalog)
    num_users, num_items = len(users_frame), len(pd.read_parquet(args.split / "items.parquet"))
    known = pd.concat([train[["user", "item"]], valid])
    mask = ItemMask(known["user"].to_numpy(np.int64), known["item"].to_numpy(np.int64), num_users, device=device)
    everything = pd.concat([known, test])
    positives = ItemMask(everything["user"].to_numpy(np.int64), everything["item"].to_numpy(np.int64),
                         num_users, device=device)
    users, targets = test["user"].to_numpy(np.int64), test["item"].to_numpy(np.int64)
    shape = {"num_users": num_users, "num_items": num_items}
    chunk, sample_seed = params.evaluate.chunk_users, stage_seed(params.seed, "evaluate:sampled")

    report, ranks, models = {}, {"user": users, "item": targets}, {}
    for kind in NEURAL:  # first, so that a missing checkpoint stops the stage before any work
        model, _ = load_checkpoint(args.models / f"{kind}.pt", kind, shape)
        models[kind] = model.to(device).eval()
    # The sampled protocol's negatives are the same for every model: drawn once, not once per model.
    negatives = draw_negatives(users, positives, num_items, sample_seed, chunk, device)

    def score(name, score_all, extra=None):
        ranks[name], sampled = rank_test(score_all, users, targets, mask, positives, num_items, sample_seed,
                                         chunk, device, desc=f"{name} test ranking", negatives=negatives)
        ranks[f"{name}_sampled"] = sampled
        report[name] = {**summarize(ranks[name], params.evaluate.ks), **standard_errors(ranks[name]),
                        **{f"sampled_{k}": v for k, v in summarize(sampled, (SAMPLED_K,)).items()},
                        **(extra or {})}

    for kind, model in models.items():
        score(kind, model.score_all, {"params": count_parameters(model)})
    # Popularity counts what the models were trained on: training, plus validation with train.refit.
    seen = known if params.train.refit else train
    score("popularity", Popularity(seen["item"].to_numpy(np.int64), num_items, device).score_all)
    for kind in BASELINES:
        model = baselines.load(args.baselines / f"{kind}.pt", shape)
        score(kind, model.score_all, {"chosen": model.hyper})

    write_json(report, args.metrics)
    write_parquet(pd.DataFrame(ranks), args.ranks)
    picks = np.random.default_rng(stage_seed(params.seed, "evaluate:sample")).choice(
        len(users), size=min(SAMPLE_USERS, len(users)), replace=False)
    lines = [f"# What NeuMF recommends: {len(picks)} test users (seeded sample)", "",
             "Each user's held-out test item, its rank among the candidates (training and validation "
             "items masked; rank 0 is the top), and NeuMF's top 10 (the held-out item in bold).", ""]
    for i in sorted(picks, key=lambda i: users_frame["user_id"].iloc[users[i]]):
        user, target = int(users[i]), int(targets[i])
        known_items = known.loc[known["user"] == user, "item"].tolist()
        top, _ = top_k(models["neumf"].cpu(), user, known_items, 10)
        candidates = num_items - len(known_items)
        lines += [f"## User {users_frame['user_id'].iloc[user]} ({len(known_items) + 1} interactions)", "",
                  f"Held out: {describe(items_frame.iloc[target])}, rank {ranks['neumf'][i]} of "
                  f"{candidates:,} candidates.", ""]
        lines += [f"{n}. " + (f"**{describe(items_frame.iloc[item])}**" if item == target
                              else describe(items_frame.iloc[item])) for n, item in enumerate(top, 1)]
        lines.append("")
    with output_file(args.sample) as tmp:
        tmp.write_text("\n".join(lines), encoding="utf-8")
    log("evaluate", "test " + ", ".join(f"{m} hr@10 {r.get('hr@10', float('nan')):.4f}" for m, r in report.items())
        + f" ({len(users):,} users)")


if __name__ == "__main__":
    run(main)
