"""split: positives, contiguous ids, leave-one-out by time (latest = test, second = valid).

The rules (params `split:`) and the tie rule (equal timestamps keep the source file's row order)
are in src/ncf/split.py; every row a rule drops is counted in the data report.
"""

import _bootstrap  # noqa: F401  (project Python and this checkout's src/; ncf/__init__.py sets the allocators)

from pathlib import Path

from ncf.config import load_params
from ncf.io import read_columns, read_parquet, write_json, write_parquet
from ncf.split import TRAIN_PARQUET_OPTIONS, Rules, leave_one_out, report, with_catalog
from ncf.stage import import_meanwhile, log, parser, reuse_freed_memory, run


def main():
    p = parser(__doc__)
    p.add_argument("--interactions", required=True, type=Path, help="input: canonical interactions (parquet parts)")
    p.add_argument("--items", required=True, type=Path, help="input: canonical items parquet")
    p.add_argument("--out", required=True, type=Path, help="output folder for the split's parquet files")
    p.add_argument("--catalog", required=True, type=Path,
                   help="output: items with contiguous ids, titles and the items file's columns (not read by training)")
    p.add_argument("--report", required=True, type=Path, help="output: the data report (metrics JSON)")
    args = p.parse_args()
    params = load_params(args.params)
    reuse_freed_memory(arrow=True)  # before pyarrow loads: the parts read are freed before the split's arrays are made
    import pyarrow.parquet  # noqa: F401  (here, so that pandas, loading on a thread, finds it loaded)

    import_meanwhile("pandas")  # ~0.2 s of Python, while the parts are read: pyarrow's to_numpy needs it loaded
    s = params.split
    rules = Rules(positives=s.positives, min_rating=s.min_rating, repeats=s.repeats, short_users=s.short_users,
                  min_item_interactions=s.min_item_interactions)
    source = params.data.file.interactions if params.data.dataset == "file" else params.data.dataset
    # numpy arrays (the split needs pandas only for its tables); ratings only to pick the positives
    interactions = read_columns(args.interactions, skip=() if rules.positives == "rated" else ("rating",))
    split = with_catalog(leave_one_out(interactions, rules=rules, name=source), read_parquet(args.items))
    write_parquet(split.train, args.out / "train.parquet", **TRAIN_PARQUET_OPTIONS)
    for name in ("valid", "test", "users", "items"):
        write_parquet(getattr(split, name), args.out / f"{name}.parquet")
    write_parquet(split.catalog, args.catalog)
    summary = report(split)
    write_json(summary, args.report)
    dropped = ", ".join(f"{n} {reason}" for reason, n in summary["dropped"].items() if n) or "none"
    log("split", f"{summary['users']:,} users, {summary['items']:,} items: {summary['train']:,} train, "
        f"{summary['valid']:,} valid, {summary['test']:,} test rows; rows dropped: {dropped}; "
        f"{summary['users_train_only']:,} users too short to hold out, kept for training")


if __name__ == "__main__":
    run(main)
