"""End to end: the real `dvc` on a copy of this project, fed a small synthetic MovieLens zip.

The copy lives in a temporary git repository; the dataset is configured as the `local` source
(GroupLens and the package index are never asked). It checks what a user does: `dvc repro`
from nothing, a second `dvc repro` that runs nothing, `dvc exp run -S num_negatives=2` that
reruns training but not download or split, `dvc metrics diff` and `dvc exp show`, a refused
param, Ctrl-C and the printed restore command, `dvc push` / `dvc pull` through a local remote,
and docs/remotes.md's `ncf share` recipe for a team.

The project is reproduced once per module (`reproduced`), and each test starts from its last
commit (`project`), so any test passes alone or in any order; `neg2` runs that experiment once
for the tests that need it."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from benchmarks.env import dvc_env  # the environment `make bench` runs dvc in, too
from ncf.stage import RESTORE

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PROJECT_FILES = ["dvc.yaml", "params.yaml", "pyproject.toml", "requirements.lock", ".dvcignore", ".gitignore",
                 "src", "stages", "input"]

pytestmark = pytest.mark.slow


def cheap_params(source: Path, **train) -> dict:
    """params.yaml with a synthetic ml-100k zip written in `source` as the only source, small
    models and batches, and `train` (max_epochs, patience) on top."""
    zip_path = synthetic_ml100k_zip(source / "ml-100k.zip")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"].update(sources=["local"], local_zip=str(zip_path), verify=False)
    params["train"].update(batch_size=256, **train)
    params["gmf"].update(dim=8, lr=0.05, l2=0.0)
    params["mlp"].update(dim=8, layers=[16, 8], lr=0.01)
    return params


def copy_project(repo: Path, extra: tuple[str, ...] = ()) -> Path:
    """The project's files (PROJECT_FILES and `extra`), copied from this checkout into `repo`."""
    repo.mkdir(parents=True, exist_ok=True)
    for name in (*PROJECT_FILES, *extra):
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, repo / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(src, repo / name)
    return repo


def content(path: Path) -> bytes | dict[str, bytes]:
    """A file's bytes, or a folder's files' (a folder of parquet parts: data/raw/interactions.parquet)."""
    if path.is_dir():
        return {str(f.relative_to(path)): f.read_bytes() for f in sorted(path.rglob("*")) if f.is_file()}
    return path.read_bytes()


def synthetic_ml100k_zip(path: Path, num_users=40, num_items=60, per_user=15, seed=0) -> Path:
    """A zip in GroupLens's ml-100k layout with taste clusters, so models can learn something."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(1, num_users + 1):
        cluster = user % 3
        liked = [i for i in range(1, num_items + 1) if i % 3 == cluster]
        picks = rng.choice(liked, size=per_user, replace=False)
        times = 880_000_000 + np.sort(rng.integers(0, 10_000, size=per_user))
        times[-3:] = times[-1]  # ties at the latest timestamp, as in the real data
        rows += [f"{user}\t{item}\t{rng.integers(1, 6)}\t{t}" for item, t in zip(picks, times)]
    items = [f"{i}|Movie {i} ({1990 + i % 10})|01-Jan-1995||http://x|" + "|".join(
        "1" if g == i % 19 else "0" for g in range(19)) for i in range(1, num_items + 1)]
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("ml-100k/u.data", "\n".join(rows) + "\n")
        zf.writestr("ml-100k/u.item", ("\n".join(items) + "\n").encode("latin-1"))
    return path


def run(cmd: list[str], cwd: Path) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=dvc_env("t", "t@t"), capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{out}"
    return out


@dataclass
class Reproduced:
    path: Path
    out: str  # what the first `dvc repro` printed
    status: str  # `git status --porcelain` right after it, before the commit
    run_cache: int  # stages with an entry in DVC's run cache (one folder each under runs/xx/) then


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory) -> Reproduced:
    """The project, reproduced once from nothing with `dvc repro` and committed: every test
    starts from this commit (through `project`), whichever runs first or alone."""
    repo = copy_project(tmp_path_factory.mktemp("ncf-e2e"))
    params = cheap_params(tmp_path_factory.mktemp("source"), max_epochs=8, patience=3)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q"], repo)
    run(["git", "config", "user.name", "ncf tests"], repo)  # dvc exp commits need an identity
    run(["git", "config", "user.email", "tests@ncf.invalid"], repo)
    run(["dvc", "init", "-q"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "project"], repo)
    out = run(["dvc", "repro"], repo)
    status = run(["git", "status", "--porcelain"], repo)
    runs = repo / ".dvc" / "cache" / "runs"
    run_cache = len({entry.parent for entry in runs.rglob("*") if entry.is_file()})
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "baseline run"], repo)
    return Reproduced(repo, out, status, run_cache)


def back_to_head(repo: Path) -> None:
    """Every file as the last commit has it, DVC's outputs too (git's index first forgets what
    it knew of the files, so that a stale stat cache cannot keep an old one)."""
    if run(["git", "status", "--porcelain"], repo).strip():
        run(["git", "rm", "-rqf", "--cached", "."], repo)
        run(["git", "reset", "-q", "--hard", "HEAD"], repo)
        run(["dvc", "checkout", "-q"], repo)
    assert not run(["git", "status", "--porcelain"], repo).strip()


@pytest.fixture
def project(reproduced) -> Path:
    """The reproduced project, its workspace back at the last commit."""
    back_to_head(reproduced.path)
    return reproduced.path


@pytest.fixture(scope="module")
def neg2(reproduced) -> str:
    """The experiment `neg2` (num_negatives=2), run once from the committed baseline; what
    `dvc exp run` printed. The workspace holds it until the next test's `project`."""
    back_to_head(reproduced.path)
    return run(["dvc", "exp", "run", "-n", "neg2", "-S", "num_negatives=2"], reproduced.path)


def stages_run(output: str) -> set[str]:
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")}


def test_repro_from_nothing_writes_metrics_and_plots(reproduced, project):
    assert stages_run(reproduced.out) == {"validate", "download", "split", "pretrain_gmf", "pretrain_mlp",
                                          "train_neumf", "baselines", "evaluate", "recommend", "plot"}
    metrics = json.loads((project / "metrics/evaluate.json").read_text())
    assert list(metrics) == ["neumf", "gmf", "mlp", "popularity", "ease", "ials", "itemknn"]
    for model, values in metrics.items():
        for key in ("hr@5", "ndcg@5", "hr@10", "ndcg@10", "hr@20", "ndcg@20"):
            assert 0.0 <= values[key] <= 1.0, (model, key)
        # The standard error over the 40 test users: sqrt(p (1 - p) / (n - 1)) for a hit rate, and
        # the same from each user's NDCG for NDCG (ranks from the ranks file).
        p = values["hr@10"]
        assert values["hr@10_se"] == pytest.approx((p * (1 - p) / 39) ** 0.5, abs=2e-6), model
        ranks = pd.read_parquet(project / "data/evaluate/ranks.parquet")[model].to_numpy()
        gains = np.where(ranks < 10, 1 / np.log2(ranks + 2.0), 0.0)
        assert values["ndcg@10_se"] == pytest.approx(gains.std(ddof=1) / np.sqrt(40), abs=2e-6), model
        assert values["ndcg@10"] <= values["hr@10"]
        # 99 sampled negatives are a subset of the full ranking's candidates.
        assert values["sampled_hr@10"] >= values["hr@10"]
    assert metrics["neumf"]["params"] > metrics["gmf"]["params"] > 0
    # The clusters are learnable: GMF and EASE must beat chance (10 of ~45 candidates) by a margin.
    assert metrics["gmf"]["hr@10"] > 0.3 and metrics["ease"]["hr@10"] > 0.3
    chosen = json.loads((project / "metrics/baselines.json").read_text())
    assert metrics["ease"]["chosen"] == chosen["ease"]["chosen"]
    sample = (project / "plots/samples.md").read_text()
    assert sample.count("## User ") == 5 and "Held out: Movie " in sample
    for png in ("training_curves.png", "models.png"):
        assert (project / "plots" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Every stage left an entry in DVC's run cache.
    assert reproduced.run_cache == 10
    # Nothing DVC caches was left for git to commit.
    assert ".parquet" not in reproduced.status and ".pt" not in reproduced.status


def test_the_recommendations_hold_k_unseen_items_for_every_user_as_ncf_recommend_ranks_them(project):
    import re

    split = project / "data/split"
    recs = pd.read_parquet(project / "data/recommendations.parquet")
    users = pd.read_parquet(split / "users.parquet")
    k = yaml.safe_load((project / "params.yaml").read_text())["recommend"]["k"]
    assert sorted(recs["user_id"]) == sorted(np.repeat(users["user_id"].to_numpy(), k))  # K rows, every user
    assert (recs.groupby("user_id")["rank"].apply(list) == [list(range(1, k + 1))] * len(users)).all()
    known = pd.concat([pd.read_parquet(split / f"{n}.parquet", columns=["user", "item"])
                       for n in ("train", "valid", "test")])
    known = known.merge(users, on="user").merge(pd.read_parquet(split / "items.parquet"), on="item")
    assert recs.merge(known, on=["user_id", "item_id"]).empty  # nothing the user already has
    assert recs["title"].str.startswith("Movie ").all()
    for user_id in users["user_id"].iloc[[0, len(users) // 2, -1]]:
        printed = run([str(BIN / "ncf"), "recommend", "--user", str(user_id), "-k", str(k)], project)
        titles = re.findall(r"^\s*\d+\. (Movie \d+)", printed, flags=re.M)
        assert titles == recs.loc[recs["user_id"] == user_id, "title"].str.extract(r"^(Movie \d+)")[0].tolist()


def test_second_repro_runs_nothing(project):
    out = run(["dvc", "repro"], project)
    assert stages_run(out) == set()
    assert "Data and pipelines are up to date" in out


def dvc_fails(cmd: list[str], cwd: Path) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=dvc_env("t", "t@t"), capture_output=True, text=True)
    assert proc.returncode != 0, f"{' '.join(cmd)} should have failed:\n{proc.stdout}{proc.stderr}"
    return proc.stdout + proc.stderr


OUTPUTS = ["models/gmf.pt", "models/select/gmf.pt", "metrics/pretrain_gmf.json", "plots/curves/gmf.tsv",
           "models/neumf.pt", "metrics/evaluate.json", "data/evaluate/ranks.parquet", "plots/samples.md",
           "plots/models.png", "data/split/train.parquet", "data/raw/interactions.parquet"]


def test_a_bad_or_unknown_param_stops_dvc_before_any_output_is_removed(project):
    before = {path: content(project / path) for path in OUTPUTS}
    committed = (project / "params.yaml").read_text()
    bad_values = [
        (committed.replace("batch_size: 256", "batch_size: 0"), "error: train.batch_size: 0 is not allowed"),
        (committed.replace("train:\n", "train:\n  lr: 0.5\n"), "error: train.lr: unknown key"),  # read by no stage
        (committed.replace("processes: 1", "processes: 3"), "does not split evenly over train.processes 3"),
        (committed.replace("device: auto", "device: cuda"), "error: device: cuda was asked for but no CUDA GPU"),
        (committed.replace("backend: auto", "backend: nccl"), "error: train.backend: nccl needs CUDA GPUs"),
        # DVC reads declared keys from the file and fails a stage on a missing one after removing
        # its outputs: validate refuses the file first (an empty one too).
        ("\n".join(line for line in committed.splitlines() if "chunk_users" not in line) + "\n",
         "error: params.yaml: evaluate.chunk_users is missing"),
        ("", "error: params.yaml: seed is missing"),
        (re.sub(r"local_zip: .*", "local_zip: src", committed), "error: data.local_zip is a folder"),
    ]
    try:
        for text, message in bad_values:
            assert text != committed
            (project / "params.yaml").write_text(text)
            out = dvc_fails(["dvc", "repro"], project)
            assert message in out and "Traceback" not in out, out
            assert stages_run(out) == {"validate"}, out
            for path, was in before.items():
                assert content(project / path) == was, f"{path} was touched by a refused run"
    finally:
        (project / "params.yaml").write_text(committed)
    # Back to the committed params: validate comes from the run cache, nothing else reruns.
    assert stages_run(run(["dvc", "repro"], project)) == set()


def torch_is_loading(pid: int) -> bool:
    """Whether the process has mapped torch's libraries: it is in `import torch`, or past it."""
    try:
        return "torch" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


@pytest.mark.parametrize("how", ["ctrl-c", "ctrl-c while the stage imports torch", "kill -9 of the stage"])
def test_an_interrupted_dvc_repro_then_the_printed_command_brings_back_every_output(project, how):
    import psutil

    before = {path: content(project / path) for path in OUTPUTS}
    committed = (project / "params.yaml").read_text()
    longer = committed.replace("max_epochs: 8", "max_epochs: 100000").replace("patience: 3", "patience: 100000")
    (project / "params.yaml").write_text(longer)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}
    proc = subprocess.Popen(["dvc", "repro"], cwd=project, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            # as Ctrl-C does: SIGINT to dvc and its stage, with the default disposition
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen = []
    reader = threading.Thread(target=lambda: seen.extend(proc.stdout), daemon=True)
    reader.start()

    def stage_processes():
        return [p for p in psutil.Process(proc.pid).children(recursive=True)
                if any(part.startswith("stages/pretrain_") for part in p.cmdline())]

    deadline, stage, training = time.monotonic() + 120, None, None
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if how == "ctrl-c while the stage imports torch":
                stage = next((p for p in stage_processes() if torch_is_loading(p.pid)), None)
                if stage:
                    # Before the stage's first log line: the signal lands in its imports.
                    assert not any(line.startswith(("[gmf]", "[mlp]")) for line in seen), seen
                    training = re.search(r"pretrain_(gmf|mlp)", " ".join(stage.cmdline()))
                    break
            else:
                training = next(filter(None, (re.match(r"\[(gmf|mlp)\] epoch 2:", line) for line in seen)), None)
                if training:
                    break
        except psutil.Error:
            pass  # a process that ended while we looked
        time.sleep(0.01)
    if how.startswith("ctrl-c"):
        os.killpg(proc.pid, signal.SIGINT)
    else:  # only the stage's python process, as the OOM killer would
        stage = stage_processes()
        assert stage, "no training stage process found"
        for p in stage:
            p.kill()
    proc.wait(timeout=120)
    reader.join(timeout=10)
    out = "".join(seen)
    assert proc.returncode != 0 and training, out
    assert not (project / f"models/{training.group(1)}.pt").exists()  # DVC removed it before the stage ran
    assert "Traceback" not in out, out
    message = [line for line in out.splitlines() if line.startswith("interrupted: ")]
    if how.startswith("ctrl-c"):  # the stage says what happened and how to go back
        assert len(message) == 1, out
        assert f"`{RESTORE}`" in message[0]
    else:  # a killed process says nothing: docs/troubleshooting.md gives the same command
        assert not message
        assert RESTORE in (ROOT / "docs" / "troubleshooting.md").read_text()
    subprocess.run(RESTORE, shell=True, cwd=project, env=env, check=True, capture_output=True)
    for path, was in before.items():
        assert content(project / path) == was, f"{path} was not restored"
    assert (project / "params.yaml").read_text() == committed
    assert stages_run(run(["dvc", "repro"], project)) == set()


def test_the_printed_command_restores_after_a_refused_experiment(project, neg2):
    # Issue 22: an experiment restored from the run cache, then at once one that `validate`
    # refuses. `dvc exp run` can leave git's index holding the committed blob of a file with the
    # stat of another version of it (same size, same second), so that a plain
    # `git checkout HEAD -- ...` took the file for unchanged and kept the experiment's.
    committed = {path: run(["git", "show", f"HEAD:{path}"], project)
                 for path in ("params.yaml", "dvc.lock", "metrics/evaluate.json", "metrics/pretrain_gmf.json",
                              "metrics/pretrain_mlp.json", "plots/curves/gmf.tsv", "plots/curves/neumf.tsv")}
    models = {path: (project / path).read_bytes() for path in ("models/gmf.pt", "models/neumf.pt")}
    out = run(["dvc", "exp", "run", "-S", "num_negatives=2"], project)
    assert stages_run(out) == set(), out  # neg2's outputs, from the run cache
    out = dvc_fails(["dvc", "exp", "run", "-S", "num_negatives=0"], project)
    assert "error: num_negatives: 0 is not allowed" in out and stages_run(out) == {"validate"}, out
    subprocess.run(RESTORE, shell=True, cwd=project, env=dvc_env("t", "t@t"), check=True, capture_output=True)
    for path, text in committed.items():
        assert (project / path).read_text() == text, f"{path} is not the committed one"
    for path, content in models.items():
        assert (project / path).read_bytes() == content, f"{path} is not the committed one"
    assert not run(["git", "status", "--porcelain"], project).strip()
    assert stages_run(run(["dvc", "repro"], project)) == set()


def test_exp_run_reruns_training_only_and_metrics_diff_shows_it(project, neg2):
    ran = stages_run(neg2)
    assert {"pretrain_gmf", "pretrain_mlp", "train_neumf", "evaluate"} <= ran
    assert not ran & {"download", "split"}

    run(["dvc", "exp", "apply", "neg2"], project)
    diff = json.loads(run(["dvc", "metrics", "diff", "--all", "--json"], project))
    neumf = diff["metrics/evaluate.json"]["neumf.hr@10"]
    assert set(neumf) >= {"old", "new"}
    committed = json.loads(run(["git", "show", "HEAD:metrics/evaluate.json"], project))
    assert neumf["old"] == committed["neumf"]["hr@10"]

    # (--all-commits: another test may have committed a remote since neg2 ran on its commit.)
    shown = json.loads(run(["dvc", "exp", "show", "--json", "--all-commits"], project))
    names = {exp.get("name") for rev in shown for exp in (rev.get("experiments") or [])}
    assert "neg2" in names

    # Is the change more than noise? Ranks of both revisions, read through DVC.
    out = run([sys.executable, "-m", "ncf", "compare", "HEAD", "neg2", "--resamples", "200"], project)
    assert "A = HEAD, B = neg2: 40 test users, paired" in out
    assert "hr@10" in out and "ndcg@10" in out


def test_going_back_to_params_already_run_restores_instead_of_training(project, neg2):
    # The workspace holds the neg2 experiment; going back to the committed params must check
    # every output out of the run cache: no stage runs, and the committed metrics come back.
    run(["dvc", "exp", "apply", "neg2"], project)
    committed = yaml.safe_load(run(["git", "show", "HEAD:params.yaml"], project))["num_negatives"]
    out = run(["dvc", "exp", "run", "-S", f"num_negatives={committed}"], project)
    assert stages_run(out) == set(), out
    for stage in ("pretrain_gmf", "pretrain_mlp", "train_neumf", "evaluate", "plot"):
        assert f"Stage '{stage}' is cached - skipping run" in out, stage
    for path in ("metrics/evaluate.json", "metrics/pretrain_mlp.json", "plots/curves/neumf.tsv"):
        assert (project / path).read_text() == run(["git", "show", f"HEAD:{path}"], project), path


def test_push_and_pull_give_back_every_artefact(project, tmp_path):
    remote = tmp_path / "remote"
    run(["dvc", "remote", "add", "-d", "store", str(remote)], project)
    run(["git", "commit", "-qm", "remote", ".dvc/config"], project)
    run(["dvc", "push"], project)

    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(project), str(clone)], tmp_path)
    run(["dvc", "pull"], clone)
    for path in ("data/raw/interactions.parquet", "data/split/train.parquet", "models/neumf.pt",
                 "data/evaluate/ranks.parquet"):
        assert content(clone / path) == content(project / path), path
    assert "up to date" in run(["dvc", "status"], clone)
    assert stages_run(run(["dvc", "repro"], clone)) == set()


# docs/remotes.md's recipe for a team, command by command, as the test below runs it.
RECIPE = ["dvc remote add -d team ", "git commit -m \"DVC remote\" .dvc/config",  # once, committed
          "ncf share",  # where the experiments ran
          "dvc pull --run-cache", "dvc exp run --pull -S num_negatives=2"]  # in a teammate's clone


def test_a_teammates_experiments_restore_from_the_remote_instead_of_training(project, neg2, tmp_path):
    # docs/remotes.md's recipe as written, from an empty remote and with no `dvc push` before
    # `ncf share`: a teammate's clone gets the defaults and every experiment run here from the
    # remote, directories included, without training anything.
    doc = (ROOT / "docs" / "remotes.md").read_text()
    at = 0
    for command in RECIPE:  # in this order
        at = doc.find(command, at)
        assert at >= 0, f"docs/remotes.md no longer says `{command}` where this test runs it"
    remote = tmp_path / "team"
    run(["dvc", "remote", "add", "-d", "team", str(remote)], project)
    run(["git", "commit", "-qm", "DVC remote", ".dvc/config"], project)
    # An experiment that changes a directory output (models/baselines), beside neg2.
    out = run(["dvc", "exp", "run", "-n", "knn10", "-S", "itemknn.k=[10]"], project)
    assert stages_run(out) == {"validate", "baselines", "evaluate", "plot"}, out
    knn10 = {path: (project / path).read_bytes() for path in
             ("metrics/evaluate.json", "models/baselines/itemknn.pt", "models/baselines/ease.pt")}

    out = run(["ncf", "share"], project)
    assert re.match(r"\d+ run-cache entries and \d+ objects pushed; the remote holds every output they name",
                    out), out
    # Never a directory's manifest without its files.
    manifests = list((remote / "files" / "md5").glob("*/*.dir"))
    assert len(manifests) >= 3  # data/split and both models/baselines
    for manifest in manifests:
        for entry in json.loads(manifest.read_text()):
            assert (remote / "files" / "md5" / entry["md5"][:2] / entry["md5"][2:]).is_file(), (manifest, entry)

    # A teammate: the committed defaults, then neg2, restored.
    clone = tmp_path / "teammate"
    run(["git", "clone", "-q", str(project), str(clone)], tmp_path)
    run(["dvc", "pull", "--run-cache"], clone)
    assert stages_run(run(["dvc", "repro"], clone)) == set()
    out = run(["dvc", "exp", "run", "--pull", "-S", "num_negatives=2"], clone)
    assert stages_run(out) == set(), out
    assert "Stage 'train_neumf' is cached - skipping run" in out
    assert (clone / "metrics/evaluate.json").read_bytes() == run_bytes(project, "neg2", "metrics/evaluate.json")
    assert (clone / "models/neumf.pt").read_bytes() == run_bytes(project, "neg2", "models/neumf.pt")
    # Another teammate: knn10, whose models/baselines is a directory the remote holds whole.
    clone = tmp_path / "teammate2"
    run(["git", "clone", "-q", str(project), str(clone)], tmp_path)
    run(["dvc", "pull", "--run-cache"], clone)
    out = run(["dvc", "exp", "run", "--pull", "-S", "itemknn.k=[10]"], clone)
    assert stages_run(out) == set(), out
    assert "Stage 'baselines' is cached - skipping run" in out
    for path, content in knn10.items():
        assert (clone / path).read_bytes() == content, path


def run_bytes(repo: Path, rev: str, path: str) -> bytes:
    """A file's bytes at a revision or experiment, through dvc.api (DVC-tracked or in git)."""
    import dvc.api

    return dvc.api.read(path, repo=str(repo), rev=rev, mode="rb")


def test_rerunning_everything_gives_byte_identical_outputs(project):
    before = {p: (project / p).read_bytes() for p in ("metrics/evaluate.json", "models/neumf.pt",
                                                      "plots/curves/neumf.tsv", "dvc.lock",
                                                      "models/baselines/ials.pt", "models/baselines/ease.pt")}
    out = run(["dvc", "repro", "--force"], project)
    assert "Running stage 'train_neumf'" in out
    for path, content in before.items():
        assert (project / path).read_bytes() == content, f"{path} changed on an identical rerun"
