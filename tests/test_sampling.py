"""ncf.sampling: uniform negatives from the items a user has no training interaction with."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ncf.sampling import NegativeSampler

NUM_ITEMS = 20
DENSE_USER = 0  # has every item but two


def positives() -> dict[int, set[int]]:
    rng = np.random.default_rng(7)
    pos = {DENSE_USER: set(range(NUM_ITEMS)) - {4, 17}}
    for u in range(1, 6):
        pos[u] = set(rng.choice(NUM_ITEMS, size=int(rng.integers(1, 8)), replace=False).tolist())
    # User 6 has no training items at all; user 7 (the highest id) has only item 19.
    pos[7] = {NUM_ITEMS - 1}
    return pos


def as_tensors(pos: dict[int, set[int]]):
    pairs = [(u, i) for u, items in pos.items() for i in sorted(items)]
    rng = np.random.default_rng(0)
    pairs = [pairs[j] for j in rng.permutation(len(pairs))]  # order must not matter
    users = torch.tensor([p[0] for p in pairs], dtype=torch.int64)
    items = torch.tensor([p[1] for p in pairs], dtype=torch.int64)
    return users, items


@pytest.fixture
def sampler_and_positives(unchanged):
    pos = positives()
    users, items = as_tensors(pos)
    unchanged(users)
    unchanged(items)
    return NegativeSampler(users, items, NUM_ITEMS), pos, users


def test_never_returns_a_positive_of_the_rows_user(sampler_and_positives):
    sampler, pos, train_users = sampler_and_positives
    # Every training row, repeated, plus user 6 (no positives at all).
    users = torch.cat([train_users.repeat(20), torch.full((50,), 6)])
    negatives = sampler.sample(users, 5, torch.Generator().manual_seed(0))
    assert negatives.shape == (len(users), 5)
    assert negatives.dtype == torch.int64
    assert int(negatives.min()) >= 0 and int(negatives.max()) < NUM_ITEMS
    for u, row in zip(users.tolist(), negatives.tolist()):
        assert not (set(row) & pos.get(u, set())), (u, row)


def test_dense_user_gets_only_the_two_free_items(sampler_and_positives):
    sampler, _, _ = sampler_and_positives
    users = torch.full((400,), DENSE_USER)
    negatives = sampler.sample(users, 4, torch.Generator().manual_seed(1))
    values, counts = torch.unique(negatives, return_counts=True)
    assert values.tolist() == [4, 17]
    assert counts.min() > 0.4 * negatives.numel()  # both drawn, roughly half each


def test_is_positive(sampler_and_positives):
    sampler, pos, _ = sampler_and_positives
    all_users = torch.arange(8).repeat_interleave(NUM_ITEMS)
    all_items = torch.arange(NUM_ITEMS).repeat(8)
    got = sampler.is_positive(all_users, all_items).tolist()
    expected = [i in pos.get(u, set()) for u, i in zip(all_users.tolist(), all_items.tolist())]
    assert got == expected


def test_deterministic_for_a_seed(sampler_and_positives):
    sampler, _, train_users = sampler_and_positives
    a = sampler.sample(train_users, 4, torch.Generator().manual_seed(123))
    b = sampler.sample(train_users, 4, torch.Generator().manual_seed(123))
    c = sampler.sample(train_users, 4, torch.Generator().manual_seed(124))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_user_with_every_item_is_refused():
    users = torch.tensor([0, 0, 0, 1, 1, 1, 1])
    items = torch.tensor([0, 1, 2, 0, 1, 2, 3])
    with pytest.raises(ValueError, match="user 1"):
        NegativeSampler(users, items, num_items=4)
    # Duplicated pairs do not make a user look full.
    NegativeSampler(torch.tensor([1, 1, 1, 1]), torch.tensor([0, 1, 2, 2]), num_items=4)


def test_roughly_uniform_over_allowed_items(sampler_and_positives):
    sampler, pos, _ = sampler_and_positives
    user = 3
    allowed = sorted(set(range(NUM_ITEMS)) - pos[user])
    n_rows, k = 4000, 5
    negatives = sampler.sample(torch.full((n_rows,), user), k, torch.Generator().manual_seed(5))
    counts = np.bincount(negatives.flatten().numpy(), minlength=NUM_ITEMS)
    assert counts[sorted(pos[user])].sum() == 0
    expected = n_rows * k / len(allowed)
    freq = counts[allowed]
    # Each allowed item within +-20% of uniform (about 7 standard deviations here) ...
    assert np.all(np.abs(freq - expected) < 0.2 * expected), freq
    # ... and a loose chi-square bound (dof = len(allowed) - 1; the 99.99% quantile is < 50).
    chi2 = float(((freq - expected) ** 2 / expected).sum())
    assert chi2 < 60, chi2


def test_empty_request(sampler_and_positives):
    sampler, _, _ = sampler_and_positives
    out = sampler.sample(torch.zeros(0, dtype=torch.int64), 3, torch.Generator().manual_seed(0))
    assert out.shape == (0, 3)
