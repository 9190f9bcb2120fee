"""End to end: `ncf review` and ci/review.sh on a git repository with two commits that differ in
one param, run through the real `dvc` (tiny synthetic MovieLens, as tests/test_pipeline_e2e.py).

The base commit (`main`) and a change on branch `change` (num_negatives 4 -> 2) are each
reproduced; the review of the change against main must give every section of the report, a
one-line "pull first" when main's ranks are not in the cache, and ci/review.sh must write the
same report in a fresh clone that has only the git history and a local DVC remote.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from benchmarks.env import dvc_env
from tests.test_pipeline_e2e import ROOT, cheap_params, copy_project

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def sh(cmd: list[str], cwd: Path, ok: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=dvc_env("t", "t@t"), capture_output=True, text=True)
    if ok:
        assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}"
    return proc


def ncf(*args: str, cwd: Path, ok: bool = True) -> subprocess.CompletedProcess:
    return sh([str(BIN / "ncf"), *args], cwd, ok)


@pytest.fixture(scope="module")
def two_commits(tmp_path_factory) -> Path:
    """main: the defaults (made small); branch change: num_negatives 2; both reproduced and pushed
    to a local remote (`store`, committed on main); the workspace is on `change`."""
    repo = copy_project(tmp_path_factory.mktemp("ncf-review"), extra=("ci",))
    params = cheap_params(tmp_path_factory.mktemp("source"), max_epochs=4, patience=2)
    params["num_negatives"] = 4
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    remote = tmp_path_factory.mktemp("remote")
    sh(["git", "init", "-q", "-b", "main"], repo)
    sh(["dvc", "init", "-q"], repo)
    shutil.copytree(ROOT / ".dvc" / "plots", repo / ".dvc" / "plots")  # the plot templates dvc.yaml names
    for cmd in (["dvc", "remote", "add", "-d", "store", str(remote)], ["dvc", "repro"], ["git", "add", "-A"],
                ["git", "commit", "-qm", "base"], ["dvc", "push", "--run-cache"],
                ["git", "checkout", "-qb", "change"]):
        sh(cmd, repo)
    (repo / "params.yaml").write_text(yaml.safe_dump({**params, "num_negatives": 2}, sort_keys=False))
    for cmd in (["dvc", "repro"], ["git", "add", "-A"], ["git", "commit", "-qm", "two negatives"],
                ["dvc", "push", "--run-cache"]):
        sh(cmd, repo)
    return repo


def sections(text: str) -> list[str]:
    return re.findall(r"^## (.+)$", text, flags=re.M)


def test_the_review_of_a_param_change_has_every_section(two_commits):
    repo = two_commits
    stale = repo / "reports" / "review" / "left-over.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old")
    out = ncf("review", "main", "--resamples", "500", cwd=repo)
    text = (repo / "reports/review.md").read_text()
    main = sh(["git", "rev-parse", "--short", "main"], repo).stdout.strip()
    assert text.startswith(f"# Review: workspace against main ({main})\n")
    verdict = text.splitlines()[2]
    assert re.match(r"\*\*(Nothing moved beyond noise|Moved beyond noise)\*\*", verdict), verdict
    assert "Holm" in verdict and "40 test users" in verdict and re.search(r"over (the )?6 tests", verdict), verdict
    assert verdict.endswith("Unchanged, so not tested (the same rank of every test item on both sides): "
                            "Popularity, EASE, iALS, ItemKNN.")
    assert verdict in out.stdout
    assert "Pull first" not in text
    assert sections(text) == ["Params", "Test metrics", "Training curves", "Test metrics by model"] or \
        sections(text) == ["Params", "Data", "Test metrics", "Training curves", "Test metrics by model"]
    # The one param that differs, both values.
    params_rows = [line for line in text.split("## Params")[1].split("##")[0].splitlines() if line.startswith("| `")]
    assert params_rows == ["| `num_negatives` | `4` | `2` |"]
    # Every model of both metrics files, HR@10 and NDCG@10, with their standard errors and a
    # paired difference whose numbers are those of `ncf compare` on the same revisions.
    base = json.loads(sh(["git", "show", "main:metrics/evaluate.json"], repo).stdout)
    new = json.loads((repo / "metrics/evaluate.json").read_text())
    rows = [line for line in text.split("## Test metrics\n")[1].split("##")[0].splitlines()
            if line.startswith("| ") and not line.startswith("| model")]
    assert len(rows) == 2 * len(new) == 14
    for model, label in zip(new, ("NeuMF", "GMF", "MLP", "Popularity", "EASE", "iALS", "ItemKNN")):
        for key in ("hr@10", "ndcg@10"):
            row = next(r for r in rows if r.startswith(f"| {label} | {key.upper()} |"))
            cells = [c.strip() for c in row.strip("|").split("|")]
            assert cells[2] == f"{base[model][key]:.4f} ± {base[model][key + '_se']:.4f}"
            assert cells[3] == f"{new[model][key]:.4f} ± {new[model][key + '_se']:.4f}"
            if model in ("popularity", "ease", "ials", "itemknn"):  # num_negatives does not reach them
                assert cells[4:] == ["same ranks", "–"], cells
                continue
            assert re.fullmatch(r"[+-]\d\.\d{4} \[[+-]\d\.\d{4}, [+-]\d\.\d{4}\]", cells[4]), cells
            assert re.fullmatch(r"(\d\.\d{3}|< 0\.001) \((\d\.\d{3}|< 0\.001)\)", cells[5]), cells
    compare = ncf("compare", "main", "workspace", "--resamples", "500", cwd=repo).stdout
    hr = re.search(r"^hr@10 .*$", compare, flags=re.M).group(0).split()
    neumf = next(r for r in rows if r.startswith("| NeuMF | HR@10 |"))
    assert f"{float(hr[3]):+.4f} [{hr[4].strip('[,')}, {hr[5].rstrip(']')}]" in neumf
    # Both figures, as PNGs in reports/review/, and nothing left from an earlier report.
    assert "![Training curves of both revisions](review/curves.png)" in text
    assert "![Test metrics of both revisions](review/metrics.png)" in text
    assert sorted(p.name for p in (repo / "reports/review").iterdir()) == ["curves.png", "metrics.png"]
    for png in ("curves.png", "metrics.png"):
        assert (repo / "reports/review" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # A commit reviewed against itself: nothing differs, nothing moved.
    ncf("review", "HEAD", "--rev", "HEAD", "--out", "reports/same.md", "--resamples", "200", cwd=repo)
    same = (repo / "reports/same.md").read_text()
    assert "**Nothing moved**: every model ranks every test item as before." in same
    assert "No param differs." in same


def test_a_missing_output_becomes_one_pull_first_line(two_commits, tmp_path):
    repo = two_commits
    lock = yaml.safe_load(sh(["git", "show", "main:dvc.lock"], repo).stdout)
    md5 = next(o["md5"] for o in lock["stages"]["evaluate"]["outs"] if o["path"] == "data/evaluate/ranks.parquet")
    obj = repo / ".dvc/cache/files/md5" / md5[:2] / md5[2:]
    assert obj.exists()
    aside = tmp_path / "ranks-object"
    shutil.move(obj, aside)
    sh(["dvc", "remote", "default", "--unset"], repo)  # neither the cache nor a remote has it
    try:
        out = ncf("review", "main", "--resamples", "200", cwd=repo)
        text = (repo / "reports/review.md").read_text()
    finally:
        shutil.move(aside, obj)
        sh(["git", "checkout", "--", ".dvc/config"], repo)
    main = sh(["git", "rev-parse", "--short", "main"], repo).stdout.strip()
    pull = [line for line in text.splitlines() if line.startswith("Pull first:")]
    assert len(pull) == 1, text
    assert f"data/evaluate/ranks.parquet of main ({main})" in pull[0]
    assert f"`git checkout {main} && dvc pull data/evaluate/ranks.parquet`" in pull[0]
    assert pull[0] in out.stderr and "Traceback" not in out.stderr
    assert text.splitlines()[2].startswith("**Not tested for noise**")
    # The rest of the report is still there, from git: params and both sides' metrics.
    assert "| `num_negatives` | `4` | `2` |" in text and "| NeuMF | HR@10 |" in text


def test_a_stale_workspace_is_refused_in_one_line(two_commits):
    repo = two_commits
    params = (repo / "params.yaml").read_text()
    (repo / "params.yaml").write_text(params.replace("num_negatives: 2", "num_negatives: 3"))
    try:
        proc = ncf("review", "main", cwd=repo, ok=False)
    finally:
        (repo / "params.yaml").write_text(params)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "dvc repro" in proc.stderr and "Traceback" not in proc.stderr


def test_the_ci_script_writes_the_review_in_a_fresh_clone_from_the_remote(two_commits, tmp_path):
    clone = tmp_path / "clone"
    sh(["git", "clone", "-q", "-b", "change", str(two_commits), str(clone)], tmp_path)
    proc = sh(["bash", "ci/review.sh"], clone)  # BASE: origin/main
    assert "running dvc repro" not in proc.stderr  # everything came from the remote
    text = (clone / "reports/review.md").read_text()
    ncf("review", "main", "--out", str(tmp_path / "here" / "review.md"), cwd=two_commits)
    main = sh(["git", "rev-parse", "--short", "main"], two_commits).stdout.strip()
    assert text.startswith(f"# Review: workspace against origin/main ({main})\n")
    # Word for word the review made in the repository that ran both commits.
    assert text.replace("origin/main", "main") == (tmp_path / "here" / "review.md").read_text()
    assert (clone / "reports/review/metrics.png").exists()

    # Outputs the remote lacks are made by `dvc repro`, and the review still comes out.
    fresh = tmp_path / "fresh"
    sh(["git", "clone", "-q", "-b", "change", str(two_commits), str(fresh)], tmp_path)
    sh(["dvc", "remote", "add", "-d", "--local", "empty", str(tmp_path / "empty")], fresh)
    proc = sh(["bash", "ci/review.sh", "origin/main"], fresh)
    assert "running dvc repro" in proc.stderr
    text = (fresh / "reports/review.md").read_text()
    assert "Pull first: data/evaluate/ranks.parquet of origin/main" in text


def test_the_ci_script_names_a_base_the_clone_lacks(two_commits, tmp_path):
    proc = sh(["bash", str(two_commits / "ci/review.sh"), "origin/nowhere"], two_commits, ok=False)
    assert proc.returncode == 2 and "origin/nowhere is not in this clone" in proc.stderr
