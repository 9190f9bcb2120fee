"""The synthetic MovieLens-25M-shaped release and the scale benchmark built on it."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from benchmarks.env import ROOT
from benchmarks.scale import main as scale_main
from ncf.config import load_params
from ncf.interactions import Columns, read_interactions
from ncf.movielens import load_release
from ncf.synthetic import ML20M_ITEMS, ML20M_RATINGS, ML20M_USERS, ML25M_ITEMS, ML25M_RATINGS, ML25M_USERS
from ncf.synthetic import main as synthetic_main
from ncf.synthetic import write_zip


def test_synthetic_release_parses_like_ml25m_and_keeps_movielens_rules(tmp_path):
    n = write_zip(tmp_path / "ml-25m.zip", 20_000)
    assert abs(n - 20_000) <= 200  # within 1 %
    ratings, movies, source = load_release("ml-25m", ("local",), local_zip=str(tmp_path / "ml-25m.zip"),
                                           verify=False, log=lambda _: None)
    ratings = ratings.to_pandas()  # an Arrow table, as the download stage writes it
    assert source == "local" and len(ratings) == n
    per_user = ratings.groupby("user_id").size()
    assert per_user.min() >= 20  # as in MovieLens
    assert len(per_user) == round(20_000 * ML25M_USERS / ML25M_RATINGS)
    assert not ratings.duplicated(["user_id", "item_id"]).any()
    assert ratings.groupby("user_id")["timestamp"].apply(lambda t: t.is_monotonic_increasing).all()
    assert set(ratings["item_id"]) <= set(movies["item_id"])
    assert movies["title"].str.startswith("Synthetic Movie").all() and movies["year"].notna().all()
    assert ratings["item_id"].nunique() <= ML25M_ITEMS


def test_synthetic_csv_is_an_own_file_shaped_like_ml20m(tmp_path, capsys):
    path = tmp_path / "ratings.csv"
    synthetic_main(["--shape", "ml-20m", "--interactions", "30000", "--csv", str(path)])
    n = int(capsys.readouterr().err.split(": ")[1].split()[0].replace(",", ""))
    assert abs(n - 30_000) <= 300
    assert path.read_text().splitlines()[0] == "userId,movieId,rating,timestamp"  # as GroupLens writes it
    columns = Columns(user="userId", item="movieId", timestamp="timestamp", rating="rating")
    ratings = read_interactions(path, columns).to_pandas()  # the reader a team's own file goes through
    assert len(ratings) == n and ratings["user_id"].dtype == ratings["item_id"].dtype == np.int64
    assert ratings["user_id"].nunique() == round(30_000 * ML20M_USERS / ML20M_RATINGS)
    assert ratings["item_id"].nunique() <= ML20M_ITEMS < ML25M_ITEMS
    assert not ratings.duplicated(["user_id", "item_id"]).any()
    assert ratings.groupby("user_id")["timestamp"].apply(lambda t: t.is_monotonic_increasing).all()
    assert set(ratings["rating"]) <= {k / 2 for k in range(1, 11)}


def test_scale_bench_measures_every_step_at_every_size(tmp_path):
    scale_main(["--sizes", "3000", "6000", "--work", str(tmp_path / "work"), "--out", str(tmp_path / "out"),
                "--batch-size", "4096", "--ingest", "0", "--recommend-users", "0", "--evaluate-users", "0",
                "--compare-users", "0", "--pipeline-interactions", "0", "--baseline-users", "1000"])
    report = json.loads((tmp_path / "out" / "scale.json").read_text())
    rows = {(round(row["interactions"], -3), row["step"]): row for row in report["rows"]}
    steps = ("parse", "split", "gmf_epoch", "eval", "mlp_epoch", "neumf_epoch", "baselines")
    assert set(rows) == {(k, s) for k in (3000, 6000) for s in steps}
    for (size, step), row in rows.items():
        assert row["seconds"] >= 0 and row["peak_rss_mb"] > 0
        if step == "eval":  # every user's test item was ranked
            assert row["ranked"] == rows[size, "split"]["users"] == round(size * ML25M_USERS / ML25M_RATINGS)
        if row["step"] == "gmf_epoch":
            assert np.isfinite(row["loss"]) and row["samples"] > 4 * row["interactions"] * 0.9
        if step in ("mlp_epoch", "neumf_epoch"):  # small: the whole epoch fits in its first chunk
            assert row["positives"] == row["train"] == rows[size, "split"]["train"]
            assert row["samples"] == row["positives"] * 9 and np.isfinite(row["loss"])  # 8 negatives each
            assert 0 < row["seconds_per_epoch"] <= row["seconds"]  # the step also builds the model and sampler
        if step == "baselines":  # each baseline fit once at its grid's costliest value, its first users ranked
            params = load_params(ROOT / "params.yaml")
            assert row["valid_users"] == rows[size, "split"]["users"]
            assert row["ials"]["hyper"]["factors"] == max(params.ials.factors)
            assert row["itemknn"]["hyper"]["k"] == max(params.itemknn.k)
            assert row["ease_items"] == min(params.ease.max_items, rows[size, "split"]["items"])
            for kind, grid in (("ease", len(params.ease.l2)), ("itemknn", len(params.itemknn.k)),
                               ("ials", len(params.ials.factors) * len(params.ials.regularization))):
                part = row[kind]
                assert part["grid"] == grid and part["ranked"] == min(1000, row["valid_users"])
                assert part["fit_s"] > 0 and part["seconds_per_1000_users"] > 0
                # every grid value a fit and a validation of every user, then the refit
                assert part["stage_estimate_s"] == pytest.approx(
                    grid * (part["fit_s"] + part["seconds_per_1000_users"] * row["valid_users"] / 1000)
                    + part["fit_s"], rel=0.02, abs=0.1)
                assert row["matrices_peak_rss_mb"] <= part["peak_rss_mb"] <= row["peak_rss_mb"]
            assert row["stage_estimate_s"] == pytest.approx(
                row["matrices_s"] + sum(row[kind]["stage_estimate_s"] for kind in ("ease", "ials", "itemknn")),
                abs=0.2)
    assert (tmp_path / "out" / "scale.png").stat().st_size > 10_000

    # Rerunning one step at one size replaces that row and keeps every other.
    scale_main(["--sizes", "3000", "--steps", "mlp_epoch", "--reuse", "--work", str(tmp_path / "work"), "--out",
                str(tmp_path / "out"), "--batch-size", "4096", "--ingest", "0", "--recommend-users", "0",
                "--evaluate-users", "0", "--compare-users", "0", "--pipeline-interactions", "0"])
    again = json.loads((tmp_path / "out" / "scale.json").read_text())
    assert len(again["rows"]) == len(report["rows"])
    assert [row for row in again["rows"] if row["step"] != "mlp_epoch" or row["interactions"] > 4000] == \
        [row for row in report["rows"] if row["step"] != "mlp_epoch" or row["interactions"] > 4000]


def test_ingest_bench_runs_the_real_stages_on_an_own_csv_beside_a_bare_read(tmp_path):
    scale_main(["--ingest-only", "--ingest", "20000", "--work", str(tmp_path / "work"), "--out", str(tmp_path / "out")])
    result = json.loads((tmp_path / "out" / "ingest.json").read_text())
    assert abs(result["rows"] - 20_000) <= 200  # the bare read saw the whole file
    assert result["users"] == round(20_000 * ML20M_USERS / ML20M_RATINGS)  # the split stage's data report
    assert result["train"] == result["rows"] - 2 * result["users"]  # every user held out twice, no row dropped
    assert any("download" in line and f"{result['rows']:,} interactions" in line for line in result["log"])
    assert 0 <= result["bare_read_s"] < result["stages_s"]  # 20,000 rows: the bare read may round to 0.00 s
    assert result["stages_s"] == pytest.approx(result["download_s"] + result["split_s"], abs=0.011)
    a, b = result["bare_read_s"], result["stages_s"]  # both rounded to 0.01 s
    assert (b - 0.005) / (a + 0.005) <= result["ratio"] <= (b + 0.005) / max(a - 0.005, 1e-9)
    assert 0 < result["bare_peak_gb"] and 0 < result["download_peak_gb"] <= result["stages_peak_gb"]
    assert 0 <= result["bare_cpu_s"] and 0 < result["stages_cpu_s"] and len(result["pair_ratios"]) == 1
    assert len(result["all_bare_sys_s"]) == len(result["all_stages_sys_s"]) == 1
    assert 0 <= result["all_stages_sys_s"][0] <= result["stages_cpu_s"] + 0.01
    stages_user = result["stages_cpu_s"] - result["all_stages_sys_s"][0]
    user = stages_user / (result["bare_cpu_s"] - result["all_bare_sys_s"][0])
    assert result["user_cpu_ratio"] == pytest.approx(user, rel=0.1)  # (each figure is rounded to 0.01 s)
    from benchmarks.pipeline import commit  # the figures name the code and the load that made them

    assert result["commit"] == commit() and len(result["load_before"]) == len(result["load_after"]) == 3
    split = tmp_path / "work" / "ingest" / "data" / "split"
    assert sorted(p.name for p in split.iterdir()) == [f"{n}.parquet" for n in ("items", "test", "train", "users",
                                                                                 "valid")]


def test_the_recommend_row_ranks_the_bounded_users_at_the_shape_asked(tmp_path):
    scale_main(["--sizes", "--work", str(tmp_path / "work"), "--out", str(tmp_path / "out"),
                "--recommend-users", "100", "--recommend-shape", "500", "2000", "--ingest", "0",
                "--evaluate-users", "0", "--compare-users", "0", "--pipeline-interactions", "0"])
    row = json.loads((tmp_path / "out" / "scale.json").read_text())["recommend"]
    assert (row["users"], row["items"], row["ranked"], row["k"]) == (500, 2000, 100, 10)
    assert row["seconds_per_1000_users"] == pytest.approx(10 * row["seconds"], abs=0.1)
    assert row["peak_rss_mb"] > 0


TINY = ["gmf.dim=8", "mlp.dim=8", "mlp.layers=[16, 8]", "train.batch_size=4096", "ease.l2=[100]",
        "ease.max_items=300", "ials.factors=[8]", "ials.regularization=[3]", "ials.iterations=2", "itemknn.k=[10]"]


@pytest.mark.slow
def test_the_pipeline_row_runs_every_stage_through_dvc_and_weighs_each(tmp_path):
    from benchmarks.pipeline import stages

    scale_main(["--pipeline-only", "--pipeline-interactions", "20000", "--work", str(tmp_path / "work"),
                "--out", str(tmp_path / "out"), *(x for s in TINY for x in ("--pipeline-set", s))])
    result = json.loads((tmp_path / "out" / "pipeline.json").read_text())
    assert [row["step"] for row in result["rows"]] == [*stages(), "compare", "report"]
    assert stages()[0] == "validate" and stages()[-1] == "plot" and {"baselines", "recommend"} <= set(stages())
    for row in result["rows"]:
        assert row["seconds"] > 0 and row["cpu_s"] > 0 and 0.05 < row["peak_gb"] < 8, row["step"]
    rows = {row["step"]: row for row in result["rows"]}
    assert any("Running stage 'pretrain_gmf'" in line for line in rows["pretrain_gmf"]["log"])
    assert any("hr@10" in line.lower() for line in rows["compare"]["log"])  # the paired table was printed
    assert result["users"] == round(20_000 * ML25M_USERS / ML25M_RATINGS) and result["items"] > 1000
    assert result["params"]["train.max_epochs"] == 1 and result["params"]["ease.max_items"] == 300
    project = tmp_path / "work" / "pipeline" / "project"
    recs = pd.read_parquet(project / "data" / "recommendations.parquet")
    assert recs["user_id"].nunique() == result["users"]  # the recommend stage really ran on this release
    assert result["seconds"] == pytest.approx(sum(r["seconds"] for r in result["rows"][:-2]), abs=0.2)


@pytest.mark.slow
def test_the_pipeline_row_fails_loudly_naming_the_stage_that_failed(tmp_path):
    with pytest.raises(SystemExit, match=r"pipeline stage validate: .*repro.*validate.*\n(.|\n)*max_epochs"):
        scale_main(["--pipeline-only", "--pipeline-interactions", "5000", "--work", str(tmp_path / "work"),
                    "--out", str(tmp_path / "out"), "--pipeline-set", "train.max_epochs=0"])
    assert not (tmp_path / "out" / "pipeline.json").exists()


def test_the_evaluate_rows_rank_every_model_and_compare_runs_the_cli_at_the_shape_asked(tmp_path):
    from benchmarks.scale import EVAL_MODELS

    scale_main(["--sizes", "--work", str(tmp_path / "work"), "--out", str(tmp_path / "out"), "--ingest", "0",
                "--pipeline-interactions", "0", "--recommend-users", "0", "--evaluate-users", "100",
                "--recommend-shape", "500", "2000", "--compare-users", "3000"])
    report = json.loads((tmp_path / "out" / "scale.json").read_text())
    assert "recommend" not in report and [row["model"] for row in report["evaluate"]] == list(EVAL_MODELS)
    for row in report["evaluate"]:
        assert (row["users"], row["items"], row["ranked"]) == (500, 2000, 100)
        assert row["seconds_per_1000_users"] == pytest.approx(10 * row["seconds"], abs=0.1)
        assert row["peak_rss_mb"] > 0
    compare = report["compare"]
    assert compare["users"] == 3000 and compare["peak_rss_mb"] > 0 and compare["cpu_s"] > 0
    assert compare["output"][0].endswith("3000 test users, paired")  # the CLI read both ranks files whole
