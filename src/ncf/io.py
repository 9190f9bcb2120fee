"""Atomic writes of every artefact: parquet, JSON, TSV, checkpoints and figures.

Each writer goes through `output_file()` (or `output_dir()` for a folder of parts): the data lands
in a temporary file beside the target and replaces it with `os.replace` only once complete, so an
interrupted stage never leaves a half-written file that the next run would trust.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pandas is imported where it is used: the split stage reads without it
    import numpy as np
    import pandas as pd
    import pyarrow as pa


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # what open() would give; mkstemp's temp files are 0600


@contextlib.contextmanager
def output_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; move it onto `path` if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def output_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside `path`; put it in place of `path` (a folder or a file, if
    either is there) if the block succeeds, else remove it and leave `path` as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # what mkdir would give; mkdtemp's are 0700
        if path.is_dir() and not path.is_symlink():  # a folder is not replaced by rename: moved aside first
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old / path.name)
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            if path.is_symlink() or path.exists():  # a file (an earlier layout, or DVC's link to its cache)
                path.unlink()
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_parquet(df: pd.DataFrame | pa.Table, path: str | Path, **options) -> None:
    """One row group, whatever the size: the stages read whole files back, and one row group reads
    into one array per column, not ~20 pieces per 20 M rows that pandas then has to join (most of
    the time of reading a MovieLens-20M-sized file). Files under pyarrow's default row group size
    (1 Mi rows, such as every ml-100k file) are written byte for byte as before. `options` go to
    pyarrow.parquet.write_table (encodings, for example). A DataFrame is written with pandas's
    metadata (its dtypes come back), an Arrow table as it is (without loading pandas)."""
    import pyarrow as pa

    with output_file(path) as tmp:
        if isinstance(df, pa.Table):
            _write_table(df, tmp, **options)
        else:
            df.to_parquet(tmp, index=False, row_group_size=max(len(df), 1), **options)


def _write_table(table: pa.Table, path: Path, **options) -> None:
    """An Arrow table as one parquet file of one row group (write_parquet's rule)."""
    import pyarrow.parquet as pq

    pq.write_table(table, path, row_group_size=max(len(table), 1), **options)


def write_parquet_parts(df: pd.DataFrame | pa.Table, path: str | Path, parts: int, **options) -> None:
    """`df` as a folder of `parts` parquet files, part-0.parquet, part-1.parquet, ..., each the next
    slice of the rows (as even as can be), written at once on one thread each: pyarrow writes a
    file's columns one after the other, on one core. pandas and pyarrow read the folder as one
    table in row order; so does `read_columns`. The slices depend on the row count only, so the
    same rows give the same bytes on any machine. `options` as for write_parquet."""
    import pyarrow as pa

    table = df if isinstance(df, pa.Table) else pa.Table.from_pandas(df, preserve_index=False)
    bounds = [len(table) * i // parts for i in range(parts + 1)]

    def write(i: int) -> None:
        _write_table(table.slice(bounds[i], bounds[i + 1] - bounds[i]), folder / f"part-{i}.parquet", **options)

    with output_dir(path) as folder, ThreadPoolExecutor(parts) as pool:
        list(pool.map(write, range(parts)))  # list(): the first failure is raised


def _parts(path: Path) -> list[Path]:
    """A parquet file, or the parts of a folder written by write_parquet_parts, in row order."""
    if not path.is_dir():
        return [path]
    return sorted(path.glob("part-*.parquet"), key=lambda part: int(part.stem.removeprefix("part-")))


def read_parquet(path: str | Path) -> pd.DataFrame:
    """A parquet file as a DataFrame whose columns stay apart (split_blocks): numeric columns are the
    file's arrays as read, without the copy into one 2-D block per type that pandas makes by default."""
    import pandas as pd

    return pd.read_parquet(path, to_pandas_kwargs={"split_blocks": True})


def read_columns(path: str | Path, skip: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """A parquet file's columns (or those of a folder of parts, write_parquet_parts), but those named
    in `skip`, as numpy arrays, not a DataFrame: a one-row-group file's numeric columns as read (no
    copy), text as Python strings (object arrays, as pandas gives them). Parts are read at once,
    one thread each, and joined column by column. pyarrow's to_numpy imports pandas all the same:
    a caller that cares starts that import early (the split stage)."""
    import numpy as np
    import pyarrow.parquet as pq

    parts = _parts(Path(path))
    names = [name for name in pq.read_schema(parts[0]).names if name not in skip]

    def read(part: Path) -> dict[str, np.ndarray]:
        table = pq.ParquetFile(part).read(columns=names)  # not pq.read_table: it loads pyarrow.dataset
        return {name: table.column(name).to_numpy() for name in names}

    if len(parts) == 1:
        return read(parts[0])
    with ThreadPoolExecutor(len(parts)) as pool:
        pieces = list(pool.map(read, parts))
        return dict(zip(names, pool.map(lambda name: np.concatenate([piece[name] for piece in pieces]), names)))


def write_json(obj, path: str | Path) -> None:
    with output_file(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def write_tsv(df: pd.DataFrame, path: str | Path) -> None:
    with output_file(path) as tmp:
        df.to_csv(tmp, sep="\t", index=False, float_format="%.6f")


def write_bytes(data: bytes, path: str | Path) -> None:
    with output_file(path) as tmp:
        tmp.write_bytes(data)
