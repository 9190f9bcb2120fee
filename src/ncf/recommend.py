"""Top-K recommendations: each user's best-scored unseen items, for the recommend stage and `ncf recommend`.

`recommend` is the one ranking both use, so the file and the command never disagree:
- every item the user is known to have interacted with (training, validation and test, given as
  an `ItemMask`) is excluded, and so is an item whose score is NaN;
- best score first; equal scores go to the lower item index (a written tie rule, so that
  popularity-like scorers with many ties give one answer);
- users are scored in fixed blocks of `BLOCK_USERS` consecutive users (evaluate.py's batching),
  and a user asked for alone is scored inside its block. Batched matrix products round
  differently with the batch's shape (measured: about 1 user in 20 gets other last float digits
  scored alone than in a batch), so a user's scores, and ties between them, would otherwise
  depend on who else was asked for.
Memory is bounded by one block of scores (64 x items float32, 15 MB at 59,047 items), not by
users x items. `recommendations_frame` turns the result into the table the stage writes (user id
and item id as in the data, rank from 1, score, title where known).
`top_k` and `describe` serve the evaluate stage's readable sample.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ncf.evaluate import ItemMask, score_chunks

BLOCK_USERS = 64  # users scored together; fixed (not a param) so `ncf recommend` can rescore any one


def _ordered_keys(scores: torch.Tensor) -> torch.Tensor:
    """int64 keys that sort like the scores (higher first) and, among equal scores, lower items first."""
    scores = torch.nan_to_num(scores.float(), nan=-torch.inf) + 0.0  # + 0.0: -0.0 becomes 0.0
    bits = scores.view(torch.int32)
    ordered = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits).to(torch.int64)  # monotonic in the float
    items = torch.arange(scores.shape[1], device=scores.device, dtype=torch.int64)
    return (ordered << 32) | (scores.shape[1] - 1 - items)


@torch.no_grad()
def recommend(score_all, users, seen: ItemMask, k: int, num_users: int, device="cpu",
              desc: str = "recommendations") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The top `k` unseen items of each user in `users` (contiguous ids), best first.

    Returns (users [n] sorted and unique, items [n, k], scores [n, k]); where a user has fewer
    than `k` items left, the remaining slots are item -1 and score NaN.
    """
    users = np.unique(np.asarray(users, dtype=np.int64))
    if len(users) and (users[0] < 0 or users[-1] >= num_users):
        raise ValueError(f"users must be between 0 and {num_users - 1}")
    blocks = np.unique(users // BLOCK_USERS)
    # Whole blocks in order: only the last block of all users can be short, so runs of
    # BLOCK_USERS from the start are exactly the blocks.
    scored = np.concatenate([np.arange(b * BLOCK_USERS, min((b + 1) * BLOCK_USERS, num_users))
                             for b in blocks]) if len(blocks) else np.zeros(0, np.int64)
    wanted = np.zeros(num_users, dtype=bool)
    wanted[users] = True
    out_items, out_scores = [], []
    for u_np, u, scores in score_chunks(score_all, scored, BLOCK_USERS, device, desc):
        scores = torch.nan_to_num(scores.float(), nan=-torch.inf)  # a NaN score is never recommended
        rows, cols = seen.rows_cols(u)
        scores[rows, cols] = -torch.inf
        top = torch.topk(_ordered_keys(scores), min(k, scores.shape[1]), dim=1).indices
        values = scores.gather(1, top)
        empty = values == -torch.inf
        keep = torch.from_numpy(wanted[u_np]).to(scores.device)
        out_items.append(torch.where(empty, -1, top)[keep].cpu())
        out_scores.append(torch.where(empty, torch.nan, values)[keep].cpu())
    if not out_items:
        return users, np.zeros((0, k), np.int64), np.zeros((0, k), np.float32)
    return users, torch.cat(out_items).numpy(), torch.cat(out_scores).numpy()


def recommendations_frame(users: np.ndarray, items: np.ndarray, scores: np.ndarray, user_ids: pd.DataFrame,
                          catalog: pd.DataFrame) -> pd.DataFrame:
    """One row per (user, rank): user_id, rank (1 = best), item_id, score, title (null where unknown).

    `user_ids` maps `user` -> `user_id` (split/users.parquet), `catalog` maps `item` -> `item_id`
    and, when it has one, `title` (data/catalog.parquet); ids keep their type (int or string).
    """
    k = items.shape[1]
    filled = items >= 0
    user_rows = np.repeat(users, k).reshape(-1, k)[filled]
    ranks = np.tile(np.arange(1, k + 1, dtype=np.int16), (len(users), 1))[filled]
    item_rows = items[filled]
    by_user = user_ids.set_index("user")["user_id"]
    by_item = catalog.set_index("item")
    titles = by_item["title"] if "title" in by_item else pd.Series(None, index=by_item.index, dtype=object)
    return pd.DataFrame({
        "user_id": by_user.loc[user_rows].to_numpy(),
        "rank": ranks,
        "item_id": by_item["item_id"].loc[item_rows].to_numpy(),
        "score": scores[filled].astype(np.float32),
        "title": titles.loc[item_rows].to_numpy(),
    })


@torch.no_grad()
def top_k(model, user: int, exclude: list[int], k: int) -> tuple[list[int], list[float]]:
    """The k best-scored items for `user` (contiguous id) that are not in `exclude` (scored alone)."""
    scores = model.score_all(torch.tensor([user]))[0].float()
    if exclude:
        scores[torch.tensor(exclude)] = -torch.inf
    top = torch.topk(scores, min(k, int(torch.isfinite(scores).sum())))
    return top.indices.tolist(), top.values.tolist()


def describe(item) -> str:
    """'Fargo (1996) - Crime, Drama, Thriller' from a row of data/catalog.parquet; an item that
    the items file does not name (or with no items file) is shown by its id: 'item B-17'."""
    title = item.get("title")
    if title is None or pd.isna(title):
        return f"item {item.get('item_id')}"
    year = item.get("year")
    year = "" if year is None or pd.isna(year) else f" ({int(year)})"
    genres = item.get("genres")
    genres = "" if genres is None or pd.isna(genres) else str(genres).replace("|", ", ")
    return f"{title}{year}" + (f" - {genres}" if genres else "")
