"""Where the interactions come from: a MovieLens release or a team's own file, one entry point.

`load()` is the download stage's one call. Both sources end in the canonical tables of
ncf.interactions, so nothing after the download stage knows, or branches on, which it was.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ncf.config import DataParams
from ncf.interactions import Columns, align_items, read_interactions, read_items

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

OWN_FILE = "file"  # data.dataset for a team's own interactions (data.file.*)


def load(data: DataParams, log: Callable[[str], None] = print) -> tuple[pa.Table, pd.DataFrame | pa.Table, str]:
    """(canonical interactions, canonical items, where they came from) for `data` (params.yaml).
    The items are an Arrow table only where there is no items file: then the download stage, for
    a team's own file of numeric ids and timestamps, never loads pandas."""
    if data.dataset != OWN_FILE:
        from ncf.movielens import load_release  # pandas, tqdm, http: only for a release

        interactions, items, source = load_release(data.dataset, data.sources, local_zip=data.local_zip,
                                                   verify=data.verify, timeout_s=data.timeout_s, log=log)
        return interactions, items, f"{data.dataset} from {source}"
    f = data.file
    columns = Columns(user=f.user, item=f.item, timestamp=f.timestamp, rating=f.rating)
    interactions = read_interactions(f.interactions, columns, f.format)
    if f.items:
        items, unnamed = align_items(read_items(f.items, f.item, f.title, f.format), interactions["item_id"])
        if unnamed:
            log(f"warning: {f.items} names no title for {unnamed:,} of the items in {f.interactions}; "
                "they are shown by id")
    else:
        import pyarrow as pa

        # (not pa.table(), pa.array() or empty_table(): each loads pandas)
        items = pa.Table.from_arrays([pa.nulls(0, interactions.schema.field("item_id").type), pa.nulls(0, pa.string())],
                                     names=["item_id", "title"])
    return interactions, items, f.interactions
