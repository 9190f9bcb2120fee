"""ncf.metrics: HR@K and NDCG@K from 0-based ranks of the held-out item."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ncf.metrics import hit_rate, ndcg, summarize


@pytest.mark.parametrize(
    ("rank", "hr", "ndcg_value"),
    [
        (0, 1.0, 1.0),                       # top of the list
        (1, 1.0, 1.0 / math.log2(3)),
        (9, 1.0, 1.0 / math.log2(11)),       # last position inside the top 10
        (10, 0.0, 0.0),                      # first position outside
        (500, 0.0, 0.0),
    ],
)
def test_single_rank_at_10(rank, hr, ndcg_value):
    assert hit_rate([rank], 10) == hr
    assert ndcg([rank], 10) == pytest.approx(ndcg_value, abs=1e-12)


def test_means_over_users():
    ranks = [0, 9, 10, 3]
    assert hit_rate(ranks, 10) == pytest.approx(3 / 4)
    expected = (1.0 + 1 / math.log2(11) + 0.0 + 1 / math.log2(5)) / 4
    assert ndcg(ranks, 10) == pytest.approx(expected)
    assert hit_rate(np.array(ranks, dtype=np.int32), 1) == pytest.approx(1 / 4)


def test_empty_ranks_give_zero():
    assert hit_rate([], 10) == 0.0
    assert ndcg([], 10) == 0.0
    assert summarize([], (10,)) == {"hr@10": 0.0, "ndcg@10": 0.0}


def test_returns_python_floats():
    assert type(hit_rate(np.array([1, 2]), 2)) is float
    assert type(ndcg(np.array([1, 2]), 2)) is float


ranks_strategy = st.lists(st.integers(min_value=0, max_value=200), min_size=1, max_size=60)


@settings(max_examples=150, deadline=None)
@given(ranks=ranks_strategy, ks=st.lists(st.integers(1, 250), min_size=2, max_size=6, unique=True))
def test_properties(ranks, ks):
    ks = sorted(ks)
    hrs = [hit_rate(ranks, k) for k in ks]
    ndcgs = [ndcg(ranks, k) for k in ks]
    for hr, nd in zip(hrs, ndcgs):
        assert 0.0 <= nd <= hr <= 1.0 + 1e-12
    # Both are non-decreasing as K grows.
    assert all(a <= b for a, b in zip(hrs, hrs[1:]))
    assert all(a <= b + 1e-12 for a, b in zip(ndcgs, ndcgs[1:]))


@settings(max_examples=100, deadline=None)
@given(ranks=ranks_strategy, k=st.integers(1, 250))
def test_against_reference_formula(ranks, k):
    hits = [1.0 if r < k else 0.0 for r in ranks]
    gains = [1.0 / math.log2(r + 2) if r < k else 0.0 for r in ranks]
    assert hit_rate(ranks, k) == pytest.approx(sum(hits) / len(ranks))
    assert ndcg(ranks, k) == pytest.approx(sum(gains) / len(ranks))


@settings(max_examples=50, deadline=None)
@given(ranks=ranks_strategy)
def test_k_beyond_every_rank_is_a_full_hit(ranks):
    k = max(ranks) + 1
    assert hit_rate(ranks, k) == 1.0
    assert 0.0 < ndcg(ranks, k) <= 1.0


def test_summarize_keys_and_values():
    ranks = [0, 4, 5, 12, 30, 2]
    out = summarize(ranks, ks=(20, 5, 10))
    # Sorted by K, HR and NDCG paired per K.
    assert list(out) == ["hr@5", "ndcg@5", "hr@10", "ndcg@10", "hr@20", "ndcg@20"]
    for k in (5, 10, 20):
        hits = sum(r < k for r in ranks) / len(ranks)
        gains = sum(1 / math.log2(r + 2) for r in ranks if r < k) / len(ranks)
        assert out[f"hr@{k}"] == pytest.approx(hits, abs=5e-7)
        assert out[f"ndcg@{k}"] == pytest.approx(gains, abs=5e-7)
        # Rounded to 6 digits.
        assert out[f"ndcg@{k}"] == round(out[f"ndcg@{k}"], 6)


def test_summarize_default_ks():
    assert list(summarize([1, 2, 3])) == ["hr@5", "ndcg@5", "hr@10", "ndcg@10", "hr@20", "ndcg@20"]


@pytest.mark.parametrize("users, resamples", [(943, 10_000), (1001, 999), (7, 1001)])
def test_paired_draws_the_same_numbers_whatever_its_memory_budget(monkeypatch, users, resamples):
    """ncf compare's resamples are drawn in blocks sized to a memory budget (1,000 at a time held
    162,541 users' ranks at 5.1 GB): a block size must not change a confidence interval or p-value,
    or committed reports would move with the number of users."""
    from ncf import compare

    rng = np.random.default_rng(users)
    a, b = rng.integers(1, 60, size=users), rng.integers(1, 60, size=users)
    default = compare.paired(a, b, "ndcg", 10, resamples, seed=3)
    blocks = compare._blocks
    for budget in (16 * users, 16 * users * 7):  # blocks of 1 and of 7 resamples
        monkeypatch.setattr(compare, "_blocks", lambda r, u, budget=budget: blocks(r, u, budget))
        assert max(stop - start for start, stop in compare._blocks(resamples, users)) < 1000
        assert compare.paired(a, b, "ndcg", 10, resamples, seed=3) == default
