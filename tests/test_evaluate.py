"""ncf.evaluate: batched full ranking with masking; ties count against the held-out item."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ncf.evaluate import ItemMask, Popularity, rank_held_out, ranks_from_scores
from ncf.metrics import hit_rate


def brute_force_ranks(scores: np.ndarray, users, targets, masked: dict[int, set[int]]) -> np.ndarray:
    """Reference: for each row, count the unmasked other items scoring >= the target (NaN never wins)."""
    out = []
    for u, t in zip(users, targets):
        row = scores[u]
        s_t = row[t]
        if np.isnan(s_t):
            out.append(len(row) - 1)
            continue
        count = 0
        for j, s in enumerate(row):
            if j == t or j in masked.get(int(u), set()) or np.isnan(s):
                continue
            if s >= s_t:
                count += 1
        out.append(count)
    return np.array(out, dtype=np.int64)


# --- ranks_from_scores -------------------------------------------------------------------------

def test_all_equal_scores_rank_last(unchanged):
    num_items = 15
    scores = unchanged(torch.zeros(3, num_items))
    targets = torch.tensor([0, 7, 14])
    ranks = ranks_from_scores(scores, targets)
    # Ties count against the target: every other item scores >= it.
    assert ranks.tolist() == [num_items - 1] * 3
    assert hit_rate(ranks.numpy(), 10) == 0.0


def test_all_equal_scores_with_mask_rank_behind_unmasked_only():
    num_items = 12
    scores = torch.full((2, num_items), 0.5)
    targets = torch.tensor([3, 4])
    rows = torch.tensor([0, 0, 0, 1])
    cols = torch.tensor([1, 2, 5, 0])
    ranks = ranks_from_scores(scores, targets, rows, cols)
    assert ranks.tolist() == [num_items - 1 - 3, num_items - 1 - 1]


def test_masked_items_never_outrank():
    scores = torch.tensor([[0.1, 9.0, 8.0, 0.5, 7.0, 0.0]])
    targets = torch.tensor([3])
    # Unmasked: items 1, 2, 4 score higher, so rank 3.
    assert ranks_from_scores(scores.clone(), targets).tolist() == [3]
    # Masking 1, 2, 4 leaves nothing above the target.
    rows, cols = torch.tensor([0, 0, 0]), torch.tensor([1, 2, 4])
    assert ranks_from_scores(scores.clone(), targets, rows, cols).tolist() == [0]


def test_strictly_better_target_ranks_first():
    scores = torch.tensor([[0.0, 1.0, 5.0, 1.0], [3.0, 3.0, 2.0, 1.0]])
    assert ranks_from_scores(scores, torch.tensor([2, 2])).tolist() == [0, 2]


def test_nan_scores_never_win(unchanged):
    scores = unchanged(torch.tensor([[float("nan"), 0.2, float("nan"), float("nan")],
                                     [1.0, float("nan"), 0.5, 2.0]]))
    ranks = ranks_from_scores(scores, torch.tensor([1, 2]))
    assert ranks.tolist() == [0, 2]  # row 1: items 0 and 3 beat 0.5, the NaN does not


def test_nan_target_ranks_last():
    scores = torch.tensor([[0.0, float("nan"), -5.0, 1.0]])
    assert ranks_from_scores(scores, torch.tensor([1])).tolist() == [3]


def test_target_score_read_before_masking():
    # A target that is also in the mask keeps its own score (only the others are masked).
    scores = torch.tensor([[1.0, 2.0, 3.0]])
    rows, cols = torch.tensor([0, 0]), torch.tensor([0, 2])
    assert ranks_from_scores(scores, torch.tensor([0]), rows, cols).tolist() == [1]


def test_ranks_from_scores_does_not_modify_input():
    scores = torch.randn(4, 9)
    before = scores.clone()
    ranks_from_scores(scores, torch.tensor([0, 1, 2, 3]), torch.tensor([0, 1]), torch.tensor([5, 6]))
    assert torch.equal(scores, before)


# --- ItemMask + rank_held_out against a brute-force reference ----------------------------------

def random_case(seed: int, num_users=23, num_items=17, density=0.3, nan_rate=0.05):
    rng = np.random.default_rng(seed)
    # Integer-valued scores: lots of ties, so the tie rule is really exercised.
    scores = rng.integers(0, 6, size=(num_users, num_items)).astype(np.float32)
    scores[rng.random(scores.shape) < nan_rate] = np.nan
    cells = np.argwhere(rng.random((num_users, num_items)) < density)
    # Feed the mask in shuffled order, with a few duplicate cells.
    cells = np.concatenate([cells, cells[: len(cells) // 10]])
    cells = cells[rng.permutation(len(cells))]
    mask_users, mask_items = cells[:, 0].astype(np.int64), cells[:, 1].astype(np.int64)
    masked: dict[int, set[int]] = {}
    for u, i in zip(mask_users, mask_items):
        masked.setdefault(int(u), set()).add(int(i))
    # Every user once (in a shuffled order), plus some users twice.
    users = np.concatenate([rng.permutation(num_users), rng.integers(0, num_users, 5)]).astype(np.int64)
    targets = np.array([rng.integers(0, num_items) for _ in users], dtype=np.int64)
    return scores, mask_users, mask_items, masked, users, targets


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("chunk_users", [1, 3, 10_000])
def test_rank_held_out_matches_brute_force(seed, chunk_users):
    scores, mu, mi, masked, users, targets = random_case(seed)
    num_users, num_items = scores.shape
    table = torch.as_tensor(scores)

    def score_all(u: torch.Tensor) -> torch.Tensor:
        assert u.dtype == torch.int64 and len(u) <= chunk_users
        return table[u].clone()

    mask = ItemMask(mu, mi, num_users)
    got = rank_held_out(score_all, users, targets, mask, chunk_users=chunk_users)
    assert got.shape == (len(users),)
    np.testing.assert_array_equal(got, brute_force_ranks(scores, users, targets, masked))


def test_rank_held_out_independent_of_chunking():
    scores, mu, mi, _, users, targets = random_case(42, num_users=40, num_items=30)
    table = torch.as_tensor(scores)
    mask = ItemMask(mu, mi, scores.shape[0])
    results = [rank_held_out(lambda u: table[u].clone(), users, targets, mask, chunk_users=c)
               for c in (1, 3, 7, 1024)]
    for other in results[1:]:
        np.testing.assert_array_equal(results[0], other)


def test_item_mask_rows_cols():
    users = np.array([2, 0, 2, 2, 3])
    items = np.array([5, 1, 0, 3, 4])
    mask = ItemMask(users, items, num_users=5)
    rows, cols = mask.rows_cols(torch.tensor([3, 1, 2, 2]))
    got = sorted(zip(rows.tolist(), cols.tolist()))
    # Query position 0 is user 3; user 1 has nothing; positions 2 and 3 are both user 2.
    assert got == sorted([(0, 4), (2, 0), (2, 3), (2, 5), (3, 0), (3, 3), (3, 5)])


def test_empty_user_list():
    mask = ItemMask(np.array([0]), np.array([1]), 2)
    out = rank_held_out(lambda u: torch.zeros(len(u), 3), np.zeros(0, np.int64), np.zeros(0, np.int64), mask)
    assert len(out) == 0


# --- Popularity ---------------------------------------------------------------------------------

def test_popularity_scores_are_counts():
    train_items = np.array([0, 0, 0, 2, 2, 4, 1, 0])
    pop = Popularity(train_items, num_items=6)
    scores = pop.score_all(torch.tensor([0, 3, 1]))
    expected = np.bincount(train_items, minlength=6).astype(np.float32)
    assert scores.shape == (3, 6)
    for row in scores:
        np.testing.assert_array_equal(row.numpy(), expected)
    # A caller writing into the scores (as masking does) must not change the counts.
    scores[:, 0] = -1.0
    np.testing.assert_array_equal(pop.score_all(torch.tensor([0]))[0].numpy(), expected)


def test_popularity_ranks_by_counts():
    # counts: item0=4, item1=1, item2=2, item3=0, item4=1, item5=0
    train_items = np.array([0, 0, 0, 0, 1, 2, 2, 4])
    pop = Popularity(train_items, num_items=6)
    users = np.array([0, 1, 2, 3])
    targets = np.array([0, 2, 1, 3])
    mask = ItemMask(np.array([2]), np.array([0]), num_users=4)  # user 2 already knows item 0
    ranks = rank_held_out(pop.score_all, users, targets, mask, chunk_users=2)
    # item0: nothing scores >= 4 -> 0; item2: item0 -> 1;
    # item1 for user 2 (item0 masked): item2, item4 (tie) -> 2; item3: every other item -> 5.
    assert ranks.tolist() == [0, 1, 2, 5]


# --- the paper's sampled protocol ------------------------------------------------------------------

from ncf.evaluate import draw_negatives, rank_test, sampled_negatives  # noqa: E402


def rank_sampled(score_all, users, targets, mask, num_items, seed, chunk_users=1024):
    """The sampled ranks of `rank_test`, whose full ranks are checked against rank_held_out."""
    full, sampled = rank_test(score_all, users, targets, mask, mask, num_items, seed, chunk_users)
    assert full.tolist() == rank_held_out(score_all, users, targets, mask, chunk_users).tolist()
    return sampled


def _positives(num_users=12, num_items=150, per_user=20, seed=0):
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(num_users), per_user)
    items = np.concatenate([rng.choice(num_items, per_user, replace=False) for _ in range(num_users)])
    return users, items, ItemMask(users, items, num_users)


def test_sampled_negatives_are_distinct_never_positive_and_99():
    users, items, mask = _positives()
    neg = sampled_negatives(np.arange(12), mask, 150, seed=3).numpy()
    assert neg.shape == (12, 99)
    for u in range(12):
        assert len(set(neg[u])) == 99
        assert not set(neg[u]) & set(items[users == u])
        assert neg[u].min() >= 0 and neg[u].max() < 150


def test_sampled_negatives_depend_on_the_seed_only_not_on_chunks():
    _, _, mask = _positives()
    all_users = sampled_negatives(np.arange(12), mask, 150, seed=3)
    one_by_one = torch.cat([sampled_negatives(np.array([u]), mask, 150, seed=3) for u in range(12)])
    assert torch.equal(all_users, one_by_one)
    assert not torch.equal(all_users, sampled_negatives(np.arange(12), mask, 150, seed=4))


def test_sampled_negatives_are_roughly_uniform():
    users = np.arange(2000)
    mask = ItemMask(users, np.zeros(2000, dtype=np.int64), 2000)  # everyone has item 0
    counts = np.bincount(sampled_negatives(users, mask, 200, seed=0, count=20).numpy().ravel(), minlength=200)
    assert counts[0] == 0
    expected = 2000 * 20 / 199
    assert counts[1:].min() > 0.7 * expected and counts[1:].max() < 1.3 * expected


def test_too_few_candidates_leave_slots_empty():
    users = np.zeros(5, dtype=np.int64)
    mask = ItemMask(users, np.arange(5), 1)
    neg = sampled_negatives(np.array([0]), mask, 8, seed=0).numpy()[0]
    assert sorted(n for n in neg if n >= 0) == [5, 6, 7] and (neg == -1).sum() == 5


def test_rank_sampled_matches_brute_force_and_chunking():
    users, items, mask = _positives()
    targets = np.array([items[users == u][0] for u in range(12)])
    weights = torch.randn(12, 150, generator=torch.Generator().manual_seed(0))
    score_all = lambda u: weights[u]  # noqa: E731
    got = rank_sampled(score_all, np.arange(12), targets, mask, 150, seed=1, chunk_users=5)
    neg = sampled_negatives(np.arange(12), mask, 150, seed=1).numpy()
    want = [(weights[u, neg[u]] >= weights[u, targets[u]]).sum().item() for u in range(12)]
    assert got.tolist() == want
    assert rank_sampled(score_all, np.arange(12), targets, mask, 150, seed=1, chunk_users=1).tolist() == want


def test_rank_sampled_constant_model_ranks_last():
    users, items, mask = _positives()
    targets = np.array([items[users == u][0] for u in range(12)])
    ranks = rank_sampled(lambda u: torch.zeros(len(u), 150), np.arange(12), targets, mask, 150, seed=0)
    assert (ranks == 99).all()


def test_negatives_drawn_once_give_every_model_the_same_ranks_as_drawing_them_per_chunk():
    users, items, mask = _positives(num_users=30, num_items=150)
    test_users = np.array([3, 0, 7, 29, 12, 5, 18], dtype=np.int64)
    targets = np.array([items[users == u][0] for u in test_users])
    drawn = draw_negatives(test_users, mask, 150, seed=5, chunk_users=3)
    assert torch.equal(drawn, sampled_negatives(test_users, mask, 150, seed=5))
    for seed in (0, 1):
        weights = torch.randn(30, 150, generator=torch.Generator().manual_seed(seed))
        def score_all(u, weights=weights):
            return weights[u]
        alone = rank_test(score_all, test_users, targets, mask, mask, 150, seed=5, chunk_users=2)
        shared = rank_test(score_all, test_users, targets, mask, mask, 150, seed=5, chunk_users=2, negatives=drawn)
        assert [a.tolist() for a in alone] == [b.tolist() for b in shared]
    # The draws given are the ones used: with every slot empty, no negative can beat the target.
    empty = torch.full_like(drawn, -1)
    assert rank_test(score_all, test_users, targets, mask, mask, 150, 5, 2, negatives=empty)[1].tolist() == [0] * 7
    assert shared[1].max() > 0
