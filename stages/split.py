"""split: implicit feedback, contiguous ids, leave-one-out by time (latest = test, second = valid).

Ties in timestamp keep the source file's row order (a stable sort); see src/ncf/split.py.
"""

import _bootstrap  # noqa: F401  (project Python and this checkout's src/)

from pathlib import Path

import pandas as pd

from ncf.config import load_params
from ncf.io import write_parquet
from ncf.split import leave_one_out
from ncf.stage import log, parser, run


def main():
    p = parser(__doc__)
    p.add_argument("--ratings", required=True, help="input: canonical ratings parquet")
    p.add_argument("--movies", required=True, help="input: canonical movies parquet")
    p.add_argument("--out", required=True, type=Path, help="output folder for the split's parquet files")
    p.add_argument("--catalog", required=True, type=Path,
                   help="output: movies with contiguous ids, titles, years and genres (not read by training)")
    args = p.parse_args()
    load_params(args.params)  # validate before any work
    split = leave_one_out(pd.read_parquet(args.ratings), pd.read_parquet(args.movies))
    for name in ("train", "valid", "test", "users", "items"):
        write_parquet(getattr(split, name), args.out / f"{name}.parquet")
    write_parquet(split.movies, args.catalog)
    log("split", f"{len(split.users):,} users, {len(split.items):,} items: {len(split.train):,} train, "
        f"{len(split.valid):,} valid, {len(split.test):,} test rows "
        f"({split.dropped_duplicates} repeated pairs dropped, {split.train_only_users} users too short to hold out)")


if __name__ == "__main__":
    run(main)
