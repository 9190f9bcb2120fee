"""ncf.split: leave-one-out by time, the stable tie rule, contiguous ids and their mapping."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ncf.errors import DataError
from ncf.split import DROP_REASONS, MIN_INTERACTIONS, Rules, _time_order, leave_one_out, report, with_catalog


def frame(rows, columns=("user_id", "item_id", "rating", "timestamp")) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=list(columns))
    return df.astype({"user_id": "int32", "item_id": "int32", "rating": "float32", "timestamp": "int64"})


def movies_for(item_ids) -> pd.DataFrame:
    ids = sorted(set(item_ids))
    return pd.DataFrame({
        "item_id": np.array(ids, dtype=np.int32),
        "title": [f"Movie {i}" for i in ids],
        "year": [1990.0 + i % 10 for i in ids],
        "genres": ["Drama"] * len(ids),
    })


def to_original(split, part: pd.DataFrame) -> pd.DataFrame:
    """Map a split table back to MovieLens ids through split.users / split.items."""
    out = part.merge(split.users, on="user", how="left").merge(split.items[["item", "item_id"]],
                                                              on="item", how="left")
    assert out["user_id"].notna().all() and out["item_id"].notna().all()
    return out


def reference_split(ratings: pd.DataFrame, keep_latest: bool = True):
    """Independent reference: per user, dedupe (keep latest), order by (timestamp, file row)."""
    per_user: dict[int, dict[int, tuple[int, int]]] = {}
    for row, (u, i, t) in enumerate(zip(ratings["user_id"], ratings["item_id"], ratings["timestamp"])):
        key = (int(t), row)
        items = per_user.setdefault(int(u), {})
        if int(i) not in items or (key > items[int(i)]) == keep_latest:
            items[int(i)] = key
    train, valid, test = set(), {}, {}
    for u, items in per_user.items():
        ordered = [i for i, _ in sorted(items.items(), key=lambda kv: kv[1])]
        if len(ordered) >= 3:
            test[u], valid[u] = ordered[-1], ordered[-2]
            ordered = ordered[:-2]
        train |= {(u, i) for i in ordered}
    return train, valid, test


# --- on the shared synthetic release -----------------------------------------------------------

def test_matches_reference_on_synthetic_release(ratings, movies):
    split = leave_one_out(ratings, movies)
    train, valid, test = reference_split(ratings)
    got_test = to_original(split, split.test)
    got_valid = to_original(split, split.valid)
    got_train = to_original(split, split.train)
    assert dict(zip(got_test["user_id"], got_test["item_id"])) == test
    assert dict(zip(got_valid["user_id"], got_valid["item_id"])) == valid
    assert set(zip(got_train["user_id"], got_train["item_id"])) == train
    assert len(got_test) == len(test) and len(got_valid) == len(valid) and len(got_train) == len(train)


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), id_step=st.sampled_from([1, 7, 10**12]), time_step=st.sampled_from([1, 2**61]),
       keep_latest=st.booleans())
def test_matches_reference_on_random_data_with_ties_repeats_and_sparse_ids(seed, id_step, time_step, keep_latest):
    # Negative and sparse ids (a table or a hash for the codes), timestamps too far apart for one
    # int64 sort key (the lexsort fallback), many ties and repeated pairs.
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    ratings = pd.DataFrame({"user_id": rng.integers(-2, 5, n), "item_id": rng.integers(-2, 8, n) * id_step,
                            "timestamp": rng.integers(0, 4, n) * time_step})
    train, valid, test = reference_split(ratings, keep_latest)
    rules = Rules(repeats="latest" if keep_latest else "first")
    if not test:
        with pytest.raises(DataError, match="no user has 3 interactions"):
            leave_one_out(ratings, rules=rules)
        return
    split = leave_one_out(ratings, rules=rules)
    assert set(to_original(split, split.train)[["user_id", "item_id"]].itertuples(index=False)) == train
    assert dict(to_original(split, split.valid)[["user_id", "item_id"]].itertuples(index=False)) == valid
    assert dict(to_original(split, split.test)[["user_id", "item_id"]].itertuples(index=False)) == test
    assert split.dropped["repeated"] == len(ratings) - len(ratings.drop_duplicates(["user_id", "item_id"]))
    assert split.users["user_id"].tolist() == sorted(set(ratings["user_id"]))
    assert split.items["item_id"].tolist() == sorted(set(ratings["item_id"]))


def test_ids_are_contiguous_and_map_back(ratings, movies):
    split = leave_one_out(ratings, movies)
    user_ids = sorted(ratings["user_id"].unique())
    item_ids = sorted(ratings["item_id"].unique())
    assert split.users["user"].tolist() == list(range(len(user_ids)))
    assert split.items["item"].tolist() == list(range(len(item_ids)))
    # In the order of MovieLens's own ids.
    assert split.users["user_id"].tolist() == user_ids
    assert split.items["item_id"].tolist() == item_ids
    # Every interaction maps back to a rating that exists in the source.
    source = set(zip(ratings["user_id"], ratings["item_id"]))
    everything = pd.concat([split.train[["user", "item"]], split.valid, split.test])
    back = to_original(split, everything)
    assert set(zip(back["user_id"], back["item_id"])) <= source
    assert len(back) == len(source)  # no duplicates in the synthetic source: nothing lost
    for part in (split.train, split.valid, split.test):
        assert part["user"].between(0, len(user_ids) - 1).all()
        assert part["item"].between(0, len(item_ids) - 1).all()


def test_items_carry_movie_metadata(ratings, movies):
    split = leave_one_out(ratings, movies)
    merged = split.catalog.merge(movies, on="item_id", suffixes=("", "_src"))
    assert len(merged) == len(split.catalog)
    assert (merged["title"] == merged["title_src"]).all()
    assert list(split.catalog.columns[:2]) == ["item", "item_id"]
    assert {"title", "year", "genres"} <= set(split.catalog.columns)
    # Training depends on the ids table only, so titles from another source change nothing there.
    assert list(split.items.columns) == ["item", "item_id"]


def test_train_keeps_the_timestamp_not_the_rating(ratings, movies):
    # Implicit feedback: once the positives are chosen the rating plays no part, and a source
    # without ratings gives the same split files as one with them.
    split = leave_one_out(ratings, movies)
    assert list(split.train.columns) == ["user", "item", "timestamp"]
    assert list(split.valid.columns) == ["user", "item"]
    assert list(split.test.columns) == ["user", "item"]
    back = to_original(split, split.train)
    source = ratings.set_index(["user_id", "item_id"])
    for u, i, t in zip(back["user_id"], back["item_id"], back["timestamp"]):
        assert source.loc[(u, i), "timestamp"] == t
    without = leave_one_out(ratings.drop(columns="rating"), movies)
    for name in ("train", "valid", "test", "users", "items"):
        pd.testing.assert_frame_equal(getattr(without, name), getattr(split, name), check_exact=True)


def test_without_timestamps_the_file_order_is_the_time_order():
    rows = frame([(1, 10, 3, 0), (1, 11, 3, 0), (2, 10, 3, 0), (1, 12, 3, 0), (1, 13, 3, 0)])
    split = leave_one_out(rows.drop(columns=["timestamp", "rating"]))
    assert list(split.train.columns) == ["user", "item"]
    assert to_original(split, split.test)["item_id"].tolist() == [13]
    assert to_original(split, split.valid)["item_id"].tolist() == [12]


def test_short_users_stay_in_train_only(ratings, movies):
    split = leave_one_out(ratings, movies)
    counts = ratings.groupby("user_id").size()
    short = set(counts[counts < MIN_INTERACTIONS].index)
    assert short, "the synthetic data must contain a short user"
    held = set(to_original(split, split.test)["user_id"]) | set(to_original(split, split.valid)["user_id"])
    assert not (held & short)
    train_users = set(to_original(split, split.train)["user_id"])
    assert short <= train_users
    assert split.train_only_users == len(short)
    assert split.dropped == dict.fromkeys(DROP_REASONS, 0)


# --- hand-made cases ---------------------------------------------------------------------------

def test_latest_is_test_second_latest_is_valid():
    # Rows deliberately not in time order.
    ratings = frame([
        (5, 100, 3, 30),
        (5, 101, 4, 10),
        (5, 102, 5, 50),
        (5, 103, 1, 20),
        (5, 104, 2, 40),
    ])
    split = leave_one_out(ratings, movies_for(ratings["item_id"]))
    assert to_original(split, split.test)["item_id"].tolist() == [102]
    assert to_original(split, split.valid)["item_id"].tolist() == [104]
    assert sorted(to_original(split, split.train)["item_id"]) == [100, 101, 103]


def test_tie_rule_later_row_in_file_is_later(unchanged):
    # The last three ratings share timestamp 99; in the file their order is 30, 10, 20.
    rows = [
        (1, 5, 3, 1),
        (1, 30, 4, 99),
        (1, 10, 5, 99),
        (1, 20, 1, 99),
    ]
    ratings = unchanged(frame(rows))
    split = leave_one_out(ratings, movies_for(ratings["item_id"]))
    # Stable by file row: 30, then 10, then 20 -> test 20, valid 10.
    assert to_original(split, split.test)["item_id"].tolist() == [20]
    assert to_original(split, split.valid)["item_id"].tolist() == [10]
    assert sorted(to_original(split, split.train)["item_id"]) == [5, 30]
    # Sorting ties by item id would have chosen differently (test 30, valid 20).
    by_item = ratings.sort_values(["timestamp", "item_id"])["item_id"].tolist()
    assert (by_item[-1], by_item[-2]) == (30, 20)
    assert (by_item[-1], by_item[-2]) != (20, 10)


def test_tie_rule_uses_file_order_not_index_labels():
    # A shuffled index must not matter: only the row position in the frame is the file order.
    ratings = frame([(1, 1, 3, 5), (1, 2, 3, 7), (1, 3, 3, 7), (1, 4, 3, 7)])
    ratings.index = [40, 10, 30, 20]
    split = leave_one_out(ratings, movies_for(ratings["item_id"]))
    assert to_original(split, split.test)["item_id"].tolist() == [4]
    assert to_original(split, split.valid)["item_id"].tolist() == [3]


def test_duplicates_keep_only_the_latest():
    ratings = frame([
        (1, 7, 1, 10),   # older copy of (1, 7): dropped
        (1, 8, 2, 20),
        (1, 9, 3, 30),
        (1, 7, 5, 40),   # latest copy of (1, 7): kept, and it is the latest overall -> test
        (1, 6, 4, 35),
        (2, 7, 1, 5),
        (2, 7, 2, 5),    # same timestamp: the later row wins
    ])
    split = leave_one_out(ratings, movies_for(ratings["item_id"]))
    assert split.dropped["repeated"] == 2
    test = to_original(split, split.test)
    valid = to_original(split, split.valid)
    train = to_original(split, split.train)
    assert dict(zip(test["user_id"], test["item_id"])) == {1: 7}
    assert dict(zip(valid["user_id"], valid["item_id"])) == {1: 6}
    assert sorted(zip(train["user_id"], train["item_id"])) == [(1, 8), (1, 9), (2, 7)]
    assert split.train_only_users == 1
    all_pairs = pd.concat([train[["user_id", "item_id"]], valid[["user_id", "item_id"]],
                           test[["user_id", "item_id"]]])
    assert not all_pairs.duplicated().any()


def test_minimum_interactions():
    ratings = frame([(3, 10 + j, 4, 100 + j) for j in range(MIN_INTERACTIONS)] + [(4, 10, 4, 1)])
    split = leave_one_out(ratings, movies_for(ratings["item_id"]))
    assert len(split.test) == 1 and len(split.valid) == 1
    assert len(split.train) == 2  # user 3's first, and user 4's only interaction
    assert split.train_only_users == 1


@pytest.mark.parametrize("n", [1, 2])
def test_data_where_no_user_can_be_held_out_is_refused_in_one_line(n):
    ratings = frame([(3, 10 + j, 4, 100 + j) for j in range(n)] + [(4, 10, 4, 1)])
    with pytest.raises(DataError) as info:
        leave_one_out(ratings, name="input/tiny.csv")
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("input/tiny.csv: no user has 3 interactions")


# --- the preprocessing rules (params split:) --------------------------------------------------

def test_positives_by_rating_drop_and_count_the_others():
    rows = frame([(1, 10, 5, 1), (1, 11, 2, 2), (1, 12, 4, 3), (1, 13, 4, 4), (1, 14, 3, 5)])
    split = leave_one_out(rows, rules=Rules(positives="rated", min_rating=4.0))
    assert split.dropped["below_min_rating"] == 2
    assert to_original(split, split.test)["item_id"].tolist() == [13]
    assert sorted(split.items["item_id"]) == [10, 12, 13]  # dropped items get no id
    with pytest.raises(DataError, match="no rating column"):
        leave_one_out(rows.drop(columns="rating"), rules=Rules(positives="rated"))


def test_repeats_first_keeps_the_earliest_interaction():
    rows = frame([(1, 7, 1, 10), (1, 8, 2, 20), (1, 9, 3, 30), (1, 7, 5, 40)])
    latest = leave_one_out(rows)
    first = leave_one_out(rows, rules=Rules(repeats="first"))
    assert to_original(latest, latest.test)["item_id"].tolist() == [7]
    assert to_original(first, first.test)["item_id"].tolist() == [9]
    assert first.dropped["repeated"] == latest.dropped["repeated"] == 1


def test_rare_items_and_short_users_are_dropped_by_rule_and_counted():
    rows = frame([(u, i, 4, 10 * u + i) for u in (1, 2, 3) for i in (1, 2, 3)]
                 + [(1, 99, 4, 100), (4, 1, 4, 1), (4, 2, 4, 2)])
    kept = leave_one_out(rows)
    assert 99 in kept.items["item_id"].tolist() and kept.train_only_users == 1
    split = leave_one_out(rows, rules=Rules(min_item_interactions=2, short_users="drop"))
    assert split.dropped == {"below_min_rating": 0, "repeated": 0, "rare_item": 1, "short_user": 2}
    assert 99 not in split.items["item_id"].tolist() and 4 not in split.users["user_id"].tolist()
    assert split.train_only_users == 0
    summary = report(split)
    assert summary["rows"] == len(rows) == summary["interactions"] + sum(summary["dropped"].values())
    assert summary["users"] == 3 and summary["items"] == 3 and summary["users_tested"] == 3
    assert summary["density"] == pytest.approx(9 / 9)


def test_text_ids_map_in_character_order_and_zero_padded_ids_like_the_numbers(ratings):
    as_text = ratings.assign(user_id=ratings["user_id"].map("{:05d}".format),
                             item_id=ratings["item_id"].map("{:05d}".format))
    numbers, text = leave_one_out(ratings), leave_one_out(as_text)
    for name in ("train", "valid", "test"):
        pd.testing.assert_frame_equal(getattr(text, name), getattr(numbers, name), check_exact=True)
    assert text.users["user_id"].tolist() == [f"{u:05d}" for u in numbers.users["user_id"]]
    # Not zero-padded: "10" sorts before "2", and the ids follow that order.
    plain = leave_one_out(ratings.assign(user_id=ratings["user_id"].astype(str)))
    assert plain.users["user_id"].tolist() == sorted(str(u) for u in numbers.users["user_id"])


def test_input_not_mutated(ratings, movies, unchanged):
    # The `ratings` and `movies` fixtures assert this after the test; check explicitly too,
    # including the index and the absence of helper columns.
    unchanged(ratings)
    columns = list(ratings.columns)
    leave_one_out(ratings, movies)
    assert list(ratings.columns) == columns
    assert "row" not in ratings.columns and "user" not in ratings.columns


def test_output_dtypes(ratings, movies):
    split = leave_one_out(ratings, movies)
    for part in (split.train, split.valid, split.test):
        assert np.issubdtype(part["user"].dtype, np.integer)
        assert np.issubdtype(part["item"].dtype, np.integer)
        assert part.index.equals(pd.RangeIndex(len(part)))


def test_columns_as_arrays_split_as_the_frame_and_the_catalog_joins_after(ratings, movies):
    # The split stage reads the interactions as numpy arrays (no pandas), and joins the catalog after.
    frame_split = leave_one_out(ratings, movies)
    arrays = {name: ratings[name].to_numpy() for name in ratings.columns}
    array_split = with_catalog(leave_one_out(arrays), movies)
    for name in ("train", "valid", "test", "users", "items", "catalog"):
        pd.testing.assert_frame_equal(getattr(array_split, name), getattr(frame_split, name), check_exact=True)
    assert array_split.dropped == frame_split.dropped and array_split.rows == frame_split.rows


@pytest.mark.parametrize("grouped", [False, True])
@pytest.mark.parametrize("seed", range(3))
def test_two_thread_halves_give_the_one_thread_order(seed, grouped):
    # Rows out of order, many users, ties and repeats: the split sorts each half of the users on its
    # own thread; the result must be the order of one stable sort of all rows. Grouped: the rows
    # by user but not by time within a user (MovieLens-20M's file order), where the halves are slices.
    rng = np.random.default_rng(seed)
    n = 20_000
    ratings = pd.DataFrame({"user_id": rng.integers(0, 500, n), "item_id": rng.integers(0, 300, n),
                            "timestamp": rng.integers(0, 50, n)})
    if grouped:
        ratings = ratings.sort_values("user_id", kind="stable", ignore_index=True)
        user = ratings["user_id"].to_numpy()
        want = np.lexsort((np.arange(n), ratings["timestamp"].to_numpy(), user))
        assert (_time_order(user, ratings["timestamp"].to_numpy(), 500) == want).all()
    split = leave_one_out(ratings)
    order = np.lexsort((np.arange(n), ratings["timestamp"].to_numpy(), ratings["user_id"].to_numpy()))
    ordered = ratings.iloc[order]
    latest = ordered.drop_duplicates(["user_id", "item_id"], keep="last")
    assert split.dropped["repeated"] == n - len(latest)
    got = pd.concat([to_original(split, split.train)[["user_id", "item_id"]],
                     to_original(split, split.valid)[["user_id", "item_id"]],
                     to_original(split, split.test)[["user_id", "item_id"]]])
    assert set(got.itertuples(index=False)) == set(latest[["user_id", "item_id"]].itertuples(index=False))
    last = latest.groupby("user_id").tail(1)
    held = last[last["user_id"].map(latest.groupby("user_id").size()) >= MIN_INTERACTIONS]
    assert dict(to_original(split, split.test)[["user_id", "item_id"]].itertuples(index=False)) == \
        dict(held[["user_id", "item_id"]].itertuples(index=False))
    train = to_original(split, split.train)
    source = latest.set_index(["user_id", "item_id"])["timestamp"]
    assert (train["timestamp"].to_numpy() == source.loc[list(zip(train["user_id"], train["item_id"]))].to_numpy()).all()
