"""Every command that the README and docs/ show in a ```bash block is run by a test, or the page
says why not.

A command is one line of a ```bash block (continued lines joined), without its trailing
comment, or a `$ ` line of another fenced block (a command shown with what it prints). Each
one must be either

- a key of RUN_BY, whose value names the test that runs it (`tests/FILE.py::test_name`; the test
  must exist), or
- marked on the page as not run here, with the reason: a trailing `# not run here: REASON` on
  its line, or `<!-- not run here: REASON -->` on the line before the block for all its lines.

A new page or command: add its command text here with the test that runs it (the slow tests at
the end of this file run the DVC ones, literally, in a scratch repository), or mark it on the
page. A command whose text changes on the page no longer matches its entry, so the test that
runs it has to be looked at again.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
NOT_RUN = re.compile(r"not run here: *(\S.*?) *(?:-->)?$")
E2E = "tests/test_doc_commands.py::"
PIPELINE = "tests/test_pipeline_e2e.py::"

# command text, as the page shows it -> the test that runs it
RUN_BY: dict[str, str] = {
    # README.md
    "make repro": E2E + "test_make_targets_run_what_the_pages_say",
    "make test": E2E + "test_make_targets_run_what_the_pages_say",
    "dvc exp run -n neg16 -S num_negatives=16": E2E + "test_the_readme_experiment_loop",
    "dvc metrics diff": E2E + "test_the_readme_experiment_loop",
    "dvc exp show": E2E + "test_the_readme_experiment_loop",
    "ncf compare HEAD neg16": E2E + "test_the_readme_experiment_loop",
    "dvc exp run -S num_negatives=8": E2E + "test_the_readme_experiment_loop",
    "dvc exp run --queue -S threads=1 -S seed=1,2,3,4": E2E + "test_the_readme_queue_of_seeds_and_its_report",
    "dvc queue start -j 2": E2E + "test_the_readme_queue_of_seeds_and_its_report",
    "ncf report --vary seed": E2E + "test_the_readme_queue_of_seeds_and_its_report",
    # docs/studies.md
    "dvc queue status": E2E + "test_the_readme_queue_of_seeds_and_its_report",
    "ncf report --all-commits --vary seed --out docs/studies/seeds": E2E + "test_the_studies_reports",
    "ncf report --all-commits --vary num_negatives --out docs/studies/negatives": E2E + "test_the_studies_reports",
    "ncf report --all-commits --vary mlp.layers --out docs/studies/architectures": E2E + "test_the_studies_reports",
    "ncf report --all-commits --vary neumf.pretrain --vary neumf.optimizer --vary neumf.lr "
    "--out docs/studies/pretraining": E2E + "test_the_studies_reports",
    # docs/tuning.md
    "dvc exp run --queue pretrain_gmf -S train.refit=false -S 'gmf.lr=0.01,0.015,0.03'":
        E2E + "test_a_gmf_only_queue_is_reported_as_not_evaluated",
    # docs/data.md: the own-data workflow, run from the page's block by tests/test_own_data_e2e.py
    **{command: "tests/test_own_data_e2e.py::"
       "test_a_new_version_of_the_file_reruns_from_the_data_and_checkout_brings_back_the_old" for command in (
        "dvc add input/interactions.csv input/items.csv",
        'git add input params.yaml && git commit -m "Our purchases, first week"',
        "dvc repro",
        'git add -A && git commit -m "Results on the first week"',
        "cat next-week.csv >> input/interactions.csv",
        "dvc add input/interactions.csv",
        'git add -A && git commit -m "Second week"',
        "git checkout HEAD~1 -- . && dvc checkout")},
    # docs/remotes.md
    "dvc push": PIPELINE + "test_push_and_pull_give_back_every_artefact",
    "dvc pull": PIPELINE + "test_push_and_pull_give_back_every_artefact",
    # the remote's path: the test's own folder
    "dvc remote add -d team /mnt/shared/ncf-dvc":
        PIPELINE + "test_a_teammates_experiments_restore_from_the_remote_instead_of_training",
    'git commit -m "DVC remote" .dvc/config':
        PIPELINE + "test_a_teammates_experiments_restore_from_the_remote_instead_of_training",
    "ncf share": PIPELINE + "test_a_teammates_experiments_restore_from_the_remote_instead_of_training",
    "dvc pull --run-cache": PIPELINE + "test_a_teammates_experiments_restore_from_the_remote_instead_of_training",
    "dvc exp run --pull -S num_negatives=2":
        PIPELINE + "test_a_teammates_experiments_restore_from_the_remote_instead_of_training",
    'git tag -a neumf@v1.0.0 -m "NeuMF at the committed defaults"': E2E + "test_the_model_as_an_artifact",
    "dvc artifacts get . neumf -o /tmp/neumf.pt": E2E + "test_the_model_as_an_artifact",
    # docs/troubleshooting.md
    "git rm -rqf --cached --ignore-unmatch -- params.yaml dvc.lock metrics plots && git checkout HEAD -- "
    "params.yaml dvc.lock metrics plots && dvc checkout":
        PIPELINE + "test_an_interrupted_dvc_repro_then_the_printed_command_brings_back_every_output",
    # docs/ncf-command.md (`$ ` lines, with their output)
    "ncf compare gmf neumf": "tests/test_cli.py::test_compare_two_models_of_one_run",
    "ncf recommend --user 196 -k 5 --history 3":
        "tests/test_cli.py::test_recommend_lists_unseen_titles_best_first_with_history",
    # docs/review.md
    "ncf review main": "tests/test_review_e2e.py::test_the_review_of_a_param_change_has_every_section",
    "ncf review origin/main --rev HEAD":  # with HEAD as the base: the same options, through real DVC
        "tests/test_review_e2e.py::test_the_review_of_a_param_change_has_every_section",
    # docs/speed.md: the pattern, with two runs a side
    "ncf compare old/seed0/ranks.parquet,old/seed1/ranks.parquet,... new/seed0/ranks.parquet,"
    "new/seed1/ranks.parquet,...": "tests/test_cli.py::test_compare_pools_seeds_given_as_ranks_files",
    # docs/distributed.md: two gloo processes through the stage script, as `dvc repro` runs it
    "dvc exp run -S train.processes=2 -S device=cpu":
        "tests/test_distributed.py::test_two_gloo_processes_train_like_one_with_the_same_global_batch",
}


@dataclass(frozen=True)
class Command:
    page: Path
    line: int
    text: str
    not_run: str | None  # the reason the page gives, if it says it is not run here

    def __str__(self):
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def shown_commands(page: Path) -> list[Command]:
    """The commands of the page's ```bash blocks."""
    commands, block, block_reason, pending, start, previous = [], False, None, "", 0, ""
    in_fence = False  # inside a fenced block other than ```bash
    for number, raw in enumerate(page.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if line.startswith("```"):
            if not block:
                in_fence = not in_fence and line != "```bash"
            if not block and line == "```bash":
                marker = NOT_RUN.search(previous) if previous.startswith("<!--") else None
                block, block_reason = True, marker.group(1) if marker else None
            elif block:
                block = False
            if line:
                previous = line
            continue
        if line:
            previous = line
        if not block:
            if in_fence and line.startswith("$ "):
                text, _, comment = line[2:].partition(" # ")
                marker = NOT_RUN.search(comment)
                commands.append(Command(page, number, " ".join(text.split()), marker.group(1) if marker else None))
            continue
        if pending:
            line = f"{pending} {line}"
        else:
            start = number
        if line.endswith("\\"):
            pending = line[:-1].strip()
            continue
        pending = ""
        if not line or line.startswith("#"):
            continue
        text, _, comment = line.partition(" # ")
        marker = NOT_RUN.search(comment)
        commands.append(Command(page, start, " ".join(text.split()),
                                marker.group(1) if marker else block_reason))
    return commands


COMMANDS = [command for page in PAGES for command in shown_commands(page)]


def test_the_pages_show_commands():
    # A guard on the parser: the README alone shows ten.
    assert sum(1 for c in COMMANDS if c.page.name == "README.md") >= 10


@pytest.mark.parametrize("command", COMMANDS, ids=str)
def test_every_command_shown_is_run_by_a_test_or_says_why_not(command):
    if command.not_run:
        assert len(command.not_run) >= 10, f"{command}: say why `{command.text}` is not run here"
        return
    assert command.text in RUN_BY, (
        f"{command}: `{command.text}` is run by no test. Run it in one and add it to RUN_BY in "
        "tests/test_doc_commands.py, or mark it on the page: `# not run here: <reason>` after it, "
        "or `<!-- not run here: <reason> -->` before its block")


def test_every_registered_test_exists_and_every_entry_is_still_shown():
    shown = {c.text for c in COMMANDS}
    for text, test in RUN_BY.items():
        assert text in shown, f"RUN_BY lists `{text}`, which no page shows any more: drop or update it"
        path, _, name = test.partition("::")
        source = (ROOT / path).read_text(encoding="utf-8")
        assert re.search(rf"^def {name}\(", source, re.M), f"RUN_BY names {test}, which does not exist"


def test_make_targets_run_what_the_pages_say():
    """`make repro` is `dvc repro` in the project's venv; `make test` the whole pytest suite."""
    def dry(target):
        proc = subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout
    assert re.search(r"^\.venv/bin/dvc repro$", dry("repro"), re.M)
    workers = "-n auto --maxprocesses 4 --dist loadfile --no-loadscope-reorder"  # every test, spread over workers
    assert re.search(rf"^\.venv/bin/python -m pytest {workers}$", dry("test"), re.M)
    assert re.search(rf'^\.venv/bin/python -m pytest {workers} -m "not slow"$', dry("test-fast"), re.M)


# --- the DVC commands, literally, in a scratch repository (slow) ------------------------------

def page_command(page: str, startswith: str) -> str:
    """The command of `page` that starts with `startswith`, exactly as the page shows it."""
    found = [c.text for c in COMMANDS if c.page == ROOT / page and c.text.startswith(startswith)]
    assert found, f"{page} no longer shows a command starting with {startswith!r}"
    return found[0]


def shell(command: str, cwd: Path, ok: bool = True) -> subprocess.CompletedProcess:
    from benchmarks.env import dvc_env

    proc = subprocess.run(["bash", "-c", command], cwd=cwd, env=dvc_env("t", "t@t"), capture_output=True,
                          text=True)
    if ok:
        assert proc.returncode == 0, f"{command} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}"
    return proc


def output(proc: subprocess.CompletedProcess) -> str:
    return proc.stdout + proc.stderr


def stages_ran(text: str) -> set[str]:
    return {line.split("'")[1] for line in text.splitlines() if line.startswith("Running stage '")}


def wait_for_the_queue(repo: Path, timeout_s: int = 1200) -> None:
    """`dvc queue status` until nothing is queued or running; no experiment may have failed."""
    deadline = time.monotonic() + timeout_s
    while True:
        status = output(shell(page_command("docs/studies.md", "dvc queue status"), repo))
        if not re.search(r"\b(Queued|Running)\b", status):
            break
        assert time.monotonic() < deadline, f"the queue did not finish in {timeout_s} s:\n{status}"
        time.sleep(5)
    assert "Failed" not in status, status


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    """A committed copy of the project with cheap training settings (tests/test_pipeline_e2e.py's)."""
    from test_pipeline_e2e import cheap_params, copy_project

    repo = copy_project(tmp_path_factory.mktemp("doc-commands"))
    params = cheap_params(tmp_path_factory.mktemp("source"), max_epochs=6, patience=2)
    params["ials"].update(factors=[8], regularization=[3], iterations=3)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    shell("git init -q && git config user.name t && git config user.email t@t && dvc init -q && "
          "git add -A && git commit -qm project", repo)
    return repo


@pytest.mark.slow
def test_bad_params_show_validates_line_then_dvcs_and_exit_code_255(scratch):
    """What docs/params.md says a user sees (its fenced block), and DVC's own refusal of `-S`."""
    page = (ROOT / "docs/params.md").read_text(encoding="utf-8")
    shown = page.split("## Checked before any work")[1].split("```\n")[1].strip().splitlines()
    committed = (scratch / "params.yaml").read_text()
    try:
        (scratch / "params.yaml").write_text(committed.replace("num_negatives: 8", "num_negatives: 0"))
        proc = shell("dvc repro", scratch, ok=False)
        assert proc.returncode == 255 and "Traceback" not in output(proc)
        for line in shown:  # `...` on the page stands for the stage's command
            assert re.search(".*".join(map(re.escape, line.split("..."))), output(proc)), (line, output(proc))
        assert stages_ran(output(proc)) == {"validate"}

        (scratch / "params.yaml").write_text(committed.replace("  dim: 8", "  dimm: 8", 1))
        proc = shell("dvc repro", scratch, ok=False)
        assert proc.returncode == 255 and "error: gmf.dimm: unknown key; did you mean gmf.dim?" in output(proc)

        (scratch / "params.yaml").write_text(committed)
        proc = shell("dvc exp run -S gmf.dimm=3", scratch, ok=False)
        assert proc.returncode == 255, output(proc)
        assert "ERROR: Invalid `--set-param` value: Could not override 'gmf.dimm'." in output(proc)
        assert "Could not override 'gmf.dimm'" in page and stages_ran(output(proc)) == set()
        readme = (ROOT / "README.md").read_text(encoding="utf-8")  # says the same, in short
        assert "`ERROR: failed to reproduce 'validate'`, exit code 255" in readme
        assert "`Could not override 'gmf.dimm'`" in readme

        proc = shell("dvc exp run -S num_negatives=0", scratch, ok=False)
        assert proc.returncode == 255 and "error: num_negatives: 0 is not allowed" in output(proc)
        # The page says DVC leaves the refused value in params.yaml.
        assert yaml.safe_load((scratch / "params.yaml").read_text())["num_negatives"] == 0
        assert "`git checkout params.yaml`" in page
    finally:
        (scratch / "params.yaml").write_text(committed)


@pytest.mark.slow
def test_the_readme_experiment_loop(scratch):
    readme = "README.md"
    repro = output(shell("dvc repro && git add -A && git commit -qm 'baseline run'", scratch))
    # The README's quick start shows the last lines `make repro` prints (`...` for the numbers).
    shown = (ROOT / readme).read_text(encoding="utf-8").split("near the end come")[1].split("```")[1]
    for line in filter(None, shown.strip().splitlines()):
        pattern = ".*".join(map(re.escape, line.replace("(943 users)", "(40 users)").split("...")))
        assert re.search(pattern, repro), (line, repro[-2000:])
    ran = stages_ran(output(shell(page_command(readme, "dvc exp run -n neg16"), scratch)))
    # The README: "reruns training, evaluate, plot; not download, split, baselines"
    assert {"pretrain_gmf", "pretrain_mlp", "train_neumf", "evaluate", "plot"} <= ran
    assert not ran & {"download", "split", "baselines"}, ran
    diff = output(shell(page_command(readme, "dvc metrics diff"), scratch))
    assert "metrics/evaluate.json" in diff and "neumf.hr@10" in diff
    assert "neg16" in output(shell(page_command(readme, "dvc exp show"), scratch))
    compared = output(shell(page_command(readme, "ncf compare HEAD neg16"), scratch))
    assert "A = HEAD, B = neg16: 40 test users, paired" in compared
    # ncf-command.md shows what it prints: the same table header.
    shown = (ROOT / "docs/ncf-command.md").read_text(encoding="utf-8")
    header = next(line for line in shown.splitlines() if line.startswith("metric "))
    assert header in compared.splitlines(), (header, compared)
    # "back to params already run: restored from DVC's run cache"
    back = output(shell(page_command(readme, "dvc exp run -S num_negatives=8"), scratch))
    assert stages_ran(back) == set() and "is cached - skipping run" in back


@pytest.mark.slow
def test_the_readme_queue_of_seeds_and_its_report(scratch):
    readme = "README.md"
    shell("git checkout -q -- . && dvc checkout -q", scratch)
    shell(page_command(readme, "dvc exp run --queue -S threads=1"), scratch)
    shell(page_command(readme, "dvc queue start"), scratch)
    wait_for_the_queue(scratch)
    text = output(shell(page_command(readme, "ncf report --vary seed"), scratch))
    # Seeds 1-4 with one thread are the committed configuration's repetitions: five seeds.
    assert "5 seeds: 0, 1, 2, 3, 4." in text
    assert (scratch / "reports/experiments.md").is_file() and (scratch / "reports/seeds.png").is_file()


@pytest.mark.slow
def test_the_studies_reports(scratch, tmp_path):
    studies = "docs/studies.md"
    seeds = page_command(studies, "ncf report --all-commits --vary seed")
    shell(seeds, scratch)
    assert "<!-- ncf report: 5 runs -->" in (scratch / "docs/studies/seeds/experiments.md").read_text()
    for vary in ("num_negatives", "mlp.layers", "neumf.pretrain"):
        command = page_command(studies, f"ncf report --all-commits --vary {vary}")
        out = Path(scratch / command.split("--out ")[1])
        shell(command, scratch)
        assert (out / "experiments.md").is_file(), command
    assert "| 16 |" in (scratch / "docs/studies/negatives/experiments.md").read_text()  # neg16, one seed
    # The case: in a fresh clone (no experiments), the same command would replace the
    # committed five-seed report with a one-seed one: it is refused, in one line naming --force.
    shell("git add docs && git commit -qm reports", scratch)
    shell(f"git clone -q {scratch} clone", tmp_path)
    proc = shell(seeds, tmp_path / "clone", ok=False)
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(err) == 1 and "made from 5 runs, this one has 1" in err[0] \
        and "--force" in err[0], output(proc)
    assert (tmp_path / "clone/docs/studies/seeds/seeds.png").is_file()  # left as it was


@pytest.mark.slow
def test_a_gmf_only_queue_is_reported_as_not_evaluated(scratch):
    """docs/tuning.md's recipe runs pretrain_gmf alone: no test metrics of its own."""
    shell(page_command("docs/tuning.md", "dvc exp run --queue pretrain_gmf -S train.refit=false -S 'gmf.lr="),
          scratch)
    shell("dvc queue start -j 1", scratch)
    wait_for_the_queue(scratch)
    shown = json.loads(output(shell("dvc exp show --json 2>/dev/null", scratch)))
    gmf_only = {exp["name"] for commit in shown for exp in commit.get("experiments") or []
                if exp["revs"][0]["data"]["params"]["params.yaml"]["data"]["train"]["refit"] is False}
    assert len(gmf_only) == 3
    text = output(shell("ncf report --no-tests --out gmf-only", scratch))
    for name in gmf_only:
        line = next(line for line in text.splitlines() if f"`{name}`" in line)
        assert "not reported" in line and "evaluate" in line and "did not run for its params" in line
    table = text.split("\n\n")[1]
    assert "gmf.lr" not in table and "train.refit" not in table


@pytest.mark.slow
def test_the_model_as_an_artifact(scratch, tmp_path):
    remotes = "docs/remotes.md"
    shell("git checkout -q -- . && dvc checkout -q", scratch)
    shell(page_command(remotes, "git tag -a neumf@v1.0.0"), scratch)
    command = page_command(remotes, "dvc artifacts get . neumf")
    target = tmp_path / "neumf.pt"  # the page's /tmp/neumf.pt, here in the test's own folder
    shell(command.replace("/tmp/neumf.pt", str(target)), scratch)
    assert target.read_bytes() == (scratch / "models/neumf.pt").read_bytes()


def test_sys_executable_has_the_commands():
    # The slow tests run `dvc` and `ncf` from this interpreter's folder (benchmarks.env.dvc_env).
    assert (Path(sys.executable).parent / "ncf").exists() and (Path(sys.executable).parent / "dvc").exists()
