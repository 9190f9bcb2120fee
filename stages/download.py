"""download: fetch the MovieLens release named by data.dataset and write canonical parquet.

Sources are tried in the order of data.sources (grouplens, local zip, the RecBole wheel on the
package index); each is checksum-verified and checked against the release's published sizes.
"""

import _bootstrap  # noqa: F401  (project Python and this checkout's src/)

from ncf.config import load_params
from ncf.io import write_parquet
from ncf.movielens import load_release
from ncf.stage import log, parser, run


def main():
    p = parser(__doc__)
    p.add_argument("--ratings", required=True, help="output: canonical ratings parquet")
    p.add_argument("--movies", required=True, help="output: canonical movies parquet")
    args = p.parse_args()
    params = load_params(args.params)
    d = params.data
    ratings, movies, source = load_release(
        d.dataset, d.sources, local_zip=d.local_zip, verify=d.verify, timeout_s=d.timeout_s,
        log=lambda msg: log("download", msg),
    )
    write_parquet(ratings, args.ratings)
    write_parquet(movies, args.movies)
    log("download", f"{d.dataset} from {source}: {len(ratings):,} ratings, "
        f"{ratings['user_id'].nunique():,} users, {len(movies):,} movies")


if __name__ == "__main__":
    run(main)
