"""ncf.interactions and ncf.sources: a team's own file, in every format, into the canonical tables.

Written the way a user would write them: CSV and TSV with a header (gzipped too), parquet; ids as
numbers or text; times as epoch seconds or ISO-8601 text. Bad files give one line naming the file,
what is wrong and the fix.
"""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from ncf.config import DataParams, FileParams
from ncf.errors import DataError
from ncf.interactions import (Columns, _probe, canonical_interactions, file_format, read_interactions, read_items,
                              read_table)
from ncf.sources import load
from ncf.split import leave_one_out

COLUMNS = Columns(user="user", item="item", timestamp="when", rating="stars")


def write(path, text: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def read_frame(path, columns, fmt="auto"):
    """read_interactions' Arrow table as a DataFrame, to compare and index."""
    return read_interactions(path, columns, fmt).to_pandas()


CSV = "user,item,stars,when,device\n7,3,4.5,100,web\n7,5,1,90,app\n2,3,5,95,web\n"


@pytest.mark.parametrize("name, fmt", [("a.csv", "auto"), ("a.csv.gz", "auto"), ("a.txt", "csv")])
def test_csv_plain_gzipped_or_named_by_param_read_the_same(tmp_path, name, fmt):
    got = read_frame(write(tmp_path / name, CSV), COLUMNS, fmt)
    assert list(got.columns) == ["user_id", "item_id", "timestamp", "rating"]
    assert got["user_id"].tolist() == [7, 7, 2] and got["item_id"].tolist() == [3, 5, 3]
    assert got["timestamp"].tolist() == [100, 90, 95] and got["rating"].tolist() == [4.5, 1.0, 5.0]
    assert [got[c].dtype for c in got.columns] == [np.int64, np.int64, np.int64, np.float64]


def test_tsv_and_parquet_give_the_same_table_as_csv(tmp_path):
    want = read_frame(write(tmp_path / "a.csv", CSV), COLUMNS)
    tsv = read_frame(write(tmp_path / "a.tsv.gz", CSV.replace(",", "\t")), COLUMNS)
    pq.write_table(pa.Table.from_pandas(pd.read_csv(tmp_path / "a.csv")), tmp_path / "a.parquet")
    parquet = read_frame(tmp_path / "a.parquet", COLUMNS)
    pd.testing.assert_frame_equal(tsv, want, check_exact=True)
    pd.testing.assert_frame_equal(parquet, want, check_exact=True)


def test_optional_columns_are_left_out_not_invented(tmp_path):
    got = read_frame(write(tmp_path / "a.csv", CSV), Columns(user="user", item="item", timestamp=""))
    assert list(got.columns) == ["user_id", "item_id"]


def test_text_ids_stay_text_and_zero_padding_is_kept(tmp_path):
    text = "user,item,when\n0007,B-3,100\n0002,B-3,95\n0010,x,1\n"
    got = read_frame(write(tmp_path / "a.csv", text), Columns("user", "item", "when"))
    assert got["user_id"].tolist() == ["0007", "0002", "0010"]
    assert got["item_id"].tolist() == ["B-3", "B-3", "x"]


def test_iso_times_with_and_without_offset_become_epoch_seconds(tmp_path):
    text = ("user,item,when\n1,1,2024-05-01T12:00:00Z\n1,2,2024-05-01T14:00:00+02:00\n"
            "1,3,2024-05-01 12:00:01.750\n1,4,2024-05-02\n")
    got = read_frame(write(tmp_path / "a.csv", text), Columns("user", "item", "when"))
    noon = 1714564800  # 2024-05-01T12:00:00Z
    assert got["timestamp"].tolist() == [noon, noon, noon + 1, noon + 12 * 3600]


def test_iso_times_in_parquet_as_arrow_timestamps(tmp_path):
    when = pd.to_datetime(["2024-05-01T12:00:00Z", "2024-05-01T12:00:05Z"])
    pq.write_table(pa.table({"user": ["a", "a"], "item": [1, 2], "when": when}), tmp_path / "a.parquet")
    got = read_frame(tmp_path / "a.parquet", Columns("user", "item", "when"))
    assert got["timestamp"].tolist() == [1714564800, 1714564805]


def test_items_file_gives_titles_and_keeps_its_other_columns(tmp_path):
    write(tmp_path / "items.csv", "item_id,name,genre\n3,Three,Drama\n5,Five,\n")
    items = read_items(tmp_path / "items.csv", "item_id", "name")
    assert list(items.columns) == ["item_id", "title", "genre"]
    assert items["item_id"].tolist() == [3, 5] and items["title"].tolist() == ["Three", "Five"]


def test_an_items_file_missing_ids_is_a_warning_naming_how_many(tmp_path):
    write(tmp_path / "input" / "a.csv", CSV + "7,4,3,110,web\n")
    write(tmp_path / "input" / "items.csv", "item,title\n3,Three\n4,Four\n")
    logged = []
    data = DataParams(dataset="file", file=FileParams(
        interactions=str(tmp_path / "input" / "a.csv"), items=str(tmp_path / "input" / "items.csv"),
        user="user", item="item", timestamp="when", rating="stars"))
    interactions, items, _ = load(data, log=logged.append)
    assert len(interactions) == 4
    assert len(logged) == 1 and "no title for 1 of the items" in logged[0] and "items.csv" in logged[0]
    split = leave_one_out(interactions, items)
    assert split.catalog.set_index("item_id")["title"].isna().tolist() == [False, False, True]


# --- bad files: one line naming the file, what is wrong and the fix ---------------------------

BAD = {
    "empty": ("", "is empty"),
    "header only": ("user,item,when\n", "has a header but no rows"),
    "wrong delimiter": ("user;item;when\n1;2;3\n", "no column 'user' (data.file.user)"),
    "missing column": ("user,itm,when\n1,2,3\n", "no column 'item' (data.file.item)"),
    "empty id": ("user,item,when\n1,2,3\n,4,5\n", "1 rows have an empty user id (first at line 3)"),
    "NaN id": ("user,item,when\n1,2,3\n1,,5\n", "1 rows have an empty item id (first at line 3)"),
    "timestamp": ("user,item,when\n1,2,3\n1,4,yesterday\n", "timestamp 'yesterday' at line 3 does not parse"),
}


def user_ids(values):
    table = pa.table({"u": pa.array(values, type=pa.string()), "i": pa.array(["1"] * len(values))})
    canonical = canonical_interactions(table, Columns(user="u", item="i", timestamp=""), "f.csv")
    return canonical.column("user_id").to_pylist()


@pytest.mark.parametrize("ids", [["1", "20", "0", "-5", "-0"], ["9223372036854775807", "3"]])
def test_text_written_as_numbers_are_becomes_int64(ids):
    assert user_ids(ids) == [int(i) for i in ids]


@pytest.mark.parametrize("odd", ["0001", "-01", "00", "0x1f", "+2", " 3", "4 ", "1.0", "9223372036854775808", "u7"])
def test_any_other_text_keeps_every_id_as_text(odd):
    assert user_ids(["1", odd, "22"]) == ["1", odd, "22"]


@pytest.mark.parametrize("blank", ["", "  ", None])
def test_blank_or_missing_text_ids_are_refused_with_the_line(blank):
    with pytest.raises(DataError, match=r"f.csv: 1 rows have an empty user id \(first at line 3\)"):
        user_ids(["1", blank, "22"])


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_file_is_one_line_naming_the_file(tmp_path, case):
    text, fragment = BAD[case]
    path = write(tmp_path / "input" / "bad.csv", text)
    with pytest.raises(DataError) as info:
        read_frame(path, Columns("user", "item", "when"))
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"{path}: ") and fragment in msg, msg


def test_wrong_delimiter_is_named_as_such(tmp_path):
    path = write(tmp_path / "a.csv", "user\titem\twhen\n1\t2\t3\n")
    with pytest.raises(DataError, match=r"wrong delimiter\? \(data.file.format: tsv\)"):
        read_frame(path, Columns("user", "item", "when"))


def test_binary_garbage_is_not_a_traceback(tmp_path):
    path = tmp_path / "a.csv"
    path.write_bytes(bytes(range(256)) * 40)
    with pytest.raises(DataError) as info:
        read_frame(path, Columns("user", "item", "when"))
    assert str(info.value).startswith(f"{path}: ")
    parquet = tmp_path / "a.parquet"
    parquet.write_bytes(b"PAR1" + bytes(range(256)) * 4)
    with pytest.raises(DataError, match="not a readable parquet file"):
        read_frame(parquet, Columns("user", "item", "when"))


def test_a_name_without_a_known_extension_asks_for_the_format():
    with pytest.raises(DataError, match="set data.file.format"):
        file_format("input/log.dat")
    assert file_format("input/log.TSV.GZ") == "tsv" and file_format("x.pq") == "parquet"


# --- real ml-100k: four forms of u.data through the own-file path, the same split ---------------

@pytest.fixture(scope="module")
def ml100k(tmp_path_factory):
    """Real ml-100k through the MovieLens path (the package index's copy: the offline source),
    and the split files that path writes."""
    from ncf.io import write_parquet

    interactions, items, _ = load(DataParams(dataset="ml-100k", sources=("pypi",)), log=lambda _: None)
    folder = tmp_path_factory.mktemp("movielens")
    split = leave_one_out(interactions, items)
    for name in ("train", "valid", "test", "users", "items"):
        write_parquet(getattr(split, name), folder / f"{name}.parquet")
    return interactions, folder


def forms(interactions: pa.Table, folder):
    """u.data's rows as a user might export them: (name, file, data.file params)."""
    frame = interactions.to_pandas().rename(columns={"user_id": "uid", "item_id": "movie", "rating": "stars",
                                         "timestamp": "when"})
    csv = folder / "ratings.csv"
    frame.assign(source="u.data").to_csv(csv, index=False)  # a header, other names, an extra column
    tsv = folder / "ratings.tsv.gz"
    frame.drop(columns="stars").to_csv(tsv, sep="\t", index=False)  # no ratings
    parquet = folder / "ratings.parquet"
    frame.to_parquet(parquet, index=False)
    padded = folder / "padded.csv"
    frame.assign(uid=frame["uid"].map("{:05d}".format), movie=frame["movie"].map("{:05d}".format)).to_csv(
        padded, index=False)
    names = dict(user="uid", item="movie", timestamp="when")
    return [("csv", csv, dict(names, rating="stars")), ("tsv.gz", tsv, names),
            ("parquet", parquet, dict(names, rating="stars")), ("zero-padded", padded, names)]


def test_four_forms_of_ml100k_give_the_movielens_split_byte_for_byte(ml100k, tmp_path):
    from ncf.io import write_parquet

    interactions, want = ml100k
    assert len(interactions) == 100_000
    for form, path, columns in forms(interactions, tmp_path):
        got, items, _ = load(DataParams(dataset="file", file=FileParams(interactions=str(path), **columns)))
        split = leave_one_out(got, items)
        out = tmp_path / form
        for name in ("train", "valid", "test", "users", "items"):
            write_parquet(getattr(split, name), out / f"{name}.parquet")
        same = ("train", "valid", "test") if form == "zero-padded" else ("train", "valid", "test", "users", "items")
        for name in same:
            assert (out / f"{name}.parquet").read_bytes() == (want / f"{name}.parquet").read_bytes(), (form, name)
        if form == "zero-padded":  # the id maps hold the ids as in the data: text, in the same order
            users = pd.read_parquet(out / "users.parquet")
            assert users["user_id"].tolist() == [f"{u:05d}" for u in pd.read_parquet(want / "users.parquet")["user_id"]]


@pytest.mark.parametrize("late", ["4.5,2024-05-01T12:00:00Z", "4.5,1700000000", "five,1700000000"])
def test_columns_typed_from_the_first_block_fall_back_when_a_later_row_differs(tmp_path, late):
    # The reader is given the numeric types of the file's first 64 KiB; a later row that does not
    # fit (a fraction among whole ratings, ISO text among epoch seconds, a word) falls back to
    # inferring over the whole file, as a read without the types would.
    rows = [f"{u},{i},{1 + (u + i) % 5},{1_600_000_000 + u * 100 + i}" for u in range(1, 2000) for i in range(10)]
    path = tmp_path / "late.csv"
    path.write_text("user,item,rating,timestamp\n" + "\n".join(rows) + f"\n9999,1,{late}\n")
    assert path.stat().st_size > 3 * (64 << 10)
    # The first block alone reads as whole numbers: the reader is first given int64 for both.
    assert _probe(path, "csv", {"user": pa.string(), "item": pa.string()}) == (
        ["user", "item", "rating", "timestamp"], {"rating": pa.int64(), "timestamp": pa.int64()})
    columns = Columns(user="user", item="item", timestamp="timestamp", rating="rating")
    inferred = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(
        column_types={"user": pa.string(), "item": pa.string()}, strings_can_be_null=True,
        quoted_strings_can_be_null=True))
    if late.startswith("five"):
        with pytest.raises(DataError, match="ratings are empty or not numbers"):
            read_frame(path, columns)
        return
    pd.testing.assert_frame_equal(read_frame(path, columns),
                                  canonical_interactions(inferred, columns, path).to_pandas(), check_exact=True)
    assert read_frame(path, columns)["rating"].iloc[-1] == 4.5


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_only_the_named_columns_are_read_and_a_missing_one_is_named_beside_the_files(tmp_path, fmt):
    frame = pd.DataFrame({"session": ["s1", "s2"], "u": [1, 2], "device": ["web", "app"], "i": [10, 11],
                          "when": [5, 6], "note": ["a,b", "c"]})
    path = tmp_path / f"log.{fmt}"
    frame.to_csv(path, index=False) if fmt == "csv" else frame.to_parquet(path, index=False)
    assert read_table(path, columns=("u", "i", "when")).column_names == ["u", "i", "when"]
    assert read_table(path).column_names == list(frame.columns)
    # A missing column: every column is read, so the error can list what the file has.
    assert read_table(path, columns=("u", "item")).column_names == list(frame.columns)
    with pytest.raises(DataError, match=r"no column 'item' \(data.file.item\); the file has 'session', 'u'"):
        read_frame(path, Columns(user="u", item="item", timestamp="when"))
    got = read_frame(path, Columns(user="u", item="i", timestamp="when"))
    assert list(got.columns) == ["user_id", "item_id", "timestamp"] and got["item_id"].tolist() == [10, 11]
