"""From canonical interactions to the protocol's split: positives, contiguous ids, leave-one-out.

Rules, applied in this order, each counted by reason in the data report (`report`):
1. positives: every interaction (the paper), or with `positives: rated` those whose rating is
   at least `min_rating` (`below_min_rating`);
2. time order: each user's interactions by timestamp with a *stable* sort that keeps the
   source file's row order among equal timestamps (and is the file order where the source has no
   timestamp), so the later row in `u.data` counts as the later interaction. That is what RecBole
   does; sorting ties by item id instead would change the test item of hundreds of ml-100k users;
3. a repeated (user, item) pair is kept once, at its latest interaction (`repeats: first`: its
   earliest) (`repeated`), since it would otherwise be both a training and a held-out item;
4. items with fewer than `min_item_interactions` users are dropped (`rare_item`), once, not
   repeated until stable;
5. users with fewer than 3 interactions (one test, one validation, at least one training) stay
   for training only, or with `short_users: drop` are dropped (`short_user`).
Then users and items get contiguous 0-based ids (`user`, `item`) in the ascending order of their
ids as in the data (numbers by value, text by character codes: zero-padded text ids of one width
sort like the numbers), and each user's latest interaction is the test item, the second latest
the validation item, the rest training.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ncf.errors import DataError

MIN_INTERACTIONS = 3  # one test, one validation and at least one training item
DROP_REASONS = ("below_min_rating", "repeated", "rare_item", "short_user")


@dataclass(frozen=True)
class Rules:
    """The preprocessing choices (params.yaml `split:`)."""

    positives: str = "all"
    min_rating: float = 4.0
    repeats: str = "latest"
    short_users: str = "train"
    min_item_interactions: int = 1


@dataclass(frozen=True)
class Split:
    train: pd.DataFrame  # user, item, and timestamp where the source has one
    valid: pd.DataFrame  # user, item
    test: pd.DataFrame   # user, item
    users: pd.DataFrame  # user, user_id
    items: pd.DataFrame  # item, item_id
    catalog: pd.DataFrame  # item, item_id, title, ... (kept apart: training never reads it)
    rows: int  # interactions read from the source
    dropped: dict[str, int] = field(default_factory=dict)  # rows dropped, by reason (DROP_REASONS)

    @property
    def train_only_users(self) -> int:
        return len(self.users) - len(self.test)


def _codes(ids: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(code of each row, sorted unique ids): codes follow the ids' ascending order."""
    codes, uniques = pd.factorize(ids, sort=True)
    return codes.astype(np.int64), np.asarray(uniques)


def leave_one_out(interactions: pd.DataFrame, items: pd.DataFrame | None = None, rules: Rules = Rules(),
                  name: str = "the interactions") -> Split:
    """Split canonical interactions (source row order) into train / valid / test by time."""
    rows = len(interactions)
    dropped = dict.fromkeys(DROP_REASONS, 0)
    keep = np.ones(rows, dtype=bool)
    if rules.positives == "rated":
        if "rating" not in interactions:
            raise DataError(f"{name} has no rating column, so split.positives: rated cannot pick positives; "
                            "name the column (data.file.rating) or set split.positives: all")
        keep = interactions["rating"].to_numpy() >= rules.min_rating
        dropped["below_min_rating"] = int(rows - keep.sum())

    user_code, user_ids = _codes(interactions["user_id"])
    item_code, item_ids = _codes(interactions["item_id"])
    has_time = "timestamp" in interactions
    idx = np.flatnonzero(keep)  # source rows, in file order
    user, item = user_code[idx], item_code[idx]
    # Stable: among equal (user, timestamp) keys, rows stay in file order (the tie rule).
    if has_time:
        order = np.lexsort((interactions["timestamp"].to_numpy()[idx], user))
    else:
        order = np.argsort(user, kind="stable")
    idx, user, item = idx[order], user[order], item[order]

    pair = user * len(item_ids) + item
    repeated = pd.Series(pair).duplicated(keep="last" if rules.repeats == "latest" else "first").to_numpy()
    dropped["repeated"] = int(repeated.sum())
    idx, user, item = idx[~repeated], user[~repeated], item[~repeated]

    if rules.min_item_interactions > 1:
        rare = np.bincount(item, minlength=len(item_ids))[item] < rules.min_item_interactions
        dropped["rare_item"] = int(rare.sum())
        idx, user, item = idx[~rare], user[~rare], item[~rare]

    size = np.bincount(user, minlength=len(user_ids))
    short = size[user] < MIN_INTERACTIONS
    if rules.short_users == "drop":
        dropped["short_user"] = int(short.sum())
        idx, user, item, short = idx[~short], user[~short], item[~short], short[~short]
    if short.all():
        raise DataError(f"{name}: no user has {MIN_INTERACTIONS} interactions after the split's rules, so no "
                        f"user can be held out ({len(idx):,} of {rows:,} rows kept); give more data, or relax "
                        "split.positives / split.min_item_interactions")

    # Contiguous ids over what is left, in the order of the ids as in the data.
    user_left = np.flatnonzero(np.bincount(user, minlength=len(user_ids)))
    item_left = np.flatnonzero(np.bincount(item, minlength=len(item_ids)))
    user = np.searchsorted(user_left, user).astype(np.int32)
    item = np.searchsorted(item_left, item).astype(np.int32)

    # Rows are grouped by user, latest last: position from each user's end.
    starts = np.flatnonzero(np.r_[True, user[1:] != user[:-1]])
    ends = np.r_[starts[1:], len(user)]
    from_end = np.repeat(ends, ends - starts) - 1 - np.arange(len(user))
    held = ~short
    test, valid = held & (from_end == 0), held & (from_end == 1)
    train = ~(test | valid)

    train_frame = pd.DataFrame({"user": user[train], "item": item[train]})
    if has_time:
        train_frame["timestamp"] = interactions["timestamp"].to_numpy()[idx[train]]
    users = pd.DataFrame({"user": np.arange(len(user_left), dtype=np.int32), "user_id": user_ids[user_left]})
    item_frame = pd.DataFrame({"item": np.arange(len(item_left), dtype=np.int32), "item_id": item_ids[item_left]})
    catalog = item_frame if items is None else item_frame.merge(items, on="item_id", how="left")
    return Split(
        train=train_frame,
        valid=pd.DataFrame({"user": user[valid], "item": item[valid]}),
        test=pd.DataFrame({"user": user[test], "item": item[test]}),
        users=users,
        items=item_frame,
        catalog=catalog,
        rows=rows,
        dropped=dropped,
    )


def report(split: Split) -> dict:
    """The data report (metrics/data.json): what the split kept and dropped, for `dvc metrics diff`."""
    users, items = len(split.users), len(split.items)
    interactions = len(split.train) + len(split.valid) + len(split.test)
    return {
        "rows": split.rows,
        "users": users,
        "items": items,
        "interactions": interactions,
        "density": round(interactions / (users * items), 6),
        "train": len(split.train),
        "valid": len(split.valid),
        "test": len(split.test),
        "users_tested": len(split.test),
        "users_train_only": split.train_only_users,
        "dropped": dict(split.dropped),
    }
