"""dvc.yaml stays honest: scripts in deps, params that exist, paths declared once per stage."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from ncf.config import load_params

ROOT = Path(__file__).resolve().parents[1]
PIPELINE = yaml.safe_load((ROOT / "dvc.yaml").read_text())
STAGES = PIPELINE["stages"]
ORDER = ["validate", "download", "split", "pretrain_gmf", "pretrain_mlp", "train_neumf", "baselines", "evaluate",
         "recommend", "plot"]
TRAINING_KEYS = {"seed", "num_negatives", "train", "gmf", "mlp", "neumf", "ease", "ials", "itemknn"}


def _param_keys(stage: dict) -> list[str]:
    """The params.yaml keys a stage declares, whether listed plainly or as `params.yaml: [keys]`."""
    keys = []
    for entry in stage.get("params", []):
        if isinstance(entry, dict):
            assert list(entry) == ["params.yaml"], entry
            keys.extend(entry["params.yaml"])
        else:
            keys.append(entry)
    return keys


def _paths(entries) -> list[str]:
    return [next(iter(e)) if isinstance(e, dict) else e for e in entries or []]


def _lookup(params: dict, dotted: str):
    node = params
    for part in dotted.split("."):
        node = node[part]
    return node


def test_stages_are_the_designed_pipeline():
    assert list(STAGES) == ORDER


@pytest.mark.parametrize("name", ORDER)
def test_stage_script_is_a_dependency_and_exists(name):
    stage = STAGES[name]
    script = re.search(r"stages/\w+\.py", stage["cmd"]).group(0)
    assert script == f"stages/{name}.py"
    assert script in stage["deps"]
    for dep in stage["deps"]:
        assert (ROOT / dep).exists() or dep.startswith(("data/", "models/", "plots/", "metrics/")), dep


@pytest.mark.parametrize("name", ORDER)
def test_stage_params_exist_in_params_yaml(name):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for key in _param_keys(STAGES[name]):
        _lookup(params, key)  # KeyError names the missing key


@pytest.mark.parametrize("name", ["validate", "download", "split"])
def test_data_stages_read_no_training_params(name):
    keys = {k.split(".")[0] for k in _param_keys(STAGES[name])}
    assert not keys & TRAINING_KEYS


@pytest.mark.parametrize("name", ORDER)
def test_every_path_in_the_command_is_declared(name):
    stage = STAGES[name]
    declared = set(stage["deps"]) | {p for kind in ("outs", "metrics", "plots") for p in _paths(stage.get(kind))}
    for path in re.findall(r"--[\w-]+ (\S+)", stage["cmd"]):
        inside = any(path == d or d.startswith(path.rstrip("/") + "/") for d in declared)
        assert inside, f"{name}: {path} is in cmd but not in deps/outs/metrics/plots"


def test_metrics_and_plot_data_are_kept_in_git():
    for stage in STAGES.values():
        for entry in (stage.get("metrics") or []) + (stage.get("plots") or []):
            path, opts = next(iter(entry.items())) if isinstance(entry, dict) else (entry, {})
            assert opts.get("cache") is False, f"{path}: metrics and plot data belong in git"


@pytest.mark.parametrize("name", ORDER)
def test_no_uncached_outs_so_every_stage_has_a_run_cache(name):
    # DVC skips the run cache of a stage with a `cache: false` entry under `outs:` (not under
    # metrics or plots), and then a revisited param set retrains instead of restoring.
    for entry in STAGES[name].get("outs") or []:
        if isinstance(entry, dict):
            path, opts = next(iter(entry.items()))
            assert opts.get("cache", True), f"{name}: {path} is an uncached out; declare it under metrics/plots"


def test_committed_params_validate():
    load_params(ROOT / "params.yaml")


# Keys that choose how work is done, never what comes out; no stage reruns when they change.
NOT_RESULT_KEYS = {"data.sources", "data.timeout_s"}


def _leaves(node: dict, prefix: str = ""):
    for key, value in node.items():
        if isinstance(value, dict):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


def test_every_param_reaches_a_stage():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    declared = {k for stage in STAGES.values() for k in _param_keys(stage)}
    # A section declared whole (`train`) covers each of its keys.
    missing = {leaf for leaf in _leaves(params)
               if not any(leaf == k or leaf.startswith(k + ".") for k in declared)} - NOT_RESULT_KEYS
    assert not missing, f"params no stage declares (so -S would not rerun anything): {missing}"


def test_no_movielens_data_is_tracked_by_git():
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    forbidden = re.compile(r"(\.zip|\.parquet|\.pt|u\.data|u\.item|\.inter|ratings\.(csv|dat))$")
    assert not [f for f in files if forbidden.search(f)]


def _ncf_imports(path: Path) -> set[str]:
    """Modules of the ncf package that a file imports (`import ncf.x`, `from ncf.x import`)."""
    import ast

    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "ncf":
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names
                         if (ROOT / "src" / node.module.replace(".", "/") / f"{a.name}.py").exists())
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "ncf")
    return found


def _code_run_by(script: Path) -> set[str]:
    """Every src/ncf file a stage script runs: its ncf imports, transitively, and the package's
    __init__ (which `_bootstrap` imports first)."""
    todo, seen = ["ncf", *_ncf_imports(script)], set()
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        base = ROOT / "src" / module.replace(".", "/")
        file = base / "__init__.py" if base.is_dir() else base.with_suffix(".py")
        todo.extend(_ncf_imports(file))
    return {str((ROOT / "src" / m.replace(".", "/")).relative_to(ROOT)) + ("/__init__.py" if m == "ncf" else ".py")
            for m in seen}


@pytest.mark.parametrize("name", ORDER)
def test_every_module_a_stage_runs_is_a_dependency(name):
    # Editing code a stage runs must make `dvc status` report the stage changed.
    stage = STAGES[name]
    needed = _code_run_by(ROOT / f"stages/{name}.py") | {"stages/_bootstrap.py"}
    missing = sorted(needed - set(stage["deps"]))
    assert not missing, f"{name} runs {missing} but does not list them under deps"


def test_training_stages_share_one_param_list():
    # The training stages' common params are written once (a YAML anchor), so they cannot drift.
    lists = [STAGES[name]["params"][0]["params.yaml"] for name in ("pretrain_gmf", "pretrain_mlp", "train_neumf")]
    assert lists[0] == lists[1] == lists[2]
    assert "seed" in lists[0] and "train" in lists[0]


def test_the_final_model_is_a_dvc_artifact():
    artifact = PIPELINE["artifacts"]["neumf"]
    assert artifact["path"] == "models/neumf.pt" and artifact["type"] == "model" and artifact["desc"]
    assert "models/neumf.pt" in _paths(STAGES["train_neumf"]["outs"])


@pytest.mark.parametrize("name", ORDER)
def test_stage_commands_call_python3_which_stock_debian_and_ubuntu_have(name):
    # `python` alone is missing there, so `.venv/bin/dvc repro` without activating the environment
    # failed with `python: not found`; stages/_bootstrap.py then switches to the project's .venv.
    assert STAGES[name]["cmd"].startswith(f"python3 stages/{name}.py "), STAGES[name]["cmd"]
