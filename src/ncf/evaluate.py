"""Batched full ranking: the rank of each user's held-out item among all items.

Users are scored in chunks (`chunk_users` rows of the user x item score matrix at a time), the
user's known items are masked out, and only one rank per user is kept, so memory is bounded by
the chunk, not by users x items. See metrics.py for the tie rule. `score_chunks` is that
batching, shared with the recommendations (recommend.py); it shows progress with the time left
(progress.py) while it runs.
"""

from __future__ import annotations

import numpy as np
import torch

from ncf.progress import progress


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
    # A target whose score is -inf (e.g. a NaN) would tie with every masked item: rank it last.
    ranks = (scores >= target[:, None]).sum(dim=1)
    return torch.where(target == -torch.inf, scores.shape[1] - 1, ranks)


def score_chunks(score_all, users: np.ndarray, chunk_users: int, device, desc: str = "ranking"):
    """(users as numpy, users as a tensor, scores [chunk, num_items]) for each run of `chunk_users`
    users in order, with a progress display titled `desc` (progress.py)."""
    bar = progress(desc=desc, total=len(users), unit="users")
    try:
        for start in range(0, len(users), chunk_users):
            u_np = users[start:start + chunk_users]
            u = torch.tensor(u_np, dtype=torch.int64, device=device)
            yield u_np, u, score_all(u)
            bar.update(len(u_np))
    finally:
        bar.close()


def _scored_chunks(score_all, users: np.ndarray, targets: np.ndarray, chunk_users: int, device, desc: str):
    """(users as numpy, users, targets, scores [chunk, num_items]) for each chunk of users."""
    start = 0
    for u_np, u, scores in score_chunks(score_all, users, chunk_users, device, desc):
        t = torch.tensor(targets[start:start + len(u_np)], dtype=torch.int64, device=device)
        start += len(u_np)
        yield u_np, u, t, scores


def _numpy(parts: list[torch.Tensor]) -> np.ndarray:
    return torch.cat(parts).numpy() if parts else np.zeros(0, dtype=np.int64)


@torch.no_grad()
def rank_held_out(score_all, users: np.ndarray, targets: np.ndarray, mask: ItemMask,
                  chunk_users: int = 1024, device="cpu", desc: str = "validation") -> np.ndarray:
    """For each (user, target) pair, the target's rank among all items not masked for that user."""
    out = []
    for _, u, t, scores in _scored_chunks(score_all, users, targets, chunk_users, device, desc):
        rows, cols = mask.rows_cols(u)
        out.append(ranks_from_scores(scores, t, rows, cols).cpu())
    return _numpy(out)


SAMPLED_NEGATIVES = 99  # the paper's protocol: the test item among itself and 99 others


def _splitmix64(x: np.ndarray) -> np.ndarray:
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def sampled_negatives(users: np.ndarray, mask: ItemMask, num_items: int, seed: int,
                      count: int = SAMPLED_NEGATIVES) -> torch.Tensor:
    """[len(users), count] items per user, drawn once: distinct, uniform, none of the user's own.

    Each (user, item) gets a pseudo-random key from a hash of (seed, user, item); a user's
    negatives are the `count` non-positive items with the smallest keys. That is a uniform
    sample without replacement, and it does not depend on how users are chunked. Where a user
    has fewer than `count` candidates, the missing slots are -1.
    """
    with np.errstate(over="ignore"):
        base = np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)
        cells = users.astype(np.uint64)[:, None] * np.uint64(num_items) + np.arange(num_items, dtype=np.uint64)
        keys = torch.from_numpy((_splitmix64(base + cells) >> np.uint64(1)).astype(np.int64))
    # a copy: `users` may be a read-only view of a parquet column (torch warns on those)
    rows, cols = mask.rows_cols(torch.tensor(users, dtype=torch.int64, device=mask.items.device))
    keys[rows.cpu(), cols.cpu()] = torch.iinfo(torch.int64).max  # the user's positives: never drawn
    picked = torch.topk(keys, min(count, num_items), dim=1, largest=False)
    return torch.where(picked.values == torch.iinfo(torch.int64).max, -1, picked.indices)


def draw_negatives(users: np.ndarray, positives: ItemMask, num_items: int, seed: int, chunk_users: int = 1024,
                   device="cpu", desc: str = "sampled negatives") -> torch.Tensor:
    """`sampled_negatives` for every user in `users` ([len(users), 99]: 129 MB at 162,541 users),
    drawn `chunk_users` at a time, so that a stage ranking several models draws them once; the
    same draws as rank_test makes without them (they do not depend on chunks)."""
    parts = [drawn for *_, drawn in score_chunks(
        lambda u: sampled_negatives(u.cpu().numpy(), positives, num_items, seed).to(device),
        users, chunk_users, device, desc)]
    return torch.cat(parts) if parts else torch.zeros((0, SAMPLED_NEGATIVES), dtype=torch.int64, device=device)


def sampled_ranks_from_scores(scores: torch.Tensor, targets: torch.Tensor, negatives: torch.Tensor):
    """Rank of targets[r] among the items negatives[r] (-1 = empty slot); ties count against it."""
    target = torch.nan_to_num(scores.gather(1, targets[:, None]).float(), nan=-torch.inf)
    neg = torch.nan_to_num(scores.gather(1, negatives.clamp(min=0)).float(), nan=-torch.inf)
    beats = (neg >= target) & (negatives >= 0)
    return torch.where(target[:, 0] == -torch.inf, negatives.shape[1], beats.sum(1))


@torch.no_grad()
def rank_test(score_all, users: np.ndarray, targets: np.ndarray, mask: ItemMask, positives: ItemMask,
              num_items: int, seed: int, chunk_users: int = 1024, device="cpu",
              desc: str = "test ranking", negatives: torch.Tensor | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Full-ranking ranks (as `rank_held_out`, with `mask`) and the paper's sampled-protocol ranks
    (among 99 negatives drawn from outside `positives`, which must hold all of each user's
    items), both from one scoring pass over the users. `negatives`: those draws for every user,
    made beforehand by `draw_negatives` (the same ones), to share them between models."""
    full, sampled, done = [], [], 0
    for u_np, u, t, scores in _scored_chunks(score_all, users, targets, chunk_users, device, desc):
        if negatives is None:
            drawn = sampled_negatives(u_np, positives, num_items, seed).to(device)
        else:
            drawn = negatives[done:done + len(u_np)].to(device)
        done += len(u_np)
        sampled.append(sampled_ranks_from_scores(scores, t, drawn).cpu())
        rows, cols = mask.rows_cols(u)
        full.append(ranks_from_scores(scores, t, rows, cols).cpu())
    return _numpy(full), _numpy(sampled)


class Popularity:
    """Scores every item by its number of training interactions (the same for every user)."""

    def __init__(self, items: np.ndarray, num_items: int, device="cpu"):
        self.counts = torch.as_tensor(np.bincount(items, minlength=num_items), dtype=torch.float32,
                                      device=device)

    def score_all(self, users: torch.Tensor) -> torch.Tensor:
        return self.counts.expand(len(users), -1).clone()
