"""train.refit: epochs chosen on validation, then a fresh model trained on training + validation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import torch

from ncf.models import load_checkpoint
from ncf.train import TrainData

ROOT = Path(__file__).resolve().parents[1]


def _run(tmp_path: Path, refit: bool) -> Path:
    work = tmp_path / f"refit-{refit}"
    work.mkdir()
    (work / "params.yaml").write_text(
        f"train:\n  batch_size: 128\n  max_epochs: 6\n  patience: 6\n  refit: {str(refit).lower()}\n"
        "gmf:\n  dim: 8\n  lr: 0.02\ndevice: cpu\n")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "stages" / "pretrain_gmf.py"), "--split", str(tmp_path / "split"),
         "--out", "gmf.pt", "--select", "select.pt", "--curve", "curve.tsv", "--metrics", "gmf.json"],
        cwd=work, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return work


def test_refit_trains_the_chosen_epochs_again_on_training_and_validation(tmp_path, clustered_split):
    clustered_split(tmp_path / "split", users=90, items=30, liked=8)
    work = _run(tmp_path, refit=True)
    summary = json.loads((work / "gmf.json").read_text())
    shape = {"num_users": 90, "num_items": 30}
    selected, sel_ckpt = load_checkpoint(work / "select.pt", "gmf", shape)
    final, final_ckpt = load_checkpoint(work / "gmf.pt", "gmf", shape)
    assert summary["refit"]["epochs"] == summary["best_epoch"] >= 1
    assert summary["refit"]["positives"] == 90 * 6 + 90  # training rows + one validation item each
    assert sel_ckpt["info"]["trained_on"] == "train" and final_ckpt["info"]["trained_on"] == "train+valid"
    assert not torch.equal(selected.path.user.weight, final.path.user.weight)
    # The curve is the selection run's: validation metrics of the model that never saw them.
    curve = pd.read_csv(work / "curve.tsv", sep="\t")
    assert curve["valid_hr10"].notna().all() and len(curve) == summary["epochs_run"]

    off = _run(tmp_path, refit=False)
    assert (off / "gmf.pt").read_bytes() == (off / "select.pt").read_bytes()
    assert "refit" not in json.loads((off / "gmf.json").read_text())
    # Selection does not depend on refit: same seed, same chosen model.
    torch.testing.assert_close(load_checkpoint(off / "select.pt", "gmf", shape)[0].path.user.weight,
                               selected.path.user.weight)


def test_with_validation_adds_each_users_validation_item_to_training():
    train = pd.DataFrame({"user": [0, 0, 1], "item": [1, 2, 3]})
    valid = pd.DataFrame({"user": [0, 1], "item": [4, 0]})
    data = TrainData.from_frames(train, valid, 2, 5).with_validation()
    assert sorted(zip(data.users.tolist(), data.items.tolist())) == [(0, 1), (0, 2), (0, 4), (1, 0), (1, 3)]
    assert len(data.valid_users) == 0
    rows, cols = data.mask.rows_cols(torch.tensor([0, 1]))
    assert sorted(zip(rows.tolist(), cols.tolist())) == [(0, 1), (0, 2), (0, 4), (1, 0), (1, 3)]
