"""Experiment reports: `dvc exp show --json` -> a table and figures, without copying numbers.

Every commit and experiment becomes one row of params (dotted keys) and metrics (from
metrics/evaluate.json, e.g. `neumf.hr@10`). Rows whose params are equal except for `seed` are
one configuration: the report gives their mean, standard deviation and number of seeds. Each
param that varies between configurations is a study (number of negatives, MLP layers,
pretraining, ...) and gets a figure of test HR@10 by value, with the spread over seeds as
error bars and, for architecture studies, the parameter count beside it.

A row shows only what its experiment computed: an experiment that ran part of the pipeline
(`dvc exp run pretrain_gmf ...`) still carries the metrics files of the commit it came from,
so each row's dvc.lock is checked (`stale_stages`) and a row whose evaluate stage did not run
for its params is listed as such instead of reported. A report is written as a whole folder,
and never silently replaces one made from more runs (`previous_runs`, `force`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pandas as pd

from ncf.config import lookup

METRICS_FILE = "metrics/evaluate.json"
# Not a study: seeds are repetitions of one configuration, and `threads` decides how a run
# computes, not what (1 and 2 threads give the same weights; docs/protocol.md), so a
# study queued with `-S threads=1` to run two at a time pairs with the committed defaults.
IGNORED = {"seed", "threads"}


class ReplaceError(ValueError):
    """The folder holds a report made from more runs than the one about to replace it."""


def stale_stages(lock: dict, params: dict) -> list[str]:
    """Stages of `lock` (a parsed dvc.lock) that did not run for `params` (a parsed params.yaml):
    their recorded params differ, or an input they recorded is not the output that the lock
    records for the stage upstream (which ran for other params since), in the lock's order.

    This is what an experiment that reran only part of the pipeline looks like: `dvc exp run
    pretrain_gmf -S gmf.lr=0.01` updates pretrain_gmf's entry and leaves train_neumf's and
    evaluate's as the commit's, whose metrics files it carries on unchanged.
    """
    stages = (lock or {}).get("stages") or {}
    made = {}  # output path -> (stage, md5)
    for name, stage in stages.items():
        for out in stage.get("outs") or []:
            made[out.get("path")] = (name, out.get("md5"))
    stale: list[str] = []
    for name, stage in stages.items():  # dvc.lock lists a stage after the stages it reads
        recorded = ((stage.get("params") or {}).get("params.yaml")) or {}
        changed = any(lookup(params, key) != value for key, value in recorded.items())
        for dep in stage.get("deps") or []:
            upstream = made.get(dep.get("path"))
            if upstream and (upstream[1] != dep.get("md5") or upstream[0] in stale):
                changed = True
        if changed:
            stale.append(name)
    return stale


def _stage_writing(lock: dict, path: str) -> str | None:
    for name, stage in ((lock or {}).get("stages") or {}).items():
        if any(out.get("path") == path for out in stage.get("outs") or []):
            return name
    return None


def _flatten(node, prefix=""):
    for key, value in node.items():
        if isinstance(value, dict):
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _row(name: str, rev: str, data: dict) -> dict | None:
    metrics = (((data or {}).get("metrics") or {}).get(METRICS_FILE) or {}).get("data")
    params = (((data or {}).get("params") or {}).get("params.yaml") or {}).get("data")
    if not metrics or not params:
        return None  # a failed or queued experiment: nothing to report
    row = {"name": name, "rev": rev[:7], "fullrev": rev, "_params": params}
    for key, value in _flatten(params):
        row[f"params.{key}"] = json.dumps(value) if isinstance(value, list) else value
    row.update(dict(_flatten(metrics)))
    return row


def collect(exp_show: list[dict], include_workspace: bool = False) -> pd.DataFrame:
    """One row per commit and per experiment in `dvc exp show --json` output."""
    rows = []
    for commit in exp_show:
        if commit.get("rev") != "workspace" or include_workspace:
            rows.append(_row(commit.get("name") or commit["rev"][:7], commit["rev"], commit.get("data")))
        for exp in commit.get("experiments") or []:
            first = (exp.get("revs") or [{}])[0]
            state = (exp.get("executor") or {}).get("state")
            if first.get("error") or state in ("failed", "queued", "running"):
                continue  # its metrics files are the baseline's, not its own
            rows.append(_row(exp.get("name") or first.get("name") or first.get("rev", "?")[:7],
                             first.get("rev", "?"), first.get("data")))
    rows = [r for r in rows if r]
    return pd.DataFrame(rows)


def not_computed(df: pd.DataFrame, lock_of) -> tuple[pd.DataFrame, list[str]]:
    """The rows whose metrics their own run computed, and one line for each row it did not.

    `lock_of(rev)` gives the parsed dvc.lock of a revision, or None where it cannot be read: such
    a row is kept, and the line says it was not checked.
    """
    keep, notes = [], []
    for index, row in df.iterrows():
        lock = lock_of(row["fullrev"])
        label = f"`{row['name']}` ({row['rev']})"
        if lock is None:
            notes.append(f"- {label}: its dvc.lock could not be read, so it was not checked that its own "
                         "run computed these metrics")
            keep.append(index)
            continue
        stale = stale_stages(lock, row["_params"])
        writer = _stage_writing(lock, METRICS_FILE) or "evaluate"
        if writer in stale:
            notes.append(f"- {label}: not reported, no test metrics of its own: {', '.join(stale)} did not "
                         f"run for its params (its {METRICS_FILE} is an earlier run's)")
        else:
            keep.append(index)
    return df.loc[keep].reset_index(drop=True), notes


def only_varying(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """The first row (the baseline commit) and the rows that differ from it only in `keys` or seed.

    Keeps a study's report clean of other experiments in the same repository (a tuning run that
    changed another param, say).
    """
    allowed = {f"params.{k}" for k in keys} | {f"params.{k}" for k in IGNORED}
    unknown = [k for k in keys if f"params.{k}" not in df]
    if unknown:
        raise ValueError(f"--vary {unknown[0]}: no such param in the experiments")
    fixed = [c for c in df.columns if c.startswith("params.") and c not in allowed]
    base = df.iloc[0][fixed].astype(str)
    return df[(df[fixed].astype(str) == base).all(axis=1)].reset_index(drop=True)


def config_keys(df: pd.DataFrame) -> list[str]:
    return [c for c in df.columns if c.startswith("params.") and c[len("params."):] not in IGNORED]


def previous_runs(folder: Path) -> int | None:
    """How many runs the report in `folder` was made from (None: no report there).

    Reads the marker `build` writes, or, in a report written before it, the seeds column."""
    path = Path(folder) / "experiments.md"
    if not path.is_file():
        return None
    text = path.read_text(encoding="utf-8")
    marker = re.search(r"<!-- ncf report: (\d+) runs -->", text)
    if marker:
        return int(marker.group(1))
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    if not lines:
        return 0
    head = [cell.strip() for cell in lines[0].strip("|").split("|")]
    if "seeds" not in head:
        return 0
    column = head.index("seeds")
    runs = 0
    for line in lines[1:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if len(cells) > column and cells[column].isdigit():
            runs += int(cells[column])
        else:
            break  # the end of the main table
    return runs


def _check_folder(out: Path) -> None:
    """Refuse a folder that holds anything but an earlier report (experiments.md and figures):
    the whole folder is replaced."""
    if not out.is_dir():
        return
    foreign = sorted(p.name for p in out.iterdir() if p.name != "experiments.md" and p.suffix != ".png")
    if foreign:
        raise ValueError(f"--out {out}: holds {', '.join(foreign[:3])}, which ncf report did not write; "
                         "the report replaces the whole folder, so give a folder of its own")


def aggregate(df: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Mean, std and count of `metrics` per configuration (params equal except the seed)."""
    keys = config_keys(df)
    dedup = df.drop_duplicates(subset=[*keys, "params.seed", *metrics]) if "params.seed" in df else df
    grouped = dedup.groupby(keys, dropna=False, sort=False)[metrics]
    out = grouped.mean().add_suffix(" mean").join(grouped.std(ddof=1).add_suffix(" std"))
    out["seeds"] = grouped.size()
    return out.reset_index()


def varying(df: pd.DataFrame) -> list[str]:
    """Params whose value differs between configurations: the studies."""
    return [k for k in config_keys(df) if df[k].astype(str).nunique() > 1]


def markdown(summary: pd.DataFrame, studies: list[str], metrics: list[str]) -> str:
    cols = [s.removeprefix("params.") for s in studies] or ["configuration"]
    extra = [c for c in summary.columns if c.startswith("NeuMF vs.")]
    head = "| " + " | ".join(cols + [*metrics, "seeds", *extra]) + " |"
    lines = [head, "|" + "---|" * (len(cols) + len(metrics) + 1 + len(extra))]
    for i, row in summary.iterrows():
        cells = [str(row[s]) for s in studies] or [f"#{i + 1}"]
        for m in metrics:
            mean, std = row[f"{m} mean"], row[f"{m} std"]
            cells.append(f"{mean:.4f}" + (f" ± {std:.4f}" if pd.notna(std) else ""))
        cells.append(str(int(row["seeds"])))
        cells.extend(str(row[c]) for c in extra)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def study_figure(summary: pd.DataFrame, study: str, others: list[str], metric: str, path: Path) -> None:
    """HR@10 (mean, error bar = std over seeds) by value of `study`, other params fixed."""
    from ncf.plots import save_figure  # first: it sets the Agg backend

    import matplotlib.pyplot as plt

    # Keep the configurations that differ from the most common setting in `study` only.
    base = summary[others].astype(str).mode().iloc[0] if others else None
    rows = summary if base is None else summary[(summary[others].astype(str) == base).all(axis=1)]
    rows = rows.sort_values(study, key=lambda s: s.map(_sort_key))
    labels = rows[study].astype(str).tolist()
    sizes = "neumf.params mean" in rows and study.startswith("params.mlp")
    fig, axes = plt.subplots(1, 2 if sizes else 1, figsize=(11 if sizes else 6, 4), squeeze=False)
    ax = axes[0][0]
    std = rows[f"{metric} std"].fillna(0).to_numpy()
    bars = ax.bar(labels, rows[f"{metric} mean"], yerr=std, capsize=4, color="#4C72B0", edgecolor="black")
    ax.bar_label(bars, labels=[f"{m:.4f}\n(n={int(n)})" for m, n in zip(rows[f"{metric} mean"], rows["seeds"])],
                 padding=3, fontsize=8)
    ax.set(title=f"Test {metric} by {study.removeprefix('params.')}", ylabel=metric,
           xlabel=study.removeprefix("params."))
    ax.set_ylim(0, max(rows[f"{metric} mean"] + std) * 1.3)
    ax.grid(axis="y", alpha=0.3)
    if sizes:
        ax2 = axes[0][1]
        ax2.bar(labels, rows["neumf.params mean"] / 1000, color="#DD8452", edgecolor="black")
        ax2.set(title="NeuMF parameters (thousands)", xlabel=study.removeprefix("params."))
        ax2.grid(axis="y", alpha=0.3)
    for a in axes[0]:
        a.tick_params(axis="x", labelrotation=15)
    save_figure(fig, path, dpi=110)


def _runs_by_seed(df: pd.DataFrame) -> dict:
    """{seed: full revision} for the rows of one configuration (the first run of each seed)."""
    seeds = df["params.seed"] if "params.seed" in df else pd.Series([0] * len(df), index=df.index)
    out = {}
    for seed, rev in zip(seeds, df["fullrev"]):
        out.setdefault(seed, rev)
    return dict(sorted(out.items()))


def _paired_cell(ranks_a: list, ranks_b: list, resamples: int) -> str:
    """'+0.0012 [-0.0101, +0.0125], p = 0.84' for HR@10 and NDCG@10, paired over users and seeds."""
    import numpy as np

    from ncf.compare import paired

    cells = []
    for metric in ("hr", "ndcg"):
        r = paired(np.stack(ranks_a), np.stack(ranks_b), metric, 10, resamples=resamples)
        p = f"p = {r.p_value:.3f}" if r.p_value >= 0.001 else "p < 0.001"
        cells.append(f"{r.diff:+.4f} [{r.low:+.4f}, {r.high:+.4f}], {p}")
    return "; ".join(cells)


def _ranks(ranks_of, revs: list[str]) -> list[pd.DataFrame]:
    """The ranks frames of `revs`, each sorted by user; ValueError unless all rank the same users."""
    frames = [ranks_of(rev).sort_values("user") for rev in revs]
    for rev, frame in zip(revs, frames):
        if not (frame["user"].to_numpy() == frames[0]["user"].to_numpy()).all():
            raise ValueError(f"{rev[:7]} was evaluated on other test users; a paired test needs the same split")
    return frames


def against_default(df: pd.DataFrame, summary: pd.DataFrame, ranks_of, resamples: int = 10_000) -> list[str]:
    """Per configuration of `summary`: NeuMF's paired difference (B - A) from the baseline
    commit's configuration, over the test users of every seed both ran ('' for the default)."""
    keys = config_keys(df)

    def config(frame: pd.DataFrame) -> pd.Series:
        return frame[keys].astype(str).agg("\x1f".join, axis=1)

    ids = config(df)
    base_runs = _runs_by_seed(df[ids == ids.iloc[0]])
    cells = []
    for summary_id in config(summary):
        if summary_id == ids.iloc[0]:
            cells.append("(default)")
            continue
        group = df[ids == summary_id]
        runs = _runs_by_seed(group)
        seeds = [s for s in runs if s in base_runs]
        if not seeds:
            cells.append("no common seed")
            continue
        frames = _ranks(ranks_of, [base_runs[s] for s in seeds] + [runs[s] for s in seeds])
        a = [frame["neumf"].to_numpy() for frame in frames[:len(seeds)]]
        b = [frame["neumf"].to_numpy() for frame in frames[len(seeds):]]
        cells.append(_paired_cell(a, b, resamples) + f" ({len(seeds)} seed{'s' if len(seeds) > 1 else ''})")
    return cells


def models_table(df: pd.DataFrame, ranks_of=None, resamples: int = 10_000, against: str = "neumf") -> str:
    """Every model of one configuration over its seeds: HR@10 and NDCG@10 mean ± std, and (with
    ranks) `against`'s paired difference from each model over the users of every seed."""
    from ncf.registry import LABELS

    runs = _runs_by_seed(df)
    first = df.drop_duplicates(subset=["params.seed"]) if "params.seed" in df else df
    models = _models(first, "hr@10")
    head = "| model | HR@10 | NDCG@10 |"
    rule = "|---|---|---|"
    if ranks_of is not None:
        head += f" {LABELS.get(against, against)} - model, HR@10; NDCG@10 (95% CI, p; paired over users and seeds) |"
        rule += "---|"
    lines = [head, rule]
    ranks = dict(zip(runs, _ranks(ranks_of, list(runs.values())))) if ranks_of is not None else {}
    for model in models:
        cells = [LABELS.get(model, model)]
        for key in ("hr@10", "ndcg@10"):
            values = first[f"{model}.{key}"].astype(float)
            std = values.std(ddof=1)
            cells.append(f"{values.mean():.4f}" + (f" ± {std:.4f}" if pd.notna(std) else ""))
        if ranks_of is not None:
            if model == against:
                cells.append("")
            else:
                a = [ranks[s][model].to_numpy() for s in runs]
                b = [ranks[s][against].to_numpy() for s in runs]
                cells.append(_paired_cell(a, b, resamples))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + f"\n\n{len(runs)} seeds: {', '.join(str(s) for s in runs)}.\n"


def _sort_key(value):
    try:
        parsed = json.loads(value) if isinstance(value, str) else value
    except ValueError:
        return (1, str(value))
    if isinstance(parsed, list):
        return (0, len(parsed), sum(parsed))
    if isinstance(parsed, bool) or parsed is None:
        return (0, int(bool(parsed)), 0)
    if isinstance(parsed, (int, float)):
        return (0, parsed, 0)
    return (1, str(parsed))


def _models(df: pd.DataFrame, metric: str) -> list[str]:
    """The models whose test `metric` (e.g. hr@10) the experiments report, in a fixed order."""
    from ncf.registry import MODELS

    return [m for m in MODELS if f"{m}.{metric}" in df]


def seeds_figure(df: pd.DataFrame, metric: str, path: Path) -> None:
    """Every model's test `metric` for each seed of one configuration: dots, mean and spread."""
    from ncf.plots import save_figure  # first: it sets the Agg backend

    import matplotlib.pyplot as plt

    models = _models(df, metric)
    fig, ax = plt.subplots(figsize=(7, 4))
    for x, model in enumerate(models):
        values = df[f"{model}.{metric}"].astype(float)
        ax.scatter([x] * len(values), values, color="#4C72B0", alpha=0.7, zorder=3)
        mean, std = values.mean(), values.std(ddof=1)
        ax.errorbar([x + 0.18], [mean], yerr=[std if pd.notna(std) else 0], fmt="D", color="black", capsize=5)
        ax.annotate(f"{mean:.4f} ± {std:.4f}", (x + 0.24, mean), fontsize=8, va="center")
    seeds = ", ".join(str(s) for s in sorted(df["params.seed"])) if "params.seed" in df else "?"
    ax.set(xticks=range(len(models)), xticklabels=models, ylabel=f"test {metric}",
           title=f"Test {metric} by model over seeds {seeds} (dots: seeds; diamond: mean ± std)")
    ax.set_xlim(-0.5, len(models) - 0.2)
    ax.grid(axis="y", alpha=0.3)
    save_figure(fig, path, dpi=110)


def build(exp_show: list[dict], out: Path, metrics=("neumf.hr@10", "neumf.ndcg@10"),
          vary: list[str] | None = None, ranks_of=None, resamples: int = 10_000, lock_of=None,
          force: bool = False) -> str:
    """Write the folder `out` whole: experiments.md and one PNG per study; return the markdown.

    With `lock_of(rev)` (a revision's parsed dvc.lock, or None), a row whose evaluate stage did
    not run for its params is left out and named below the table (`not_computed`). Unless
    `force`, a report in `out` made from more runs than this one is not replaced (ReplaceError).

    With `vary`, only the baseline and the experiments that differ from it in those params (or
    the seed) are reported. When they differ in the seed alone, the figure is `seeds.png`: every
    model's HR@10 per seed with mean and standard deviation. With `ranks_of(rev)` (a revision's
    ranks frame), each configuration gets NeuMF's paired test against the default one, and a
    seeds-only report every model's paired test against NeuMF.
    """
    out = Path(out)
    _check_folder(out)
    df = collect(exp_show)
    if df.empty:
        raise ValueError("no finished experiments with metrics/evaluate.json in `dvc exp show`")
    notes: list[str] = []
    if lock_of is not None:
        df, notes = not_computed(df, lock_of)
        if df.empty:
            raise ValueError("no experiment computed its own test metrics (" + "; ".join(
                n.removeprefix("- ") for n in notes) + ")")
    df = df.drop(columns="_params")
    if vary:
        df = only_varying(df, vary)
    metrics = [m for m in metrics if m in df]
    extra = ["neumf.params"] if "neumf.params" in df else []
    studies = varying(df)
    summary = aggregate(df, [*metrics, *extra])
    if studies:
        summary = summary.sort_values(studies, key=lambda col: col.map(_sort_key), ignore_index=True)
    if ranks_of is not None and studies:
        summary["NeuMF vs. default: HR@10; NDCG@10 (B - A, 95% CI, p)"] = against_default(df, summary, ranks_of,
                                                                                         resamples)
    runs = int(summary["seeds"].sum())
    before = previous_runs(out)
    if before is not None and before > runs and not force:
        raise ReplaceError(f"--out {out}: holds a report made from {before} runs, this one has {runs}; "
                           "pass --force to replace it, or give another --out")
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        text = _write(df, summary, studies, metrics, ranks_of, resamples, notes, runs, tmp)
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        if out.exists():
            out.rename(old)
        try:
            tmp.rename(out)
        except OSError:
            if old.exists():
                old.rename(out)  # the earlier report stays as it was
            raise
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return text


def _write(df, summary, studies, metrics, ranks_of, resamples, notes, runs, out: Path) -> str:
    text = "# Experiments\n\n" + markdown(summary, studies, metrics) + "\n"
    if not studies and ranks_of is not None:
        text += "\n" + models_table(df, ranks_of, resamples)
    if not studies and "params.seed" in df and df["params.seed"].nunique() > 1:
        dedup = df.drop_duplicates(subset=["params.seed"])
        key = metrics[0].split(".", 1)[1]
        seeds_figure(dedup, key, out / "seeds.png")
        models = _models(df, key)
        text += "\n| seed | " + " | ".join(models) + " |\n|---|" + "---|" * len(models) + "\n"
        for _, row in dedup.sort_values("params.seed").iterrows():
            text += f"| {row['params.seed']} | " + " | ".join(f"{row[f'{m}.{key}']:.4f}" for m in models) + " |\n"
        text += "\n![seeds](seeds.png)\n"
    for study in studies:
        name = study.removeprefix("params.").replace(".", "_")
        study_figure(summary, study, [s for s in studies if s != study], metrics[0], out / f"{name}.png")
        text += f"\n![{study}]({name}.png)\n"
    if notes:
        text += "\nExperiments not in this report, or not checked:\n\n" + "\n".join(notes) + "\n"
    text += f"\n<!-- ncf report: {runs} runs -->\n"
    (out / "experiments.md").write_text(text, encoding="utf-8")
    return text

