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

import dataclasses
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from ncf.errors import DataError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

A, B = TypeVar("A"), TypeVar("B")

# How data/split/train.parquet is encoded, column by column, by what writes fastest at 19.5 M rows
# (the file is written on one core): user, grouped, as deltas (0.12 s; a dictionary: 0.13 s), item
# and timestamp byte-stream-split (0.11 s and 0.19 s; as a dictionary: 0.22 s and 0.35 s, as the
# default plain: 0.28 s and 0.37 s). 107 MB instead of the default's 136 MB; each column reads back
# in 0.03-0.13 s.
TRAIN_PARQUET_OPTIONS = {"use_dictionary": False, "column_encoding": {
    "user": "DELTA_BINARY_PACKED", "item": "BYTE_STREAM_SPLIT", "timestamp": "BYTE_STREAM_SPLIT"}}
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


def _both(first: Callable[[], A], second: Callable[[], B]) -> tuple[A, B]:
    """(first(), second()), second on a helper thread: numpy's sorts, gathers and arithmetic on large
    arrays release the GIL, so the two use two cores. Each writes only its own arrays, so the
    results are the same as one after the other."""
    with ThreadPoolExecutor(1) as pool:
        later = pool.submit(second)
        return first(), later.result()


def _take(values: np.ndarray, idx: np.ndarray | None) -> np.ndarray:
    return values if idx is None else values[idx]


def _codes(ids) -> tuple[np.ndarray, np.ndarray]:
    """(code of each row, sorted unique ids): codes follow the ids' ascending order."""
    values = np.asarray(ids)
    if values.dtype.kind in "iu" and len(values):
        low = min(int(values.min()), 0)  # ids from 0 up index the table as they are
        span = int(values.max()) - low + 1
        if span <= 4 * len(values) + 1_000_000:  # integer ids in a compact range: a table, not a hash
            offset = values - low if low else values
            present = np.zeros(span, dtype=bool)
            present[offset] = True
            return (np.cumsum(present) - 1)[offset], np.flatnonzero(present) + low
    import pandas as pd

    codes, uniques = pd.factorize(values, sort=True)
    return codes.astype(np.int64), np.asarray(uniques)


def _time_order(user: np.ndarray, timestamp: np.ndarray | None, users: int) -> np.ndarray | None:
    """The rows sorted by (user, timestamp), stable: equal keys stay in file order (the tie rule).
    None when the rows are in that order already (a file grouped by user, in time order)."""
    if not len(user):
        return None
    if timestamp is None:
        key = user
    else:
        low = timestamp.min()
        span = int(timestamp.max()) - int(low) + 1
        if (int(user.max()) + 1) * span >= 2**63:  # no room for one int64 key: two keys
            return np.lexsort((timestamp, user))
        key = user * span  # one int64 key, one stable sort: faster than lexsort's two; built in place
        key += timestamp
        key -= low
    if (key[1:] >= key[:-1]).all():  # a stable sort would keep every row where it is
        return None
    # Users below users // 2 have the lower keys: sorting their rows and the others' apart (on two
    # threads), then putting the two after each other, is the same stable sort of all rows.
    if (user[1:] >= user[:-1]).all():  # rows grouped by user (MovieLens' files): the halves are slices
        cut = int(np.searchsorted(user, users // 2))
        first, second = _both(partial(_sorted_slice, key, 0, cut), partial(_sorted_slice, key, cut, len(key)))
        return np.concatenate((first, second))
    lower = user < users // 2
    parts = np.flatnonzero(lower), np.flatnonzero(~lower)
    del lower
    return np.concatenate(_both(*(partial(_sorted_rows, key, rows) for rows in parts)))


def _sorted_rows(key: np.ndarray, rows: np.ndarray) -> np.ndarray:
    return rows[np.argsort(key[rows], kind="stable")]


def _sorted_slice(key: np.ndarray, start: int, stop: int) -> np.ndarray:
    order = np.argsort(key[start:stop], kind="stable")  # a view: no gather of the keys or of the rows
    order += start
    return order


def _repeated(user: np.ndarray, item: np.ndarray, items: int, keep_latest: bool) -> np.ndarray:
    """True for each row whose (user, item) pair comes again later (keep_latest) or came before,
    rows grouped by user in time order. A stable sort of the pairs, then neighbours compared: much
    faster than hashing 20 M pairs. The users in the first half of the rows and the others are
    sorted apart, on two threads: no pair is in both."""
    repeated = np.zeros(len(user), dtype=bool)

    def mark(rows: slice) -> None:
        pair = user[rows].astype(np.int64) * items  # (user, item) as one int64, built in place
        pair += item[rows]
        ordered = np.sort(pair, kind="stable")  # first, whether any pair repeats: sorting the values
        if not (ordered[1:] == ordered[:-1]).any():  # is twice as fast as sorting their rows
            return
        order = np.argsort(pair, kind="stable")  # equal pairs stay in time order
        ordered = pair[order]
        same = ordered[1:] == ordered[:-1]
        repeated[rows][order[:-1] if keep_latest else order[1:]] = same

    cut = int(np.searchsorted(user, user[len(user) // 2])) if len(user) else 0  # a user's first row
    _both(partial(mark, slice(0, cut)), partial(mark, slice(cut, len(user))))
    return repeated


def _compact(codes: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(codes renumbered 0, 1, ... over the codes left, in their order, as int32; the codes left)."""
    present = np.bincount(codes, minlength=size) > 0
    left = np.flatnonzero(present)
    if len(left) == size:
        return codes.astype(np.int32), left
    return (np.cumsum(present) - 1).astype(np.int32)[codes], left


def _kept(idx: np.ndarray | None, user: np.ndarray, item: np.ndarray, drop: np.ndarray):
    """(idx, user, item) without the rows `drop` marks (idx None: every row, in place)."""
    keep = ~drop
    rows = np.flatnonzero(keep) if idx is None else idx[keep]
    return rows, user[keep], item[keep]


def leave_one_out(interactions, items: pd.DataFrame | None = None, rules: Rules = Rules(),
                  name: str = "the interactions") -> Split:
    """Split canonical interactions (source row order) into train / valid / test by time.

    `interactions`: a DataFrame, an Arrow table (the download's, ncf.interactions), or a mapping
    of column name to array (the split stage's, read with pyarrow)."""
    if hasattr(interactions, "column_names"):  # an Arrow table: its columns as numpy arrays
        interactions = {name: interactions.column(name).to_numpy() for name in interactions.column_names}
    rows = len(interactions["user_id"])
    dropped = dict.fromkeys(DROP_REASONS, 0)
    keep = None  # every row is a positive
    if rules.positives == "rated":
        if "rating" not in interactions:
            raise DataError(f"{name} has no rating column, so split.positives: rated cannot pick positives; "
                            "name the column (data.file.rating) or set split.positives: all")
        keep = np.asarray(interactions["rating"]) >= rules.min_rating
        dropped["below_min_rating"] = int(rows - keep.sum())

    (user_code, user_ids), (item_code, item_ids) = _both(partial(_codes, interactions["user_id"]),
                                                         partial(_codes, interactions["item_id"]))
    has_time = "timestamp" in interactions
    timestamp = np.asarray(interactions["timestamp"]) if has_time else None
    if keep is None or keep.all():  # every row kept: sort the columns as they are, without copies
        idx = _time_order(user_code, timestamp, len(user_ids))  # None: in order already
    else:
        idx = np.flatnonzero(keep)  # source rows, in file order
        order = _time_order(user_code[idx], timestamp[idx] if has_time else None, len(user_ids))
        idx = _take(idx, order)
    user, item = _both(partial(_take, user_code, idx), partial(_take, item_code, idx))
    del user_code, item_code

    repeated = _repeated(user, item, len(item_ids), keep_latest=rules.repeats == "latest")
    dropped["repeated"] = int(repeated.sum())
    if dropped["repeated"]:
        idx, user, item = _kept(idx, user, item, repeated)
    del repeated

    if rules.min_item_interactions > 1:
        rare = np.bincount(item, minlength=len(item_ids))[item] < rules.min_item_interactions
        dropped["rare_item"] = int(rare.sum())
        idx, user, item = _kept(idx, user, item, rare)

    size = np.bincount(user, minlength=len(user_ids))
    if rules.short_users == "drop" and (size[size > 0] < MIN_INTERACTIONS).any():
        short = size[user] < MIN_INTERACTIONS
        dropped["short_user"] = int(short.sum())
        idx, user, item = _kept(idx, user, item, short)
    if not (size >= MIN_INTERACTIONS).any():
        raise DataError(f"{name}: no user has {MIN_INTERACTIONS} interactions after the split's rules, so no "
                        f"user can be held out ({len(user):,} of {rows:,} rows kept); give more data, or relax "
                        "split.positives / split.min_item_interactions")

    # Contiguous ids over what is left, in the order of the ids as in the data.
    (user, user_left), (item, item_left) = _both(partial(_compact, user, len(user_ids)),
                                                 partial(_compact, item, len(item_ids)))

    # Rows are grouped by user, latest last: a held-out user's last row is the test item, the one
    # before it the validation item (users too short to hold out keep every row for training).
    ends = np.r_[np.flatnonzero(user[1:] != user[:-1]) + 1, len(user)]
    test = ends[np.diff(ends, prepend=0) >= MIN_INTERACTIONS] - 1
    valid = test - 1
    train = np.ones(len(user), dtype=bool)
    train[test] = train[valid] = False

    import pandas as pd  # here, not above: the split stage imports it meanwhile (ncf.stage.import_meanwhile)

    train_user, train_item = _both(partial(user.__getitem__, train), partial(item.__getitem__, train))
    train_columns = {"user": train_user, "item": train_item}
    if has_time:
        train_columns["timestamp"] = timestamp[train] if idx is None else timestamp[idx[train]]
    train_frame = pd.DataFrame(train_columns, copy=False)
    users = pd.DataFrame({"user": np.arange(len(user_left), dtype=np.int32), "user_id": user_ids[user_left]})
    item_frame = pd.DataFrame({"item": np.arange(len(item_left), dtype=np.int32), "item_id": item_ids[item_left]})
    split = Split(
        train=train_frame,
        valid=pd.DataFrame({"user": user[valid], "item": item[valid]}),
        test=pd.DataFrame({"user": user[test], "item": item[test]}),
        users=users,
        items=item_frame,
        catalog=item_frame,
        rows=rows,
        dropped=dropped,
    )
    return split if items is None else with_catalog(split, items)


def with_catalog(split: Split, items: pd.DataFrame | pa.Table) -> Split:
    """`split` whose catalog has the columns of `items` (canonical items: item_id, title, ...), as
    leave_one_out(..., items) gives it."""
    if hasattr(items, "column_names"):  # an Arrow table (the download's, where there is no items file)
        items = items.to_pandas()
    return dataclasses.replace(split, catalog=split.items.merge(items, on="item_id", how="left"))


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
