"""Atomic writes of every artefact: parquet, JSON, TSV, checkpoints and figures.

Each writer goes through `output_file()`: the data lands in a temporary file beside the target
and replaces it with `os.replace` only once complete, so an interrupted stage never leaves a
half-written file that the next run would trust.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pandas is imported where it is used: the split stage reads without it
    import numpy as np
    import pandas as pd


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


def write_parquet(df: pd.DataFrame, path: str | Path, **options) -> None:
    """One row group, whatever the size: the stages read whole files back, and one row group reads
    into one array per column, not ~20 pieces per 20 M rows that pandas then has to join (most of
    the time of reading a MovieLens-20M-sized file). Files under pyarrow's default row group size
    (1 Mi rows, such as every ml-100k file) are written byte for byte as before. `options` go to
    pyarrow.parquet.write_table (encodings, for example)."""
    with output_file(path) as tmp:
        df.to_parquet(tmp, index=False, row_group_size=max(len(df), 1), **options)


def read_parquet(path: str | Path) -> pd.DataFrame:
    """A parquet file as a DataFrame whose columns stay apart (split_blocks): numeric columns are the
    file's arrays as read, without the copy into one 2-D block per type that pandas makes by default."""
    import pandas as pd

    return pd.read_parquet(path, to_pandas_kwargs={"split_blocks": True})


def read_columns(path: str | Path, skip: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """A parquet file's columns, but those named in `skip`, as numpy arrays, without pandas: a
    one-row-group file's numeric columns as read (no copy), text as Python strings (object arrays,
    as pandas gives them)."""
    import pyarrow.parquet as pq

    names = [name for name in pq.read_schema(path).names if name not in skip]
    table = pq.read_table(path, columns=names)
    return {name: table.column(name).to_numpy() for name in table.column_names}


def write_json(obj, path: str | Path) -> None:
    with output_file(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def write_tsv(df: pd.DataFrame, path: str | Path) -> None:
    with output_file(path) as tmp:
        df.to_csv(tmp, sep="\t", index=False, float_format="%.6f")


def write_bytes(data: bytes, path: str | Path) -> None:
    with output_file(path) as tmp:
        tmp.write_bytes(data)
