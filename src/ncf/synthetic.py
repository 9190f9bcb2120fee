"""Synthetic MovieLens releases in the real zip layout, at any size (for scale tests and benches).

`python -m ncf.synthetic --interactions 25000000 --out ml-25m-synthetic.zip` writes a zip laid
out like GroupLens's ml-25m (`ml-25m/ratings.csv` with `userId,movieId,rating,timestamp` and
`ml-25m/movies.csv` with `movieId,title,genres`), shaped like the real release by default:
162,541 users and 59,047 movies for 25 M ratings; smaller sizes keep the ratings per user and
the number of movies. Every user has at least 20 ratings, as in MovieLens; movie popularity
follows a power law; each user's timestamps increase; no (user, movie) pair repeats.
Use it with `data.local_zip`, `data.sources: [local]` and `data.verify: false`.

`python -m ncf.synthetic --shape ml-20m --interactions 20000263 --csv interactions.csv` writes
the ratings alone as a plain CSV (`userId,movieId,rating,timestamp`), as a team's own file
(`data.dataset: file`) would be; `--shape ml-20m` shapes it like MovieLens-20M (138,493 users
and the 26,744 rated movies for 20,000,263 ratings).
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
ML20M_USERS, ML20M_ITEMS, ML20M_RATINGS = 138_493, 26_744, 20_000_263  # movies with a rating (27,278 listed)
SHAPES = {"ml-25m": (ML25M_USERS, ML25M_ITEMS, ML25M_RATINGS), "ml-20m": (ML20M_USERS, ML20M_ITEMS, ML20M_RATINGS)}
GENRES = ("Action", "Adventure", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi", "Thriller")


def ratings_frame(interactions: int, num_items: int | None = None, seed: int = 0,
                  shape: str = "ml-25m") -> pd.DataFrame:
    """About `interactions` unique (user, movie) ratings (within 1 %), users and movies like `shape`."""
    users, movies, ratings = SHAPES[shape]
    num_items = num_items or movies
    num_users = max(1, round(interactions * users / ratings))
    frame, draws = None, interactions
    for _ in range(4):  # repeats were dropped: draw more, same users
        frame = _ratings(num_users, draws, num_items, seed)
        if len(frame) >= 0.99 * interactions:
            break
        draws = round(draws * interactions / len(frame))
    return frame


def _ratings(num_users: int, draws: int, num_items: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
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


def _csv(frame: pd.DataFrame, sink=None) -> bytes | None:
    """The frame as CSV with GroupLens's plain header line: bytes, or written to `sink` (a file)."""
    out = io.BytesIO() if sink is None else sink
    out.write((",".join(frame.columns) + "\n").encode())
    options = pacsv.WriteOptions(include_header=False, quoting_style="needed")
    pacsv.write_csv(pa.Table.from_pandas(frame, preserve_index=False), out, options)
    return out.getvalue() if sink is None else None


def write_zip(path: Path, interactions: int, folder: str = "ml-25m", seed: int = 0, shape: str = "ml-25m") -> int:
    """Write the release zip; return the number of ratings in it."""
    ratings = ratings_frame(interactions, seed=seed, shape=shape)
    movies = movies_frame(np.unique(ratings["movieId"].to_numpy()), seed=seed)
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for name, data in (("ratings.csv", _csv(ratings)), ("movies.csv", _csv(movies))):
            # Dated once for all, so the same arguments give the same bytes (and md5) at any time.
            info = zipfile.ZipInfo(f"{folder}/{name}", date_time=(2019, 11, 21, 0, 0, 0))
            zf.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED, compresslevel=1)
    tmp.replace(path)
    return len(ratings)


def write_csv(path: Path, interactions: int, seed: int = 0, shape: str = "ml-25m") -> int:
    """Write the ratings alone as `userId,movieId,rating,timestamp` CSV; return how many rows."""
    ratings = ratings_frame(interactions, seed=seed, shape=shape)
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as sink:
        _csv(ratings, sink)
    tmp.replace(path)
    return len(ratings)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", choices=sorted(SHAPES), default="ml-25m",
                   help="users and movies per rating like this release (default: %(default)s)")
    p.add_argument("--interactions", type=float, help="about how many ratings (default: the shape's)")
    out = p.add_mutually_exclusive_group(required=True)
    out.add_argument("--out", type=Path, help="release zip to write")
    out.add_argument("--csv", type=Path, help="plain CSV of the ratings to write (userId,movieId,rating,timestamp)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    n = int(args.interactions or SHAPES[args.shape][2])
    if args.csv:
        n = write_csv(args.csv, n, seed=args.seed, shape=args.shape)
    else:
        n = write_zip(args.out, n, seed=args.seed, shape=args.shape)
    print(f"wrote {args.csv or args.out}: {n:,} ratings", file=sys.stderr)


if __name__ == "__main__":
    main()
