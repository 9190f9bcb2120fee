"""The training stages' protocol: choose epochs on validation, refit, write self-describing outputs.

`training(params)` sets up torch (threads, device, and the process group when data-parallel);
`read_split` loads the split stage's folder; `train_and_save` trains a model with early
stopping on the validation item, refits it on training + validation for the chosen number of
epochs, and writes both checkpoints, the curve and the summary to the `TrainingOutputs` paths
(in-process, so tests call it directly; the stage scripts only parse arguments and build models).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from ncf import distributed
from ncf.config import Params
from ncf.distributed import World
from ncf.io import write_json, write_tsv
from ncf.models import count_parameters, save_checkpoint
from ncf.runtime import setup, stage_seed
from ncf.stage import log, parser
from ncf.train import TrainData, fit_epochs, fit_select


def training_args(doc: str, *checkpoints: str) -> argparse.Namespace:
    """The arguments every training stage takes, plus an input checkpoint per name given."""
    p = parser(doc)
    p.add_argument("--split", required=True, type=Path, help="input: the split stage's folder")
    for name in checkpoints:
        p.add_argument(f"--{name}", required=True, type=Path,
                       help=f"input: pretrained {name.upper()} checkpoint (refit on training + validation)")
        p.add_argument(f"--{name}-select", required=True, type=Path,
                       help=f"input: pretrained {name.upper()} checkpoint trained on training data only")
    p.add_argument("--out", required=True, type=Path,
                   help="output: the final checkpoint (refit on training + validation when train.refit)")
    p.add_argument("--select", required=True, type=Path,
                   help="output: checkpoint of the best validation epoch, trained on training data only")
    p.add_argument("--curve", required=True, type=Path, help="output: per-epoch TSV (loss, validation HR/NDCG@10)")
    p.add_argument("--metrics", required=True, type=Path, help="output: training summary JSON")
    return p.parse_args()


@dataclass(frozen=True)
class TrainingOutputs:
    """Where a training stage writes (the outputs `training_args` asks for)."""

    out: Path      # the final checkpoint (refit on training + validation when train.refit)
    select: Path   # the best validation epoch's checkpoint, trained on training data only
    curve: Path    # per-epoch TSV of the selection run
    metrics: Path  # training summary JSON

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> TrainingOutputs:
        return cls(out=args.out, select=args.select, curve=args.curve, metrics=args.metrics)


@contextmanager
def training(params: Params):
    """(World, device) for a training stage.

    With `train.processes` above one, the stage first re-executes itself under torchrun, and
    each of the processes it starts joins the process group here.
    """
    if params.train.processes > 1 and not distributed.launched():
        distributed.relaunch(params.train.processes)
    device = setup(params)
    with distributed.start(params.train.processes, params.train.backend, params.train.batch_size,
                           device) as (world, device):
        yield world, device


def read_split(folder: Path, device) -> TrainData:
    """Training data and validation items from the split stage's folder."""
    folder = Path(folder)
    # Only the columns training reads: at 25 M ratings the others cost 0.4 GB of peak memory.
    train = pd.read_parquet(folder / "train.parquet", columns=["user", "item"])
    valid = pd.read_parquet(folder / "valid.parquet", columns=["user", "item"])
    num_users = len(pd.read_parquet(folder / "users.parquet"))
    num_items = len(pd.read_parquet(folder / "items.parquet"))
    return TrainData.from_frames(train, valid, num_users, num_items, device=device)


def train_and_save(stage: str, kind: str, build: Callable[[], torch.nn.Module], data: TrainData,
                   params: Params, outputs: TrainingOutputs, *, optimizer: str, lr: float, l2: float,
                   device="cpu", world: World = World(), validate_initial: bool = False,
                   build_refit: Callable[[], torch.nn.Module] | None = None) -> None:
    """Train a model, choose its epochs on validation, refit, and write what the stage outputs.

    1. `build()` is trained on the training data with early stopping on the validation item;
       its best epoch goes to `outputs.select`, its curve to `outputs.curve`.
    `evaluate.valid_users` and `evaluate.valid_every` choose how much validation (train.py).
    2. With `train.refit`, `(build_refit or build)()` is trained afresh on training + validation
       data for exactly that many epochs (the validation item is each user's most recent
       training signal), and that model goes to `outputs.out`; without it, `outputs.out` is a
       copy of the selected model. Test is never looked at.
    3. The summary goes to `outputs.metrics`. Only rank 0 writes; `stage` seeds the runs
       (`stage_seed`) and names the log line.
    """
    train = params.train
    common = dict(name=kind, num_negatives=params.num_negatives, batch_size=train.batch_size,
                  optimizer=optimizer, lr=lr, l2=l2, device=device, world=world)
    model = build()
    evaluate = params.evaluate
    # One sample of validation users for every model (the seed names no stage), so their curves compare.
    result = fit_select(model, data, max_epochs=train.max_epochs, patience=train.patience,
                        seed=stage_seed(params.seed, stage), chunk_users=evaluate.chunk_users,
                        validate_initial=validate_initial, valid_users=evaluate.valid_users,
                        valid_every=evaluate.valid_every, valid_seed=stage_seed(params.seed, "validation sample"),
                        **common)
    model.load_state_dict(result.state_dict)
    summary = {
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "valid": {k: round(v, 6) for k, v in result.best_valid.items()},
        "params": count_parameters(model),
    }
    if 0 < evaluate.valid_users < len(data.valid_users):  # chosen on a sample: say so
        summary["valid_users"] = evaluate.valid_users
    final = model
    if train.refit:
        final = (build_refit or build)()
        full = data.with_validation()
        refit = fit_epochs(final, full, epochs=result.best_epoch,
                           seed=stage_seed(params.seed, f"{stage}:refit"), **common)
        final.load_state_dict(refit.state_dict)
        last = refit.history[-1]["loss"] if refit.history else None
        summary["refit"] = {"epochs": refit.epochs_run, "positives": len(full.users), "loss": last}
    if not world.main:
        return
    # Only what this stage depends on, so the same weights always give the same bytes; not
    # `threads`, which decides how the weights are computed, not what they are (1 and 2 threads
    # give the same weights, so with it the checkpoints of equal weights differed).
    made_by = {k: v for k, v in params.to_dict().items()
               if k in ("seed", "num_negatives", "device", "train", kind)}
    save_checkpoint(model, outputs.select, kind=kind, params=made_by,
                    info={**summary, "trained_on": "train"})
    save_checkpoint(final, outputs.out, kind=kind, params=made_by,
                    info={**summary, "trained_on": "train+valid" if train.refit else "train"})
    write_tsv(result.history_frame(), outputs.curve)
    write_json(summary, outputs.metrics)
    how = f", refit {summary['refit']['epochs']} epochs on training + validation" if train.refit else ""
    log(stage, f"wrote {outputs.out} (best epoch {result.best_epoch}, valid hr@10 "
               f"{summary['valid']['hr@10']:.4f}{how})")
