"""ncf.review without DVC: the report's sections from two revisions' contents, Holm's correction,
and the folder written whole. tests/test_review_e2e.py runs it on real commits through DVC."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ncf import review
from ncf.review import Side, holm, markdown, paired_tests

FIGURES = {"curves": "review/curves.png", "metrics": "review/metrics.png"}


def _metrics(hr: float) -> dict:
    return {"neumf": {"hr@10": hr, "ndcg@10": hr / 2, "hr@10_se": 0.01, "ndcg@10_se": 0.005},
            "gmf": {"hr@10": 0.1, "ndcg@10": 0.05, "hr@10_se": 0.01, "ndcg@10_se": 0.005}}


def _ranks(neumf: np.ndarray, users=None) -> pd.DataFrame:
    n = len(neumf)
    users = np.arange(n) if users is None else users
    return pd.DataFrame({"user": users, "item": users % 7, "neumf": neumf, "gmf": np.full(n, 50)})


def _sides(ranks_a, ranks_b, data_a=None, data_b=None):
    a = Side("main (abc1234)", "a" * 40, {"num_negatives": 4, "seed": 0}, _metrics(0.10), data_a, ranks=ranks_a)
    b = Side("workspace", None, {"num_negatives": 8, "seed": 0}, _metrics(0.30), data_b, ranks=ranks_b)
    return a, b


def test_holm_adjusts_step_down_and_keeps_order():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5]) == [0.5]
    assert holm([0.2, 0.9]) == pytest.approx([0.4, 0.9])


def test_a_real_gain_is_beyond_noise_and_named_in_the_verdict():
    rng = np.random.default_rng(0)
    a, b = _sides(_ranks(rng.integers(5, 200, 300)), _ranks(rng.integers(0, 12, 300)))
    tests, why_not = paired_tests(a, b, resamples=500, seed=0)
    # GMF ranks every test item as before: the change did not reach it, and it is not tested.
    assert why_not is None and set(tests) == {("neumf", "hr@10"), ("neumf", "ndcg@10")}
    text = markdown(a, b, tests, why_not, ["src/ncf/train.py"], FIGURES)
    verdict = text.splitlines()[2]
    assert verdict.startswith("**Moved beyond noise** (paired over 300 test users, p < 0.05 after Holm's "
                              "correction over 2 tests): NeuMF HR@10 +")
    assert verdict.endswith(" Unchanged, so not tested (the same rank of every test item on both sides): GMF.")
    assert "| `num_negatives` | `4` | `8` |" in text and "`seed`" not in text
    assert "Other files that differ: `src/ncf/train.py`." in text
    assert "| NeuMF | HR@10 | 0.1000 ± 0.0100 | 0.3000 ± 0.0100 | +" in text
    assert "| GMF | HR@10 | 0.1000 ± 0.0100 | 0.1000 ± 0.0100 | same ranks | – |" in text
    assert "## Data" not in text  # no metrics/data.json on either side
    assert "![Training curves of both revisions](review/curves.png)" in text


def test_noise_is_not_called_a_change_and_same_ranks_are_not_tested():
    rng = np.random.default_rng(1)
    ranks = _ranks(rng.integers(0, 40, 200))
    noisy = ranks.copy()
    swap = rng.choice(200, 10, replace=False)  # ten users' ranks change, both ways
    noisy.loc[swap, "neumf"] = rng.integers(0, 40, 10)
    a, b = _sides(ranks, noisy)
    tests, why_not = paired_tests(a, b, resamples=500, seed=0)
    verdict = markdown(a, b, tests, why_not, [], FIGURES).splitlines()[2]
    assert verdict.startswith("**Nothing moved beyond noise**: no paired difference over the 200 test users")
    a, b = _sides(ranks, ranks.copy())
    tests, why_not = paired_tests(a, b, resamples=200, seed=0)
    assert tests == {} and why_not is None
    assert markdown(a, b, tests, why_not, [], FIGURES).splitlines()[2] == (
        "**Nothing moved**: every model ranks every test item as before.")


def test_the_data_section_shows_changed_keys_only():
    ranks = _ranks(np.arange(50) % 30)
    data_a = {"users": 943, "items": 1682, "dropped.duplicates": 0}
    data_b = {"users": 940, "items": 1682, "dropped.duplicates": 3}
    a, b = _sides(ranks, ranks.copy(), data_a, data_b)
    text = markdown(a, b, *paired_tests(a, b, resamples=100, seed=0), [], FIGURES)
    data = text.split("## Data")[1].split("##")[0]
    assert "| `users` | `943` | `940` |" in data and "| `dropped.duplicates` | `0` | `3` |" in data
    assert "items" not in data
    a.data = None  # only one side has a data report
    assert "| `items` | (absent) | `1682` |" in markdown(a, b, {}, "x", [], FIGURES)
    a.data = dict(data_b)
    assert "`metrics/data.json` is the same on both sides." in markdown(a, b, {}, "x", [], FIGURES)


def test_other_test_users_give_unpaired_intervals_from_the_standard_errors():
    a, b = _sides(_ranks(np.arange(50) % 30), _ranks(np.arange(50) % 30, users=np.arange(50) + 1))
    tests, why_not = paired_tests(a, b, resamples=100, seed=0)
    assert tests == {} and "different users or items" in why_not
    text = markdown(a, b, tests, why_not, [], FIGURES)
    assert text.splitlines()[2].startswith("**Not tested for noise**: the two revisions test different users")
    # NeuMF: 0.30 - 0.10, standard error hypot(0.01, 0.01) = 0.01414.
    assert "| NeuMF | HR@10 | 0.1000 ± 0.0100 | 0.3000 ± 0.0100 | +0.2000 [+0.1723, +0.2277] | < 0.001 |" in text


def test_missing_ranks_put_the_pull_line_first(monkeypatch):
    a, b = _sides(None, _ranks(np.arange(50) % 30))
    a.missing.append(review._pull_hint(review.RANKS, a))
    tests, why_not = paired_tests(a, b, resamples=100, seed=0)
    text = markdown(a, b, tests, why_not, [], FIGURES)
    assert text.splitlines()[4] == ("Pull first: data/evaluate/ranks.parquet of main (abc1234) is neither in the "
                                    "DVC cache nor on the default remote: `git checkout aaaaaaa && dvc pull "
                                    "data/evaluate/ranks.parquet`, or `dvc push` it from the clone that ran aaaaaaa "
                                    "(`dvc pull --run-cache` then `dvc repro` there restores it from the run cache).")


def test_the_figures_folder_is_replaced_whole(tmp_path):
    target = tmp_path / "review"
    target.mkdir()
    (target / "stale.png").write_bytes(b"old")
    new = tmp_path / ".review.new"
    new.mkdir()
    (new / "metrics.png").write_bytes(b"new")
    review._replace_folder(new, target)
    assert sorted(p.name for p in target.iterdir()) == ["metrics.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["review"]


@pytest.mark.parametrize("path", [".github/workflows/review.yml", "docs/ci/gitlab-review.yml"])
def test_both_ci_templates_call_the_tested_script_then_post_its_report(path):
    import yaml

    root = review.Path(__file__).resolve().parents[1]
    spec = yaml.safe_load((root / path).read_text())
    if "jobs" in spec:  # GitHub Actions
        commands = [step.get("run", "") for step in spec["jobs"]["review"]["steps"]]
    else:  # GitLab CI
        commands = spec["review"]["script"]
    script = [i for i, c in enumerate(commands) if c.startswith("ci/review.sh ")]
    comment = [i for i, c in enumerate(commands) if c.startswith("cml comment create") and "reports/review.md" in c]
    assert len(script) == 1 and len(comment) == 1 and script[0] < comment[0], commands
    assert (root / "ci/review.sh").stat().st_mode & 0o111  # executable, as the templates call it


def test_the_example_in_docs_is_the_generated_report_of_commit_2060f9e():
    import json
    import subprocess

    root = review.Path(__file__).resolve().parents[1]
    report = (root / "docs/review/example.md").read_text(encoding="utf-8")
    page = (root / "docs/review.md").read_text(encoding="utf-8")
    copy = page.split("<!-- example:start -->\n")[1].split("\n<!-- example:end -->")[0]
    expected = report.replace("](example/", "](review/example/").replace("# Review:", "### Review:", 1)
    assert copy == expected.replace("\n## ", "\n#### ").rstrip("\n")
    for png in ("curves.png", "metrics.png"):
        assert f"](example/{png})" in report and (root / "docs/review/example" / png).read_bytes()[:4] == b"\x89PNG"
    shown = subprocess.run(["git", "show", "2060f9e:metrics/evaluate.json"], cwd=root, capture_output=True, text=True)
    if shown.returncode != 0:
        pytest.skip("commit 2060f9e is not in this clone (a shallow one?)")
    committed = json.loads(shown.stdout)
    rows = [line for line in report.splitlines() if line.startswith("| ") and " | HR@10 | " in line]
    assert len(rows) == len(committed) == 7
    for model, row in zip(committed, rows):
        assert row.split(" | ")[2] == f"{committed[model]['hr@10']:.4f} ± {committed[model]['hr@10_se']:.4f}", row


def test_dvc_plots_draw_each_figure_once_with_the_project_template():
    # DVC draws every stage's `plots:` entry and every top-level one: a path in both is drawn twice
    # (DVC 3.67), and a top-level plot built from the stages' curve files repeats them.
    import json

    import yaml

    root = review.Path(__file__).resolve().parents[1]
    pipeline = yaml.safe_load((root / "dvc.yaml").read_text())
    stage_plots = {}
    for stage in pipeline["stages"].values():
        for entry in stage.get("plots") or []:
            path, props = next(iter(entry.items())) if isinstance(entry, dict) else (entry, {})
            stage_plots[path] = props or {}
    assert not pipeline.get("plots"), "declare figures once, in the stage that writes them"
    curves = {p: props for p, props in stage_plots.items() if p.startswith("plots/curves/")}
    assert sorted(curves) == [f"plots/curves/{m}.tsv" for m in ("gmf", "mlp", "neumf")]
    template = json.loads((root / ".dvc/plots/curves.json").read_text())
    assert all(props.get("template") == "curves" for props in curves.values())
    assert template["data"] == {"values": "<DVC_METRIC_DATA>"}
    # One colour per model, the PNGs' colours.
    from ncf.registry import COLORS

    scale = template["spec"]["encoding"]["color"]["scale"]
    assert scale["range"] == [COLORS[m] for m in ("neumf", "gmf", "mlp")]
    assert template["spec"]["encoding"]["strokeDash"]["field"] == "rev"


def test_the_review_of_two_commits_in_docs_holds_both_commits_metrics():
    import json
    import subprocess

    root = review.Path(__file__).resolve().parents[1]
    report = (root / "docs/review/commits.md").read_text(encoding="utf-8")
    assert report.startswith("# Review: d5563c6 against 2060f9e\n")
    assert "| `split.min_rating` | (absent) | `4.0` |" in report and "| `users` | (absent) | `943` |" in report
    metrics = {}
    for rev in ("2060f9e", "d5563c6"):
        shown = subprocess.run(["git", "show", f"{rev}:metrics/evaluate.json"], cwd=root, capture_output=True,
                               text=True)
        if shown.returncode != 0:
            pytest.skip(f"commit {rev} is not in this clone (a shallow one?)")
        metrics[rev] = json.loads(shown.stdout)
    rows = [line.split(" | ") for line in report.splitlines() if line.startswith("| ") and " | NDCG@10 | " in line]
    assert len(rows) == 7
    for model, row in zip(metrics["2060f9e"], rows):
        for column, rev in ((2, "2060f9e"), (3, "d5563c6")):
            values = metrics[rev][model]
            assert row[column] == f"{values['ndcg@10']:.4f} ± {values['ndcg@10_se']:.4f}", (rev, row)
