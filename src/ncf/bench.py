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
- repro_s / noop_repro_s: a cold `dvc repro` in a temporary copy (data already downloaded), and a
  second one;
- peak_rss_mb of training and of evaluation (each part runs in its own process).
Times are medians of several repetitions after a warm-up. Ratios matter, not seconds.
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

from ncf.evaluate import ItemMask, rank_held_out
from ncf.metrics import hit_rate
from ncf.models import GMF, NeuMF
from ncf.sampling import NegativeSampler
from ncf.protocol import read_split
from ncf.train import epoch_samples, make_optimizer, train_epoch, validate

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


def part_repro() -> dict:
    """A cold `dvc repro` in a temporary copy with the downloaded data, then a no-op one."""
    dvc = shutil.which("dvc") or str(Path(sys.executable).parent / "dvc")
    with tempfile.TemporaryDirectory(prefix="ncf-bench-") as tmp:
        repo = Path(tmp) / "repo"
        files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
        for name in files + ["data/raw/ratings.parquet", "data/raw/movies.parquet"]:
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, repo / name)
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
        subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
        # Put the downloaded data into the copy's own, empty cache (no run-cache to restore from).
        subprocess.run([dvc, "commit", "-f", "-q", "download"], cwd=repo, env=env, check=True)
        times = {}
        for key in ("repro_s", "noop_repro_s"):
            start = time.perf_counter()
            proc = subprocess.run([dvc, "repro"], cwd=repo, env=env, capture_output=True, text=True)
            times[key] = round(time.perf_counter() - start, 2)
            if proc.returncode != 0:
                raise RuntimeError(f"dvc repro failed in the bench copy:\n{proc.stdout}{proc.stderr}")
            if key == "repro_s" and "Running stage 'download'" in proc.stdout:
                raise RuntimeError("the bench copy re-downloaded the data; dvc.lock is out of date: run dvc repro")
        return times


def run_part(args: list[str]) -> dict:
    proc = subprocess.run([sys.executable, "-m", "ncf.bench", "--part", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"bench part {args[0]} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--split", type=Path, default=Path("data/split"), help="split folder (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=None, help="default: train.batch_size of params.yaml")
    p.add_argument("--repeats", type=int, default=3, help="timed repetitions after one warm-up")
    p.add_argument("--epochs", type=int, default=5, help="epochs before comparing validation HR@10")
    p.add_argument("--skip-repro", action="store_true", help="skip the dvc repro timings")
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
        else:
            result = part_repro()
        print(json.dumps(result))
        return

    if not (args.split / "train.parquet").exists():
        raise SystemExit(f"error: {args.split}/train.parquet is missing; run `dvc repro split` first")
    if args.batch_size is None:
        from ncf.config import load_params

        args.batch_size = load_params().train.batch_size
    report = {"threads": torch.get_num_threads(), "cpus": os.cpu_count(), "torch": torch.__version__,
              "machine": platform.machine(), "batch_size": args.batch_size}
    print(f"bench: {report['threads']} threads, batch {args.batch_size}; each part in its own process",
          file=sys.stderr)
    report.update(run_part(["train", str(args.split), str(args.batch_size), str(args.repeats), str(args.epochs)]))
    report.update(run_part(["eval", str(args.split), str(args.repeats)]))
    if not args.skip_big:
        report.update(run_part(["big", "138493", "26744", "144"]))
    if not args.skip_repro:
        try:
            report.update(run_part(["repro"]))
        except SystemExit as exc:  # keep the figures measured so far
            print(exc, file=sys.stderr)
    # Ratios from the unrounded times: a fast part can round to 0.000 s.
    ratios = {"epoch_vs_floor": ("neumf_epoch_s", "floor_epoch_s"), "seed_vs_epoch": ("seed_epoch_s", "neumf_epoch_s"),
              "seed_eval_vs_eval": ("seed_eval_s", "eval_s"), "seed_eval_vs_gmf_eval": ("seed_eval_s", "gmf_eval_s")}
    ratios = {name: round(report[a] / report[b], 2) for name, (a, b) in ratios.items()}
    for key, value in list(report.items()):
        if isinstance(value, float):
            report[key] = round(value, 3)
    report.update(ratios)
    with open(args.out, "w") as fh:
        json.dump(report, fh, indent=2)
    width = max(map(len, report))
    for key, value in report.items():
        print(f"{key:<{width}}  {value}")
    print(f"(written to {args.out})")


if __name__ == "__main__":
    main()
