"""`make bench-scale`: time and peak memory of the data path from 0.1 M to 25 M interactions.

For each size, a synthetic release shaped like MovieLens-25M (`ncf.synthetic`: 162,541 users
and 59,047 movies at 25 M ratings; fewer users, same ratings per user, below that) is written
as a GroupLens-style zip, then seven steps run, each in a process of its own so that its peak
memory (VmHWM, imports included) is its own:
- parse: read the zip from disk (the `local` source) and write the canonical parquet files;
- split: leave-one-out by time, contiguous ids, the split's parquet files;
- gmf_epoch: one GMF epoch (dim 64, biases, 4 negatives, Adam) with its negative sampling,
  at `--batch-size` (default 262,144, as large-data NCF runs use: NVIDIA's reference trains
  MovieLens-20M at 1 M; at batch 1,024 the dense Adam step over 14 M embedding weights,
  repeated 122 k times, would dominate);
- eval: GMF full ranking of every user's test item over all movies, chunked by users;
- mlp_epoch, neumf_epoch: an MLP and a NeuMF training epoch as the pipeline trains them
  (params.yaml's sizes, negatives, batch and optimiser), bounded to the epoch's first chunk of
  samples (an epoch is drawn and held one chunk at a time, so that chunk's peak is the epoch's),
  with `seconds_per_epoch` scaled by the share of the positives trained on;
- baselines: the baselines stage's parts, bounded: its two interaction matrices (training, and
  training + validation for the refit), then one fit of each baseline at the costliest value of
  its params.yaml grid (EASE on `ease.max_items` items, iALS with the most factors, ItemKNN with
  the most neighbours) and the validation ranking of its first `--baseline-users` users; each
  part's seconds and peak memory (VmHWM reset before each baseline), and `stage_estimate_s`: the
  stage with params.yaml's grids and every validation user (each grid value a fit and a
  validation, then one refit), an upper bound where iALS's grid has fewer factors.
`--steps` runs some of them only, keeping the other rows already in --out's scale.json.
Then, once, at MovieLens-25M's shape (162,541 users x 59,047 movies; `--recommend-users`):
- recommend: the recommend stage's ranking (`ncf.recommend.recommend`) with a randomly initialised
  NeuMF of the default size, the seen mask of every user (153 random items each, as 25 M ratings
  give), over the first `--recommend-users` users only: its time per thousand users predicts a
  full run (a full run's output, K rows per user, adds about 30 MB at K = 10);
- evaluate (`--evaluate-users`): the evaluate stage's test ranking (`ncf.evaluate.rank_test`, full
  ranking and the sampled protocol) of each model it ranks, randomly initialised at the
  pipeline's default sizes (GMF, MLP, NeuMF, popularity, EASE on 10,000 items, iALS with 256
  factors, ItemKNN with 50 neighbours), each in its own process, over the first users only;
- compare (`--compare-users`): `ncf compare` on two ranks files of 162,541 test users, as the
  evaluate stage writes them (10,000 bootstrap and 10,000 permutation draws a metric).
Writes `scale.json` and `scale.png` (seconds and peak memory against interactions) to --out.

Then `--ingest` (default 20,000,263 rows; 0 skips it, `--ingest-only` runs it alone) measures a
team's own file going in: a CSV shaped like MovieLens-20M (`ncf.synthetic --shape ml-20m --csv`)
is read (a) by bare `pyarrow.csv.read_csv` and (b) by the real download and split stage scripts,
as dvc.yaml runs them, in a scratch project whose params.yaml names the file (`data.dataset:
file`). Each runs in a fresh process started by a small launcher, so its peak (the launcher's
view of its child, `ru_maxrss`) is its own; (b) is the wall time a user waits for both stages.
Writes `ingest.json` to --out: seconds and peak GB of each, and the ratio (b) / (a).

Last, `--pipeline-interactions` (default 1,000,000; 0 skips it, `--pipeline-only` runs it alone)
runs every stage of dvc.yaml through real DVC on a synthetic release of that size, then `ncf
compare` and `ncf report` (benchmarks/pipeline.py); writes `pipeline.json` to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import torch

from benchmarks.env import module_env

STEPS = ("parse", "split", "gmf_epoch", "eval", "mlp_epoch", "neumf_epoch", "baselines")
DEFAULT_SIZES = (100_000, 1_000_000, 10_000_000, 25_000_000)
INGEST_ROWS = 20_000_263  # MovieLens-20M's ratings
INGEST_STAGES = ("download", "split")
PIPELINE_INTERACTIONS = 1_000_000  # the whole pipeline's release: 6,502 users x 58,513 movies
# Runs argv[1:], then prints its wall and CPU seconds and its peak memory. A process of its own
# with nothing loaded, so the child's ru_maxrss (which Linux carries over fork) is the child's own.
_LAUNCHER = """import json, resource, subprocess, sys, time
start = time.perf_counter()
proc = subprocess.run(sys.argv[1:], capture_output=True, text=True)
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"seconds": time.perf_counter() - start, "cpu_s": usage.ru_utime + usage.ru_stime,
                  "sys_s": usage.ru_stime, "rc": proc.returncode, "stdout": proc.stdout, "stderr": proc.stderr,
                  "peak_mb": usage.ru_maxrss / 1024}))
"""
_BARE_READ = """import sys, time
import pyarrow.csv
start = time.perf_counter()
table = pyarrow.csv.read_csv(sys.argv[1])
print(time.perf_counter() - start, table.num_rows)
"""
ML25M_SHAPE = (162_541, 59_047)  # users, movies
SEEN_PER_USER = 153               # 24.9 M ratings / 162,541 users


def recommend_step(num_users: int, num_items: int, ranked: int, k: int = 10) -> dict:
    """The recommend stage's ranking at a given shape, bounded to the first `ranked` users.

    A randomly initialised NeuMF of the default size (GMF 64 with biases, MLP 64 -> 128, 64, 32):
    its cost does not depend on what it learnt. Every user gets SEEN_PER_USER random seen items,
    so the mask weighs what the stage's does.
    """
    from benchmarks.bench import peak_rss_mb
    from ncf.evaluate import ItemMask
    from ncf.models import NeuMF
    from ncf.recommend import recommend

    start = time.perf_counter()
    torch.manual_seed(0)
    model = NeuMF(num_users, num_items, gmf_dim=64, gmf_biases=True, mlp_dim=64, layers=[128, 64, 32]).eval()
    rng = np.random.default_rng(0)
    seen_per_user = min(SEEN_PER_USER, num_items // 2)
    users = np.repeat(np.arange(num_users, dtype=np.int64), seen_per_user)
    items = rng.integers(0, num_items, len(users), dtype=np.int64)
    seen = ItemMask(users, items, num_users)
    del users, items
    setup_s = time.perf_counter() - start
    start, cpu = time.perf_counter(), time.process_time()
    done, top, _ = recommend(model.score_all, np.arange(min(ranked, num_users)), seen, k, num_users,
                             desc="recommend bench")
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    assert (top >= 0).all()
    return {"users": num_users, "items": num_items, "ranked": len(done), "k": k, "setup_s": round(setup_s, 2),
            "seconds": round(seconds, 2), "seconds_per_1000_users": round(1000 * seconds / len(done), 2),
            # CPU seconds of all threads: on a shared machine, wall time overstates the work.
            "cpu_seconds_per_1000_users": round(1000 * cpu / len(done), 2), "threads": torch.get_num_threads(),
            "full_run_hours": round(num_users * seconds / len(done) / 3600, 2),
            "peak_rss_mb": round(peak_rss_mb(), 1)}


EVAL_MODELS = ("gmf", "mlp", "neumf", "popularity", "ease", "ials", "itemknn")


def neural_model(kind: str, num_users: int, num_items: int, params=None):
    """GMF, MLP or NeuMF as the pipeline's stages build them from params.yaml (`params`: this
    checkout's), with the weights torch's current seed gives."""
    from benchmarks.env import ROOT
    from ncf.config import load_params
    from ncf.models import GMF, MLP, NeuMF

    params = params or load_params(ROOT / "params.yaml")
    gmf, mlp = params.gmf, params.mlp
    if kind == "gmf":
        return GMF(num_users, num_items, dim=gmf.dim, biases=gmf.biases)
    if kind == "mlp":
        return MLP(num_users, num_items, dim=mlp.dim, layers=list(mlp.layers))
    return NeuMF(num_users, num_items, gmf_dim=gmf.dim, gmf_biases=gmf.biases, mlp_dim=mlp.dim,
                 layers=list(mlp.layers))


def random_model(kind: str, num_users: int, num_items: int, x):
    """A model of the pipeline's default size with random weights (its cost does not depend on
    what it learnt): the neural models as params.yaml sizes them, EASE on `ease.max_items` 10,000
    items, iALS with 256 factors, ItemKNN with 50 neighbours an item."""
    from ncf import baselines
    from ncf.evaluate import Popularity

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    if kind in ("gmf", "mlp", "neumf"):
        return neural_model(kind, num_users, num_items).eval().score_all
    if kind == "popularity":
        return Popularity(x.indices.astype(np.int64), num_items).score_all
    if kind == "ease":
        fitted = min(10_000, num_items)
        items = torch.from_numpy(baselines.popular_items(x, fitted).astype(np.int64))
        weights = torch.randn(fitted, fitted, generator=g) * 0.01
        return baselines.Linear("ease", {}, x, weights, items).score_all
    if kind == "ials":
        return baselines.Factors("ials", {}, torch.randn(num_users, 256, generator=g),
                                 torch.randn(num_items, 256, generator=g)).score_all
    import scipy.sparse as sp

    k = 50
    rng = np.random.default_rng(0)
    weights = sp.csc_matrix((rng.random(num_items * k, dtype=np.float32),
                             rng.integers(0, num_items, num_items * k), np.arange(0, num_items * k + 1, k)),
                            shape=(num_items, num_items)).tocsr()
    return baselines.Neighbours("itemknn", {}, x, weights).score_all


def evaluate_step(kind: str, num_users: int, num_items: int, ranked: int, chunk_users: int = 1024) -> dict:
    """The evaluate stage's test ranking (`rank_test`: full ranking and the sampled protocol in one
    pass) for one model at a given shape, bounded to the first `ranked` users; the seen items are
    SEEN_PER_USER random ones per user, as in the recommend row."""
    import scipy.sparse as sp

    from benchmarks.bench import peak_rss_mb
    from ncf.evaluate import ItemMask, rank_test

    start = time.perf_counter()
    rng = np.random.default_rng(0)
    seen_per_user = min(SEEN_PER_USER, num_items // 2)
    users = np.repeat(np.arange(num_users, dtype=np.int64), seen_per_user)
    items = rng.integers(0, num_items, len(users), dtype=np.int64)
    x = sp.csr_matrix((np.ones(len(users), np.float32), (users, items)), shape=(num_users, num_items))
    x.sum_duplicates()
    x.data[:] = 1
    mask = ItemMask(users, items, num_users)
    del users, items
    score_all = random_model(kind, num_users, num_items, x)
    chosen = np.arange(min(ranked, num_users), dtype=np.int64)
    targets = rng.integers(0, num_items, len(chosen), dtype=np.int64)
    setup_s = time.perf_counter() - start
    start, cpu = time.perf_counter(), time.process_time()
    full, sampled = rank_test(score_all, chosen, targets, mask, mask, num_items, seed=0, chunk_users=chunk_users,
                              desc=f"{kind} test ranking bench")
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    assert len(full) == len(sampled) == len(chosen)
    return {"model": kind, "users": num_users, "items": num_items, "ranked": len(chosen), "chunk_users": chunk_users,
            "setup_s": round(setup_s, 2), "seconds": round(seconds, 2),
            "seconds_per_1000_users": round(1000 * seconds / len(chosen), 2),
            "cpu_seconds_per_1000_users": round(1000 * cpu / len(chosen), 2),
            "full_run_hours": round(num_users * seconds / len(chosen) / 3600, 2),
            "peak_rss_mb": round(peak_rss_mb(), 1)}


def compare_row(work: Path, num_users: int, resamples: int = 10_000) -> dict:
    """`ncf compare` (paired bootstrap and permutation test of HR@10 and NDCG@10) on two ranks
    files of `num_users` test users, as the evaluate stage writes them, under the launcher."""
    rng = np.random.default_rng(0)
    users = np.arange(num_users, dtype=np.int64)
    sides = []
    for name, scale in (("a", 400.0), ("b", 300.0)):  # ranks as a full ranking gives them: HR@10 about 0.03
        path = work / f"ranks_{name}.parquet"
        pd.DataFrame({"user": users, "item": users % 59_047,
                      "neumf": rng.exponential(scale, num_users).astype(np.int64)}).to_parquet(path)
        sides.append(f"{path}:neumf")
    result = launch([sys.executable, "-m", "ncf", "compare", *sides, "--resamples", str(resamples)], work,
                    what="compare row")
    return {"users": num_users, "resamples": resamples, "seconds": round(result["seconds"], 2),
            "cpu_s": round(result["cpu_s"], 2), "peak_rss_mb": round(result["peak_mb"], 1),
            "output": result["stdout"].strip().splitlines()}


def step(name: str, work: Path, batch_size: int, baseline_users: int = 2048) -> dict:
    from benchmarks.bench import peak_rss_mb
    from ncf.evaluate import rank_held_out
    from ncf.io import read_parquet, write_parquet
    from ncf.models import GMF
    from ncf.movielens import load_release
    from ncf.sampling import NegativeSampler
    from ncf.split import leave_one_out
    from ncf.protocol import read_split
    from ncf.train import make_optimizer, run_epoch

    out: dict = {}
    start = time.perf_counter()
    if name == "parse":
        ratings, movies, _ = load_release("ml-25m", ("local",), local_zip=str(work / "release.zip"),
                                          verify=False, log=lambda _: None)
        write_parquet(ratings, work / "ratings.parquet")
        write_parquet(movies, work / "movies.parquet")
        out["rows"] = len(ratings)
    elif name == "split":
        split = leave_one_out(read_parquet(work / "ratings.parquet"), read_parquet(work / "movies.parquet"))
        for part in ("train", "valid", "test", "users", "items"):
            write_parquet(getattr(split, part), work / "split" / f"{part}.parquet")
        out.update(users=len(split.users), items=len(split.items), train=len(split.train))
    else:
        data = read_split(work / "split", "cpu")
        torch.manual_seed(0)
        def gmf():  # the sweep's GMF (module docstring), built only in its steps: the others' peaks are theirs
            return GMF(data.num_users, data.num_items, dim=64, biases=True)

        if name == "baselines":
            out["setup_s"] = round(time.perf_counter() - start, 2)  # reading the split
            start = time.perf_counter()
            out.update(baselines_step(data, baseline_users))
            out["peak_rss_mb"] = round(max(out[kind]["peak_rss_mb"] for kind in ("ease", "ials", "itemknn")), 1)
        elif name in ("mlp_epoch", "neumf_epoch"):
            out["setup_s"] = round(time.perf_counter() - start, 2)  # reading the split
            start = time.perf_counter()
            out.update(tower_epoch(name.split("_")[0], data))
        elif name == "gmf_epoch":
            model = gmf()
            opt = make_optimizer("adam", model.parameters(), 0.002)
            sampler = NegativeSampler(data.users, data.items, data.num_items)
            out["setup_s"] = round(time.perf_counter() - start, 2)
            start = time.perf_counter()
            total, count = run_epoch(model, opt, data.users, data.items, sampler, num_negatives=4,
                                     generator=torch.Generator().manual_seed(0), batch_size=batch_size,
                                     l2=0.003)
            out["loss"] = round(total / count, 4)
            out["samples"] = count
        else:
            test = pd.read_parquet(work / "split" / "test.parquet")
            mask = data.with_validation().mask  # training + validation items, as the evaluate stage
            model = gmf().eval()
            ranks = rank_held_out(model.score_all, test["user"].to_numpy(np.int64),
                                  test["item"].to_numpy(np.int64), mask, chunk_users=1024)
            out["ranked"] = len(ranks)
    out["seconds"] = round(time.perf_counter() - start, 2)
    out.setdefault("peak_rss_mb", round(peak_rss_mb(), 1))  # the baselines' is the largest of their parts'
    return out


def _reset_peak() -> bool:
    """Start VmHWM again from the current resident memory (Linux: /proc/self/clear_refs, 5)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:  # pragma: no cover - not Linux, or not allowed: peaks are then the process's
        return False


def baselines_step(data, ranked: int) -> dict:
    """The baselines stage's parts at this size, bounded (module docstring: baselines)."""
    from benchmarks.bench import peak_rss_mb
    from benchmarks.env import ROOT
    from ncf import baselines
    from ncf.config import check_baselines, ease_items, load_params
    from ncf.evaluate import rank_held_out

    params = load_params(ROOT / "params.yaml")
    shape = (data.num_users, data.num_items)
    check_baselines(params, data.num_items)  # as the stage: refuse what this machine cannot hold
    start = time.perf_counter()
    train_x = baselines.interactions(data.users.numpy(), data.items.numpy(), *shape)
    full = data.with_validation()
    full_x = baselines.interactions(full.users.numpy(), full.items.numpy(), *shape)
    del full
    mask = data.mask  # the training items masked in validation, built on first use: part of this setup, as in the stage
    # full_x stays alive to the end, as in the stage (it waits there for each baseline's refit)
    out = {"matrices_s": round(time.perf_counter() - start, 2), "matrices_peak_rss_mb": round(peak_rss_mb(), 1),
           "train_nnz": train_x.nnz, "refit_nnz": full_x.nnz,
           "valid_users": len(data.valid_users), "ease_items": ease_items(params, data.num_items),
           "peak_reset": _reset_peak()}
    estimate = out["matrices_s"]
    users, targets = data.valid_users[:ranked], data.valid_items[:ranked]
    for kind in baselines.KINDS:
        grid = baselines.grid(kind, params)
        cost = {"ease": lambda h: 0, "ials": lambda h: h["factors"], "itemknn": lambda h: h["k"]}[kind]
        hyper = max(grid, key=cost)  # the first of the costliest
        _reset_peak()
        start = time.perf_counter()
        model = baselines.fit(kind, train_x, hyper, params.seed, params.threads, params.ease.max_items)
        fit_s = time.perf_counter() - start
        start = time.perf_counter()
        ranks = rank_held_out(model.score_all, users, targets, mask, chunk_users=params.evaluate.chunk_users,
                              desc=f"{kind} validation bench")
        per_user = (time.perf_counter() - start) / len(ranks)
        del model
        total = len(grid) * (fit_s + per_user * out["valid_users"]) + fit_s * params.train.refit
        estimate += total
        out[kind] = {"hyper": hyper, "grid": len(grid), "fit_s": round(fit_s, 2), "ranked": len(ranks),
                     "seconds_per_1000_users": round(1000 * per_user, 2), "stage_estimate_s": round(total, 1),
                     "peak_rss_mb": round(peak_rss_mb(), 1)}
    out["stage_estimate_s"] = round(estimate, 1)
    return out


def tower_epoch(kind: str, data) -> dict:
    """An MLP or NeuMF training epoch as the pipeline runs it (params.yaml's sizes, negatives, batch,
    optimiser), bounded to its first chunk of samples (`ncf.train.CHUNK_SAMPLES`: an epoch is drawn
    and held one chunk at a time, so the chunk's peak is the epoch's): its seconds, and seconds per
    whole epoch by the share of the positives it trained on."""
    from benchmarks.env import ROOT
    from ncf.config import load_params
    from ncf.sampling import NegativeSampler
    from ncf.train import CHUNK_SAMPLES, make_optimizer, run_epoch

    params = load_params(ROOT / "params.yaml")
    model = neural_model(kind, data.num_users, data.num_items, params)
    # pretrain_mlp trains with Adam; train_neumf with neumf.optimizer
    optimizer, lr, l2 = ("adam", params.mlp.lr, params.mlp.l2) if kind == "mlp" else \
        (params.neumf.optimizer, params.neumf.lr, params.neumf.l2)
    positives = min(len(data.users), CHUNK_SAMPLES // (1 + params.num_negatives))
    opt = make_optimizer(optimizer, model.parameters(), lr)
    sampler = NegativeSampler(data.users, data.items, data.num_items)
    start = time.perf_counter()
    total, count = run_epoch(model, opt, data.users[:positives], data.items[:positives], sampler,
                             num_negatives=params.num_negatives, generator=torch.Generator().manual_seed(0),
                             batch_size=params.train.batch_size, l2=l2)
    seconds = time.perf_counter() - start
    return {"samples": count, "positives": positives, "train": len(data.users),
            "seconds_per_epoch": round(seconds * len(data.users) / positives, 1), "loss": round(total / count, 4)}


def run_step(name: str, work: Path, batch_size: int, *extra: str) -> dict:
    proc = subprocess.run([sys.executable, "-m", "benchmarks.scale", "--step", name, "--work", str(work),
                           "--batch-size", str(batch_size), *extra], env=module_env(), capture_output=True,
                          text=True)
    if proc.returncode != 0:
        raise SystemExit(f"scale step {name} failed in {work}:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def launch(argv: list[str], cwd: Path, env: dict | None = None, what: str = "ingest") -> dict:
    """Run argv in cwd under the launcher: wall seconds, peak MB, output; any failure ends the bench."""
    proc = subprocess.run([sys.executable, "-c", _LAUNCHER, *argv], cwd=cwd, capture_output=True, text=True,
                          env=module_env(env))
    result = json.loads(proc.stdout) if proc.returncode == 0 else {"rc": proc.returncode, "stdout": "",
                                                                   "stderr": proc.stderr}
    if result["rc"] != 0:
        raise SystemExit(f"{what}: {shlex.join(argv)} failed (exit {result['rc']}) in {cwd}:\n"
                         f"{result['stdout']}{result['stderr']}")
    return result


def stage_argv(name: str) -> list[str]:
    """The stage's command as dvc.yaml has it, with this Python and this checkout's script."""
    import yaml

    from benchmarks.env import ROOT

    argv = shlex.split(yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"][name]["cmd"])
    assert argv[0].startswith("python") and argv[1].startswith("stages/"), argv
    return [sys.executable, str(ROOT / argv[1]), *argv[2:]]


def ingest_project(work: Path, rows: int, reuse: bool) -> Path:
    """A scratch project whose input/interactions.csv is a MovieLens-20M-shaped own file."""
    from ncf.synthetic import write_csv

    project = work / "ingest"
    csv = project / "input" / "interactions.csv"
    csv.parent.mkdir(parents=True, exist_ok=True)
    if not (reuse and csv.exists()):
        start = time.perf_counter()
        n = write_csv(csv, rows, shape="ml-20m")
        print(f"ingest: wrote {csv} ({n:,} rows, {csv.stat().st_size / 1e6:,.0f} MB) in "
              f"{time.perf_counter() - start:.0f}s", file=sys.stderr)
    (project / "params.yaml").write_text(
        "data:\n  dataset: file\n  file:\n    interactions: input/interactions.csv\n    user: userId\n"
        "    item: movieId\n    timestamp: timestamp\n    rating: rating\n")
    return project


def measure_ingest(work: Path, rows: int, repeats: int = 1, reuse: bool = False) -> dict:
    """(a) bare pyarrow read and (b) download + split stages on the same CSV, best of `repeats` each."""
    project = ingest_project(work, rows, reuse)
    csv = project / "input" / "interactions.csv"
    csv.read_bytes()  # into the page cache, so neither (a) nor (b) pays for the first read from disk
    bare, stages = [], []
    for _ in range(repeats):  # interleaved, so that a busy spell on a shared machine hits both
        result = launch([sys.executable, "-c", _BARE_READ, str(csv)], project)
        read_s, n = result["stdout"].split()
        bare.append({"read_s": float(read_s), "seconds": result["seconds"], "cpu_s": result["cpu_s"],
                     "sys_s": result["sys_s"], "peak_mb": result["peak_mb"], "rows": int(n)})
        runs = {name: launch(stage_argv(name), project) for name in INGEST_STAGES}
        stages.append({"seconds": sum(r["seconds"] for r in runs.values()),
                       "cpu_s": sum(r["cpu_s"] for r in runs.values()),
                       "sys_s": sum(r["sys_s"] for r in runs.values()),
                       **{f"{name}_s": r["seconds"] for name, r in runs.items()},
                       **{f"{name}_peak_mb": r["peak_mb"] for name, r in runs.items()},
                       "peak_mb": max(r["peak_mb"] for r in runs.values()),
                       "log": [line for r in runs.values() for line in r["stderr"].splitlines()]})
    a = min(bare, key=lambda r: r["read_s"])
    b = min(stages, key=lambda r: r["seconds"])
    report = json.loads((project / "metrics" / "data.json").read_text())
    return {"rows": a["rows"], "csv_mb": round(csv.stat().st_size / 1e6, 1), "repeats": repeats,
            "bare_read_s": round(a["read_s"], 2), "bare_process_s": round(a["seconds"], 2),
            "bare_peak_gb": round(a["peak_mb"] / 1024, 2), "bare_cpu_s": round(a["cpu_s"], 2),
            "stages_s": round(b["seconds"], 2),
            **{f"{name}_s": round(b[f"{name}_s"], 2) for name in INGEST_STAGES},
            **{f"{name}_peak_gb": round(b[f"{name}_peak_mb"] / 1024, 2) for name in INGEST_STAGES},
            "stages_peak_gb": round(b["peak_mb"] / 1024, 2), "stages_cpu_s": round(b["cpu_s"], 2),
            "ratio": round(b["seconds"] / a["read_s"], 2),
            "users": report["users"], "items": report["items"], "train": report["train"],
            "log": b["log"], "all_bare_read_s": [round(r["read_s"], 2) for r in bare],
            "all_stages_s": [round(r["seconds"], 2) for r in stages],
            # System time, mostly page faults: on a VM the same read's swings 0.25-3.5 s between
            # runs (docs/scale.md), which is what moves the bare read, and with it the ratio.
            "all_bare_sys_s": [round(r["sys_s"], 2) for r in bare],
            "all_stages_sys_s": [round(s["sys_s"], 2) for s in stages],
            # User CPU seconds hardly move with it: their ratio (medians) is the steadier measure
            # of how much more work (b) does than (a).
            "user_cpu_ratio": round(statistics.median(s["cpu_s"] - s["sys_s"] for s in stages)
                                    / statistics.median(r["cpu_s"] - r["sys_s"] for r in bare), 2),
            # Each (b) over the (a) just before it: on a shared machine, the load moves between runs.
            "pair_ratios": [round(s["seconds"] / r["read_s"], 2) for r, s in zip(bare, stages)]}


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frame = pd.DataFrame(rows).sort_values("interactions", kind="stable")  # rows of partial reruns come last
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, marker in zip(STEPS, "osD^vPX"):
        part = frame[frame["step"] == name]
        seconds = part["seconds_per_epoch"] if name.endswith("_epoch") and part.get("seconds_per_epoch") is not None \
            and part["seconds_per_epoch"].notna().all() else part["seconds"]  # a bounded epoch's whole-epoch time
        label = "baselines (one fit each)" if name == "baselines" else name  # a bounded step: not the stage
        left.plot(part["interactions"], seconds, marker=marker, label=label)
        right.plot(part["interactions"], part["peak_rss_mb"] / 1024, marker=marker, label=label)
    xs = np.array(sorted(frame["interactions"].unique()), dtype=float)
    ref = frame[frame["step"] == "parse"]["seconds"].iloc[0] * xs / xs[0]
    left.plot(xs, ref, color="grey", linestyle=":", label="linear growth")
    for ax, label in ((left, "seconds"), (right, "peak memory (GiB)")):
        ax.set_xscale("log")
        ax.set_xlabel("interactions (synthetic, shaped like MovieLens-25M)")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    left.set_yscale("log")
    left.set_title("Time per step")
    right.set_title("Peak memory per step (own process)")
    left.legend(fontsize=8)
    fig.suptitle(f"Data path at scale: {platform.machine()}, {torch.get_num_threads()} threads, "
                 f"torch {torch.__version__}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=float, nargs="*", default=DEFAULT_SIZES,
                   help="interactions per run (none: only the recommend row)")
    p.add_argument("--work", type=Path, default=Path("/tmp/ncf-scale"), help="scratch folder for the zips")
    p.add_argument("--batch-size", type=int, default=262_144, help="GMF epoch batch (default: %(default)s)")
    p.add_argument("--out", type=Path, default=Path("docs/scale"), help="folder for scale.json and scale.png")
    p.add_argument("--reuse", action="store_true", help="keep release zips already in --work")
    p.add_argument("--ingest", type=float, default=INGEST_ROWS,
                   help="rows of the own-file CSV for the ingest measurement (default: %(default)d; 0: skip it)")
    p.add_argument("--ingest-only", action="store_true", help="run the ingest measurement alone")
    p.add_argument("--ingest-repeats", type=int, default=1, help="best of this many ingest runs (default: 1)")
    p.add_argument("--recommend-users", type=int, default=2048,
                   help="users ranked by the recommend row at MovieLens-25M's shape (0: skip it; default: %(default)s)")
    p.add_argument("--recommend-shape", type=int, nargs=2, default=ML25M_SHAPE, metavar=("USERS", "ITEMS"),
                   help=argparse.SUPPRESS)
    p.add_argument("--pipeline-interactions", type=float, default=PIPELINE_INTERACTIONS,
                   help="ratings of the release the whole pipeline runs on (default: %(default)d; 0: skip it)")
    p.add_argument("--pipeline-only", action="store_true", help="run the whole-pipeline measurement alone")
    p.add_argument("--pipeline-zip", type=Path,
                   help="an existing synthetic release for the whole pipeline (copied), instead of writing one")
    p.add_argument("--pipeline-set", action="append", default=[], metavar="KEY=VALUE",
                   help="another params.yaml value for the whole pipeline (YAML), e.g. ease.max_items=2000")
    p.add_argument("--evaluate-users", type=int, default=2048,
                   help="users ranked per model by the evaluate rows at MovieLens-25M's shape (0: skip them; "
                        "default: %(default)s)")
    p.add_argument("--evaluate-models", nargs="*", default=EVAL_MODELS, choices=EVAL_MODELS,
                   help="models of the evaluate rows (default: all)")
    p.add_argument("--compare-users", type=int, default=ML25M_SHAPE[0],
                   help="test users of the `ncf compare` row (0: skip it; default: %(default)s, MovieLens-25M's)")
    p.add_argument("--steps", nargs="+", choices=STEPS, default=STEPS,
                   help="steps of the sweep (default: all); with fewer, the rows already in --out's scale.json "
                        "for other steps or sizes are kept")
    p.add_argument("--baseline-users", type=int, default=2048,
                   help="validation users ranked by each baseline in the baselines step (default: %(default)s)")
    p.add_argument("--step", choices=(*STEPS, "recommend", "evaluate"), help=argparse.SUPPRESS)
    p.add_argument("--model", choices=EVAL_MODELS, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.step == "recommend":
        print(json.dumps(recommend_step(*args.recommend_shape, args.recommend_users)))
        return
    if args.step == "evaluate":
        print(json.dumps(evaluate_step(args.model, *args.recommend_shape, args.evaluate_users)))
        return
    if args.step:
        print(json.dumps(step(args.step, args.work, args.batch_size, args.baseline_users)))
        return
    if args.ingest_only:
        ingest(args)
        return
    if args.pipeline_only:
        pipeline(args)
        return

    from benchmarks.pipeline import commit
    from ncf.synthetic import write_zip

    code = commit()  # the checkout the sweep measures, named in every row and in the metadata
    rows = []
    for size in map(int, args.sizes):
        work = args.work / f"{size}"
        (work / "split").mkdir(parents=True, exist_ok=True)
        if not (args.reuse and (work / "release.zip").exists()):
            start = time.perf_counter()
            n = write_zip(work / "release.zip", size)
            print(f"{size:>11,}: wrote the zip ({n:,} ratings) in {time.perf_counter() - start:.0f}s",
                  file=sys.stderr)
        ratings = work / "ratings.parquet"  # the parse step's, if it ran before: the release's own count
        n = pq.ParquetFile(ratings).metadata.num_rows if "parse" not in args.steps and ratings.exists() else size
        for name in args.steps:
            result = run_step(name, work, args.batch_size, "--baseline-users", str(args.baseline_users))
            if name == "parse":
                n = result["rows"]
            rows.append({"interactions": n, "step": name, **result, "commit": code})
            print(f"{size:>11,}: {name:<10} {result['seconds']:>8.2f}s  peak {result['peak_rss_mb']:>8,.0f} MB",
                  file=sys.stderr)
    meta = {"machine": platform.machine(), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "batch_size": args.batch_size, "commit": code, "load_before": list(os.getloadavg())}
    if args.recommend_users:
        users, items = args.recommend_shape
        meta["recommend"] = run_step("recommend", args.work, args.batch_size, "--recommend-users",
                                     str(args.recommend_users), "--recommend-shape", str(users), str(items))
        rec = meta["recommend"]
        print(f"recommend at {users:,} x {items:,}: {rec['seconds_per_1000_users']:.1f} s per 1,000 users, "
              f"peak {rec['peak_rss_mb']:,.0f} MB", file=sys.stderr)
    users, items = args.recommend_shape
    if args.evaluate_users:
        meta["evaluate"] = []
        for kind in args.evaluate_models:
            meta["evaluate"].append(run_step("evaluate", args.work, args.batch_size, "--model", kind,
                                             "--evaluate-users", str(args.evaluate_users), "--recommend-shape",
                                             str(users), str(items)))
            row = meta["evaluate"][-1]
            print(f"evaluate {kind} at {users:,} x {items:,}: {row['seconds_per_1000_users']:.1f} s per 1,000 "
                  f"users, peak {row['peak_rss_mb']:,.0f} MB", file=sys.stderr)
    if args.compare_users:
        args.work.mkdir(parents=True, exist_ok=True)
        meta["compare"] = compare_row(args.work, args.compare_users)
        print(f"ncf compare on {args.compare_users:,} users: {meta['compare']['seconds']:.1f}s, peak "
              f"{meta['compare']['peak_rss_mb']:,.0f} MB", file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    if tuple(args.steps) != STEPS and (args.out / "scale.json").exists():  # a partial rerun: keep the rest
        before = json.loads((args.out / "scale.json").read_text())
        measured = {(row["interactions"], row["step"]) for row in rows}
        rows = [row for row in before["rows"] if (row["interactions"], row["step"]) not in measured] + rows
        meta = {**before, **{key: value for key, value in meta.items() if key not in ("commit", "load_before")}}
    (args.out / "scale.json").write_text(json.dumps({**meta, "rows": rows}, indent=2) + "\n")
    if rows:
        plot(rows, args.out / "scale.png")
    print(f"wrote {args.out / 'scale.json'}" + (f" and {args.out / 'scale.png'}" if rows else ""), file=sys.stderr)

    if args.ingest:
        ingest(args)
    if args.pipeline_interactions:
        pipeline(args)


def pipeline(args) -> None:
    """The whole pipeline on a synthetic release (benchmarks/pipeline.py); writes pipeline.json."""
    import shutil

    import yaml

    from benchmarks.pipeline import run_pipeline
    from ncf.synthetic import write_zip

    work = args.work / "pipeline"
    work.mkdir(parents=True, exist_ok=True)
    release = work / "release.zip"
    if args.pipeline_zip:
        shutil.copy2(args.pipeline_zip, release)
    elif not (args.reuse and release.exists()):
        start = time.perf_counter()
        n = write_zip(release, int(args.pipeline_interactions))
        print(f"pipeline: wrote the zip ({n:,} ratings) in {time.perf_counter() - start:.0f}s", file=sys.stderr)
    overrides = {}
    for item in args.pipeline_set:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--pipeline-set {item}: give KEY=VALUE, e.g. train.max_epochs=1")
        overrides[key] = yaml.safe_load(value)
    result = run_pipeline(work, release, overrides)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "pipeline.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"pipeline on {result['train']:,} training ratings, {result['users']:,} users x {result['items']:,} "
          f"items: {result['seconds']:,.0f}s, peak {result['peak_gb']:.2f} GB; wrote {args.out / 'pipeline.json'}",
          file=sys.stderr)


def ingest(args) -> None:
    from benchmarks.pipeline import commit

    load_before = list(os.getloadavg())
    result = measure_ingest(args.work, int(args.ingest), args.ingest_repeats, args.reuse)
    result = {"commit": commit(), "load_before": load_before, "load_after": list(os.getloadavg()), **result}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ingest.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"ingest {result['rows']:,} rows: bare read {result['bare_read_s']:.2f}s, peak "
          f"{result['bare_peak_gb']:.2f} GB; download + split {result['stages_s']:.2f}s, peak "
          f"{result['stages_peak_gb']:.2f} GB; ratio {result['ratio']:.2f}; wrote {args.out / 'ingest.json'}",
          file=sys.stderr)


if __name__ == "__main__":
    main()
