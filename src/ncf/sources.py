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

OWN_FILE = "file"  # data.dataset for a team's own interactions (data.file.*)


def load(data: DataParams, log: Callable[[str], None] = print) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """(canonical interactions, canonical items, where they came from) for `data` (params.yaml)."""
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
        import pandas as pd

        items = pd.DataFrame({"item_id": interactions["item_id"].iloc[:0], "title": pd.Series([], dtype="string")})
    return interactions, items, f.interactions
