"""The canonical tables every source ends in, and a team's own interactions file read into them.

Canonical interactions (data/raw/interactions.parquet, a folder of two parquet files, part-0 and
part-1, the first and second half of the rows), one row per event, in the source's row order (the
split's tie rule depends on that order):
- user_id, item_id: ids as in the data, int64 when every id is a whole number, else text;
- timestamp: int64 seconds since 1970-01-01 UTC (absent when the source has no time column: then
  the file's row order is the time order);
- rating: float64 (absent when the source has none).
Canonical items (data/raw/items.parquet): item_id, title, then any other columns of the source
(MovieLens: year, genres).

A MovieLens release (ncf.movielens) and a user's file (`read_interactions`) both go through
`canonical_interactions`, so the checks on ids and timestamps, and everything after them (the
split, its data report), are one code path whichever the source.

Files are read with pyarrow's readers: CSV or TSV (plain or gzipped) with a header row, or parquet.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from ncf.errors import DataError

if TYPE_CHECKING:  # pandas is imported where it is used: a file of numbers never needs it
    import pandas as pd

# How data/raw/interactions.parquet is written: a folder of RAW_PARTS parquet files, each half of the
# rows (ncf.io.write_parquet_parts), written at once on two threads: one file of 20 M rows takes
# 0.9 s on one core, two halves 0.45 s on two, and the split reads them back on two threads. Two
# whatever the machine, so the bytes (and dvc.lock's md5) are the same everywhere. Ids and ratings
# as dictionaries (few distinct values), timestamps byte-stream-split (nearly all distinct: a
# dictionary fills up and falls back): for 20 M rows, 116 MB instead of pyarrow's default 148 MB,
# and ~0.3 s less to write and read back.
RAW_PARTS = 2
PARQUET_OPTIONS = {"use_dictionary": ["user_id", "item_id", "rating"], "use_byte_stream_split": ["timestamp"]}

# The CSV reader's unit of work (pyarrow's default: 1 MiB): 16 MiB gives a 20 M-row file in ~30
# chunks instead of ~500, less to join and convert after, and a ~0.2-0.4 GB lower peak.
_BLOCK_BYTES = 16 << 20
FORMATS = ("auto", "csv", "tsv", "parquet")
_SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".parquet": "parquet", ".pq": "parquet"}
_DELIMITERS = {"csv": ",", "tsv": "\t"}


@dataclass(frozen=True)
class Columns:
    """Which column of a source holds what; "" for a column the source does not have."""

    user: str = "user_id"
    item: str = "item_id"
    timestamp: str = "timestamp"
    rating: str = ""


MOVIELENS_COLUMNS = Columns(user="user_id", item="item_id", timestamp="timestamp", rating="rating")


def file_format(path: str | Path, fmt: str = "auto") -> str:
    """csv, tsv or parquet: `fmt` itself, or read from the name (`.csv`, `.tsv.gz`, `.parquet`)."""
    if fmt != "auto":
        return fmt
    suffixes = [s.lower() for s in Path(path).suffixes]
    if suffixes and suffixes[-1] in (".gz", ".bz2"):
        suffixes = suffixes[:-1]
    found = _SUFFIXES.get(suffixes[-1]) if suffixes else None
    if found is None:
        raise DataError(f"{path}: cannot tell the format from the name; end it in .csv, .tsv (.gz for "
                        "either) or .parquet, or set data.file.format to csv, tsv or parquet")
    return found


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]


def read_table(path: str | Path, fmt: str = "auto", role: str = "interactions", text: tuple[str, ...] = (),
               columns: tuple[str, ...] | None = None) -> pa.Table:
    """The file as an Arrow table; any problem becomes one DataError naming the file.

    The CSV/TSV columns named in `text` are read as text (ids: pyarrow would read "0001" as 1),
    the others as pyarrow infers them. With `columns`, only those are read (a log's other columns
    are neither parsed nor held) where the header has them all; else every column, so that the
    caller can name the one missing beside the file's columns.
    """
    path = Path(path)
    fmt = file_format(path, fmt)
    if not path.is_file():
        raise DataError(f"{path}: the {role} file does not exist; `dvc pull` it or fix data.file.{role}")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the {role} file is empty; give a file with a header row and one row per "
                        "interaction")
    try:
        if fmt == "parquet":  # one footer read, and not pq.read_table: it loads pyarrow.dataset
            with pq.ParquetFile(path) as parquet:
                wanted = columns and set(columns) <= set(parquet.schema_arrow.names)
                table = parquet.read(columns=list(columns) if wanted else None)
        else:
            types = {c: pa.string() for c in text if c}
            names, numbers = _probe(path, fmt, types)
            include = list(columns) if columns and set(columns) <= set(names) else []
            try:  # the numeric columns typed as the first block reads them: no inference over every block
                table = _read_csv(path, fmt, {**numbers, **types}, include) if numbers else None
            except pa.ArrowInvalid:  # a later block holds something else: inferred over the whole file
                table = None
            if table is None:
                table = _read_csv(path, fmt, types, include)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError, UnicodeDecodeError) as exc:
        kind = "parquet" if fmt == "parquet" else f"{fmt.upper()} (with a header row)"
        raise DataError(f"{path}: not a readable {kind} file ({_first_line(exc)}); check the file or "
                        "set data.file.format") from None
    return table


def _read_csv(path: Path, fmt: str, types: dict[str, pa.DataType], include: list[str]) -> pa.Table:
    return pacsv.read_csv(
        path,
        read_options=pacsv.ReadOptions(block_size=_BLOCK_BYTES),
        parse_options=pacsv.ParseOptions(delimiter=_DELIMITERS[fmt]),
        convert_options=pacsv.ConvertOptions(column_types=types, strings_can_be_null=True,
                                             quoted_strings_can_be_null=True, include_columns=include),
    )


def _probe(path: Path, fmt: str, types: dict[str, pa.DataType]) -> tuple[list[str], dict[str, pa.DataType]]:
    """(the header's column names, the columns other than `types` that pyarrow reads as int64 or
    float64 in the file's first block (64 KiB), with those types); ([], {}) where that block does
    not read. Giving the types to the reader spares it inferring every block's types (at 20 M rows,
    0.9 s instead of 1.15 s): the values are those of the inferred read, which the caller falls back
    to if a later block holds other values."""
    try:
        with pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=64 << 10),
                            parse_options=pacsv.ParseOptions(delimiter=_DELIMITERS[fmt]),
                            convert_options=pacsv.ConvertOptions(column_types=types, strings_can_be_null=True,
                                                                 quoted_strings_can_be_null=True)) as reader:
            schema = reader.schema
    except (pa.ArrowException, OSError, UnicodeDecodeError, ValueError):
        return [], {}
    return schema.names, {f.name: f.type for f in schema if f.name not in types and f.type in (pa.int64(),
                                                                                              pa.float64())}


def _column(table: pa.Table, name: str, path: Path, param: str, fmt: str) -> pa.ChunkedArray:
    if name in table.column_names:
        return table.column(name)
    names = table.column_names
    hint = ""
    if len(names) == 1 and fmt in _DELIMITERS:
        other = "tsv" if fmt == "csv" else "csv"
        if _DELIMITERS[other] in names[0] or any(d in names[0] for d in ";|"):
            hint = f"; the header {names[0][:60]!r} is one column: wrong delimiter? (data.file.format: {other})"
    shown = ", ".join(repr(n) for n in names[:8]) + (", ..." if len(names) > 8 else "")
    raise DataError(f"{path}: no column {name!r} ({param}); the file has {shown}{hint}; set {param} to the "
                    "column's name")


def _where(i: int, fmt: str) -> str:
    return f"line {i + 2}" if fmt in _DELIMITERS else f"row {i + 1}"


def _numpy(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A column as one numpy array, the reader's chunks joined first (for the columns that are
    converted in numpy: float ids and timestamps, and the rows an error names)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    return values.to_numpy(zero_copy_only=False)


def _whole_numbers(values: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray | None:
    """int64 when every text id is a whole number written as numbers are (no sign +, no leading
    zero, within int64), else None. A cast and a test of the first characters: a few times faster
    than matching a pattern against every id, which dominated reading 20 M rows."""
    try:
        ints = pc.cast(values, pa.int64())
    except pa.ArrowInvalid:  # not all whole numbers, or beyond int64: the ids stay text
        return None
    # The cast also reads "0001", "-01" and "0x1f": text with a leading zero stays text.
    for prefix, length in (("0", 1), ("-0", 2)):
        starts = pc.starts_with(values, prefix)
        if pc.any(starts).as_py() and pc.any(pc.and_(starts, pc.greater(pc.binary_length(values), length))).as_py():
            return None
    return ints


def _ids(values: pa.Array | pa.ChunkedArray, what: str, path, fmt: str) -> pa.Array | pa.ChunkedArray:
    """int64 when every id is a whole number (as numbers, or as text written like one), else text
    (so "0001" stays "0001"). Empty or missing ids are refused."""
    kind = values.type
    if pa.types.is_dictionary(kind):
        values, kind = values.cast(pa.string()), pa.string()
    text = pa.types.is_string(kind) or pa.types.is_large_string(kind)
    ints = _whole_numbers(values) if text else None
    if values.null_count or (text and ints is None):  # blank text cannot cast to whole numbers
        nulls = values.is_null()
        if text:
            nulls = pc.fill_null(pc.or_kleene(nulls, pc.equal(pc.utf8_trim_whitespace(values), "")), True)
        bad = np.flatnonzero(nulls.to_numpy(zero_copy_only=False))
        if len(bad):
            raise DataError(f"{path}: {len(bad):,} rows have an empty {what} (first at {_where(int(bad[0]), fmt)}); "
                            "remove or fill those rows")
    if pa.types.is_integer(kind):
        return values.cast(pa.int64())  # as it is, where int64 already
    if pa.types.is_floating(kind):
        arr = _numpy(values)
        if np.isnan(arr).any():
            i = int(np.flatnonzero(np.isnan(arr))[0])
            raise DataError(f"{path}: {what} is NaN at {_where(i, fmt)}; remove or fill those rows")
        if (arr % 1 == 0).all():
            return pa.array(arr.astype(np.int64))
        raise DataError(f"{path}: {what} {arr[np.flatnonzero(arr % 1)[0]]!r} is a fraction; ids must be whole "
                        "numbers or text")
    if text:
        return ints if ints is not None else values
    raise DataError(f"{path}: {what} has type {kind}; ids must be whole numbers or text")


def _timestamps(values: pa.Array | pa.ChunkedArray, path, fmt: str, param: str) -> pa.Array | pa.ChunkedArray:
    """int64 seconds since the epoch, from whole numbers (epoch seconds) or ISO-8601 text."""
    kind = values.type
    nulls = values.null_count
    if nulls:
        i = int(np.flatnonzero(values.is_null().to_numpy(zero_copy_only=False))[0])
        raise DataError(f"{path}: {nulls:,} empty timestamps (first at {_where(i, fmt)}); fill them, or set "
                        f"{param}: \"\" to order each user's interactions by file row")
    if pa.types.is_integer(kind):
        return values.cast(pa.int64())  # as it is, where int64 already
    if pa.types.is_floating(kind):
        arr = _numpy(values)
        if not np.isfinite(arr).all():
            i = int(np.flatnonzero(~np.isfinite(arr))[0])
            raise DataError(f"{path}: timestamp {arr[i]!r} at {_where(i, fmt)} is not a time; give epoch "
                            "seconds or ISO-8601 text")
        return pa.array(np.floor(arr).astype(np.int64))
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        return pc.cast(pc.cast(values, pa.timestamp("s", tz="UTC") if pa.types.is_timestamp(kind)
                               else pa.timestamp("s")), pa.int64())
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        import pandas as pd

        text = pd.Series(values.to_numpy(zero_copy_only=False), dtype=object)
        seconds = pd.to_numeric(text, errors="coerce")  # epoch seconds written among text
        iso = pd.to_datetime(text.where(seconds.isna()), utc=True, format="ISO8601", errors="coerce")
        bad = np.flatnonzero((seconds.isna() & iso.isna()).to_numpy())
        if len(bad):
            i = int(bad[0])
            raise DataError(f"{path}: timestamp {text.iloc[i]!r} at {_where(i, fmt)} does not parse; give "
                            f"epoch seconds or ISO-8601 text (2024-05-01T12:00:00Z), or set {param}: \"\"")
        # Whole seconds: parts of a second are dropped, ties then keep file order (docs/protocol.md).
        from_iso = (iso - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
        return pa.array(np.where(seconds.notna(), np.floor(seconds.fillna(0)), from_iso.fillna(0)).astype(np.int64))
    raise DataError(f"{path}: timestamp column has type {kind}; give epoch seconds or ISO-8601 text")


def _ratings(values: pa.Array | pa.ChunkedArray, path, fmt: str) -> pa.Array | pa.ChunkedArray:
    kind = values.type
    if pa.types.is_integer(kind) or pa.types.is_floating(kind):
        values = values.cast(pa.float64())  # as it is, where float64 already
        if not values.null_count and pc.all(pc.is_finite(values)).as_py() is not False:
            return values  # (no rows: all() of nothing is null)
        arr = _numpy(values)  # the rows to name
    else:
        import pandas as pd

        arr = pd.to_numeric(pd.Series(values.to_numpy(zero_copy_only=False), dtype=object),
                            errors="coerce").to_numpy(np.float64)
    bad = np.flatnonzero(~np.isfinite(arr))
    if len(bad):
        i = int(bad[0])
        raise DataError(f"{path}: {len(bad):,} ratings are empty or not numbers (first at {_where(i, fmt)}); fill "
                        "them, or set data.file.rating: \"\" to count every row as an interaction")
    return pa.array(arr)


def canonical_interactions(table: pa.Table | pd.DataFrame, columns: Columns, path: str | Path,
                           fmt: str = "csv", prefix: str = "data.file.") -> pa.Table:
    """The canonical interactions of one source table (see the module docstring), rows in order, as
    an Arrow table: a column that is canonical as read (int64 ids and timestamps, float64 ratings)
    is the reader's column itself, not a copy, and the download stage writes the table as it is,
    without pandas (for 20 M rows, ~0.3 s and ~0.5 GB less than going through numpy and pandas).

    `path` and `fmt` only shape the messages (a CSV's line numbers count the header); `prefix`
    names the params that set `columns`.
    """
    if not isinstance(table, pa.Table):  # a DataFrame
        table = pa.Table.from_pandas(table, preserve_index=False)
    if table.num_rows == 0:
        raise DataError(f"{path}: has a header but no rows; give one row per interaction")
    # (name, param, conversion of the column): converted on two threads (Arrow's kernels and numpy
    # release the GIL), each on its own column; the first problem in this order is the one raised,
    # as one column after the other would.
    wanted = [("user_id", columns.user, "user", lambda v: _ids(v, "user id", path, fmt)),
              ("item_id", columns.item, "item", lambda v: _ids(v, "item id", path, fmt))]
    if columns.timestamp:
        wanted.append(("timestamp", columns.timestamp, "timestamp",
                       lambda v: _timestamps(v, path, fmt, f"{prefix}timestamp")))
    if columns.rating:
        wanted.append(("rating", columns.rating, "rating", lambda v: _ratings(v, path, fmt)))
    out = {}
    with ThreadPoolExecutor(2) as pool:
        jobs = []
        for name, column, param, convert in wanted:
            try:
                values = _column(table, column, path, f"{prefix}{param}", fmt)
                jobs.append((name, pool.submit(convert, values)))
            except DataError as exc:
                jobs.append((name, exc))
        for name, job in jobs:
            if isinstance(job, DataError):
                raise job
            out[name] = job.result()
    return pa.Table.from_arrays(list(out.values()), names=list(out))  # pa.table() would load pandas


def read_interactions(path: str | Path, columns: Columns, fmt: str = "auto") -> pa.Table:
    """A user's interactions file -> canonical interactions."""
    fmt = file_format(path, fmt)
    named = tuple(dict.fromkeys(c for c in (columns.user, columns.item, columns.timestamp, columns.rating) if c))
    return canonical_interactions(read_table(path, fmt, text=(columns.user, columns.item), columns=named), columns,
                                  path, fmt)


def read_items(path: str | Path, item: str, title: str, fmt: str = "auto") -> pd.DataFrame:
    """A user's items file -> canonical items: item_id, title, then the file's other columns."""
    import pandas as pd

    fmt = file_format(path, fmt)
    table = read_table(path, fmt, role="items", text=(item,))
    if table.num_rows == 0:
        raise DataError(f"{path}: has a header but no rows; give one row per item, or set data.file.items: \"\"")
    ids = _ids(_column(table, item, path, "data.file.item", fmt), "item id", path, fmt).to_numpy(zero_copy_only=False)
    names = _column(table, title, path, "data.file.title", fmt).cast(pa.string()).to_pandas()
    rest = table.drop_columns([c for c in {item, title}])
    frame = pd.DataFrame({"item_id": ids, "title": pd.array(names, dtype="string")})
    frame = pd.concat([frame, rest.to_pandas()], axis=1)
    dup = frame["item_id"].duplicated()
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        raise DataError(f"{path}: item id {frame['item_id'].iloc[i]!r} is listed twice (again at "
                        f"{_where(i, fmt)}); keep one row per item")
    return frame


def align_items(items: pd.DataFrame, item_ids: pa.Array | pa.ChunkedArray) -> tuple[pd.DataFrame, int]:
    """`items` with ids of the interactions' kind (int64 or text), and how many interaction item
    ids it does not name (a warning, not an error: those items are shown by id)."""
    import pandas as pd

    ids = pd.Series(pc.unique(item_ids).to_numpy(zero_copy_only=False))  # Arrow's hash: no pandas over every row
    if ids.dtype == object and items["item_id"].dtype != object:
        items = items.assign(item_id=items["item_id"].astype(str).to_numpy(dtype=object))
    elif ids.dtype != object and items["item_id"].dtype == object:
        numeric = pd.to_numeric(items["item_id"], errors="coerce")
        if numeric.notna().all() and (numeric % 1 == 0).all():
            items = items.assign(item_id=numeric.astype(np.int64))
    unnamed = int((~ids.isin(items["item_id"])).sum())
    return items, unnamed
