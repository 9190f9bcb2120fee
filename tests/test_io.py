"""ncf.io: atomic writes; a failing block leaves neither a temp file nor a changed target."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pandas as pd
import pytest

import pyarrow.parquet as pq

from ncf.io import (output_dir, output_file, read_columns, read_parquet, write_bytes, write_json, write_parquet,
                    write_parquet_parts, write_tsv)


class Boom(RuntimeError):
    pass


def test_success_moves_temp_onto_target(tmp_path):
    target = tmp_path / "out.txt"
    with output_file(target) as tmp:
        assert tmp.parent == target.parent  # same filesystem, so os.replace is atomic
        assert tmp != target
        tmp.write_text("hello")
        assert not target.exists()  # nothing visible until the block ends
    assert target.read_text() == "hello"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_failure_leaves_no_target_and_no_temp(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(Boom):
        with output_file(target) as tmp:
            tmp.write_text("half written")
            raise Boom("interrupted")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_failure_keeps_previous_content(tmp_path):
    target = tmp_path / "out.json"
    target.write_text('{"old": true}\n')
    with pytest.raises(Boom):
        with output_file(target) as tmp:
            tmp.write_text('{"new": tr')
            raise Boom
    assert target.read_text() == '{"old": true}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_keyboard_interrupt_also_cleans_up(tmp_path):
    target = tmp_path / "model.pt"
    target.write_bytes(b"previous")
    with pytest.raises(KeyboardInterrupt):
        with output_file(target) as tmp:
            tmp.write_bytes(b"partial")
            raise KeyboardInterrupt
    assert target.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


def test_failing_writer_keeps_previous_file(tmp_path):
    target = tmp_path / "metrics.json"
    write_json({"hr@10": 0.5}, target)
    with pytest.raises(TypeError):
        write_json({"bad": object()}, target)  # not JSON-serialisable
    assert json.loads(target.read_text()) == {"hr@10": 0.5}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_creates_parent_folders(tmp_path):
    target = tmp_path / "a" / "b" / "c.bin"
    write_bytes(b"\x00\x01", target)
    assert target.read_bytes() == b"\x00\x01"


def test_write_json_round_trip(tmp_path):
    obj = {"neumf": {"hr@10": 0.712345, "ndcg@10": 0.43}, "list": [1, 2, 3], "name": "Café"}
    path = tmp_path / "m.json"
    write_json(obj, path)
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n")
    assert json.loads(text) == obj
    assert list(json.loads(text)) == ["neumf", "list", "name"]  # key order kept


def test_write_parquet_round_trip(tmp_path):
    df = pd.DataFrame({
        "user": np.array([0, 1, 2], dtype=np.int32),
        "item": np.array([5, 3, 1], dtype=np.int32),
        "rating": np.array([1.5, 4.0, 3.0], dtype=np.float32),
        "timestamp": np.array([10, 20, 30], dtype=np.int64),
        "title": ["Café", "b", "c"],
    }, index=[7, 8, 9])
    path = tmp_path / "t.parquet"
    write_parquet(df, path)
    back = pd.read_parquet(path)
    pd.testing.assert_frame_equal(back, df.reset_index(drop=True))  # index not written
    pd.testing.assert_frame_equal(read_parquet(path), back)  # the same frame, columns kept apart
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.parquet"]


def test_write_parquet_one_row_group_beyond_pyarrows_default(tmp_path):
    # More rows than pyarrow's default row group (1 Mi): still one, so reading gives one array per column.
    n = 1_100_000
    df = pd.DataFrame({"user": np.arange(n, dtype=np.int64), "item": np.arange(n, dtype=np.int32) % 7})
    path = tmp_path / "big.parquet"
    write_parquet(df, path)
    assert pq.ParquetFile(path).metadata.num_row_groups == 1
    back = read_parquet(path)
    pd.testing.assert_frame_equal(back, df)


def test_write_tsv_round_trip(tmp_path):
    df = pd.DataFrame({"epoch": [0, 1], "loss": [None, 0.1234567], "valid_hr10": [0.1, 0.25]})
    path = tmp_path / "curve.tsv"
    write_tsv(df, path)
    back = pd.read_csv(path, sep="\t")
    assert list(back.columns) == ["epoch", "loss", "valid_hr10"]
    assert back["epoch"].tolist() == [0, 1]
    assert np.isnan(back["loss"][0]) and back["loss"][1] == pytest.approx(0.123457)


def test_output_file_respects_umask(tmp_path):
    umask = os.umask(0o022)
    os.umask(umask)
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    atomic = tmp_path / "atomic.txt"
    write_bytes(b"x", atomic)
    assert stat.S_IMODE(atomic.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode) == 0o666 & ~umask


def test_read_columns_gives_the_frames_columns_as_numpy_arrays(tmp_path):
    df = pd.DataFrame({"user_id": np.array([3, 1, 2], dtype=np.int64), "item_id": ["0007", "b", "Café"],
                       "timestamp": np.array([10, 20, 30], dtype=np.int64), "rating": [1.5, 4.0, 3.0]})
    path = tmp_path / "t.parquet"
    write_parquet(df, path)
    columns = read_columns(path)
    assert list(columns) == list(df.columns)
    for name, values in columns.items():
        assert isinstance(values, np.ndarray)
        assert values.tolist() == df[name].tolist()
    assert columns["user_id"].dtype == np.int64 and columns["rating"].dtype == np.float64
    assert columns["item_id"].dtype == object  # text as Python strings, as the split's ids take them


def test_read_columns_skips_the_columns_named(tmp_path):
    path = tmp_path / "t.parquet"
    write_parquet(pd.DataFrame({"user_id": [1, 2], "rating": [4.0, 5.0], "timestamp": [3, 4]}), path)
    assert list(read_columns(path, skip=("rating", "absent"))) == ["user_id", "timestamp"]


def _frame(n: int) -> pd.DataFrame:
    return pd.DataFrame({"user_id": np.arange(n, dtype=np.int64) // 3, "item_id": [f"i{k % 5:03d}" for k in range(n)],
                         "timestamp": np.arange(n, dtype=np.int64) * 7, "rating": np.arange(n) % 5 + 0.5})


@pytest.mark.parametrize("rows", [0, 1, 7, 1000])
def test_write_parquet_parts_keeps_the_rows_in_order_for_pandas_and_read_columns(tmp_path, rows):
    df = _frame(rows)
    folder = tmp_path / "interactions.parquet"
    write_parquet_parts(df, folder, 2)
    assert sorted(p.name for p in folder.iterdir()) == ["part-0.parquet", "part-1.parquet"]
    halves = [pd.read_parquet(folder / f"part-{i}.parquet") for i in (0, 1)]
    assert [len(h) for h in halves] == [rows // 2, rows - rows // 2]  # each the next slice of the rows
    pd.testing.assert_frame_equal(pd.read_parquet(folder), df)  # a folder pandas reads as the table
    single = tmp_path / "one.parquet"
    write_parquet(df, single)
    for skip in ((), ("rating",)):
        got, want = read_columns(folder, skip=skip), read_columns(single, skip=skip)
        assert list(got) == list(want)
        for name in want:
            assert got[name].dtype == want[name].dtype and got[name].tolist() == want[name].tolist(), name


def test_read_columns_joins_parts_in_number_order(tmp_path):
    # part-10 comes after part-9, as the writer numbers them, not as the names sort
    df = _frame(23)
    folder = tmp_path / "t.parquet"
    write_parquet_parts(df, folder, 11)
    assert read_columns(folder)["timestamp"].tolist() == df["timestamp"].tolist()


def test_write_parquet_parts_gives_the_same_bytes_for_the_same_rows(tmp_path):
    df = _frame(5000)
    for name in ("a", "b"):
        write_parquet_parts(df, tmp_path / name, 2, use_dictionary=["user_id"])
    for part in ("part-0.parquet", "part-1.parquet"):
        assert (tmp_path / "a" / part).read_bytes() == (tmp_path / "b" / part).read_bytes()


def test_write_parquet_parts_replaces_a_file_or_folder_and_a_failure_keeps_it(tmp_path, monkeypatch):
    target = tmp_path / "interactions.parquet"
    write_parquet(_frame(4), target)  # the earlier layout: one file
    write_parquet_parts(_frame(6), target, 2)
    assert target.is_dir() and len(pd.read_parquet(target)) == 6
    write_parquet_parts(_frame(8), target, 2)  # a folder replaced by the new one
    assert len(pd.read_parquet(target)) == 8
    write_table = pq.write_table

    def second_part_fails(table, where, **options):
        if str(where).endswith("part-1.parquet"):
            raise Boom("disk full")
        write_table(table, where, **options)

    monkeypatch.setattr(pq, "write_table", second_part_fails)
    with pytest.raises(Boom):
        write_parquet_parts(_frame(10), target, 2)
    monkeypatch.undo()
    assert len(pd.read_parquet(target)) == 8  # the failed write left the folder as it was
    assert sorted(p.name for p in tmp_path.iterdir()) == ["interactions.parquet"]  # and no temp folder
    assert stat.S_IMODE(target.stat().st_mode) == 0o777 & ~_umask()


def test_output_dir_interrupted_leaves_no_target_and_no_temp(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with output_dir(tmp_path / "parts") as tmp:
            (tmp / "part-0.parquet").write_bytes(b"half")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
