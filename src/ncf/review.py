"""What a change did, for its reviewer: `ncf review [BASE]` writes reports/review.md and its figures.

The workspace (or `--rev REV`) is compared with BASE (default: main): the params that differ,
the data report (metrics/data.json) if it changed, every model's test HR@10 and NDCG@10 on both
sides with their standard errors over users, the paired difference over users with its 95 %
bootstrap interval and permutation p-value (ncf.compare, as `ncf compare` does), a figure of
both revisions' training curves, one of both revisions' test metrics, and one line saying
whether anything moved beyond noise (Holm's correction over every test made).

Everything is read through DVC (`dvc.api.DVCFileSystem`): the git-tracked metrics, params and
curves from git, data/evaluate/ranks.parquet from the DVC cache or, failing that, the default
remote. Nothing is trained; an output that neither has becomes one line saying what to pull.
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ncf.compare import Comparison, paired
from ncf.registry import LABELS, MODELS, NEURAL

PARAMS = "params.yaml"
METRICS = "metrics/evaluate.json"
DATA = "metrics/data.json"  # written by the split stage where it exists; optional on both sides
RANKS = "data/evaluate/ranks.parquet"
CURVES = {model: f"plots/curves/{model}.tsv" for model in NEURAL}
KEYS = ("hr@10", "ndcg@10")
ALPHA = 0.05


class ReviewError(RuntimeError):
    """A revision that cannot be reviewed; the message is one line saying what to do."""


@dataclass
class Side:
    """What one revision holds: `rev` is a commit (None: the workspace), `name` its label."""

    name: str
    rev: str | None
    params: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    data: dict | None = None
    curves: dict = field(default_factory=dict)
    ranks: pd.DataFrame | None = None
    missing: list = field(default_factory=list)  # one line each: what to pull to complete the report


def _git(*args: str) -> str:
    proc = subprocess.run(["git", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise ReviewError(f"`git {' '.join(args)}` failed: "
                          f"{(proc.stderr.strip().splitlines() or ['no output'])[-1]}")
    return proc.stdout


def resolve(rev: str) -> tuple[str, str]:
    """(full commit, label) of a git revision or DVC experiment name."""
    proc = subprocess.run(["git", "rev-parse", "--verify", "-q", f"{rev}^{{commit}}"], capture_output=True, text=True)
    if proc.returncode == 0:
        sha = proc.stdout.strip()
        return sha, f"{rev} ({sha[:7]})" if not sha.startswith(rev) else sha[:7]
    from dvc.repo import Repo
    from dvc.repo.experiments.utils import resolve_name

    with Repo(".") as repo:
        ref = resolve_name(repo.scm, rev).get(rev)
        if ref is None:
            raise ReviewError(f"{rev}: neither a git revision nor a DVC experiment here; in a CI clone, "
                              f"fetch it first (`git fetch origin main`, or `fetch-depth: 0`)")
        sha = repo.scm.resolve_rev(str(ref))
    return sha, f"{rev} ({sha[:7]})"


def _flatten(node, prefix=""):
    for key, value in node.items():
        if isinstance(value, dict) and value:
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _pull_hint(path: str, side: Side) -> str:
    if side.rev is None:
        return (f"{path} of the workspace is neither in the DVC cache nor on the default remote: "
                f"`dvc pull {path}` (or `dvc pull --run-cache` then `dvc repro`, which restores what was run)")
    return (f"{path} of {side.name} is neither in the DVC cache nor on the default remote: "
            f"`git checkout {side.rev[:7]} && dvc pull {path}`, or `dvc push` it from the clone that ran "
            f"{side.rev[:7]} (`dvc pull --run-cache` then `dvc repro` there restores it from the run cache)")


def read_side(rev: str | None, name: str) -> Side:
    """Params, metrics, data report, curves and ranks of `rev` (None: the workspace)."""
    import yaml
    from dvc.api import DVCFileSystem
    from dvc.exceptions import DvcException

    side = Side(name, rev)
    fs = DVCFileSystem(".", rev=rev)

    def read(path: str, required: bool = False) -> bytes | None:
        try:
            return fs.read_bytes(path)
        except FileNotFoundError:
            if not fs.exists(path) and required:
                raise ReviewError(f"{path} is missing at {name}; run `dvc repro` there and commit it "
                                  "(metrics are kept in git)") from None
            if fs.exists(path):  # tracked by DVC, but no copy in the cache or on the remote
                side.missing.append(_pull_hint(path, side))
            elif path in CURVES.values() or path == RANKS:
                side.missing.append(f"{path} does not exist at {name}; run `dvc repro` there")
            return None
        except DvcException as exc:  # e.g. no remote configured, or the remote lacks the file
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            side.missing.append(_pull_hint(path, side) + f" ({first[:80]})")
            return None

    try:
        side.params = dict(_flatten(yaml.safe_load(read(PARAMS, required=True)) or {}))
        side.metrics = json.loads(read(METRICS, required=True))
        data = read(DATA)
        side.data = dict(_flatten(json.loads(data))) if data else None
    except (ValueError, yaml.YAMLError) as exc:
        raise ReviewError(f"{name}: {PARAMS} or a metrics file is not valid ({type(exc).__name__}); "
                          "restore it with `git checkout`") from None
    for model, path in CURVES.items():
        raw = read(path)
        if raw is not None:
            side.curves[model] = pd.read_csv(io.BytesIO(raw), sep="\t")
    raw = read(RANKS)
    if raw is not None:
        side.ranks = pd.read_parquet(io.BytesIO(raw)).sort_values("user", ignore_index=True)
    return side


def stale_workspace() -> str | None:
    """One line if the workspace's outputs are not those of its params and code (`dvc status`)."""
    from dvc.repo import Repo

    with Repo(".") as repo:
        changed = repo.status()
    if not changed:
        return None
    stage = next(iter(changed))
    return (f"the workspace's outputs are not those of its params and code (`dvc status`: {stage.split(':')[-1]} "
            "changed); run `dvc pull --run-cache` then `dvc repro` (it restores what was already run), or "
            "review a commit with --rev")


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error over all the tests of one report)."""
    order = np.argsort(p_values)
    adjusted, running = [0.0] * len(p_values), 0.0
    for rank, i in enumerate(order):
        running = max(running, (len(p_values) - rank) * p_values[i])
        adjusted[i] = min(1.0, running)
    return adjusted


def _fmt_p(p: float) -> str:
    return f"{p:.3f}" if p >= 0.001 else "< 0.001"


def paired_tests(base: Side, new: Side, resamples: int, seed: int) -> tuple[dict, str | None]:
    """{(model, key): Comparison} over the users both sides tested, or ({}, why not).

    A model that ranks every test item the same on both sides is left out: the change did not
    reach it, and counting it would only weaken Holm's correction for the models it did reach."""
    if base.ranks is None or new.ranks is None:
        return {}, "the ranks of a side are missing (see above)"
    a, b = base.ranks, new.ranks
    if len(a) != len(b) or not (a["user"].to_numpy() == b["user"].to_numpy()).all() \
            or not (a["item"].to_numpy() == b["item"].to_numpy()).all():
        return {}, ("the two revisions test different users or items (the data or the split changed), so "
                    "nothing can be paired; the unpaired intervals below use the standard errors")
    tests = {}
    for model in _models(base, new):
        if model in a and model in b:
            ranks_a, ranks_b = a[model].to_numpy(), b[model].to_numpy()
            if np.array_equal(ranks_a, ranks_b):
                continue  # the change did not reach this model (a baseline, say): nothing to test
            for key in KEYS:
                tests[model, key] = paired(ranks_a, ranks_b, key.split("@")[0], 10, resamples=resamples, seed=seed)
    return tests, None


def _models(base: Side, new: Side) -> list[str]:
    ordered = [m for m in MODELS if m in new.metrics and m in base.metrics]
    return ordered + [m for m in new.metrics if m in base.metrics and m not in ordered]


def _cell(metrics: dict, key: str) -> str:
    if key not in metrics:
        return "–"
    se = metrics.get(f"{key}_se")
    return f"{metrics[key]:.4f}" + (f" ± {se:.4f}" if se is not None else "")


def _unpaired(a: dict, b: dict, key: str) -> tuple[str, float] | None:
    if f"{key}_se" not in a or f"{key}_se" not in b:
        return None
    diff, se = b[key] - a[key], math.hypot(a[f"{key}_se"], b[f"{key}_se"])
    p = math.erfc(abs(diff) / se / math.sqrt(2)) if se > 0 else float(diff == 0)
    return f"{diff:+.4f} [{diff - 1.96 * se:+.4f}, {diff + 1.96 * se:+.4f}]", p


def markdown(base: Side, new: Side, tests: dict, why_not: str | None, changed_files: list[str],
             figures: dict[str, str]) -> str:
    models = _models(base, new)
    lines = [f"# Review: {new.name} against {base.name}", ""]
    # The verdict first: Holm over every paired test of the report.
    same = [m for m in models if not any((m, k) in tests for k in KEYS)] if why_not is None else []
    if why_not is None and not tests:
        adjusted = {}
        lines.append("**Nothing moved**: every model ranks every test item as before.")
    elif tests:
        keys = list(tests)
        adjusted = dict(zip(keys, holm([tests[k].p_value for k in keys])))
        moved = [k for k in keys if adjusted[k] < ALPHA]
        if moved:
            what = "; ".join(f"{LABELS.get(m, m)} {key.upper()} {tests[m, key].diff:+.4f} "
                             f"(p = {_fmt_p(tests[m, key].p_value)})" for m, key in moved)
            lines.append(f"**Moved beyond noise** (paired over {len(new.ranks)} test users, p < {ALPHA} after Holm's "
                         f"correction over {len(keys)} tests): {what}.")
        else:
            lines.append(f"**Nothing moved beyond noise**: no paired difference over the {len(new.ranks)} test users "
                         f"has p < {ALPHA} after Holm's correction over the {len(keys)} tests.")
        if same:
            lines[-1] += (f" Unchanged, so not tested (the same rank of every test item on both sides): "
                          f"{', '.join(LABELS.get(m, m) for m in same)}.")
    else:
        adjusted = {}
        lines.append(f"**Not tested for noise**: {why_not}.")
    for line in base.missing + new.missing:
        lines += ["", f"Pull first: {line}."]

    lines += ["", "## Params", ""]
    keys = [k for k in sorted(set(base.params) | set(new.params)) if base.params.get(k) != new.params.get(k)]
    if keys:
        lines += [f"| param | {base.name} | {new.name} |", "|---|---|---|"]
        lines += [f"| `{k}` | {_value(base.params, k)} | {_value(new.params, k)} |" for k in keys]
    else:
        lines.append("No param differs.")
    if changed_files:
        more = len(changed_files) - 15
        shown = ", ".join(f"`{f}`" for f in changed_files[:15]) + (f" and {more} more" if more > 0 else "")
        lines += ["", f"Other files that differ: {shown}."]

    if base.data is not None or new.data is not None:
        lines += ["", "## Data", ""]
        old, cur = base.data or {}, new.data or {}
        keys = [k for k in list(old) + [k for k in cur if k not in old] if old.get(k) != cur.get(k)]
        if keys:
            lines += [f"`{DATA}` differs:", "", f"| key | {base.name} | {new.name} |", "|---|---|---|"]
            lines += [f"| `{k}` | {_value(old, k)} | {_value(cur, k)} |" for k in keys]
        else:
            lines.append(f"`{DATA}` is the same on both sides.")

    lines += ["", "## Test metrics", ""]
    how = ("paired difference over users, 95 % bootstrap interval, sign-flip permutation p (Holm-adjusted in "
           "brackets)") if why_not is None else "unpaired difference, 95 % interval and p from the two standard errors"
    lines.append(f"Full ranking of every unseen item; ± is the standard error over users; Δ = {new.name} − "
                 f"{base.name}: {how}.")
    lines += ["", f"| model | metric | {base.name} | {new.name} | Δ [95% CI] | p |", "|---|---|---|---|---|---|"]
    for model in models:
        for key in KEYS:
            a, b = base.metrics[model], new.metrics[model]
            if (model, key) in tests:
                t: Comparison = tests[model, key]
                delta = f"{t.diff:+.4f} [{t.low:+.4f}, {t.high:+.4f}]"
                p = f"{_fmt_p(t.p_value)} ({_fmt_p(adjusted[model, key])})"
            elif model in same:
                delta, p = "same ranks", "–"
            elif key in a and key in b and (unp := _unpaired(a, b, key)) is not None:
                delta, p = unp[0], _fmt_p(unp[1])
            else:
                delta, p = "–", "–"
            lines.append(f"| {LABELS.get(model, model)} | {key.upper()} | {_cell(a, key)} | {_cell(b, key)} | "
                         f"{delta} | {p} |")
    if "curves" in figures:
        lines += ["", "## Training curves", "", f"Solid: {new.name}; dashed: {base.name}.", "",
                  f"![Training curves of both revisions]({figures['curves']})"]
    lines += ["", "## Test metrics by model", "", f"![Test metrics of both revisions]({figures['metrics']})", ""]
    return "\n".join(lines)


def _value(flat: dict, key: str) -> str:
    if key not in flat:
        return "(absent)"
    value = flat[key]
    plain = isinstance(value, (int, float, str)) and not isinstance(value, bool) and value != ""
    return f"`{value}`" if plain else f"`{json.dumps(value)}`"


def _replace_folder(tmp: Path, target: Path) -> None:
    """Put folder `tmp` where `target` is, in one rename once the old one is moved aside."""
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
        os.replace(target, old / target.name)
    os.replace(tmp, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def review(base_rev: str, new_rev: str | None, out: Path, resamples: int = 10_000, seed: int = 0) -> str:
    """Write `out` (markdown) and its figures in the folder beside it named like it; return the text."""
    from ncf.io import output_file
    from ncf.plots import model_comparison, training_curves

    base_sha, base_name = resolve(base_rev)
    if new_rev is None:
        if (line := stale_workspace()) is not None:
            raise ReviewError(line)
        new_sha, new_name = None, "workspace"
    else:
        new_sha, new_name = resolve(new_rev)
    if base_name == new_name:
        base_name, new_name = f"base {base_name}", f"new {new_name}"
    base, new = read_side(base_sha, base_name), read_side(new_sha, new_name)
    if not _models(base, new):
        raise ReviewError(f"{METRICS}: no model is reported on both sides")
    tests, why_not = paired_tests(base, new, resamples, seed)
    diff = ["diff", "--name-only", base_sha] + ([new_sha] if new_sha else [])
    skip = (PARAMS, "dvc.lock", "metrics/", "plots/")
    changed = [f for f in _git(*diff).splitlines() if f and not f.startswith(skip)]

    folder = out.with_suffix("")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        figures = {}
        if base.curves and new.curves:
            training_curves(new.curves, tmp / "curves.png", base=base.curves, names=(base.name, new.name))
            figures["curves"] = f"{folder.name}/curves.png"
        model_comparison({m: new.metrics[m] for m in _models(base, new)}, tmp / "metrics.png",
                         base=base.metrics, names=(base.name, new.name))
        figures["metrics"] = f"{folder.name}/metrics.png"
        text = markdown(base, new, tests, why_not, changed, figures)
        _replace_folder(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    with output_file(out) as path:
        path.write_text(text, encoding="utf-8")
    return text
