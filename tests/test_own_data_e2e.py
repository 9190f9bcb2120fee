"""End to end, through the real `dvc`: a team's own interactions file, versioned with DVC.

The worked example of docs/data.md#your-own-data, run from the page itself: its params block and
its commands, one by one (`dvc add` a CSV under input/, commit, `dvc repro`; append a later week,
`dvc add` again, `dvc repro` reruns only the stages after the data, `dvc metrics diff` shows the
data report and the metrics moving; `git checkout HEAD~1 -- . && dvc checkout` gives back the
first version's outputs byte for byte). Then every bad file, each refused in one line through
`dvc repro`, the removed outputs brought back by the printed command. Then real ml-100k through
the MovieLens path and as a user's own file: the same metrics/evaluate.json.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from benchmarks.env import dvc_env
from ncf.stage import RESTORE
from tests.test_pipeline_e2e import content, copy_project

ROOT = Path(__file__).resolve().parents[1]
CHEAP = {"train": {"max_epochs": 4, "patience": 2, "batch_size": 512}, "gmf": {"dim": 8, "lr": 0.05, "l2": 0.0},
         # ease.max_items below the 45 items: the whole pipeline with EASE past its dense budget.
         "mlp": {"dim": 8, "layers": [16, 8], "lr": 0.01}, "ease": {"l2": [100], "max_items": 30},
         "ials": {"factors": [8], "regularization": [1.0], "iterations": 3}, "itemknn": {"k": [10]}}
DATA_MD = (ROOT / "docs" / "data.md").read_text()


def block(name: str) -> str:
    """The fenced block between `<!-- name:start -->` and `<!-- name:end -->` in docs/data.md."""
    found = re.search(rf"<!-- {name}:start -->\n```\w*\n(.*?)```\n<!-- {name}:end -->", DATA_MD, re.S)
    assert found, f"docs/data.md lost its {name} block"
    return found.group(1)


PAGE_PARAMS = yaml.safe_load(block("own-data-params"))
PAGE_COMMANDS = [line.split("  #")[0].strip() for line in block("own-data-commands").splitlines() if line.strip()]
FIRST_WEEK = PAGE_COMMANDS[:PAGE_COMMANDS.index("cat next-week.csv >> input/interactions.csv")]
START = np.datetime64("2026-01-05T00:00:00")
OUTPUTS = ["data/raw/interactions.parquet", "data/split/train.parquet", "data/split/users.parquet",
           "data/catalog.parquet", "models/neumf.pt", "models/baselines/ease.pt", "metrics/data.json",
           "metrics/evaluate.json", "plots/curves/gmf.tsv", "plots/models.png"]

pytestmark = pytest.mark.slow


def run(cmd: list[str], cwd: Path, ok: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=dvc_env("t", "t@t"), capture_output=True, text=True)
    assert not ok or proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}"
    return proc


def shell(command: str, cwd: Path) -> subprocess.CompletedProcess:
    return run(["bash", "-c", command], cwd)


def stages_run(output: str) -> set[str]:
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")}


def interactions(week: int, users: int = 30, per_user: int = 6, seed: int = 0) -> str:
    """One week of a shop's log: text customer ids, integer SKUs, ISO-8601 times, taste clusters
    (customer c buys SKUs s with s % 3 == c % 3), plus a column the pipeline does not read."""
    rng = np.random.default_rng(seed + week)
    lines = []
    for c in range(users):
        skus = rng.choice([s for s in range(1, 46) if s % 3 == c % 3], size=per_user, replace=False)
        times = START + np.timedelta64(7 * week, "D") + np.sort(rng.integers(0, 7 * 86400, size=per_user))
        lines += [f"c{c:03d},{sku},{np.datetime_as_string(t)}Z,web" for sku, t in zip(skus, times)]
    order = rng.permutation(len(lines))  # exports are not sorted by anything
    return "".join(lines[i] + "\n" for i in order)


def digests(project: Path) -> dict[str, bytes | dict[str, bytes]]:
    return {name: content(project / name) for name in OUTPUTS}


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A copy of the project set up for its own data, and reproduced once (first version)."""
    repo = copy_project(tmp_path_factory.mktemp("own-data"))
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"]["dataset"] = PAGE_PARAMS["data"]["dataset"]
    params["data"]["file"].update(PAGE_PARAMS["data"]["file"])
    for section, values in CHEAP.items():
        params[section].update(values)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q"], repo)
    run(["dvc", "init", "-q"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "the project"], repo)
    (repo / "input" / "interactions.csv").write_text("customer,sku,time,channel\n" + interactions(0))
    (repo / "input" / "items.csv").write_text(
        "sku,name,category\n" + "".join(f"{s},Product {s},cat{s % 3}\n" for s in range(1, 46)))
    for command in FIRST_WEEK:  # the page's commands, up to the first week's results
        out = shell(command, repo).stdout
        if command == "dvc repro":
            assert stages_run(out) == {"validate", "download", "split", "pretrain_gmf", "pretrain_mlp",
                                       "train_neumf", "baselines", "evaluate", "recommend", "plot"}
    assert run(["git", "status", "--porcelain"], repo).stdout == ""
    return repo


def test_a_new_version_of_the_file_reruns_from_the_data_and_checkout_brings_back_the_old(project):
    first = digests(project)
    report = json.loads((project / "metrics/data.json").read_text())
    assert report["users"] == 30 and report["rows"] == 180 and report["users_tested"] == 30
    assert report["items"] == 45 and json.loads((project / "metrics/baselines.json").read_text())["ease"][
        "fitted_items"] == 30  # every stage ran with EASE capped to the 30 most popular items
    assert "Product " in (project / "plots/samples.md").read_text()  # names from the items file
    shown = shell("ncf recommend --user c001 -k 3", project).stdout.splitlines()
    assert shown[0].startswith("Top 3 for user c001 (") and all(" Product " in line for line in shown[1:4]), shown
    import pandas as pd

    recs = pd.read_parquet(project / "data/recommendations.parquet")
    assert recs["user_id"].nunique() == 30 and recs["title"].str.startswith("Product ").all()

    (project / "next-week.csv").write_text(interactions(1))
    second_week = PAGE_COMMANDS[len(FIRST_WEEK):]
    for command in second_week:  # the rest of the page's commands
        if command.startswith("git checkout HEAD~1"):
            assert json.loads((project / "metrics/data.json").read_text())["rows"] == 360
            second = digests(project)
        out = shell(command, project).stdout
        if command == "dvc repro":  # not validate: params.yaml did not change
            assert stages_run(out) == {"download", "split", "pretrain_gmf", "pretrain_mlp", "train_neumf",
                                       "baselines", "evaluate", "recommend", "plot"}
        if command == "dvc metrics diff":
            rows = re.search(r"metrics/data\.json\s+rows\s+(\d+)\s+(\d+)", out)
            assert rows and rows.groups() == ("180", "360"), out
            assert re.search(r"metrics/evaluate\.json\s+neumf\.hr@10", out), out
    assert second_week[-1] == "git checkout HEAD~1 -- . && dvc checkout"
    assert digests(project) == first  # the first week's outputs, byte for byte
    shell("git checkout HEAD -- . && dvc checkout", project)
    assert digests(project) == second


def test_the_data_travels_through_a_remote_and_dvc_exp_run_works_on_it(project, tmp_path):
    remote, clone = tmp_path / "remote", tmp_path / "clone"
    shell(f"dvc remote add --local -d team {remote} && dvc push -q", project)
    shell(f"git clone -q {project} {clone}", tmp_path)
    shell(f"dvc remote add --local -d team {remote} && dvc pull -q", clone)
    for name in ["input/interactions.csv", "input/items.csv", *OUTPUTS]:
        assert content(clone / name) == content(project / name), name
    ran = stages_run(shell("dvc exp run -S split.short_users=drop", clone).stdout)
    assert "split" in ran and "download" not in ran, ran  # a split param: the data is not read again


def test_venv_dvc_runs_the_stages_without_activation_where_only_python3_exists(project):
    # Stock Debian and Ubuntu: /usr/bin has python3 and no python. The stage command's python3 is
    # the system's; stages/_bootstrap.py switches to the project's .venv (found above the checkout
    # or, here, the interpreter running the tests).
    env = {**dvc_env("t", "t@t"), "PATH": "/usr/bin:/bin"}
    if not Path("/usr/bin/python3").exists() or Path("/usr/bin/python").exists():
        pytest.skip("needs a system with /usr/bin/python3 and no /usr/bin/python")
    venv = project / ".venv"
    venv.symlink_to(Path(sys.executable).parents[1], target_is_directory=True)
    try:
        proc = subprocess.run([str(Path(sys.executable).parent / "dvc"), "repro", "-f", "validate"], cwd=project,
                              env=env, capture_output=True, text=True)
    finally:
        venv.unlink()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[validate] params.yaml: every key is known and valid" in proc.stderr


BAD = {
    "empty": ("", "the interactions file is empty"),
    "header only": ("customer,sku,time,channel\n", "has a header but no rows"),
    "wrong delimiter": ("customer;sku;time;channel\nc1;2;2026-01-05T00:00:00Z;web\n", "wrong delimiter?"),
    "missing column": ("customer,item,time,channel\nc1,2,2026-01-05T00:00:00Z,web\n", "no column 'sku'"),
    "empty ids": ("customer,sku,time,channel\nc1,2,2026-01-05T00:00:00Z,web\n,3,2026-01-05T00:00:00Z,web\n",
                  "1 rows have an empty user id (first at line 3)"),
    "NaN ids": ("customer,sku,time,channel\nc1,NaN,2026-01-05T00:00:00Z,web\n", "empty item id"),
    "bad timestamps": ("customer,sku,time,channel\nc1,2,last tuesday,web\n", "timestamp 'last tuesday' at line 2"),
    "binary garbage": (bytes(range(256)) * 64, "not a readable CSV"),
    "too small": ("customer,sku,time,channel\nc1,2,2026-01-05T00:00:00Z,web\nc1,3,2026-01-06T00:00:00Z,web\n",
                  "no user has 3 interactions"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_file_is_one_line_exit_2_and_the_printed_command_restores(project, case):
    content, fragment = BAD[case]
    before = digests(project)
    path = project / "input/interactions.csv"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    run(["dvc", "add", "-q", "input/interactions.csv"], project)
    proc = run(["dvc", "repro"], project, ok=False)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert proc.returncode != 0 and len(errors) == 1, proc.stderr
    assert errors[0].startswith("error: input/interactions.csv: ") and fragment in errors[0], errors[0]
    assert RESTORE in errors[0]
    assert "Traceback" not in proc.stdout + proc.stderr
    stage = "split" if case == "too small" else "download"
    assert f"failed to reproduce '{stage}'" in proc.stderr
    # The printed command brings back what DVC removed; the good file comes back with git and DVC.
    shell(f"{RESTORE} && git checkout HEAD -- input && dvc checkout -q input/interactions.csv.dvc", project)
    assert digests(project) == before


def test_an_items_file_that_lacks_ids_is_a_warning_not_an_error(project):
    items = project / "input/items.csv"
    items.write_text("sku,name,category\n" + "".join(f"{s},Product {s},c\n" for s in range(1, 41)))
    run(["dvc", "add", "-q", "input/items.csv"], project)
    proc = run(["dvc", "repro", "split"], project)
    assert "warning: input/items.csv names no title for 5 of the items in input/interactions.csv" in proc.stderr
    shell("git checkout HEAD -- input && dvc checkout -q input/items.csv.dvc && dvc repro split", project)


def test_real_ml100k_as_your_own_file_gives_the_movielens_metrics_byte_for_byte(tmp_path):
    """The MovieLens path, then u.data's rows as a user's CSV (other column names, an extra column,
    no items file), then with zero-padded text ids: the same split files and metrics/evaluate.json.
    (tests/test_interactions.py checks the split files of all four forms without DVC.)"""
    repo = copy_project(tmp_path / "ml100k")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"]["sources"] = ["pypi"]  # the offline copy of ml-100k, from the package index
    for section, values in {**CHEAP, "train": {"max_epochs": 2, "patience": 1}}.items():
        params[section].update(values)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for command in ("git init -q", "dvc init -q", "git add -A", "git commit -qm project", "dvc repro"):
        shell(command, repo)
    split = ["data/split/train.parquet", "data/split/valid.parquet", "data/split/test.parquet"]
    want = {name: (repo / name).read_bytes() for name in [*split, "metrics/evaluate.json"]}
    shell("git add -A && git commit -qm movielens", repo)

    import pandas as pd

    ratings = pd.read_parquet(repo / "data/raw/interactions.parquet").rename(
        columns={"user_id": "uid", "item_id": "movie", "timestamp": "when", "rating": "stars"})
    ratings.assign(origin="u.data").to_csv(repo / "input/ratings.csv", index=False)
    padded = ratings.assign(uid=ratings["uid"].map("{:05d}".format), movie=ratings["movie"].map("{:05d}".format))
    padded.to_csv(repo / "input/padded.csv", index=False)
    shell("dvc add -q input/ratings.csv input/padded.csv", repo)
    columns = {"user": "uid", "item": "movie", "timestamp": "when", "rating": "stars", "items": ""}
    for form, retrained in (("ratings.csv", False), ("padded.csv", True)):
        params["data"]["dataset"] = "file"
        params["data"]["file"].update(columns, interactions=f"input/{form}")
        (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        ran = stages_run(shell("dvc repro", repo).stdout)
        # Same split files: DVC finds the training stages' inputs unchanged and keeps their outputs;
        # the id maps of text ids differ, so those retrain, to the same weights.
        assert ("pretrain_gmf" in ran) == retrained and "evaluate" in ran, (form, ran)
        got = {name: (repo / name).read_bytes() for name in want}
        assert got == want, (form, [name for name in want if got[name] != want[name]])
