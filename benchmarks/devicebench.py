"""`make bench-gpu`: NeuMF training throughput and full-ranking time on one device (CUDA by default).

Two datasets, each trained for a few epochs from scratch through the project's own training
path (`run_epoch`: fresh negatives, chunked epochs, fused Adam) and ranked by `rank_held_out`:
- ml-100k, the split in data/split (`dvc repro split` first), at the params' batch size;
- a synthetic dataset shaped like MovieLens-20M (`ncf.synthetic`: 138,493 users x 26,744 movies,
  20 M ratings, power-law popularity), split leave-one-out by `ncf.split`, at batch 2^20 as
  NVIDIA's reference NCF runs (DeepLearningExamples, 22.6 M samples/s on one A100 with TF32).
Sanity checks fail the run: the loss must stay finite and fall, and validation HR@10 must beat
a random ranking clearly. Writes samples/s, seconds per epoch, evaluation seconds and the
ratio to NVIDIA's A100 figure to bench-gpu.json. Under 5 minutes on one GPU; on a CPU, use
`--device cpu --interactions 20000` (what the tests run).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ncf.config import load_params
from ncf.errors import ParamsError
from ncf.evaluate import rank_held_out
from ncf.metrics import hit_rate
from ncf.models import NeuMF
from ncf.protocol import read_split
from ncf.runtime import resolve_device
from ncf.sampling import NegativeSampler
from ncf.split import leave_one_out
from ncf.synthetic import movies_frame, ratings_frame
from ncf.train import TrainData, epoch_generator, make_optimizer, run_epoch

ML20M_USERS, ML20M_ITEMS, ML20M_RATINGS = 138_493, 26_744, 20_000_263
NVIDIA_A100_SAMPLES_PER_S = 22.6e6  # DeepLearningExamples NCF, ML-20M, one A100 80GB, TF32


class SanityError(RuntimeError):
    """A number that says training or ranking went wrong on this device."""


def synthetic_split(interactions: int, device) -> TrainData:
    """A MovieLens-20M-shaped synthetic release (scaled down with `interactions`), split by time."""
    frame = ratings_frame(interactions, num_items=ML20M_ITEMS)
    ratings = pd.DataFrame({"user_id": frame["userId"].to_numpy(np.int32),
                            "item_id": frame["movieId"].to_numpy(np.int32),
                            "rating": frame["rating"].to_numpy(np.float32),
                            "timestamp": frame["timestamp"].to_numpy(np.int64)})
    movies = movies_frame(np.unique(ratings["item_id"].to_numpy())).rename(columns={"movieId": "item_id"})
    split = leave_one_out(ratings, movies.assign(year=np.nan))
    return TrainData.from_frames(split.train, split.valid, len(split.users), len(split.items), device=device)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(name: str, data: TrainData, *, device: torch.device, batch_size: int, epochs: int,
            num_negatives: int, lr: float, arch: dict) -> dict:
    """Train NeuMF from scratch for `epochs` epochs; time each epoch and the validation ranking."""
    torch.manual_seed(0)
    model = NeuMF(data.num_users, data.num_items, **arch).to(device).train()
    opt = make_optimizer("adam", model.parameters(), lr)
    sampler = NegativeSampler(data.users, data.items, data.num_items)
    losses, seconds = [], []
    for epoch in range(1, epochs + 1):
        sync(device)
        start = time.perf_counter()
        total, count = run_epoch(model, opt, data.users, data.items, sampler, num_negatives=num_negatives,
                                 generator=epoch_generator(0, epoch, 0, device), batch_size=batch_size, l2=0.0)
        sync(device)
        seconds.append(time.perf_counter() - start)
        losses.append(total / count)
    model.eval()
    sync(device)
    start = time.perf_counter()
    ranks = rank_held_out(model.score_all, data.valid_users, data.valid_items, data.mask,
                          chunk_users=1024, device=device)
    sync(device)
    eval_s = time.perf_counter() - start
    hr10 = hit_rate(ranks, 10)
    if not all(np.isfinite(losses)) or (epochs >= 2 and losses[-1] >= losses[0]):
        raise SanityError(f"{name}: the loss did not fall on {device}: {losses}")
    random_hr10 = 10 / data.num_items
    if epochs >= 2 and hr10 < 3 * random_hr10:
        raise SanityError(f"{name}: validation HR@10 {hr10:.4f} is no better than random ({random_hr10:.4f})")
    # The first epoch includes warm-up (kernel selection, allocator growth): report the rest.
    steady = seconds[1:] or seconds
    samples = count
    return {f"{name}_users": data.num_users, f"{name}_items": data.num_items,
            f"{name}_positives": int(len(data.users)), f"{name}_batch_size": batch_size,
            f"{name}_epoch_s": round(float(np.median(steady)), 3),
            f"{name}_samples_per_s": round(samples / float(np.median(steady))),
            f"{name}_loss": [round(x, 4) for x in losses], f"{name}_valid_hr10": round(hr10, 4),
            f"{name}_eval_s": round(eval_s, 3), f"{name}_ranked_users": int(len(ranks))}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    p.add_argument("--split", type=Path, default=Path("data/split"), help="ml-100k split (default: %(default)s)")
    p.add_argument("--interactions", type=float, default=ML20M_RATINGS,
                   help="ratings of the synthetic MovieLens-20M-shaped set (default: %(default)d)")
    p.add_argument("--batch-size", type=int, default=None, help="batch for ml-100k (default: train.batch_size)")
    p.add_argument("--big-batch", type=int, default=1 << 20, help="batch for the big set (default: %(default)d)")
    p.add_argument("--lr", type=float, default=0.001, help="Adam learning rate (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=3, help="epochs per dataset (default: %(default)d)")
    p.add_argument("--out", type=Path, default=Path("bench-gpu.json"), help="JSON output (default: %(default)s)")
    args = p.parse_args(argv)

    params = load_params("params.yaml")
    try:
        device = resolve_device(args.device.split(":")[0])
    except ParamsError as exc:  # no GPU visible
        raise SystemExit(f"error: {exc}; run on a GPU machine, or pass --device cpu") from None
    if device.type == "cuda":
        device = torch.device(args.device) if args.device.startswith("cuda:") else device  # keeps cuda:N
        torch.backends.cuda.matmul.allow_tf32 = True  # as NVIDIA's reference; our CPU path is plain fp32
    arch = dict(gmf_dim=params.gmf.dim, gmf_biases=params.gmf.biases, mlp_dim=params.mlp.dim,
                layers=list(params.mlp.layers))
    report = {"device": str(device), "torch": torch.__version__,
              "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
              "num_negatives": params.num_negatives, "architecture": arch, "epochs": args.epochs}
    if not (args.split / "train.parquet").exists():
        raise SystemExit(f"error: {args.split}/train.parquet is missing; run `dvc repro split` first")
    start = time.perf_counter()
    small = read_split(args.split, device)
    report.update(measure("ml100k", small, device=device, batch_size=args.batch_size or params.train.batch_size,
                          epochs=args.epochs, num_negatives=params.num_negatives, lr=args.lr, arch=arch))
    print(f"bench-gpu: ml-100k done in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    start = time.perf_counter()
    big = synthetic_split(int(args.interactions), device)
    report["synthetic_split_s"] = round(time.perf_counter() - start, 1)
    report.update(measure("ml20m", big, device=device, batch_size=args.big_batch, epochs=args.epochs,
                          num_negatives=params.num_negatives, lr=args.lr, arch=arch))
    report["ml20m_vs_nvidia_a100"] = round(report["ml20m_samples_per_s"] / NVIDIA_A100_SAMPLES_PER_S, 3)
    if device.type == "cuda":
        report["peak_gpu_memory_gb"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    for key, value in report.items():
        print(f"{key:<28} {value}")
    print(f"(written to {args.out})")


if __name__ == "__main__":
    main()
