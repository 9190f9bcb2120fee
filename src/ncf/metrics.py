"""HR@K and NDCG@K from the rank of each user's held-out item.

A rank counts, from 0, the candidate items that score at least as high as the held-out item
(ties count against it: a model that gives every item the same score ranks it last). So
HR@K = 1 if rank < K, and NDCG@K = 1 / log2(rank + 2) if rank < K, else 0.
"""

from __future__ import annotations

import numpy as np


def hits(ranks, k: int) -> np.ndarray:
    """Per user: 1.0 if the held-out item is in the top k, else 0.0."""
    return (np.asarray(ranks) < k).astype(np.float64)


def gains(ranks, k: int) -> np.ndarray:
    """Per user: 1 / log2(rank + 2) if the held-out item is in the top k, else 0.0."""
    ranks = np.asarray(ranks, dtype=np.float64)
    return np.where(ranks < k, 1.0 / np.log2(ranks + 2.0), 0.0)


def hit_rate(ranks, k: int) -> float:
    return float(np.mean(hits(ranks, k))) if len(ranks) else 0.0


def ndcg(ranks, k: int) -> float:
    return float(np.mean(gains(ranks, k))) if len(ranks) else 0.0


def summarize(ranks, ks=(5, 10, 20)) -> dict[str, float]:
    """{'hr@10': .., 'ndcg@10': .., ...} rounded to 6 digits, HR and NDCG paired per K."""
    out = {}
    for k in sorted(ks):
        out[f"hr@{k}"] = round(hit_rate(ranks, k), 6)
        out[f"ndcg@{k}"] = round(ndcg(ranks, k), 6)
    return out


def standard_errors(ranks, k: int = 10) -> dict[str, float]:
    """Standard error over users of HR@k and NDCG@k ({'hr@10_se': .., 'ndcg@10_se': ..}), 6 digits.

    A difference between two runs smaller than about twice these is within the noise of one
    run's users; `ncf compare` pairs the users of two runs for a sharper answer.
    """
    n = len(ranks)
    if n < 2:
        return {f"hr@{k}_se": 0.0, f"ndcg@{k}_se": 0.0}
    return {f"hr@{k}_se": round(float(np.std(hits(ranks, k), ddof=1) / np.sqrt(n)), 6),
            f"ndcg@{k}_se": round(float(np.std(gains(ranks, k), ddof=1) / np.sqrt(n)), 6)}
