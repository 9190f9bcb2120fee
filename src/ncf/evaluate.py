"""Batched full ranking: the rank of each user's held-out item among all items.

Users are scored in chunks (`chunk_users` rows of the user x item score matrix at a time), the
user's known items are masked out, and only one rank per user is kept, so memory is bounded by
the chunk, not by users x items. See metrics.py for the tie rule.
"""

from __future__ import annotations

import numpy as np
import torch


class ItemMask:
    """Per-user sets of items to exclude from ranking, as CSR tensors on one device."""

    def __init__(self, users: np.ndarray, items: np.ndarray, num_users: int, device="cpu"):
        order = np.lexsort((items, users))
        counts = np.bincount(users, minlength=num_users)
        self.indptr = torch.as_tensor(np.concatenate([[0], np.cumsum(counts)]), device=device)
        self.items = torch.as_tensor(items[order].astype(np.int64), device=device)

    def rows_cols(self, users: torch.Tensor):
        """Row (position in `users`) and column indices of every masked cell."""
        starts, ends = self.indptr[users], self.indptr[users + 1]
        lengths = ends - starts
        rows = torch.repeat_interleave(torch.arange(len(users), device=users.device), lengths)
        offsets = torch.arange(int(lengths.sum()), device=users.device) - \
            torch.repeat_interleave(torch.cumsum(lengths, 0) - lengths, lengths)
        cols = self.items[torch.repeat_interleave(starts, lengths) + offsets]
        return rows, cols


def ranks_from_scores(scores: torch.Tensor, targets: torch.Tensor, rows=None, cols=None) -> torch.Tensor:
    """Rank of targets[r] in scores[r] after masking (rows, cols): items scoring >= it, itself excluded."""
    scores = torch.nan_to_num(scores.float(), nan=-torch.inf)  # a NaN score never wins
    arange = torch.arange(len(targets), device=scores.device)
    target = scores[arange, targets].clone()
    if rows is not None:
        scores[rows, cols] = -torch.inf
    scores[arange, targets] = -torch.inf
    # A masked or -inf target ties with every masked item: it ranks behind all candidates.
    ranks = (scores >= target[:, None]).sum(dim=1)
    return torch.where(target == -torch.inf, scores.shape[1] - 1, ranks)


@torch.no_grad()
def rank_held_out(score_all, users: np.ndarray, targets: np.ndarray, mask: ItemMask,
                  chunk_users: int = 1024, device="cpu") -> np.ndarray:
    """For each (user, target) pair, the target's rank among all items not masked for that user."""
    out = []
    for start in range(0, len(users), chunk_users):
        u = torch.tensor(users[start:start + chunk_users], dtype=torch.int64, device=device)
        t = torch.tensor(targets[start:start + chunk_users], dtype=torch.int64, device=device)
        rows, cols = mask.rows_cols(u)
        out.append(ranks_from_scores(score_all(u), t, rows, cols).cpu())
    return torch.cat(out).numpy() if out else np.zeros(0, dtype=np.int64)


class Popularity:
    """Scores every item by its number of training interactions (the same for every user)."""

    def __init__(self, items: np.ndarray, num_items: int, device="cpu"):
        self.counts = torch.as_tensor(np.bincount(items, minlength=num_items), dtype=torch.float32,
                                      device=device)

    def score_all(self, users: torch.Tensor) -> torch.Tensor:
        return self.counts.expand(len(users), -1).clone()
