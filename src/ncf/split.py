"""Implicit feedback, contiguous ids, and the leave-one-out split by time.

Every rating is a positive. Users and items get contiguous 0-based ids (`user`, `item`) in the
order of MovieLens's own ids, and the mapping is kept. For each user the latest interaction is
the test item, the second latest the validation item, the rest is training.

Tie rule (part of the protocol): interactions are ordered by timestamp with a *stable* sort that
keeps the source file's row order among equal timestamps, so the later row in `u.data` counts as
the later interaction. That is what RecBole does; sorting ties by item id instead would change
the test item of hundreds of ml-100k users.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

MIN_INTERACTIONS = 3  # one test, one validation and at least one training item


@dataclass(frozen=True)
class Split:
    train: pd.DataFrame  # user, item, rating, timestamp
    valid: pd.DataFrame  # user, item
    test: pd.DataFrame   # user, item
    users: pd.DataFrame  # user, user_id
    items: pd.DataFrame  # item, item_id
    movies: pd.DataFrame  # item, item_id, title, year, genres (kept apart: training never reads it)
    dropped_duplicates: int
    train_only_users: int


def leave_one_out(ratings: pd.DataFrame, movies: pd.DataFrame) -> Split:
    """Split canonical ratings (source row order) into train / valid / test by time."""
    df = ratings.reset_index(drop=True)
    df["row"] = np.arange(len(df), dtype=np.int64)  # source order, the tie-breaker
    user_ids = np.sort(df["user_id"].unique())
    item_ids = np.sort(df["item_id"].unique())
    df["user"] = np.searchsorted(user_ids, df["user_id"]).astype(np.int32)
    df["item"] = np.searchsorted(item_ids, df["item_id"]).astype(np.int32)

    # Equivalent to a stable sort by timestamp within each user; `row` makes it explicit.
    df = df.sort_values(["user", "timestamp", "row"], kind="stable", ignore_index=True)
    # A repeated (user, item) pair would be both a training item and a held-out item: keep the
    # latest occurrence only.
    before = len(df)
    df = df.drop_duplicates(["user", "item"], keep="last", ignore_index=True)
    dropped = before - len(df)

    size = df.groupby("user", sort=False)["user"].transform("size").to_numpy()
    from_end = size - 1 - df.groupby("user", sort=False).cumcount().to_numpy()
    eligible = size >= MIN_INTERACTIONS
    test = df[eligible & (from_end == 0)]
    valid = df[eligible & (from_end == 1)]
    train = df[~eligible | (from_end >= 2)]

    users = pd.DataFrame({"user": np.arange(len(user_ids), dtype=np.int32), "user_id": user_ids})
    items = pd.DataFrame({"item": np.arange(len(item_ids), dtype=np.int32), "item_id": item_ids})
    return Split(
        train=train[["user", "item", "rating", "timestamp"]].reset_index(drop=True),
        valid=valid[["user", "item"]].reset_index(drop=True),
        test=test[["user", "item"]].reset_index(drop=True),
        users=users,
        items=items,
        movies=items.merge(movies, on="item_id", how="left"),
        dropped_duplicates=dropped,
        train_only_users=int(len(user_ids) - len(test)),
    )
