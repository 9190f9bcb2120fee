"""The simple baselines: EASE is the closed form it claims, ItemKNN keeps k neighbours, iALS is
seeded and thread-independent, files round-trip, and the stage chooses on validation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from ncf import baselines
from ncf.config import parse_params
from ncf.errors import CheckpointError

ROOT = Path(__file__).resolve().parents[1]


def random_interactions(users=30, items=20, per_user=6, seed=0):
    rng = np.random.default_rng(seed)
    u = np.repeat(np.arange(users), per_user)
    # Two taste clusters, so that item-item structure exists.
    i = np.concatenate([rng.choice(np.arange(items // 2) + (items // 2) * (user % 2), per_user, replace=False)
                        for user in range(users)])
    return u, i, users, items


def test_interactions_are_binary_even_with_duplicates():
    x = baselines.interactions(np.array([0, 0, 1]), np.array([2, 2, 0]), 2, 3)
    assert x.toarray().tolist() == [[0, 0, 1], [1, 0, 0]]


def test_ease_is_ridge_regression_of_each_item_on_the_others():
    u, i, nu, ni = random_interactions()
    x = baselines.interactions(u, i, nu, ni)
    model = baselines.fit_ease(x, l2=5.0)
    dense = x.toarray()
    weights = model.weights.double().numpy()
    assert np.all(np.diag(weights) == 0)
    for j in (0, 7, 13):  # column j: min ||x_j - X_{-j} b||^2 + l2 ||b||^2, solved directly
        others = np.delete(dense, j, axis=1)
        b = np.linalg.solve(others.T @ others + 5.0 * np.eye(ni - 1), others.T @ dense[:, j])
        np.testing.assert_allclose(np.delete(weights[:, j], j), b, rtol=1e-4, atol=1e-5)
    scores = model.score_all(torch.tensor([0, 3]))
    np.testing.assert_allclose(scores.numpy(), (dense[[0, 3]] @ weights), rtol=1e-5, atol=1e-5)


def test_itemknn_keeps_k_cosine_neighbours_per_item():
    u, i, nu, ni = random_interactions()
    x = baselines.interactions(u, i, nu, ni)
    model = baselines.fit_itemknn(x, k=3)
    w = model.weights.numpy()
    assert np.all((w != 0).sum(axis=0) <= 3) and np.all(np.diag(w) == 0)
    dense = x.toarray()
    norms = np.linalg.norm(dense, axis=0)
    cosine = dense.T @ dense / np.outer(norms, norms)
    np.fill_diagonal(cosine, 0)
    for j in range(ni):  # what is kept is the top 3 of column j
        np.testing.assert_allclose(np.sort(w[:, j])[-3:], np.sort(cosine[:, j])[-3:], rtol=1e-6)


def test_ials_is_seeded_and_does_not_depend_on_threads():
    u, i, nu, ni = random_interactions()
    x = baselines.interactions(u, i, nu, ni)
    hyper = {"factors": 8, "regularization": 1.0, "alpha": 1.0, "iterations": 5}
    one = baselines.fit("ials", x, hyper, seed=3, threads=1)
    two = baselines.fit("ials", x, hyper, seed=3, threads=2)
    other = baselines.fit("ials", x, hyper, seed=4, threads=1)
    users = torch.arange(nu)
    assert torch.equal(one.score_all(users), two.score_all(users))
    assert not torch.equal(one.score_all(users), other.score_all(users))
    # It learns the two clusters: a user's own cluster scores higher than the other one.
    scores = one.score_all(users).numpy()
    own = np.array([scores[k, (k % 2) * (ni // 2):(k % 2 + 1) * (ni // 2)].mean() for k in range(nu)])
    other_cluster = np.array([scores[k, (1 - k % 2) * (ni // 2):(2 - k % 2) * (ni // 2)].mean() for k in range(nu)])
    assert np.all(own > other_cluster)


@pytest.mark.parametrize("kind", baselines.KINDS)
def test_saved_baselines_score_the_same_after_loading(tmp_path, kind):
    u, i, nu, ni = random_interactions()
    x = baselines.interactions(u, i, nu, ni)
    hyper = baselines.grid(kind, parse_params({"ials": {"factors": [4], "regularization": [1.0]}}))[0]
    model = baselines.fit(kind, x, hyper, seed=0, threads=1)
    baselines.save(model, tmp_path / f"{kind}.pt", trained_on="train", info={"tried": 1})
    loaded = baselines.load(tmp_path / f"{kind}.pt", {"num_users": nu, "num_items": ni})
    users = torch.arange(nu)
    assert loaded.kind == kind and loaded.hyper == model.hyper
    assert torch.equal(loaded.score_all(users), model.score_all(users))
    with pytest.raises(CheckpointError, match="fit on 30 users x 20 items, but the split has 31 x 20"):
        baselines.load(tmp_path / f"{kind}.pt", {"num_users": 31, "num_items": ni})


def test_unreadable_or_missing_baseline_files_are_one_line_errors(tmp_path):
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"bad.pt: not a baseline written by this project .*dvc repro baselines"):
        baselines.load(tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match=r"none.pt: not found; run: dvc repro baselines"):
        baselines.load(tmp_path / "none.pt")


def test_grids_follow_params_in_order():
    params = parse_params({"ease": {"l2": [1, 2]}, "ials": {"factors": [4, 8], "regularization": [1], "alpha": [1, 2]},
                           "itemknn": {"k": [5]}})
    assert baselines.grid("ease", params) == [{"l2": 1.0}, {"l2": 2.0}]
    assert [(h["factors"], h["alpha"]) for h in baselines.grid("ials", params)] == [(4, 1.0), (4, 2.0), (8, 1.0),
                                                                                   (8, 2.0)]
    assert baselines.grid("itemknn", params) == [{"k": 5}]


def test_stage_chooses_on_validation_and_refits(tmp_path):
    u, i, nu, ni = random_interactions(users=40, items=24, per_user=8)
    frame = pd.DataFrame({"user": u, "item": i})
    # The last item of each user is held out twice: validation, then test.
    valid = frame.groupby("user").nth(-1)
    train = frame.drop(valid.index)
    split = tmp_path / "split"
    split.mkdir()
    train.to_parquet(split / "train.parquet")
    valid.reset_index(drop=True).to_parquet(split / "valid.parquet")
    pd.DataFrame({"user": np.arange(nu)}).to_parquet(split / "users.parquet")
    pd.DataFrame({"item": np.arange(ni)}).to_parquet(split / "items.parquet")
    params = tmp_path / "params.yaml"
    params.write_text("threads: 1\nease: {l2: [0.5, 50]}\nials: {factors: [4], regularization: [1]}\n"
                      "itemknn: {k: [2, 5]}\n")
    proc = subprocess.run([sys.executable, str(ROOT / "stages/baselines.py"), "--params", str(params),
                           "--split", str(split), "--out", str(tmp_path / "models"),
                           "--metrics", str(tmp_path / "m.json")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "m.json").read_text())
    assert set(summary) == set(baselines.KINDS)
    # The chosen setting is the one the log shows with the best validation HR@10.
    for kind in baselines.KINDS:
        logged = [line for line in proc.stderr.splitlines() if line.startswith(f"[baselines] {kind} {{")]
        best = max(float(line.split("valid hr@10 ")[1].split(",")[0]) for line in logged)
        assert summary[kind]["valid"]["hr@10"] == pytest.approx(best, abs=5e-5)
        saved = torch.load(tmp_path / "models" / f"{kind}.pt", weights_only=True)
        assert saved["trained_on"] == "train+valid" and saved["hyper"] == summary[kind]["chosen"]
