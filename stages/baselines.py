"""baselines: EASE, iALS and ItemKNN, chosen on validation and refit, as the neural models are.

For each baseline, every setting of its grid in params.yaml (`ease.l2`, `ials.*`, `itemknn.k`)
is fit on the training interactions and scored on each user's validation item (full ranking,
training items masked); the setting with the best validation HR@10 (then NDCG@10, then the
first in the grid) is fit again on training + validation (with train.refit) and written to
--out/<name>.pt. The evaluate stage ranks the test items with them. Fit times go to the log
only, so that the same params give the same bytes.

Memory: EASE is fit on at most `ease.max_items` items (the most popular; the rest are never
recommended), and the stage refuses, before it allocates, a size this machine cannot hold.
ItemKNN and iALS never build an items x items matrix. Each fit logs a line with the time left
(and long fits their progress: a bar on a terminal, a line every few seconds elsewhere).
"""

import _bootstrap  # noqa: F401  (project Python and this checkout's src/)

import time
from pathlib import Path

from ncf import baselines
from ncf.config import check_baselines, ease_items, load_params
from ncf.io import write_json
from ncf.protocol import read_split
from ncf.runtime import setup, stage_seed
from ncf.stage import log, parser, run
from ncf.evaluate import rank_held_out
from ncf.metrics import summarize


def main():
    p = parser(__doc__)
    p.add_argument("--split", required=True, type=Path, help="input: the split stage's folder")
    p.add_argument("--out", required=True, type=Path, help="output: folder for ease.pt, ials.pt, itemknn.pt")
    p.add_argument("--metrics", required=True, type=Path, help="output: chosen settings and validation scores")
    args = p.parse_args()
    params = load_params(args.params)
    setup(params)
    data = read_split(args.split, "cpu")
    shape = (data.num_users, data.num_items)
    check_baselines(params, data.num_items)  # before anything large is allocated
    train_x = baselines.interactions(data.users.numpy(), data.items.numpy(), *shape)
    refit = params.train.refit
    if refit:
        full = data.with_validation()
        full_x = baselines.interactions(full.users.numpy(), full.items.numpy(), *shape)
    fitted = ease_items(params, data.num_items)
    if fitted < data.num_items:
        log("baselines", f"ease: fit on the {fitted:,} most popular of {data.num_items:,} items (ease.max_items); "
                         "the others are never recommended")
    summary = {}
    for kind in baselines.KINDS:
        seed = stage_seed(params.seed, f"baselines:{kind}")
        grid, best, best_key, start = baselines.grid(kind, params), None, None, time.perf_counter()
        for step, hyper in enumerate(grid, 1):
            model = baselines.fit(kind, train_x, hyper, seed, params.threads, params.ease.max_items)
            ranks = rank_held_out(model.score_all, data.valid_users, data.valid_items, data.mask,
                                  chunk_users=params.evaluate.chunk_users)
            valid = summarize(ranks, (10,))
            spent = time.perf_counter() - start
            left = spent / step * (len(grid) - step + refit)  # the refit costs about one grid step
            log("baselines", f"{kind} {hyper}: valid hr@10 {valid['hr@10']:.4f}, ndcg@10 {valid['ndcg@10']:.4f} "
                             f"({step}/{len(grid)} in {spent:.1f} s, about {left:.0f} s left for {kind})")
            key = (valid["hr@10"], valid["ndcg@10"])
            if best_key is None or key > best_key:
                best, best_key = (hyper, valid, model), key
        hyper, valid, final = best
        selected = time.perf_counter() - start
        fit_s = 0.0
        if refit:  # without it, the model chosen on validation is the final one
            final, fit_s = baselines.timed_fit(kind, full_x, hyper, seed, params.threads, params.ease.max_items)
        info = {"valid": {k: round(v, 6) for k, v in valid.items()}, "tried": len(grid)}
        if kind == "ease" and fitted < data.num_items:
            info["fitted_items"] = fitted
        baselines.save(final, args.out / f"{kind}.pt", info=info, trained_on="train+valid" if refit else "train")
        summary[kind] = {"chosen": hyper, **info}
        log("baselines", f"{kind}: chose {hyper} (grid of {info['tried']} in {selected:.1f} s), "
                         f"final fit {fit_s:.1f} s")
    write_json(summary, args.metrics)


if __name__ == "__main__":
    run(main)
