"""download: the interactions, from a MovieLens release or your own file, as canonical parquet.

data.dataset names a MovieLens release (sources tried in the order of data.sources: grouplens,
a local zip, the RecBole wheel on the package index; each checksum-verified and checked against
the release's published sizes), or `file`: your own interactions file under input/ (data.file),
tracked with `dvc add`. Both end in the same canonical tables (src/ncf/interactions.py).
"""

import _bootstrap  # noqa: F401  (project Python and this checkout's src/; ncf/__init__.py sets the allocators)

from ncf.config import load_params
from ncf.interactions import PARQUET_OPTIONS, RAW_PARTS
from ncf.io import write_parquet, write_parquet_parts
from ncf.sources import load
from ncf.stage import log, parser, reuse_freed_memory, run


def main():
    p = parser(__doc__)
    p.add_argument("--interactions", required=True,
                   help=f"output: canonical interactions, a folder of {RAW_PARTS} parquet files (part-0.parquet, ...)")
    p.add_argument("--items", required=True, help="output: canonical items parquet (ids, titles, ...)")
    args = p.parse_args()
    params = load_params(args.params)
    reuse_freed_memory()
    # An Arrow table, written as it is: a team's own file of numeric ids and timestamps without an
    # items file never loads pandas. The log does not count users and items (the split's log and
    # metrics/data.json do): here that would cost a hash of every row, ~0.3 s of CPU at 20 M rows.
    interactions, items, source = load(params.data, log=lambda msg: log("download", msg))
    write_parquet_parts(interactions, args.interactions, RAW_PARTS, **PARQUET_OPTIONS)
    write_parquet(items, args.items)
    log("download", f"{source}: {len(interactions):,} interactions, {len(items):,} items named")


if __name__ == "__main__":
    run(main)
