"""Is a difference real? Paired comparison of two models' per-user ranks of the test item.

Both models are scored on the same test users, so the comparison is paired: per user, the
difference in HR@K (0/1) and in NDCG@K. With several runs per side (seeds), row r of A is paired
with row r of B, and each user's difference is averaged over the runs before users are
resampled: the test is paired over users and seeds, and a user counts once however many seeds.
Reported for each metric: the mean difference (B - A),
a 95 % paired bootstrap confidence interval (users resampled with replacement), and a two-sided
p-value from a paired sign-flip permutation test (under "no difference", each user's difference
is as likely to have either sign). Both draw from one seeded generator, so the output is
reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ncf.metrics import gains, hits


@dataclass(frozen=True)
class Comparison:
    metric: str
    a: float
    b: float
    diff: float
    low: float
    high: float
    p_value: float


METRICS = {"hr": hits, "ndcg": gains}


def _blocks(resamples: int, users: int, budget: int = 256 * 2**20):
    """(start, stop) of the resamples drawn at once: at most 1,000, and no more than keep the draws
    and their values (16 bytes per user each) under `budget` (blocks of 1,000 held 162,541 users'
    ranks at 5.1 GB). numpy's Generator draws the same numbers in blocks as in one call, so the
    block size changes no interval and no p-value (tests/test_metrics.py)."""
    rows = max(1, min(1000, budget // (16 * users)))
    for start in range(0, resamples, rows):
        yield start, min(start + rows, resamples)


def paired(a: np.ndarray, b: np.ndarray, metric: str = "hr", k: int = 10, resamples: int = 10_000,
           seed: int = 0) -> Comparison:
    """Compare per-user ranks `a` and `b` (same users, same order) on HR@k or NDCG@k.

    `a` and `b` are vectors (one run each) or [runs, users] arrays (runs paired row by row).
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.ndim not in (1, 2) or not a.size:
        raise ValueError(f"need two equally shaped, non-empty rank arrays, got {a.shape} and {b.shape}")
    va, vb = METRICS[metric](a, k), METRICS[metric](b, k)
    d = (vb - va).reshape(-1, a.shape[-1]).mean(axis=0)  # per user, averaged over runs
    rng = np.random.default_rng(seed)
    n = len(d)
    boot = np.empty(resamples)
    for start, stop in _blocks(resamples, n):
        idx = rng.integers(0, n, size=(stop - start, n))
        boot[start:stop] = d[idx].mean(axis=1)
    low, high = np.percentile(boot, [2.5, 97.5])
    observed = abs(d.mean())
    if not d.any():
        p = 1.0
    else:
        flips = np.empty(resamples)
        for start, stop in _blocks(resamples, n):
            signs = rng.choice([-1.0, 1.0], size=(stop - start, n))
            flips[start:stop] = np.abs((signs * d).mean(axis=1))
        # +1 in numerator and denominator: the observed labelling is one of the permutations.
        p = (1 + np.sum(flips >= observed - 1e-12)) / (resamples + 1)
    name = f"{metric}@{k}"
    return Comparison(name, float(va.mean()), float(vb.mean()), float(d.mean()), float(low), float(high), float(p))


def table(results: list[Comparison], label_a: str, label_b: str) -> str:
    lines = [f"{'metric':<9} {label_a[:18]:>18} {label_b[:18]:>18} {'B - A':>8}   {'95% CI':<19} {'p':>7}"]
    for r in results:
        lines.append(f"{r.metric:<9} {r.a:>18.4f} {r.b:>18.4f} {r.diff:>+8.4f}   "
                     f"[{r.low:+.4f}, {r.high:+.4f}]  {r.p_value:>7.4f}")
    return "\n".join(lines)

