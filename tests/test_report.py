"""ncf.report on a synthetic `dvc exp show --json`: aggregation over seeds, studies, figures."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from ncf import cli
from ncf.report import ReplaceError, aggregate, build, collect, previous_runs, stale_stages, varying

ROOT = Path(__file__).resolve().parents[1]

BASE = {"seed": 0, "num_negatives": 4, "gmf": {"lr": 0.015}, "mlp": {"dim": 64, "layers": [128, 64, 32]},
        "neumf": {"pretrain": True}}


def entry(rev, name, params, hr, ndcg=None, nparams=1000, failed=False):
    data = {"rev": rev, "params": {"params.yaml": {"data": params}},
            "metrics": {} if failed else {"metrics/evaluate.json": {"data": {
                "neumf": {"hr@10": hr, "ndcg@10": ndcg if ndcg is not None else hr / 2, "params": nparams},
                "gmf": {"hr@10": 0.1, "ndcg@10": 0.05, "params": 10}}}}}
    return {"rev": rev, "name": name, "data": data}


def with_(**changes):
    p = copy.deepcopy(BASE)
    for dotted, value in changes.items():
        node = p
        *parents, last = dotted.split("__")
        for part in parents:
            node = node[part]
        node[last] = value
    return p


@pytest.fixture
def exp_show():
    exps = []
    seeds_hr = {0: 0.130, 1: 0.134, 2: 0.128, 3: 0.136, 4: 0.132}
    for s, hr in seeds_hr.items():
        if s:
            exps.append(entry(f"s{s}" * 10, f"seed{s}", with_(seed=s), hr))
    for n, hr in {1: 0.10, 8: 0.14, 16: 0.15}.items():
        exps.append(entry(f"n{n}" * 10, f"neg{n}", with_(num_negatives=n), hr))
    for layers, hr, size in (([64, 32], 0.12, 500), ([512, 256], 0.125, 9000)):
        exps.append(entry("l" * 40, f"arch{len(layers)}{layers[0]}", with_(mlp__layers=layers), hr, nparams=size))
    exps.append(entry("f" * 40, "broken", with_(num_negatives=2), 0.0, failed=True))
    # A failed run still shows the metrics files of the commit it was queued from.
    stale = entry("e" * 40, "killed", with_(seed=7), seeds_hr[0])
    stale["error"] = {"msg": "Experiment run failed", "type": ""}
    exps.append(stale)
    commit = entry("a" * 40, "main", with_(), seeds_hr[0])
    commit["experiments"] = [{"name": e["name"], "revs": [e],
                              "executor": {"state": "failed" if e.get("error") else "success"}} for e in exps]
    workspace = entry("workspace", None, with_(num_negatives=99), 0.5)
    return [workspace, commit]


def test_collect_skips_the_workspace_and_failed_runs(exp_show):
    df = collect(exp_show)
    assert len(df) == 1 + 4 + 3 + 2
    assert not {"broken", "killed"} & set(df["name"]) and 99 not in set(df["params.num_negatives"])
    assert df.loc[df["name"] == "neg16", "neumf.hr@10"].item() == 0.15


def test_seeds_are_one_configuration_with_mean_std_and_count(exp_show):
    df = collect(exp_show)
    summary = aggregate(df, ["neumf.hr@10"])
    base = summary[(summary["params.num_negatives"] == 4) & (summary["params.mlp.layers"] == "[128, 64, 32]")]
    hrs = [0.130, 0.134, 0.128, 0.136, 0.132]
    assert base["seeds"].item() == 5
    assert base["neumf.hr@10 mean"].item() == pytest.approx(np.mean(hrs))
    assert base["neumf.hr@10 std"].item() == pytest.approx(np.std(hrs, ddof=1))
    assert len(summary) == 1 + 3 + 2


def test_studies_are_the_params_that_vary(exp_show):
    assert set(varying(collect(exp_show))) == {"params.num_negatives", "params.mlp.layers"}


def test_build_writes_a_table_and_one_png_per_study(exp_show, tmp_path):
    text = build(exp_show, tmp_path)
    assert (tmp_path / "experiments.md").read_text() == text
    assert "| 4 | [128, 64, 32] | 0.1320 ± 0.0032 |" in text
    assert "| 16 | [128, 64, 32] | 0.1500 |" in text
    order = [text.index(f"\n| {n} | [128, 64, 32] |") for n in (1, 4, 8, 16)]
    assert order == sorted(order)  # numeric order, not the order experiments ran in
    for png in ("num_negatives.png", "mlp_layers.png"):
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG"
        assert f"({png})" in text


def test_report_command_reads_saved_json_and_refuses_empty(exp_show, tmp_path, capsys):
    saved = tmp_path / "exps.json"
    saved.write_text(json.dumps(exp_show))
    cli.main(["report", "--from-json", str(saved), "--out", str(tmp_path / "out")])
    assert "| num_negatives | mlp.layers | neumf.hr@10 | neumf.ndcg@10 | seeds |" in capsys.readouterr().out
    saved.write_text("[]")
    with pytest.raises(SystemExit) as exit_:
        cli.main(["report", "--from-json", str(saved), "--out", str(tmp_path / "out")])
    assert exit_.value.code == 2
    assert "no finished experiments" in capsys.readouterr().err


def test_vary_keeps_the_baseline_and_experiments_that_differ_only_there(exp_show, tmp_path):
    text = build(exp_show, tmp_path, vary=["mlp.layers"])
    assert "| mlp.layers | neumf.hr@10 | neumf.ndcg@10 | seeds |" in text
    rows = [line for line in text.splitlines() if line.startswith("| [")]
    # The baseline's 5 seeds form one configuration; the negatives study is left out.
    assert sorted(rows) == ["| [128, 64, 32] | 0.1320 ± 0.0032 | 0.0660 ± 0.0016 | 5 |",
                            "| [512, 256] | 0.1250 | 0.0625 | 1 |", "| [64, 32] | 0.1200 | 0.0600 | 1 |"]
    assert not (tmp_path / "num_negatives.png").exists() and (tmp_path / "mlp_layers.png").exists()
    with pytest.raises(ValueError, match="--vary mlp.depth: no such param"):
        build(exp_show, tmp_path, vary=["mlp.depth"])


def test_vary_seed_draws_every_models_spread_over_seeds(exp_show, tmp_path):
    text = build(exp_show, tmp_path / "seeds", vary=["seed"])
    assert "| 4 | 0.1320 ± 0.0032 | 0.0660 ± 0.0016 | 5 |" not in text  # no study column
    assert "0.1320 ± 0.0032" in text
    per_seed = [line for line in text.splitlines() if line.startswith("| 3 |")]
    assert per_seed == ["| 3 | 0.1360 | 0.1000 |"]  # neumf, gmf of seed 3
    assert (tmp_path / "seeds" / "seeds.png").read_bytes()[:4] == b"\x89PNG"


def test_threads_is_how_runs_were_computed_not_a_study(exp_show, tmp_path):
    # Studies run two at a time with `-S threads=1` beside a baseline commit run with threads: 2
    # (1 and 2 threads give the same bytes): they are the baseline's configuration, not another.
    commit = exp_show[1]
    commit["data"]["params"]["params.yaml"]["data"]["threads"] = 2
    for exp in commit["experiments"]:
        exp["revs"][0]["data"]["params"]["params.yaml"]["data"]["threads"] = 1
    text = build(exp_show, tmp_path, vary=["mlp.layers"])
    rows = [line for line in text.splitlines() if line.startswith("| [")]
    assert sorted(rows) == ["| [128, 64, 32] | 0.1320 ± 0.0032 | 0.0660 ± 0.0016 | 5 |",
                            "| [512, 256] | 0.1250 | 0.0625 | 1 |", "| [64, 32] | 0.1200 | 0.0600 | 1 |"]
    assert "threads" not in text and not (tmp_path / "threads.png").exists()


def fake_ranks(exp_show, better: set[str], users=200):
    """ranks_of(rev) for the synthetic experiments: NeuMF ranks of rev in `better` are 0 (a hit)
    for every user, others alternate between a hit and a miss; GMF always misses."""
    def ranks_of(rev):
        import pandas as pd

        hit = np.zeros(users, dtype=np.int64)
        mixed = np.where(np.arange(users) % 2 == 0, 0, 50)
        return pd.DataFrame({"user": np.arange(users)[::-1], "item": np.arange(users)[::-1],
                             "neumf": (hit if rev in better else mixed)[::-1], "gmf": np.full(users, 50)})
    return ranks_of


def test_each_configuration_is_tested_against_the_default_paired_over_users_and_seeds(exp_show, tmp_path):
    ranks_of = fake_ranks(exp_show, better={"n16" * 10})
    text = build(exp_show, tmp_path, vary=["num_negatives"], ranks_of=ranks_of, resamples=500)
    rows = {line.split(" | ")[0].strip("| "): line for line in text.splitlines() if line.startswith("| ")}
    assert rows["4"].endswith("| (default) |")
    # neg16 hits every user where the default hits half of them: +0.5 HR@10, clearly not noise.
    # p = 0.002 is the least 500 draws can give.
    assert "+0.5000 [" in rows["16"] and "p = 0.002" in rows["16"] and "(1 seed)" in rows["16"]
    # neg8 is the same as the default for every user: no difference at all.
    assert "+0.0000 [+0.0000, +0.0000], p = 1.000" in rows["8"]


def test_seeds_only_report_tests_every_model_against_neumf(exp_show, tmp_path):
    text = build(exp_show, tmp_path, vary=["seed"], ranks_of=fake_ranks(exp_show, better=set()), resamples=500)
    gmf = next(line for line in text.splitlines() if line.startswith("| GMF |"))
    # NeuMF hits half the users in every seed, GMF none: NeuMF - GMF = +0.5 HR@10.
    assert "+0.5000 [" in gmf and "p = 0.002" in gmf
    assert "5 seeds: 0, 1, 2, 3, 4." in text


@pytest.mark.parametrize("shape", ["[1, 2, 3]", "[null]", '[{"name": "x"}]'])
def test_report_of_a_wrongly_shaped_list_is_one_line(tmp_path, capsys, shape):
    saved = tmp_path / "exps.json"
    saved.write_text(shape)
    with pytest.raises(SystemExit) as exit_:
        cli.main(["report", "--from-json", str(saved), "--out", str(tmp_path / "out")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not what `dvc exp show --json` prints" in err


def test_report_to_a_folder_that_cannot_be_written_is_one_line(exp_show, tmp_path, capsys):
    saved = tmp_path / "exps.json"
    saved.write_text(json.dumps(exp_show))
    with pytest.raises(SystemExit) as exit_:
        cli.main(["report", "--from-json", str(saved), "--out", "/proc/ncf-report"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--out /proc/ncf-report: cannot write there" in err


# --- what an experiment computed: its dvc.lock -------------------------------------------------

def lock(gmf_lr=0.015, gmf_md5="g0", neumf_from="g0", evaluate_from=("n0", "g0")):
    """A dvc.lock of three stages: pretrain_gmf -> train_neumf -> evaluate."""
    return {"schema": "2.0", "stages": {
        "pretrain_gmf": {"deps": [{"path": "data/split", "md5": "s.dir"}],
                         "params": {"params.yaml": {"gmf": {"lr": gmf_lr}}},
                         "outs": [{"path": "models/gmf.pt", "md5": gmf_md5}]},
        "train_neumf": {"deps": [{"path": "models/gmf.pt", "md5": neumf_from}],
                        "params": {"params.yaml": {"neumf.pretrain": True}},
                        "outs": [{"path": "models/neumf.pt", "md5": "n0"}]},
        "evaluate": {"deps": [{"path": "models/neumf.pt", "md5": evaluate_from[0]},
                              {"path": "models/gmf.pt", "md5": evaluate_from[1]}],
                     "params": {"params.yaml": {"mlp.dim": 64}},
                     "outs": [{"path": "metrics/evaluate.json", "md5": "e0"}]}}}


PARAMS = {"seed": 0, "gmf": {"lr": 0.015}, "neumf": {"pretrain": True}, "mlp": {"dim": 64}}


def test_a_lock_that_matches_its_params_has_no_stale_stage():
    assert stale_stages(lock(), PARAMS) == []


def test_a_partial_run_leaves_the_stages_downstream_stale():
    # `dvc exp run pretrain_gmf -S gmf.lr=0.01`: pretrain_gmf's entry is new, the rest the commit's.
    params = copy.deepcopy(PARAMS)
    params["gmf"]["lr"] = 0.01
    assert stale_stages(lock(gmf_lr=0.01, gmf_md5="g1"), params) == ["train_neumf", "evaluate"]
    # params changed by hand and nothing rerun: every stage that reads them, and what follows.
    assert stale_stages(lock(), params) == ["pretrain_gmf", "train_neumf", "evaluate"]
    # A key the lock records that params.yaml no longer has is a change too.
    assert stale_stages(lock(), {k: v for k, v in PARAMS.items() if k != "gmf"})[0] == "pretrain_gmf"


def gmf_only(exp_show):
    """The tuning.md recipe's shape: two GMF-only experiments beside the commit's full run, which
    carry the commit's metrics/evaluate.json unchanged; lock_of(rev) gives each one's dvc.lock."""
    commit = exp_show[1]
    revs = {}
    for lr in (0.01, 0.03):
        e = entry(f"{lr}".replace(".", "x") * 8, f"gmf-lr-{lr}", with_(gmf__lr=lr), 0.130)  # the commit's HR
        commit["experiments"].append({"name": e["name"], "revs": [e], "executor": {"state": "success"}})
        revs[e["rev"]] = lr

    def lock_of(rev):
        if rev in revs:
            return lock(gmf_lr=revs[rev], gmf_md5=f"g{revs[rev]}")  # pretrain_gmf ran, nothing after
        return lock()
    return lock_of


def test_report_leaves_out_and_names_experiments_that_did_not_compute_test_metrics(exp_show, tmp_path):
    lock_of = gmf_only(exp_show)
    text = build(exp_show, tmp_path / "r", lock_of=lock_of)
    assert "gmf.lr" not in text.split("\n\n")[1]  # not a study: those rows are not in the table
    for name in ("gmf-lr-0.01", "gmf-lr-0.03"):
        line = next(line for line in text.splitlines() if f"`{name}`" in line)
        assert "not reported" in line and "train_neumf, evaluate did not run for its params" in line
    # The commit and the experiments that did run everything are still there.
    assert "| 4 | [128, 64, 32] | 0.1320 ± 0.0032 |" in text


def test_a_report_of_only_partial_runs_is_refused(exp_show, tmp_path):
    gmf_only(exp_show)
    with pytest.raises(ValueError, match="no experiment computed its own test metrics .*gmf-lr-0.01"):
        build(exp_show, tmp_path / "r", lock_of=lambda rev: lock(gmf_lr=0.5, gmf_md5="x"))


def test_an_unreadable_lock_is_said_not_hidden(exp_show, tmp_path):
    text = build(exp_show, tmp_path / "r", lock_of=lambda rev: None)
    assert "`neg16` (n16n16n): its dvc.lock could not be read" in text
    assert "| 16 | [128, 64, 32] | 0.1500 |" in text


# --- writing the folder -------------------------------------------------------------------------

def test_a_report_is_not_silently_replaced_by_one_of_fewer_runs(exp_show, tmp_path, capsys):
    out = tmp_path / "seeds"
    build(exp_show, out)  # 10 runs
    assert "<!-- ncf report: 10 runs -->" in (out / "experiments.md").read_text()
    before = (out / "experiments.md").read_bytes()
    with pytest.raises(ReplaceError, match="made from 10 runs, this one has 5; pass --force"):
        build(exp_show, out, vary=["seed"])
    assert (out / "experiments.md").read_bytes() == before
    saved = tmp_path / "exps.json"
    saved.write_text(json.dumps(exp_show))
    with pytest.raises(SystemExit) as exit_:
        cli.main(["report", "--from-json", str(saved), "--out", str(out), "--vary", "seed"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and "--force" in err
    cli.main(["report", "--from-json", str(saved), "--out", str(out), "--vary", "seed", "--force"])
    assert "<!-- ncf report: 5 runs -->" in (out / "experiments.md").read_text()


def test_previous_runs_reads_reports_written_before_the_marker():
    # The committed negatives study: four settings of five seeds.
    assert previous_runs(ROOT / "docs/studies/negatives") == 20
    assert previous_runs(ROOT / "docs/studies/seeds") == 5
    assert previous_runs(ROOT / "docs/no-such-study") is None


def test_the_folder_is_written_whole(exp_show, tmp_path):
    out = tmp_path / "r"
    build(exp_show, out)
    assert {p.name for p in out.iterdir()} == {"experiments.md", "num_negatives.png", "mlp_layers.png"}
    build(exp_show, out, vary=["mlp.layers"], force=True)  # fewer runs, fewer figures
    assert {p.name for p in out.iterdir()} == {"experiments.md", "mlp_layers.png"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="holds notes.txt, which ncf report did not write"):
        build(exp_show, out, force=True)
    assert (out / "notes.txt").exists()
