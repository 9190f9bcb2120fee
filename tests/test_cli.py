"""ncf.compare, `ncf compare` and `ncf recommend`: answers that are known in advance."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ncf import cli
from ncf.compare import paired
from ncf.metrics import hit_rate, ndcg


def test_identical_models_interval_covers_zero_and_p_is_one():
    ranks = np.random.default_rng(0).integers(0, 100, size=943)
    for metric in ("hr", "ndcg"):
        r = paired(ranks, ranks, metric)
        assert r.diff == 0 and r.low <= 0 <= r.high and r.p_value == 1.0


def test_always_first_against_never_in_top_k_is_significant():
    n = 200
    r = paired(np.full(n, 500), np.zeros(n, dtype=int), "hr", k=10, resamples=2000)
    assert r.a == 0 and r.b == 1 and r.diff == 1
    assert r.low == r.high == 1
    assert r.p_value < 0.001


def test_means_are_the_metrics_of_each_side():
    rng = np.random.default_rng(1)
    a, b = rng.integers(0, 60, 500), rng.integers(0, 60, 500)
    hr, nd = paired(a, b, "hr", resamples=500), paired(a, b, "ndcg", resamples=500)
    assert hr.a == pytest.approx(hit_rate(a, 10)) and hr.b == pytest.approx(hit_rate(b, 10))
    assert nd.a == pytest.approx(ndcg(a, 10)) and nd.b == pytest.approx(ndcg(b, 10))


def test_noise_is_not_significant_and_a_real_gain_is():
    rng = np.random.default_rng(2)
    a = rng.integers(0, 40, 943)
    shuffled = rng.permutation(a)  # same distribution, no systematic difference per user
    assert paired(a, shuffled, "hr", resamples=2000).p_value > 0.05
    better = np.where(rng.random(943) < 0.3, 0, a)  # 30 % of users now rank their item first
    r = paired(a, better, "hr", resamples=2000)
    assert r.diff > 0 and r.low > 0 and r.p_value < 0.01


def test_reproducible_for_a_seed():
    rng = np.random.default_rng(3)
    a, b = rng.integers(0, 30, 300), rng.integers(0, 30, 300)
    assert paired(a, b, seed=5) == paired(a, b, seed=5)


def test_unequal_inputs_are_refused():
    with pytest.raises(ValueError):
        paired(np.zeros(3), np.zeros(4))


@pytest.mark.parametrize("text, want", [
    ("HEAD", ("HEAD", "neumf")), ("HEAD:gmf", ("HEAD", "gmf")), ("gmf", (None, "gmf")),
    ("workspace:mlp", (None, "mlp")), ("my-exp", ("my-exp", "neumf")),
])
def test_sides(text, want):
    assert cli.parse_side(text) == want


def test_unknown_model_is_a_one_line_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["compare", "HEAD:nope", "gmf"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip() == ("error: HEAD:nope: unknown model 'nope'; use one of neumf, gmf, mlp, "
                                               "popularity, ease, ials, itemknn")


def test_compare_two_models_of_one_run(monkeypatch, capsys):
    users = np.arange(300)
    frame = pd.DataFrame({"user": users, "item": users % 7, "gmf": np.full(300, 50),
                          "neumf": np.zeros(300, dtype=int), "mlp": users % 20, "popularity": users})
    monkeypatch.setattr(cli, "read_ranks", lambda rev: frame)
    cli.main(["compare", "gmf", "neumf", "--resamples", "500"])
    out = capsys.readouterr().out
    assert "300 test users, paired" in out
    assert "hr@10" in out and "+1.0000" in out
    assert "unlikely to be noise" in out


def test_compare_refuses_different_test_sets(monkeypatch):
    a = pd.DataFrame({"user": [0, 1], "item": [3, 4], "neumf": [0, 1]})
    b = pd.DataFrame({"user": [0, 1], "item": [3, 5], "neumf": [0, 1]})
    monkeypatch.setattr(cli, "read_ranks", lambda rev: a if rev == "x" else b)
    with pytest.raises(SystemExit):
        cli.main(["compare", "x", "y"])


# --- ncf recommend ------------------------------------------------------------------------------

@pytest.fixture
def trained_split(tmp_path):
    """A split folder in the pipeline's format and a GMF checkpoint that prefers high item ids."""
    import torch

    from ncf.models import GMF, save_checkpoint

    split = tmp_path / "split"
    split.mkdir()
    titles = ["Alien", "Brazil", "Casablanca", "Dune", "Eraserhead", "Fargo"]
    pd.DataFrame({"user": [0, 1, 2], "user_id": [196, 7, 42]}).to_parquet(split / "users.parquet")
    pd.DataFrame({"item": range(6), "item_id": [10, 20, 30, 40, 50, 60], "title": titles,
                  "year": pd.array([1979, 1985, None, 1984, 1977, 1996], dtype="Int16"),
                  "genres": ["Sci-Fi", "Comedy|Sci-Fi", "Drama", "Sci-Fi", "Horror", "Crime"]}
                 ).to_parquet(tmp_path / "catalog.parquet")
    pd.DataFrame({"item": range(6), "item_id": [10, 20, 30, 40, 50, 60]}).to_parquet(split / "items.parquet")
    pd.DataFrame({"user": [0, 0, 1], "item": [5, 0, 1], "rating": [4.0, 3.0, 5.0],
                  "timestamp": [2, 1, 1]}).to_parquet(split / "train.parquet")
    pd.DataFrame({"user": [0], "item": [3]}).to_parquet(split / "valid.parquet")
    pd.DataFrame({"user": [0], "item": [4]}).to_parquet(split / "test.parquet")
    model = GMF(3, 6, dim=1)
    with torch.no_grad():
        model.path.user.weight.fill_(1.0)
        model.path.item.weight.copy_(torch.arange(6, dtype=torch.float32)[:, None])
        model.out.weight.fill_(1.0)
        model.out.bias.zero_()
    save_checkpoint(model, tmp_path / "gmf.pt", kind="gmf", params={}, info={})
    return split, tmp_path / "gmf.pt"


def test_recommend_lists_unseen_titles_best_first_with_history(trained_split, capsys):
    split, ckpt = trained_split
    cli.main(["recommend", "--user", "196", "-k", "3", "--history", "2", "--model", str(ckpt),
              "--split", str(split), "--catalog", str(split.parent / "catalog.parquet")])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("Top 2 for user 196 (4 interactions)")  # only 2 unseen
    assert lines[1].startswith("  1. Casablanca - Drama")  # item 2: no year shown
    assert lines[2].startswith("  2. Brazil (1985) - Comedy, Sci-Fi")
    assert "Fargo" not in "\n".join(lines[:3])  # seen in training: never recommended
    assert lines[3].startswith("Last 2 rated")
    assert lines[4].strip() == "Dune (1984) - Sci-Fi" and lines[5].strip() == "Eraserhead (1977) - Horror"


def test_recommend_unknown_user_is_one_line(trained_split, capsys):
    split, ckpt = trained_split
    with pytest.raises(SystemExit) as exit_:
        cli.main(["recommend", "--user", "5", "--model", str(ckpt), "--split", str(split),
                  "--catalog", str(split.parent / "catalog.parquet")])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == (f"error: user 5 is not in {split}/users.parquet "
                                       "(ids as in the data: 7-196)\n")


def test_runs_are_paired_per_user_and_averaged_over_seeds():
    # User 0: A wins on seed 0, B on seed 1 -> no difference for that user; user 1: B always wins.
    a = np.array([[0, 50], [50, 50]])
    b = np.array([[50, 0], [0, 0]])
    r = paired(a, b, "hr", resamples=200)
    assert r.a == pytest.approx(0.25) and r.b == pytest.approx(0.75)
    assert r.diff == pytest.approx(0.5)  # user 0 contributes 0, user 1 contributes 1
    assert paired(a, a, "hr", resamples=200).p_value == 1.0
    with pytest.raises(ValueError):
        paired(a, b[:1])


def test_compare_pools_seeds_given_as_ranks_files(tmp_path, capsys):
    rng = np.random.default_rng(4)
    users, items = np.arange(300), rng.integers(0, 50, 300)
    old, new = [], []
    for seed in range(3):
        frame = pd.DataFrame({"user": users, "item": items, "neumf": rng.integers(0, 40, 300)})
        frame.iloc[::-1].to_parquet(tmp_path / f"old{seed}.parquet")  # row order must not matter
        old.append(str(tmp_path / f"old{seed}.parquet"))
        frame.assign(neumf=np.where(rng.random(300) < 0.5, 0, frame["neumf"])).to_parquet(
            tmp_path / f"new{seed}.parquet")
        new.append(str(tmp_path / f"new{seed}.parquet"))
    cli.main(["compare", ",".join(old), ",".join(new), "--resamples", "500"])
    out = capsys.readouterr().out
    assert "300 test users, paired, 3 runs a side" in out
    assert "unlikely to be noise" in out  # half the users moved to rank 0 in every seed
    with pytest.raises(SystemExit) as exc:
        cli.main(["compare", ",".join(old), new[0]])
    assert exc.value.code == 2
    assert "A names 3 runs and B 1" in capsys.readouterr().err


def _one_line_error(capsys, argv) -> str:
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_recommend_reads_the_model_kind_from_the_checkpoint_not_its_name(trained_split, capsys):
    split, ckpt = trained_split
    renamed = ckpt.with_name("best-model.pt")  # a name that says nothing (it used to be read as neumf)
    renamed.write_bytes(ckpt.read_bytes())
    cli.main(["recommend", "--user", "196", "-k", "1", "--model", str(renamed), "--split", str(split),
              "--catalog", str(split.parent / "catalog.parquet")])
    assert "gmf checkpoint" in capsys.readouterr().out


def test_recommend_blames_a_wrong_catalog_not_the_model(trained_split, capsys, tmp_path):
    split, ckpt = trained_split
    other = tmp_path / "other.parquet"
    pd.read_parquet(split.parent / "catalog.parquet").head(4).to_parquet(other)
    err = _one_line_error(capsys, ["recommend", "--user", "196", "--model", str(ckpt), "--split", str(split),
                                   "--catalog", str(other)])
    assert f"{other}: lists 4 items, but {split} has 6" in err


def test_recommend_on_a_truncated_split_file_is_one_line(trained_split, capsys):
    split, ckpt = trained_split
    users = split / "users.parquet"
    users.write_bytes(users.read_bytes()[:20])
    err = _one_line_error(capsys, ["recommend", "--user", "196", "--model", str(ckpt), "--split", str(split),
                                   "--catalog", str(split.parent / "catalog.parquet")])
    assert f"{users}: unreadable" in err and "dvc checkout" in err


@pytest.mark.parametrize(("content", "message"), [
    (None, "cannot read it"),
    ("{not json", "not valid JSON"),
    ('{"a": 1}', "expected the list `dvc exp show --json` prints, got a dict"),
])
def test_report_from_a_bad_json_file_is_one_line(tmp_path, capsys, content, message):
    path = tmp_path / "shown.json"
    if content is not None:
        path.write_text(content)
    err = _one_line_error(capsys, ["report", "--from-json", str(path), "--out", str(tmp_path / "out")])
    assert message in err


def test_report_out_below_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "shown.json").write_text("[]")
    (tmp_path / "file").write_text("x")
    err = _one_line_error(capsys, ["report", "--from-json", str(tmp_path / "shown.json"),
                                   "--out", str(tmp_path / "file" / "reports")])
    assert "a parent of it is a file" in err
