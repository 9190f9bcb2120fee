"""What every stage script shares: argument parsing, one-line errors, and training a model.

`run()` turns every user-facing error (bad params, unusable data or checkpoints, a diverging
loss) into one line on stderr and exit code 2, without a traceback; outputs are written
atomically, so nothing that was already there is half-overwritten.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import torch

from ncf.config import Params, ParamsError, load_params
from ncf.io import write_json, write_tsv
from ncf.models import CheckpointError, count_parameters, save_checkpoint
from ncf.movielens import DataError
from ncf.train import TrainData, TrainingError, fit, stage_seed

USER_ERRORS = (ParamsError, DataError, CheckpointError, TrainingError)


def parser(doc: str) -> argparse.ArgumentParser:
    """An argument parser whose --help shows the stage script's docstring."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params", default="params.yaml", type=Path, help="params file (default: %(default)s)")
    return p


def training_args(doc: str, *checkpoints: str) -> argparse.Namespace:
    """The arguments every training stage takes, plus an input checkpoint per name given."""
    p = parser(doc)
    p.add_argument("--split", required=True, type=Path, help="input: the split stage's folder")
    for name in checkpoints:
        p.add_argument(f"--{name}", required=True, type=Path, help=f"input: pretrained {name.upper()} checkpoint")
    p.add_argument("--out", required=True, type=Path, help="output: checkpoint of the best validation epoch")
    p.add_argument("--curve", required=True, type=Path, help="output: per-epoch TSV (loss, validation HR/NDCG@10)")
    p.add_argument("--metrics", required=True, type=Path, help="output: training summary JSON")
    return p.parse_args()


def _interrupt(signum, frame):
    raise KeyboardInterrupt  # so that `output_file` removes its temp file on the way out


def run(main: Callable[[], None]) -> None:
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        main()
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted: outputs are written atomically, so none was left half-written; "
              "run `dvc repro` again to finish", file=sys.stderr)
        sys.exit(130)


def log(stage: str, msg: str) -> None:
    print(f"[{stage}] {msg}", file=sys.stderr, flush=True)


def read_split(folder: Path, device) -> TrainData:
    """Training data and validation items from the split stage's folder."""
    folder = Path(folder)
    train = pd.read_parquet(folder / "train.parquet")
    valid = pd.read_parquet(folder / "valid.parquet")
    num_users = len(pd.read_parquet(folder / "users.parquet"))
    num_items = len(pd.read_parquet(folder / "items.parquet"))
    return TrainData.from_frames(train, valid, num_users, num_items, device=device)


def train_and_save(stage: str, kind: str, model: torch.nn.Module, data: TrainData, params: Params,
                   device, *, optimizer: str, lr: float, l2: float, out: Path, curve: Path,
                   metrics: Path, validate_initial: bool = False) -> None:
    """Fit `model`, keep its best validation epoch, write checkpoint, curve TSV and summary JSON."""
    result = fit(
        model, data, name=kind, num_negatives=params.num_negatives,
        batch_size=params.train.batch_size, max_epochs=params.train.max_epochs,
        patience=params.train.patience, optimizer=optimizer, lr=lr, l2=l2,
        seed=stage_seed(params.seed, stage), device=device,
        chunk_users=params.evaluate.chunk_users, validate_initial=validate_initial,
    )
    model.load_state_dict(result.state_dict)
    summary = {
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "valid": {k: round(v, 6) for k, v in result.best_valid.items()},
        "params": count_parameters(model),
    }
    # Only what this stage depends on, so the same weights always give the same bytes.
    made_by = {k: v for k, v in params.to_dict().items()
               if k in ("seed", "num_negatives", "device", "train", kind)}
    save_checkpoint(model, out, kind=kind, params=made_by, info=summary)
    write_tsv(result.history_frame(), curve)
    write_json(summary, metrics)
    log(stage, f"wrote {out} (best epoch {result.best_epoch}, valid hr@10 {summary['valid']['hr@10']:.4f})")
