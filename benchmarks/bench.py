"""`make bench`: speed and memory of training and evaluation, against the seed lab, in one run.

Measures on the ml-100k split in data/split (the bench target runs `dvc repro split` first):
- neumf_epoch_s: one NeuMF epoch (GMF 32, MLP 64, [128, 64, 32], 4 negatives) through the
  project's own code (`epoch_samples` + `train_epoch`), sampling included;
- floor_epoch_s: forward + backward + Adam over index tensors made in advance, nothing else;
- seed_epoch_s: the seed lab's loop (per-sample `NCFDataset`, `DataLoader(batch_size=256)`,
  sigmoid + BCE), re-implemented faithfully here as the baseline;
- valid_hr10 after the same number of epochs for the project's loop and the seed's;
- eval_s / seed_eval_s: full ranking of all test users by the project and by the seed's per-user
  loop (NeuMF), plus gmf_eval_s;
- big_eval_s / big_eval_peak_rss_mb: GMF full ranking on synthetic data shaped like
  MovieLens-20M (138,493 users x 26,744 items), to show evaluation memory stays bounded;
- quiet_epoch_s / busy_epoch_s: one MLP epoch at the params' defaults (batch, negatives,
  threads) alone and with another process keeping a core busy (busy_epoch_ratio);
- the loop a user waits for, each in a temporary copy with the data already downloaded:
  repro_s (a cold `dvc repro`), noop_repro_s (a second one), revisit_s (back to params already
  run, restored from DVC's run cache), repro_busy_s (a cold `dvc repro` beside a busy core) and
  five_seed_study_s (`dvc exp run --queue -S seed=1,2,3,4,5 -S threads=1`, `dvc queue start -j 2`;
  study_vs_serial below 1 means two side by side beat five cold runs one after the other), and
  stage_s, the seconds each stage took within the cold `dvc repro`;
- peak_rss_mb of training and of evaluation (each part runs in its own process).
Times are medians of several repetitions after a warm-up. Ratios matter, not seconds: every
ratio is against a baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from benchmarks.env import dvc_env, module_env
from ncf.evaluate import ItemMask, rank_held_out
from ncf.metrics import hit_rate
from ncf.models import GMF, NeuMF
from ncf.sampling import NegativeSampler
from ncf.protocol import read_split
from ncf.train import epoch_samples, make_optimizer, run_epoch, train_epoch, validate

ROOT = Path.cwd()
SEED_ARCH = dict(gmf_dim=32, gmf_biases=False, mlp_dim=64, layers=[128, 64, 32])
NUM_NEGATIVES = 4


def peak_rss_mb() -> float:
    """This process's peak resident memory since it started its program.

    VmHWM, not ru_maxrss: Linux carries ru_maxrss across fork and exec, so a part started by a
    big parent (the scale bench's has just written a 25 M-row zip) would report the parent's peak.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux


def timed(fn, repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def load(split: Path):
    frames = {n: pd.read_parquet(split / f"{n}.parquet") for n in ("train", "valid", "test")}
    return frames, read_split(split, "cpu")


# --- the seed lab, as in its notebook ---------------------------------------------------------

class SeedNCFDataset(Dataset):
    """The seed lab's dataset: one positive and its negatives per __getitem__, drawn in Python."""

    def __init__(self, users, items, num_items, user_positive_items, num_negatives=4):
        self.users, self.items = users, items
        self.num_items = num_items
        self.user_positive_items = user_positive_items
        self.num_negatives = num_negatives

    def __len__(self):
        return len(self.users)

    def __getitem__(self, idx):
        user, pos_item = self.users[idx], self.items[idx]
        neg_items = []
        positives = self.user_positive_items.get(user, set())
        while len(neg_items) < self.num_negatives:
            neg_item = np.random.randint(0, self.num_items)
            if neg_item not in positives:
                neg_items.append(neg_item)
        users = [user] * (1 + self.num_negatives)
        items = [pos_item] + neg_items
        labels = [1.0] + [0.0] * self.num_negatives
        return torch.LongTensor(users), torch.LongTensor(items), torch.FloatTensor(labels)


def seed_collate(batch):
    return (torch.cat([b[0] for b in batch]), torch.cat([b[1] for b in batch]),
            torch.cat([b[2] for b in batch]))


class SeedNeuMF(nn.Module):
    """The seed lab's NeuMF: probabilities out (sigmoid), trained with binary_cross_entropy."""

    def __init__(self, num_users, num_items):
        super().__init__()
        self.inner = NeuMF(num_users, num_items, **SEED_ARCH)
        self.num_items = num_items

    def forward(self, users, items):
        return torch.sigmoid(self.inner(users, items))

    def predict_all_items(self, user_id):
        users = torch.full((self.num_items,), int(user_id), dtype=torch.long)
        return self.forward(users, torch.arange(self.num_items))


def seed_epoch(model, optimizer, loader):
    model.train()
    for users, items, labels in loader:
        loss = F.binary_cross_entropy(model(users, items), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def seed_evaluate(model, test_df, user_positive_items):
    """The seed lab's evaluation loop: one pandas filter and one forward per user."""
    model.eval()
    hits = 0
    test_users = test_df["user"].unique()
    with torch.no_grad():
        for user_id in test_users:
            test_item = test_df[test_df["user"] == user_id]["item"].values[0]
            scores = model.predict_all_items(user_id)
            train_items = list(user_positive_items.get(user_id, set()))
            scores[train_items] = -float("inf")
            _, top_10 = torch.topk(scores, 10)
            if test_item in top_10.cpu().numpy():
                hits += 1
    return hits / len(test_users)


# --- parts, each run in its own process so its peak memory is its own --------------------------

def part_train(split: Path, batch_size: int, repeats: int, epochs: int) -> dict:
    frames, data = load(split)
    torch.manual_seed(0)
    model = NeuMF(data.num_users, data.num_items, **SEED_ARCH)
    opt = make_optimizer("adam", model.parameters(), 0.001)
    sampler = NegativeSampler(data.users, data.items, data.num_items)
    gen = torch.Generator().manual_seed(0)

    def project_epoch():
        samples = epoch_samples(data.users, data.items, sampler, NUM_NEGATIVES, gen)
        train_epoch(model, opt, *samples, batch_size=batch_size, l2=0.0)

    made = epoch_samples(data.users, data.items, sampler, NUM_NEGATIVES, gen)

    def floor_epoch():
        users, items, labels = made
        for lo in range(0, len(users), batch_size):
            loss = F.binary_cross_entropy_with_logits(
                model(users[lo:lo + batch_size], items[lo:lo + batch_size]), labels[lo:lo + batch_size])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    out = {"neumf_epoch_s": timed(project_epoch, repeats), "floor_epoch_s": timed(floor_epoch, repeats)}

    # The seed lab's loop, and validation HR@10 of both after the same number of fresh epochs.
    train = frames["train"]
    positives = train.groupby("user")["item"].apply(set).to_dict()
    dataset = SeedNCFDataset(train["user"].to_numpy(), train["item"].to_numpy(), data.num_items, positives)
    np.random.seed(0)
    torch.manual_seed(0)
    seed_model = SeedNeuMF(data.num_users, data.num_items)
    seed_opt = torch.optim.Adam(seed_model.parameters(), lr=0.001)
    loader = DataLoader(dataset, batch_size=256, shuffle=True, collate_fn=seed_collate)
    out["seed_epoch_s"] = timed(lambda: seed_epoch(seed_model, seed_opt, loader), max(1, repeats - 1))

    torch.manual_seed(1)
    fresh = NeuMF(data.num_users, data.num_items, **SEED_ARCH)
    fresh_opt = make_optimizer("adam", fresh.parameters(), 0.001)
    seed_fresh = SeedNeuMF(data.num_users, data.num_items)
    seed_fresh_opt = torch.optim.Adam(seed_fresh.parameters(), lr=0.001)
    for _ in range(epochs):
        train_epoch(fresh, fresh_opt, *epoch_samples(data.users, data.items, sampler, NUM_NEGATIVES, gen),
                    batch_size=batch_size, l2=0.0)
        seed_epoch(seed_fresh, seed_fresh_opt, loader)
    out["valid_epochs"] = epochs
    out["valid_hr10"] = round(validate(fresh, data, 1024, "cpu")["hr@10"], 4)
    out["seed_valid_hr10"] = round(validate(seed_fresh.inner, data, 1024, "cpu")["hr@10"], 4)
    out["train_peak_rss_mb"] = round(peak_rss_mb(), 1)
    return out


def part_eval(split: Path, repeats: int) -> dict:
    frames, data = load(split)
    torch.manual_seed(0)
    neumf = NeuMF(data.num_users, data.num_items, **SEED_ARCH).eval()
    gmf = GMF(data.num_users, data.num_items, dim=64, biases=True).eval()
    train, valid, test = frames["train"], frames["valid"], frames["test"]
    known = pd.concat([train[["user", "item"]], valid])
    mask = data.with_validation().mask
    users, targets = test["user"].to_numpy(np.int64), test["item"].to_numpy(np.int64)
    out = {
        "eval_s": timed(lambda: rank_held_out(neumf.score_all, users, targets, mask), repeats),
        "gmf_eval_s": timed(lambda: rank_held_out(gmf.score_all, users, targets, mask), repeats),
    }
    seed = SeedNeuMF(data.num_users, data.num_items)
    seed.inner = neumf
    seen = known.groupby("user")["item"].apply(set).to_dict()
    out["seed_eval_s"] = timed(lambda: seed_evaluate(seed, test, seen), repeats)
    # Same model, same masks: both protocols must agree on HR@10.
    ours = hit_rate(rank_held_out(neumf.score_all, users, targets, mask), 10)
    assert abs(ours - seed_evaluate(seed, test, seen)) < 0.005, "project and seed evaluation disagree"
    out["eval_peak_rss_mb"] = round(peak_rss_mb(), 1)
    return out


def part_big_eval(num_users: int, num_items: int, per_user: int) -> dict:
    """GMF full ranking on random data of MovieLens-20M's shape, in chunks of users."""
    rng = np.random.default_rng(0)
    counts = rng.geometric(1 / per_user, size=num_users).clip(1, num_items // 2)
    users = np.repeat(np.arange(num_users), counts)
    items = rng.integers(0, num_items, size=len(users))
    mask = ItemMask(users, items, num_users)
    targets = rng.integers(0, num_items, size=num_users)
    model = GMF(num_users, num_items, dim=64, biases=True).eval()
    before = peak_rss_mb()
    start = time.perf_counter()
    ranks = rank_held_out(model.score_all, np.arange(num_users), targets, mask, chunk_users=1024)
    return {"big_eval_s": round(time.perf_counter() - start, 2), "big_eval_users": num_users,
            "big_eval_items": num_items, "big_eval_interactions": int(len(users)),
            "big_eval_peak_rss_mb": round(peak_rss_mb(), 1), "big_eval_rss_before_mb": round(before, 1),
            "big_eval_ranked": int(len(ranks))}


class BusyCore:
    """Another process that keeps one core busy (a pure-Python spin loop) while the block runs."""

    def __enter__(self):
        self.proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(0.5)
        return self

    def __exit__(self, *exc):
        self.proc.kill()
        self.proc.wait()


def part_busy(split: Path, repeats: int) -> dict:
    """One MLP training epoch at the params' defaults (batch, negatives, threads), on a quiet
    machine and with another process keeping a core busy: the issue's busy_epoch_ratio."""
    from ncf.config import load_params
    from ncf.models import MLP
    from ncf.runtime import setup

    params = load_params(ROOT / "params.yaml")
    setup(params)
    data = read_split(split, "cpu")
    torch.manual_seed(0)
    model = MLP(data.num_users, data.num_items, dim=params.mlp.dim, layers=list(params.mlp.layers))
    opt = make_optimizer("adam", model.parameters(), params.mlp.lr)
    sampler = NegativeSampler(data.users, data.items, data.num_items)
    gen = torch.Generator().manual_seed(0)

    def epoch():
        run_epoch(model, opt, data.users, data.items, sampler, num_negatives=params.num_negatives,
                  generator=gen, batch_size=params.train.batch_size, l2=params.mlp.l2)

    quiet = timed(epoch, repeats)
    with BusyCore():
        busy = timed(epoch, repeats)
    return {"quiet_epoch_s": quiet, "busy_epoch_s": busy, "busy_epoch_threads": torch.get_num_threads()}


def _dvc(repo: Path, *args: str, check: bool = True) -> tuple[float, str]:
    """Run dvc in `repo`; (seconds, output)."""
    dvc = shutil.which("dvc") or str(Path(sys.executable).parent / "dvc")
    start = time.perf_counter()
    proc = subprocess.run([dvc, *args], cwd=repo, env=dvc_env("bench", "bench@ncf.invalid"),
                          capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if check and proc.returncode != 0:
        raise RuntimeError(f"dvc {' '.join(args)} failed in the bench copy:\n{proc.stdout}{proc.stderr}")
    return seconds, proc.stdout + proc.stderr


def _dvc_stages(repo: Path, *args: str) -> tuple[float, str, dict[str, float]]:
    """Run dvc in `repo` reading its output as it comes; (seconds, output, seconds per stage run).

    A stage's time runs from its "Running stage" line to the next one (or to the end), so it
    includes Python and torch start-up and DVC saving its outputs: what the user waits for."""
    dvc = shutil.which("dvc") or str(Path(sys.executable).parent / "dvc")
    start = time.perf_counter()
    proc = subprocess.Popen([dvc, *args], cwd=repo, env=dvc_env("bench", "bench@ncf.invalid"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines, marks = [], []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("Running stage '"):
            marks.append((line.split("'")[1], time.perf_counter()))
    proc.wait()
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"dvc {' '.join(args)} failed in the bench copy:\n{''.join(lines)}")
    ends = [t for _, t in marks[1:]] + [start + seconds]
    return seconds, "".join(lines), {name: round(end - t, 1) for (name, t), end in zip(marks, ends)}


def _copy(tmp: Path, name: str) -> Path:
    """A git copy of this checkout with the downloaded data in its own, empty DVC cache."""
    repo = tmp / name
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for path in files + ["data/raw/interactions.parquet", "data/raw/items.parquet"]:
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        if (ROOT / path).is_dir():  # data/raw/interactions.parquet: a folder of parts
            shutil.copytree(ROOT / path, repo / path)
        else:
            shutil.copy2(ROOT / path, repo / path)
    for cmd in (["init", "-q"], ["add", "-A"], ["-c", "user.name=bench", "-c", "user.email=bench@ncf.invalid",
                                                 "commit", "-qm", "bench copy"]):
        subprocess.run(["git", *cmd], cwd=repo, check=True, capture_output=True)
    _dvc(repo, "repro", "-q", "validate")
    _dvc(repo, "commit", "-f", "-q", "download")  # no run cache to restore training from
    return repo


def _set_param(repo: Path, key: str, value) -> None:
    import yaml

    params = yaml.safe_load((repo / "params.yaml").read_text())
    node = params
    *parents, last = key.split(".")
    for part in parents:
        node = node[part]
    node[last] = value
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def part_repro(study: bool) -> dict:
    """The loop a user waits for, each in a fresh copy with the downloaded data:
    - repro_s: a cold `dvc repro` (download already done), then noop_repro_s: a second one;
    - revisit_s: back to params already run (a 1-epoch run in between), restored from run cache;
    - repro_busy_s: a cold `dvc repro` while another process keeps one core busy;
    - five_seed_study_s: `dvc exp run --queue -S seed=1,2,3,4,5 -S threads=1`, `dvc queue start -j 2`;
    - stage_s: each stage's share of the cold `dvc repro` (the fit time of each model)."""
    out = {}
    with tempfile.TemporaryDirectory(prefix="ncf-bench-") as tmp:
        repo = _copy(Path(tmp), "quiet")
        out["repro_s"], log, out["stage_s"] = _dvc_stages(repo, "repro")
        if "Running stage 'download'" in log:
            raise RuntimeError("the bench copy re-downloaded the data; dvc.lock is out of date: run dvc repro")
        out["noop_repro_s"], _ = _dvc(repo, "repro")
        defaults = (repo / "params.yaml").read_text()
        _set_param(repo, "train.max_epochs", 1)
        _dvc(repo, "repro")
        (repo / "params.yaml").write_text(defaults)
        out["revisit_s"], log = _dvc(repo, "repro")
        # The stages that ran instead of coming back from the run cache (none, ideally).
        out["revisit_ran"] = " ".join(line.split("'")[1] for line in log.splitlines()
                                      if line.startswith("Running stage '")) or "none"
        busy = _copy(Path(tmp), "busy")
        with BusyCore():
            out["repro_busy_s"], _ = _dvc(busy, "repro")
        if study:
            # Two at a time, one thread each: the recipe docs/studies.md gives.
            _dvc(repo, "exp", "run", "--queue", "-S", "seed=1,2,3,4,5", "-S", "threads=1")
            start = time.perf_counter()
            _dvc(repo, "queue", "start", "-j", "2")
            while True:
                _, status = _dvc(repo, "queue", "status")
                if not any(word in status for word in ("Queued", "Running")):
                    break
                time.sleep(2)
            out["five_seed_study_s"] = time.perf_counter() - start
            out["five_seed_study_failed"] = status.count("Failed")
            _dvc(repo, "queue", "stop", check=False)
    return out


def run_part(args: list[str]) -> dict:
    proc = subprocess.run([sys.executable, "-m", "benchmarks.bench", "--part", *args], env=module_env(),
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"bench part {args[0]} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--split", type=Path, default=Path("data/split"), help="split folder (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=1024,
                   help=("batch of the epoch, floor and seed-loop comparison (default: %(default)s, where "
                         "5 epochs at lr 0.001 train as far as the seed lab's batch 256 does)"))
    p.add_argument("--repeats", type=int, default=3, help="timed repetitions after one warm-up")
    p.add_argument("--epochs", type=int, default=5, help="epochs before comparing validation HR@10")
    p.add_argument("--skip-repro", action="store_true", help="skip the dvc repro timings (and the study)")
    p.add_argument("--skip-study", action="store_true", help="skip the five-seed study (about 6 minutes)")
    p.add_argument("--skip-big", action="store_true", help="skip the MovieLens-20M-shaped evaluation")
    p.add_argument("--out", type=Path, default=Path("bench.json"), help="JSON output (default: %(default)s)")
    p.add_argument("--part", nargs="+", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.part:
        kind, *rest = args.part
        if kind == "train":
            result = part_train(Path(rest[0]), int(rest[1]), int(rest[2]), int(rest[3]))
        elif kind == "eval":
            result = part_eval(Path(rest[0]), int(rest[1]))
        elif kind == "big":
            result = part_big_eval(int(rest[0]), int(rest[1]), int(rest[2]))
        elif kind == "busy":
            result = part_busy(Path(rest[0]), int(rest[1]))
        else:
            result = part_repro(study=rest == ["study"])
        print(json.dumps(result))
        return

    if not (args.split / "train.parquet").exists():
        raise SystemExit(f"error: {args.split}/train.parquet is missing; run `dvc repro split` first")
    report = {"threads": torch.get_num_threads(), "cpus": os.cpu_count(), "torch": torch.__version__,
              "machine": platform.machine(), "batch_size": args.batch_size}
    print(f"bench: {report['threads']} threads, batch {args.batch_size}; each part in its own process",
          file=sys.stderr)
    report.update(run_part(["train", str(args.split), str(args.batch_size), str(args.repeats), str(args.epochs)]))
    report.update(run_part(["eval", str(args.split), str(args.repeats)]))
    if not args.skip_big:
        report.update(run_part(["big", "138493", "26744", "144"]))
    report.update(run_part(["busy", str(args.split), str(args.repeats)]))
    if not args.skip_repro:
        try:
            report.update(run_part(["repro", *([] if args.skip_study else ["study"])]))
        except SystemExit as exc:  # keep the figures measured so far
            print(exc, file=sys.stderr)
    # Ratios from the unrounded times: a fast part can round to 0.000 s.
    ratios = {"epoch_vs_floor": ("neumf_epoch_s", "floor_epoch_s"), "seed_vs_epoch": ("seed_epoch_s", "neumf_epoch_s"),
              "seed_eval_vs_eval": ("seed_eval_s", "eval_s"), "seed_eval_vs_gmf_eval": ("seed_eval_s", "gmf_eval_s")}
    ratios.update(busy_epoch_ratio=("busy_epoch_s", "quiet_epoch_s"), busy_repro_ratio=("repro_busy_s", "repro_s"),
                  revisit_vs_repro=("revisit_s", "repro_s"), study_vs_repro=("five_seed_study_s", "repro_s"))
    ratios = {name: round(report[a] / report[b], 2) for name, (a, b) in ratios.items()
              if a in report and b in report}
    for key, value in list(report.items()):
        if isinstance(value, float):
            report[key] = round(value, 3)
    if "five_seed_study_s" in report and "repro_s" in report:  # five cold runs one after the other
        ratios["study_vs_serial"] = round(report["five_seed_study_s"] / (5 * report["repro_s"]), 2)
    report.update(ratios)
    with open(args.out, "w") as fh:
        json.dump(report, fh, indent=2)
    width = max(map(len, report))
    for key, value in report.items():
        print(f"{key:<{width}}  {value}")
    print(f"(written to {args.out})")


if __name__ == "__main__":
    main()
