"""recommend: the final model's top K unseen items for every user, to ship.

Scores every user in users.parquet with the checkpoint `recommend.model` names (models/<model>.pt,
refit on training + validation), excludes every item the user is known to have (training,
validation and test), and writes K rows per user to --out: user_id and item_id as in the data,
rank (1 = best), score (the model's logit) and title where the catalogue has one. Users are
scored in blocks (bounded memory, a progress display with the time left); `ncf recommend
--user ID` ranks one user with the same function, so it prints the same list.
"""

import _bootstrap  # noqa: F401  (project Python and this checkout's src/)

import time
from pathlib import Path

import numpy as np
import pandas as pd

from ncf.config import check_runnable, load_params
from ncf.evaluate import ItemMask
from ncf.io import write_parquet
from ncf.models import load_checkpoint
from ncf.recommend import recommend, recommendations_frame
from ncf.runtime import setup
from ncf.stage import log, parser, run


def main():
    p = parser(__doc__)
    p.add_argument("--split", required=True, type=Path, help="input: the split stage's folder")
    p.add_argument("--catalog", required=True, type=Path, help="input: items with ids and titles (split stage)")
    p.add_argument("--models", required=True, type=Path, help="input: folder with gmf.pt, mlp.pt, neumf.pt")
    p.add_argument("--out", required=True, type=Path, help="output: recommendations parquet")
    args = p.parse_args()
    params = load_params(args.params)
    check_runnable(params)  # as validate does; `dvc repro -s recommend` runs without it
    device = setup(params)
    start = time.perf_counter()
    users = pd.read_parquet(args.split / "users.parquet")
    catalog = pd.read_parquet(args.catalog)
    num_users, num_items = len(users), len(pd.read_parquet(args.split / "items.parquet", columns=["item"]))
    known = pd.concat([pd.read_parquet(args.split / f"{name}.parquet", columns=["user", "item"])
                       for name in ("train", "valid", "test")])
    seen = ItemMask(known["user"].to_numpy(np.int64), known["item"].to_numpy(np.int64), num_users, device=device)
    del known
    kind, k = params.recommend.model, params.recommend.k
    model, _ = load_checkpoint(args.models / f"{kind}.pt", kind, {"num_users": num_users, "num_items": num_items})
    model.to(device).eval()
    ranked = recommend(model.score_all, np.arange(num_users), seen, k, num_users, device,
                       desc=f"{kind} recommendations")
    frame = recommendations_frame(*ranked, users, catalog)
    write_parquet(frame, args.out)
    log("recommend", f"wrote {args.out}: {kind}'s top {k} for {num_users:,} users ({len(frame):,} rows) "
        f"in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    run(main)
