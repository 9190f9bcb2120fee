"""ncf.train: the loop learns, selects its epoch on validation only, stops early, is deterministic."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from ncf.models import GMF, MLP, NeuMF
from ncf.errors import TrainingError
from ncf.runtime import stage_seed
from ncf.train import TrainData, epoch_samples, fit_epochs, fit_select, sample_epoch
from ncf.sampling import NegativeSampler


def clustered(num_users=30, num_items=24, per_user=6, seed=0):
    """Users of cluster c like items i with i % 3 == c; the last liked item is held out."""
    rng = np.random.default_rng(seed)
    train, valid = [], []
    for user in range(num_users):
        liked = rng.permutation([i for i in range(num_items) if i % 3 == user % 3])[:per_user + 1]
        train += [(user, int(i)) for i in liked[:-1]]
        valid.append((user, int(liked[-1])))
    train = pd.DataFrame(train, columns=["user", "item"])
    valid = pd.DataFrame(valid, columns=["user", "item"])
    return TrainData.from_frames(train, valid, num_users, num_items)


def run_fit(model, data, **overrides):
    kwargs = dict(name="gmf", num_negatives=2, batch_size=64, max_epochs=15, patience=15,
                  optimizer="adam", lr=0.05, l2=0.0, seed=0, device="cpu", log=lambda _: None)
    kwargs.update(overrides)
    return fit_select(model, data, **kwargs)


def test_gmf_learns_the_clusters():
    torch.manual_seed(0)
    data = clustered()
    result = run_fit(GMF(data.num_users, data.num_items, dim=8), data)
    losses = [row["loss"] for row in result.history]
    assert losses[-1] < 0.5 * losses[0]
    # 8 candidates per user are liked, 10 are shown: a learned model hits nearly always,
    # while chance is about 10 / (24 - 6) (and popularity is flat here).
    assert result.best_valid["hr@10"] >= 0.9


def test_best_epoch_is_chosen_on_validation_and_its_state_is_returned():
    torch.manual_seed(0)
    data = clustered()
    model = MLP(data.num_users, data.num_items, dim=4, layers=[8, 4])
    result = run_fit(model, data, name="mlp", lr=0.02, max_epochs=8, patience=8)
    hrs = [(row["valid_hr10"], row["valid_ndcg10"]) for row in result.history]
    assert result.best_epoch == 1 + hrs.index(max(hrs))
    model.load_state_dict(result.state_dict)
    from ncf.train import validate

    assert validate(model, data, 1024, "cpu") == pytest.approx(result.best_valid)


def test_early_stopping_after_patience_epochs_without_improvement():
    torch.manual_seed(0)
    data = clustered()
    # A learning rate this small leaves validation flat, so patience decides when to stop.
    result = run_fit(GMF(data.num_users, data.num_items, dim=4), data, lr=1e-9, patience=2, max_epochs=20)
    assert result.epochs_run == result.best_epoch + 2
    assert result.epochs_run < 20


def test_validate_initial_counts_the_untrained_model_as_epoch_zero():
    torch.manual_seed(0)
    data = clustered()
    trained = run_fit(GMF(data.num_users, data.num_items, dim=8), data)
    model = GMF(data.num_users, data.num_items, dim=8)
    model.load_state_dict(trained.state_dict)
    # A penalty that shrinks every embedding to ~0 (all scores tie, so HR@10 falls to 0):
    # epoch 0, the starting point, must be kept.
    result = run_fit(model, data, optimizer="sgd", lr=0.3, l2=20.0, max_epochs=3, patience=3,
                     validate_initial=True)
    assert max(row["valid_hr10"] for row in result.history[1:]) < result.history[0]["valid_hr10"]
    assert result.history[0]["epoch"] == 0 and result.history[0]["loss"] is None
    assert result.best_epoch == 0
    assert result.best_valid["hr@10"] == pytest.approx(trained.best_valid["hr@10"])


def test_same_seed_same_run_other_seed_other_run():
    data = clustered()

    def once(seed):
        torch.manual_seed(stage_seed(seed, "init"))
        model = NeuMF(data.num_users, data.num_items, gmf_dim=4, gmf_biases=True, mlp_dim=4, layers=[8, 4])
        result = run_fit(model, data, name="neumf", max_epochs=3, l2=0.01, seed=stage_seed(seed, "fit"))
        return result.history, result.state_dict

    history_a, state_a = once(0)
    history_b, state_b = once(0)
    assert history_a == history_b
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    history_c, _ = once(1)
    assert history_c != history_a


def test_fit_epochs_trains_exactly_that_many_epochs_without_validating():
    data = clustered()
    kwargs = dict(name="gmf", num_negatives=2, batch_size=64, optimizer="adam", lr=0.05, l2=0.0, seed=0,
                  device="cpu", log=lambda _: None)
    torch.manual_seed(0)
    model = GMF(data.num_users, data.num_items, dim=4)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    result = fit_epochs(model, data, epochs=3, **kwargs)
    assert result.epochs_run == 3 and [row["epoch"] for row in result.history] == [1, 2, 3]
    assert all(row["valid_hr10"] is None and row["valid_ndcg10"] is None for row in result.history)
    assert all(torch.equal(result.state_dict[k], v) for k, v in model.state_dict().items())
    # Same seed, same first epochs as the early-stopping run: both train with TrainLoop.train.
    torch.manual_seed(0)
    selected = fit_select(GMF(data.num_users, data.num_items, dim=4), data, max_epochs=3, patience=3, **kwargs)
    assert [row["loss"] for row in selected.history] == [row["loss"] for row in result.history]
    # No epochs: the initial state, untouched.
    torch.manual_seed(0)
    none = fit_epochs(GMF(data.num_users, data.num_items, dim=4), data, epochs=0, **kwargs)
    assert none.epochs_run == 0 and none.history == []
    assert all(torch.equal(none.state_dict[k], v) for k, v in initial.items())


def test_diverging_loss_stops_with_a_message_naming_epoch_and_params():
    torch.manual_seed(0)
    data = clustered()
    model = GMF(data.num_users, data.num_items, dim=4)
    with torch.no_grad():
        model.out.weight.fill_(float("nan"))
    with pytest.raises(TrainingError, match=r"gmf: the training loss became nan in epoch 1; lower gmf.lr"):
        run_fit(model, data)


def test_epoch_samples_hold_every_positive_once_and_k_negatives_each():
    data = clustered()
    sampler = NegativeSampler(data.users, data.items, data.num_items)
    users, items, labels = epoch_samples(data.users, data.items, sampler, 3, torch.Generator().manual_seed(0))
    n = len(data.users)
    assert len(users) == 4 * n and labels.sum() == n
    pos = sorted(zip(users[labels == 1].tolist(), items[labels == 1].tolist()))
    assert pos == sorted(zip(data.users.tolist(), data.items.tolist()))
    assert not sampler.is_positive(users[labels == 0], items[labels == 0]).any()
    # Shuffled: positives are not all first.
    assert not bool(labels[:n].all())


def test_l2_penalty_is_the_sum_of_squares_of_the_looked_up_rows():
    model = NeuMF(5, 7, gmf_dim=3, gmf_biases=True, mlp_dim=2, layers=[4])
    users, items = torch.tensor([0, 4, 4]), torch.tensor([6, 1, 1])
    reg = []
    model(users, items, reg)
    expected = sum(
        emb(idx).pow(2).sum()
        for emb, idx in ((model.gmf.user, users), (model.gmf.item, items), (model.gmf.user_bias, users),
                         (model.gmf.item_bias, items), (model.mlp.user, users), (model.mlp.item, items))
    )
    assert torch.allclose(sum(reg), expected)


def test_a_chunked_epoch_holds_every_positive_once_with_its_own_negatives():
    data = clustered()
    sampler = NegativeSampler(data.users, data.items, data.num_items)
    chunks = list(sample_epoch(data.users, data.items, sampler, 3, torch.Generator().manual_seed(0), chunks=4))
    assert len(chunks) == 4
    sizes = [len(c[0]) for c in chunks]
    assert max(sizes) - min(sizes) <= 4  # near-equal runs of positives, 4 samples each
    users, items, labels = (torch.cat(parts) for parts in zip(*chunks))
    n = len(data.users)
    assert len(users) == 4 * n and labels.sum() == n
    pos = sorted(zip(users[labels == 1].tolist(), items[labels == 1].tolist()))
    assert pos == sorted(zip(data.users.tolist(), data.items.tolist()))
    assert not sampler.is_positive(users[labels == 0], items[labels == 0]).any()
    for u, _, y in chunks:  # every chunk carries its positives' users, 3 negatives each
        assert sorted(u.tolist()) == sorted(u[y == 1].repeat_interleave(4).tolist())


def test_training_memory_is_bounded_by_the_chunk(monkeypatch):
    # With a chunk of 64 samples, an epoch of the clustered data is drawn in many pieces, and
    # each optimiser step sees at most one chunk; fit still trains and validates.
    import ncf.train as train

    monkeypatch.setattr(train, "CHUNK_SAMPLES", 64)
    seen = []
    real = train.epoch_samples
    monkeypatch.setattr(train, "epoch_samples", lambda *a, **k: seen.append(real(*a, **k)) or seen[-1])
    torch.manual_seed(0)
    data = clustered()
    result = run_fit(GMF(data.num_users, data.num_items, dim=4), data, max_epochs=2)
    assert result.epochs_run == 2
    per_epoch = len(seen) // 2
    assert per_epoch == train.epoch_chunks(len(data.users) * 3) > 1  # 2 negatives a positive
    assert max(len(s[0]) for s in seen) <= 64 + 3


def test_a_finite_but_exploding_loss_stops_training():
    torch.manual_seed(0)
    data = clustered()
    model = GMF(data.num_users, data.num_items, dim=4)
    with torch.no_grad():
        model.path.user.weight.mul_(1e4)  # logits of about 1e4: a loss far above DIVERGED_LOSS
        model.path.item.weight.mul_(1e4)
    with pytest.raises(TrainingError, match=r"gmf: the training loss became .* \(diverged: above 100.0\) in epoch 1"):
        run_fit(model, data, lr=1e-6)


# --- validation that scales: a fixed sample of validation users, validating every N epochs -------

def test_a_validation_sample_is_fixed_by_its_seed_and_reports_standard_errors():
    from ncf.train import validate, validation_sample

    data = clustered(num_users=60)
    sample = validation_sample(data, 20, seed=7)
    assert len(sample) == 20 and np.all(np.diff(sample) > 0)
    np.testing.assert_array_equal(sample, validation_sample(data, 20, seed=7))
    assert not np.array_equal(sample, validation_sample(data, 20, seed=8))
    assert validation_sample(data, 0, seed=7) is None and validation_sample(data, 60, seed=7) is None

    torch.manual_seed(0)
    model = GMF(data.num_users, data.num_items, dim=8)
    result = run_fit(model, data, max_epochs=4, patience=4, valid_users=20, valid_seed=7)
    frame = result.history_frame()
    assert list(frame.columns) == ["epoch", "loss", "valid_hr10", "valid_ndcg10", "valid_hr10_se", "valid_ndcg10_se"]
    model.load_state_dict(result.state_dict)
    on_sample = validate(model, data, 1024, "cpu", sample)
    assert on_sample == pytest.approx(result.best_valid)
    hits = on_sample["hr@10"]
    assert on_sample["hr@10_se"] == pytest.approx(np.sqrt(hits * (1 - hits) / 19), abs=1e-6)  # ddof=1 over 20
    # Every user, the default: the curve keeps its four columns.
    assert list(run_fit(GMF(data.num_users, data.num_items, dim=8), data, max_epochs=2).history_frame().columns) \
        == ["epoch", "loss", "valid_hr10", "valid_ndcg10"]


def test_validating_every_third_epoch_chooses_among_those_and_the_last():
    torch.manual_seed(0)
    data = clustered()
    result = run_fit(GMF(data.num_users, data.num_items, dim=8), data, max_epochs=7, patience=7, valid_every=3)
    validated = [row["epoch"] for row in result.history if row["valid_hr10"] is not None]
    assert validated == [3, 6, 7]
    assert [row["epoch"] for row in result.history] == list(range(1, 8))  # every epoch's loss is kept
    assert result.best_epoch in validated
    assert result.history_frame()["valid_hr10"].isna().sum() == 4
