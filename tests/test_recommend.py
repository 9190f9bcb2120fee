"""ncf.recommend, the recommend stage and `ncf recommend`: one ranking, no seen item, K per user."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from ncf import cli
from ncf.evaluate import ItemMask
from ncf.models import GMF, NeuMF, save_checkpoint
from ncf.recommend import BLOCK_USERS, describe, recommend, recommendations_frame

ROOT = Path(__file__).resolve().parents[1]


class Fixed:
    """A scorer with given scores [users, items]."""

    def __init__(self, scores):
        self.scores = torch.as_tensor(scores, dtype=torch.float32)

    def score_all(self, users):
        return self.scores[users].clone()


def mask_of(pairs, num_users):
    users = np.array([u for u, _ in pairs], dtype=np.int64)
    items = np.array([i for _, i in pairs], dtype=np.int64)
    return ItemMask(users, items, num_users)


def test_top_k_is_best_first_without_seen_items_and_ties_go_to_the_lower_item():
    scores = [[0.1, 0.9, 0.5, 0.5, 0.7, float("nan")],
              [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]]  # all tied: lower items first
    seen = mask_of([(0, 1), (1, 0), (1, 3)], 2)
    users, items, values = recommend(Fixed(scores).score_all, [1, 0], seen, 3, 2)
    assert users.tolist() == [0, 1]
    assert items.tolist() == [[4, 2, 3], [1, 2, 4]]  # item 1 seen; 2 and 3 tie: 2 first
    np.testing.assert_array_equal(values[0], np.float32([0.7, 0.5, 0.5]))


def test_a_user_with_fewer_unseen_items_than_k_gets_empty_slots_and_nan_is_never_recommended():
    scores = [[0.3, float("nan"), 0.2, 0.1]]
    users, items, values = recommend(Fixed(scores).score_all, [0], mask_of([(0, 3)], 1), 4, 1)
    assert items.tolist() == [[0, 2, -1, -1]]
    assert np.isnan(values[0, 2:]).all()


def test_one_user_alone_gets_the_same_floats_as_in_the_whole_run():
    # Batched products round differently with the batch's shape; blocks make a user's scores
    # independent of who else is asked for, so the stage and `ncf recommend` agree to the bit.
    torch.manual_seed(0)
    num_users, num_items = 3 * BLOCK_USERS + 5, 300
    model = NeuMF(num_users, num_items, gmf_dim=16, gmf_biases=True, mlp_dim=16, layers=[32, 16, 8]).eval()
    seen = mask_of([(u, (7 * u) % num_items) for u in range(num_users)], num_users)
    users, items, values = recommend(model.score_all, np.arange(num_users), seen, 10, num_users)
    assert users.tolist() == list(range(num_users))
    for user in (0, 5, BLOCK_USERS + 3, num_users - 1):
        _, one_items, one_values = recommend(model.score_all, [user], seen, 10, num_users)
        np.testing.assert_array_equal(one_items[0], items[user])
        assert one_values[0].tobytes() == values[user].tobytes()
        assert (7 * user) % num_items not in items[user]


def test_the_frame_keeps_ids_as_in_the_data_and_titles_where_known():
    users, items = np.array([0, 1]), np.array([[2, 0], [1, -1]])
    scores = np.float32([[0.5, 0.25], [0.75, np.nan]])
    user_ids = pd.DataFrame({"user": [0, 1], "user_id": ["ann", "bob"]})
    catalog = pd.DataFrame({"item": [0, 1, 2], "item_id": ["m10", "m20", "m30"], "title": ["A", None, "C"]})
    frame = recommendations_frame(users, items, scores, user_ids, catalog)
    assert frame.drop(columns="title").to_dict("list") == {
        "user_id": ["ann", "ann", "bob"], "rank": [1, 2, 1], "item_id": ["m30", "m10", "m20"],
        "score": [0.5, 0.25, 0.75]}
    assert frame["title"].tolist()[:2] == ["C", "A"] and pd.isna(frame["title"].iloc[2])
    untitled = recommendations_frame(users, items, scores, user_ids, catalog.drop(columns="title"))
    assert untitled["title"].isna().all()


# --- the stage and the command, on a tiny split ----------------------------------------------------

@pytest.fixture
def pipeline_outputs(tmp_path):
    """A split folder, catalog and three checkpoints as the pipeline writes them (9 users, 20 movies)."""
    rng = np.random.default_rng(3)
    num_users, num_items = 9, 20
    split = tmp_path / "data" / "split"
    split.mkdir(parents=True)
    rows = {"train": [], "valid": [], "test": []}
    for user in range(num_users):
        liked = rng.permutation(num_items)[:3 + user % 4]
        rows["train"] += [(user, int(i), 4.0, 100 + j) for j, i in enumerate(liked[:-2])]
        rows["valid"].append((user, int(liked[-2])))
        rows["test"].append((user, int(liked[-1])))
    pd.DataFrame(rows["train"], columns=["user", "item", "rating", "timestamp"]).to_parquet(split / "train.parquet")
    for name in ("valid", "test"):
        pd.DataFrame(rows[name], columns=["user", "item"]).to_parquet(split / f"{name}.parquet")
    pd.DataFrame({"user": range(num_users), "user_id": [11 + 10 * u for u in range(num_users)]}
                 ).to_parquet(split / "users.parquet")
    item_ids = [100 + 3 * i for i in range(num_items)]
    pd.DataFrame({"item": range(num_items), "item_id": item_ids}).to_parquet(split / "items.parquet")
    pd.DataFrame({"item": range(num_items), "item_id": item_ids,
                  "title": [f"Movie {i}" if i % 5 else None for i in range(num_items)],
                  "year": [1990.0 + i for i in range(num_items)], "genres": ["Drama"] * num_items}
                 ).to_parquet(tmp_path / "data" / "catalog.parquet")
    models = tmp_path / "models"
    torch.manual_seed(0)
    for kind, model in (("gmf", GMF(num_users, num_items, dim=4, biases=True)),
                        ("neumf", NeuMF(num_users, num_items, gmf_dim=4, gmf_biases=True, mlp_dim=4, layers=[8, 4]))):
        save_checkpoint(model, models / f"{kind}.pt", kind=kind, params={}, info={})
    (tmp_path / "params.yaml").write_text("device: cpu\nthreads: 1\nrecommend:\n  k: 5\n  model: neumf\n")
    return tmp_path


def run_recommend_stage(root: Path, params: str = "params.yaml"):
    return subprocess.run([sys.executable, str(ROOT / "stages" / "recommend.py"), "--params", params,
                           "--split", "data/split", "--catalog", "data/catalog.parquet", "--models", "models",
                           "--out", "data/recommendations.parquet"], cwd=root, capture_output=True, text=True)


def test_the_stage_writes_k_unseen_items_for_every_user_and_ncf_recommend_prints_the_same(pipeline_outputs, capsys):
    root = pipeline_outputs
    proc = run_recommend_stage(root)
    assert proc.returncode == 0, proc.stderr
    assert "neumf's top 5 for 9 users (45 rows)" in proc.stderr
    recs = pd.read_parquet(root / "data" / "recommendations.parquet")
    split = root / "data" / "split"
    users = pd.read_parquet(split / "users.parquet")
    items = pd.read_parquet(split / "items.parquet")
    catalog = pd.read_parquet(root / "data" / "catalog.parquet")
    assert list(recs.columns) == ["user_id", "rank", "item_id", "score", "title"]
    assert sorted(recs["user_id"].unique()) == sorted(users["user_id"])  # every user
    assert (recs.groupby("user_id")["rank"].apply(list) == [[1, 2, 3, 4, 5]] * len(users)).all()  # K each
    assert (recs.groupby("user_id")["score"].apply(lambda s: s.is_monotonic_decreasing)).all()
    # No seen item: every (user, item) of training, validation and test, in the data's ids.
    known = pd.concat([pd.read_parquet(split / f"{n}.parquet", columns=["user", "item"])
                       for n in ("train", "valid", "test")])
    known = known.merge(users, on="user").merge(items, on="item")
    assert not recs.merge(known, on=["user_id", "item_id"]).shape[0]
    # Titles where the catalogue has one, null where it has none.
    titled = recs.merge(catalog[["item_id", "title"]], on="item_id", suffixes=("", "_catalog"))
    assert titled["title"].equals(titled["title_catalog"])

    for user_id, mine in recs.groupby("user_id"):
        cli.main(["recommend", "--user", str(user_id), "-k", "5", "--model", str(root / "models" / "neumf.pt"),
                  "--split", str(split), "--catalog", str(root / "data" / "catalog.parquet")])
        lines = capsys.readouterr().out.splitlines()[1:]
        printed = [re.match(r"\s*\d+\. (.*)  \[logit ([-+]\d+\.\d\d)\]$", line).groups() for line in lines]
        by_item = catalog.set_index("item_id")
        expected = [(describe(by_item.loc[item].to_dict() | {"item_id": item, "title": by_item.loc[item, "title"]}),
                     f"{score:+.2f}")
                    for item, score in zip(mine["item_id"], mine["score"])]
        assert printed == expected, user_id


def test_the_stage_serves_the_model_the_params_name(pipeline_outputs):
    root = pipeline_outputs
    (root / "gmf.yaml").write_text("device: cpu\nthreads: 1\nrecommend:\n  k: 3\n  model: gmf\n")
    assert run_recommend_stage(root, "gmf.yaml").returncode == 0
    gmf = pd.read_parquet(root / "data" / "recommendations.parquet")
    assert len(gmf) == 27
    (root / "mlp.yaml").write_text("device: cpu\nrecommend:\n  model: mlp\n")
    proc = run_recommend_stage(root, "mlp.yaml")  # no mlp.pt in this folder
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "mlp.pt: not found" in proc.stderr
    (root / "bad.yaml").write_text("recommend:\n  model: ease\n")
    proc = run_recommend_stage(root, "bad.yaml")
    assert proc.returncode == 2 and "recommend.model: 'ease' is not one of neumf, gmf, mlp" in proc.stderr


def test_ncf_recommend_finds_users_whose_ids_are_strings(pipeline_outputs, capsys):
    split = pipeline_outputs / "data" / "split"
    users = pd.read_parquet(split / "users.parquet")
    users.assign(user_id="u" + users["user_id"].astype(str)).to_parquet(split / "users.parquet")
    cli.main(["recommend", "--user", "u21", "-k", "2", "--model", str(pipeline_outputs / "models" / "gmf.pt"),
              "--split", str(split), "--catalog", str(pipeline_outputs / "data" / "catalog.parquet")])
    assert capsys.readouterr().out.startswith("Top 2 for user u21 (")
