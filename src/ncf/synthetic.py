"""Synthetic MovieLens releases in the real zip layout, at any size (for scale tests and benches).

`python -m ncf.synthetic --interactions 25000000 --out ml-25m-synthetic.zip` writes a zip laid
out like GroupLens's ml-25m (`ml-25m/ratings.csv` with `userId,movieId,rating,timestamp` and
`ml-25m/movies.csv` with `movieId,title,genres`), shaped like the real release by default:
162,541 users and 59,047 movies for 25 M ratings; smaller sizes keep the ratings per user and
the number of movies. Every user has at least 20 ratings, as in MovieLens; movie popularity
follows a power law; each user's timestamps increase; no (user, movie) pair repeats.
Use it with `data.local_zip`, `data.sources: [local]` and `data.verify: false`.
"""

from __future__ import annotations

import argparse
import io
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

ML25M_USERS, ML25M_ITEMS, ML25M_RATINGS = 162_541, 59_047, 25_000_095
GENRES = ("Action", "Adventure", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi", "Thriller")


def ratings_frame(interactions: int, num_items: int = ML25M_ITEMS, seed: int = 0) -> pd.DataFrame:
    """About `interactions` unique (user, movie) ratings (within 1 %), users scaled like ml-25m."""
    frame = _ratings(interactions, interactions, num_items, seed)
    if len(frame) < 0.99 * interactions:  # repeats were dropped: draw more, same users
        frame = _ratings(interactions, round(interactions * interactions / len(frame)), num_items, seed)
    return frame


def _ratings(interactions: int, draws: int, num_items: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    num_users = max(1, round(interactions * ML25M_USERS / ML25M_RATINGS))
    extra = rng.lognormal(mean=0.0, sigma=1.2, size=num_users)
    counts = 20 + np.floor(extra / extra.sum() * max(0, draws - 20 * num_users)).astype(np.int64)
    counts = np.minimum(counts, num_items // 2)
    users = np.repeat(np.arange(num_users, dtype=np.int64), counts)
    # Popularity: item k drawn with probability ~ 1 / (k + 10) ** 0.9, then ids shuffled.
    weights = 1.0 / (np.arange(num_items) + 10.0) ** 0.9
    cdf = np.cumsum(weights / weights.sum())
    items = np.searchsorted(cdf, rng.random(len(users)))
    items = np.minimum(items, num_items - 1)
    keys = np.unique(users * num_items + items)  # drops repeats, sorted by user
    users, items = keys // num_items, keys % num_items
    # Shuffle rows within each user, then give each user increasing timestamps.
    order = np.lexsort((rng.random(len(users)), users))
    users, items = users[order], items[order]
    first = np.r_[0, np.flatnonzero(np.diff(users)) + 1]
    lengths = np.diff(np.r_[first, len(users)])
    gaps = np.cumsum(rng.integers(0, 3_600, size=len(users)))  # 0: some ratings share a second
    start = rng.integers(822_873_600, 1_500_000_000, size=num_users)
    timestamps = start[users] + gaps - np.repeat(gaps[first], lengths)
    movie_ids = np.sort(rng.choice(np.arange(1, 4 * num_items), size=num_items, replace=False))
    return pd.DataFrame({
        "userId": users + 1,
        "movieId": movie_ids[rng.permutation(num_items)][items],
        "rating": rng.integers(1, 11, size=len(users)) / 2.0,
        "timestamp": timestamps,
    })


def movies_frame(movie_ids: np.ndarray, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed + 1)
    years = rng.integers(1920, 2020, size=len(movie_ids))
    genres = np.asarray(GENRES)[rng.integers(0, len(GENRES), size=len(movie_ids))]
    return pd.DataFrame({"movieId": movie_ids,
                         "title": [f"Synthetic Movie {m} ({y})" for m, y in zip(movie_ids, years)],
                         "genres": genres})


def _csv(frame: pd.DataFrame) -> bytes:
    sink = io.BytesIO()
    options = pacsv.WriteOptions(include_header=True, quoting_style="needed")
    pacsv.write_csv(pa.Table.from_pandas(frame, preserve_index=False), sink, options)
    return sink.getvalue()


def write_zip(path: Path, interactions: int, folder: str = "ml-25m", seed: int = 0) -> int:
    """Write the release zip; return the number of ratings in it."""
    ratings = ratings_frame(interactions, seed=seed)
    movies = movies_frame(np.unique(ratings["movieId"].to_numpy()), seed=seed)
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zf.writestr(f"{folder}/ratings.csv", _csv(ratings))
        zf.writestr(f"{folder}/movies.csv", _csv(movies))
    tmp.replace(path)
    return len(ratings)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--interactions", type=float, default=ML25M_RATINGS,
                   help="about how many ratings (default: ml-25m's %(default)d)")
    p.add_argument("--out", type=Path, required=True, help="zip file to write")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    n = write_zip(args.out, int(args.interactions), seed=args.seed)
    print(f"wrote {args.out}: {n:,} ratings", file=sys.stderr)


if __name__ == "__main__":
    main()
