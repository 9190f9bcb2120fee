"""The simple baselines: EASE is the closed form it claims (on the most popular items when capped),
ItemKNN keeps k neighbours (computed in blocks, the same as the dense computation), iALS is
seeded and thread-independent, files round-trip, the stage chooses on validation and refuses
what memory cannot hold, and long fits show progress."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from ncf import baselines, config
from ncf.config import check_baselines, check_runnable, parse_params
from ncf.errors import CheckpointError, ParamsError
from ncf.evaluate import ranks_from_scores

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
    w = model.weights.toarray()
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


def stage_split(tmp_path, u, i, nu, ni):
    """The split folder the baselines stage reads; each user's last item is held out for validation."""
    frame = pd.DataFrame({"user": u, "item": i})
    valid = frame.groupby("user").nth(-1)
    split = tmp_path / "split"
    split.mkdir()
    frame.drop(valid.index).to_parquet(split / "train.parquet")
    valid.reset_index(drop=True).to_parquet(split / "valid.parquet")
    pd.DataFrame({"user": np.arange(nu)}).to_parquet(split / "users.parquet")
    pd.DataFrame({"item": np.arange(ni)}).to_parquet(split / "items.parquet")
    return split


def test_stage_chooses_on_validation_and_refits(tmp_path):
    u, i, nu, ni = random_interactions(users=40, items=24, per_user=8)
    split = stage_split(tmp_path, u, i, nu, ni)
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


def dense_itemknn(x, k):
    """The dense computation ItemKNN used before it was blocked (items x items), as a reference."""
    gram = torch.from_numpy((x.T @ x).toarray())
    norms = gram.diagonal().sqrt().clamp(min=1e-12)
    sim = gram / norms[:, None] / norms[None, :]
    sim.diagonal().zero_()
    k = min(k, sim.shape[0] - 1)
    top = torch.topk(sim, k, dim=0)
    return torch.zeros_like(sim).scatter_(0, top.indices, top.values).float()


def power_law_interactions(users=300, items=400, seed=1):
    """ml-100k-shaped (popular items, long tail, many ties in co-occurrence counts), small."""
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, items + 1) ** 0.8
    u, i = [], []
    for user in range(users):
        n = int(rng.integers(5, min(60, items // 2)))
        u += [user] * n
        i += list(rng.choice(items, n, replace=False, p=popularity / popularity.sum()))
    return np.array(u), np.array(i), users, items


@pytest.mark.parametrize("block", [1, 7, 400])
def test_itemknn_in_blocks_keeps_the_dense_neighbours_and_ranking(block):
    u, i, nu, ni = power_law_interactions()
    x = baselines.interactions(u, i, nu, ni)
    for k in (10, 50):
        reference = dense_itemknn(x, k)
        model = baselines.fit_itemknn(x, k, block=block)
        assert model.weights.shape == (ni, ni) and model.weights.nnz <= k * ni
        assert torch.equal(torch.from_numpy(model.weights.toarray()), reference)  # same neighbours, same values
        users = torch.arange(nu)
        dense_scores = torch.from_numpy(x.toarray().astype(np.float32)) @ reference
        scores = model.score_all(users)
        np.testing.assert_allclose(scores.numpy(), dense_scores.numpy(), rtol=1e-6, atol=1e-6)
        # Every item's rank (ties count against it, as in evaluation) is the same for every user.
        for target in (0, 5, 50, 399):
            targets = torch.full((nu,), target)
            assert torch.equal(ranks_from_scores(scores.clone(), targets),
                               ranks_from_scores(dense_scores.clone(), targets))


def test_itemknn_blocks_are_sized_by_memory_not_by_the_catalogue():
    assert baselines.block_items(1_682) == 1_682  # ml-100k: one block
    big = baselines.block_items(58_513)
    assert 1 <= big < 58_513 and 3 * 8 * 58_513 * big <= baselines.BLOCK_BYTES
    assert baselines.block_items(10**9) == 1


def test_ease_capped_fits_the_most_popular_items_and_never_recommends_the_rest():
    u, i, nu, ni = power_law_interactions(users=60, items=30)
    x = baselines.interactions(u, i, nu, ni)
    counts = np.asarray(x.sum(axis=0)).ravel()
    model = baselines.fit_ease(x, l2=10.0, max_items=12)
    fitted = model.items.numpy()
    assert model.weights.shape == (12, 12)  # never the 30 x 30 dense path
    assert len(fitted) == 12 and np.all(np.diff(fitted) > 0)
    assert counts[fitted].min() >= np.delete(counts, fitted).max()  # the most popular ones
    alone = baselines.fit_ease(x[:, fitted], l2=10.0)  # the same as EASE on those items only
    assert torch.equal(model.weights, alone.weights)
    scores = model.score_all(torch.arange(nu))
    rest = np.setdiff1d(np.arange(ni), fitted)
    assert torch.all(scores[:, rest] == -torch.inf)
    assert torch.equal(scores[:, fitted], alone.score_all(torch.arange(nu)))
    # A held-out item outside the fitted ones ranks last; a fitted one ranks among the fitted only.
    ranks = ranks_from_scores(scores.clone(), torch.full((nu,), int(rest[0])))
    assert torch.all(ranks == ni - 1)
    assert torch.all(ranks_from_scores(scores.clone(), torch.full((nu,), int(fitted[0]))) < 12)
    # At or above the catalogue size, it is the plain closed form on every item.
    whole = baselines.fit_ease(x, l2=10.0, max_items=ni)
    assert whole.items is None and torch.equal(whole.weights, baselines.fit_ease(x, l2=10.0).weights)


def test_saved_capped_ease_scores_the_same_after_loading(tmp_path):
    u, i, nu, ni = power_law_interactions(users=60, items=30)
    model = baselines.fit_ease(baselines.interactions(u, i, nu, ni), l2=10.0, max_items=12)
    baselines.save(model, tmp_path / "ease.pt", trained_on="train", info={})
    loaded = baselines.load(tmp_path / "ease.pt", {"num_users": nu, "num_items": ni})
    assert torch.equal(loaded.items, model.items)
    assert torch.equal(loaded.score_all(torch.arange(nu)), model.score_all(torch.arange(nu)))


def test_files_of_an_earlier_format_ask_for_a_rerun(tmp_path):
    torch.save({"format": 1, "kind": "itemknn", "hyper": {"k": 2}, "tensors": {}}, tmp_path / "itemknn.pt")
    with pytest.raises(CheckpointError, match=r"earlier version .*format 1, now 2.*dvc repro baselines"):
        baselines.load(tmp_path / "itemknn.pt")


def test_ease_memory_is_refused_before_it_is_allocated():
    gb = 10**9
    check_baselines(parse_params({}), 58_513, limit_bytes=8 * gb)  # the default cap: 2.4 GB, allowed
    check_baselines(parse_params({}), 1_682, limit_bytes=1 * gb)  # ml-100k: 68 MB
    with pytest.raises(ParamsError) as err:
        check_baselines(parse_params({"ease": {"max_items": 100_000}}), 58_513, limit_bytes=24 * gb)
    message = str(err.value)
    assert "\n" not in message and message.startswith("ease.max_items: ")
    assert "58,513 of the 58,513 movies needs about 109.6 GB" in message
    # The value it suggests is the largest that passes.
    most = int(message.split("set ease.max_items to ")[1].split(" ")[0].replace(",", ""))
    check_baselines(parse_params({"ease": {"max_items": most}}), 58_513, limit_bytes=24 * gb)
    with pytest.raises(ParamsError):
        check_baselines(parse_params({"ease": {"max_items": most + 1}}), 58_513, limit_bytes=24 * gb)


def test_validate_refuses_ease_where_the_catalogue_size_is_known(monkeypatch):
    monkeypatch.setattr(config, "memory_limit_bytes", lambda: 8 * 10**9)
    params = parse_params({"ease": {"max_items": 60_000}})
    check_runnable(params)  # size unknown (a user's own file, synthetic data): nothing to compare with
    with pytest.raises(ParamsError, match=r"ease.max_items: fitting EASE on 59,047 of the 59,047 movies"):
        check_runnable(params, num_items=59_047)
    check_runnable(parse_params({}), num_items=59_047)  # the default cap fits in 8 GB


def test_progress_is_one_line_per_step_outside_a_terminal(monkeypatch, capsys):
    monkeypatch.setenv("CI", "true")
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert not baselines._interactive()  # CI=true: lines, even on a terminal
    progress = baselines.Progress("itemknn k=10: similarities", 4, unit="item", interval=0.0)
    assert progress.bar is None
    for _ in range(4):
        progress.update()
    progress.close()
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 4 and lines[1].startswith("[baselines] itemknn k=10: similarities: 2/4 items (50%), ")
    assert all(line.endswith(" s left") for line in lines)
    monkeypatch.setenv("CI", "false")
    assert baselines._interactive()


def test_stage_fits_capped_ease_and_refuses_what_memory_cannot_hold(tmp_path, monkeypatch, capsys):
    u, i, nu, ni = random_interactions(users=40, items=24, per_user=8)
    split = stage_split(tmp_path, u, i, nu, ni)
    params = tmp_path / "params.yaml"
    params.write_text("threads: 1\nease: {l2: [10], max_items: 10}\nials: {factors: [4], regularization: [1]}\n"
                      "itemknn: {k: [2]}\n")
    command = [sys.executable, str(ROOT / "stages/baselines.py"), "--params", str(params), "--split", str(split),
               "--out", str(tmp_path / "models"), "--metrics", str(tmp_path / "m.json")]
    proc = subprocess.run(command, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "ease: fit on the 10 most popular of 24 items (ease.max_items)" in proc.stderr
    saved = torch.load(tmp_path / "models" / "ease.pt", weights_only=True)
    assert saved["tensors"]["weights"].shape == (10, 10) and len(saved["tensors"]["items"]) == 10
    assert json.loads((tmp_path / "m.json").read_text())["ease"]["fitted_items"] == 10
    # Under a memory limit too small for even that, the stage refuses before fitting anything.
    import runpy

    monkeypatch.setattr(config, "memory_limit_bytes", lambda: 1_000)  # EASE on 10 items: 2,400 bytes
    monkeypatch.setattr(sys, "argv", [str(command[1])] + command[2:-4] + ["--out", str(tmp_path / "none"),
                                                                         "--metrics", str(tmp_path / "none.json")])
    monkeypatch.syspath_prepend(str(ROOT / "stages"))
    with pytest.raises(SystemExit) as code:
        runpy.run_path(command[1], run_name="__main__")
    assert code.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ease.max_items: fitting EASE on 10 of the 24 movies") and err.count("\n") == 1
    assert not (tmp_path / "none").exists() and not (tmp_path / "none.json").exists()
