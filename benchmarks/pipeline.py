"""The whole pipeline at a large catalogue: every dvc.yaml stage through real DVC, timed and weighed.

`python -m benchmarks.scale --pipeline-only` (and `make bench-scale`, after the sweep) makes a
scratch git + DVC project from this checkout's tracked files (`git ls-files`, less dvc.lock and
the committed metrics and plots, which the run writes), points its params at a synthetic release
(`ncf.synthetic`, 1 M ratings by default: 6,502 users x 58,513 movies) through `data.local_zip`
with `data.verify: false` and `train.max_epochs: 1`, commits it, then runs each stage in dvc.yaml
order with `dvc repro --force --single-item STAGE` under the scale bench's launcher, so its wall
seconds, CPU seconds and peak (`ru_maxrss` of the launcher's children: dvc and the stage's
Python under it) are that stage's own. Then the run is committed, and `ncf compare gmf neumf` and
`ncf report` run in the project the same way. `CI=true`, so every stage logs one progress line per step (per epoch, per
share of users ranked) and those lines are kept. Any stage that fails ends the bench with its
name and its output. Writes `pipeline.json`: per stage seconds, cpu_s, peak_gb, the load
average before and after, the params changed, the commit and the release's shape.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from benchmarks.env import ROOT, dvc_env

# What a bench run changes in params.yaml; `--pipeline-set KEY=VALUE` adds to it.
BENCH_PARAMS = {"data.dataset": "ml-25m", "data.sources": ["local"], "data.verify": False,
                "train.max_epochs": 1}
# Written by the pipeline itself: the scratch project starts without them.
NOT_COPIED = ("dvc.lock", "metrics/", "plots/curves/", "plots/models.png", "plots/training_curves.png", "docs/",
              "tests/")
TOOLS = ("compare", "report")


def stages() -> list[str]:
    """dvc.yaml's stages in file order (the order `dvc repro` may run them in: each after its deps)."""
    return list(yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"])


def set_key(params: dict, key: str, value) -> None:
    from ncf.config import MISSING, lookup

    parent, _, last = key.rpartition(".")
    node = lookup(params, parent) if parent else params
    if node is MISSING or not isinstance(node, dict) or last not in node:
        raise SystemExit(f"pipeline bench: {key} is not a key of params.yaml")
    node[last] = value


def commit() -> str:
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                           capture_output=True, text=True)
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def make_project(project: Path, release: Path, overrides: dict) -> dict:
    """A git + DVC project at `project`: this checkout's tracked files, params pointed at `release`."""
    if project.exists():
        shutil.rmtree(project)
    project.mkdir(parents=True)
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split("\0")
    for name in filter(None, files):
        if name.startswith(NOT_COPIED) or not (ROOT / name).is_file():
            continue
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, project / name)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    changed = {**BENCH_PARAMS, "data.local_zip": str(release.resolve()), **overrides}
    for key, value in changed.items():
        set_key(params, key, value)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = dvc_env("ncf bench", "bench@ncf.invalid")
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "bench project"]):
        subprocess.run(cmd, cwd=project, env=env, check=True, capture_output=True)
    return changed


def measure(project: Path, name: str, argv: list[str]) -> dict:
    """One stage (or tool) under the launcher; a failure ends the bench naming it."""
    from benchmarks.scale import launch

    env = {**dvc_env("ncf bench", "bench@ncf.invalid"), "CI": "true"}
    before = os.getloadavg()
    result = launch(argv, project, env=env, what=f"pipeline stage {name}")
    after = os.getloadavg()
    log = [line for line in (result["stdout"] + result["stderr"]).splitlines() if line.strip()]
    return {"step": name, "seconds": round(result["seconds"], 2), "cpu_s": round(result["cpu_s"], 2),
            "peak_gb": round(result["peak_mb"] / 1024, 3), "load_before": [round(x, 2) for x in before],
            "load_after": [round(x, 2) for x in after], "log": log}


def run_pipeline(work: Path, release: Path, overrides: dict | None = None, tools: bool = True,
                 say=lambda text: print(text, file=sys.stderr)) -> dict:
    """Every stage of dvc.yaml, then `ncf compare` and `ncf report`, on `release`; the measurements."""
    project = work / "project"
    code = commit()  # the checkout the project is copied from, before anything else changes it
    changed = make_project(project, release, overrides or {})
    load = os.getloadavg()
    rows = []
    for name in stages():
        rows.append(measure(project, name, [str(Path(sys.executable).parent / "dvc"), "repro", "--force",
                                            "--single-item", name]))
        if not any(f"Running stage '{name}'" in line for line in rows[-1]["log"]):
            raise SystemExit(f"pipeline stage {name}: dvc did not run it:\n" + "\n".join(rows[-1]["log"]))
        say(f"pipeline: {name:<13} {rows[-1]['seconds']:>8.1f}s  cpu {rows[-1]['cpu_s']:>8.1f}s  "
            f"peak {rows[-1]['peak_gb']:.2f} GB  load {rows[-1]['load_after'][0]:.1f}")
    if tools:  # `ncf report` reads committed runs (`dvc exp show`): commit them, as a user would
        env = dvc_env("ncf bench", "bench@ncf.invalid")
        for cmd in (["git", "add", "-A"], ["git", "commit", "-qm", "bench run"]):
            subprocess.run(cmd, cwd=project, env=env, check=True, capture_output=True)
        ncf = [sys.executable, "-m", "ncf"]
        for name, argv in (("compare", [*ncf, "compare", "gmf", "neumf"]),
                           ("report", [*ncf, "report", "--out", "reports"])):
            rows.append(measure(project, name, argv))
            say(f"pipeline: ncf {name:<9} {rows[-1]['seconds']:>8.1f}s  cpu {rows[-1]['cpu_s']:>8.1f}s  "
                f"peak {rows[-1]['peak_gb']:.2f} GB")
    data = json.loads((project / "metrics" / "data.json").read_text())
    return {"commit": code, "release": str(release), "params": changed, "project": str(project),
            "users": data["users"], "items": data["items"], "train": data["train"],
            "threads": os.cpu_count(), "python": sys.version.split()[0], "load_before": [round(x, 2) for x in load],
            "load_after": [round(x, 2) for x in os.getloadavg()],
            "seconds": round(sum(r["seconds"] for r in rows if r["step"] not in TOOLS), 1),
            "cpu_s": round(sum(r["cpu_s"] for r in rows if r["step"] not in TOOLS), 1),
            "peak_gb": max(r["peak_gb"] for r in rows), "rows": rows}
