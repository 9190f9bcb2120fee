"""Data-parallel training: two gloo processes under torchrun train like one process.

The stage script is run as users run it (`train.processes: 2` makes it relaunch itself under
torchrun) on a small clustered dataset, and compared with the same params at one process and
the same global batch. The negatives differ (each rank draws its own), so the comparison is
statistical, with these tolerances:
- every epoch's mean training loss within 15 % (relative) of the single process's;
- validation HR@10 and NDCG@10 of the kept epoch within 0.1 of the single process's.
One optimiser step is also checked exactly: two ranks with half a batch each end up with the
same weights as one process with the whole batch.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ncf.config import ParamsError
from ncf.distributed import backend_for, start
from ncf.models import GMF, load_checkpoint
from ncf.train import make_optimizer, train_epoch

ROOT = Path(__file__).resolve().parents[1]
USERS, ITEMS = 300, 60


def _train(tmp_path: Path, processes: int) -> tuple[dict, pd.DataFrame, Path, str]:
    work = tmp_path / f"p{processes}"
    work.mkdir()
    (work / "params.yaml").write_text(
        "num_negatives: 2\n"
        f"train:\n  batch_size: 256\n  max_epochs: 8\n  patience: 8\n  processes: {processes}\n  backend: gloo\n"
        "gmf:\n  dim: 8\n  lr: 0.03\n  l2: 0.0\ndevice: cpu\n")
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "stages" / "pretrain_gmf.py"), "--split", str(tmp_path / "split"),
         "--out", "gmf.pt", "--select", "select.pt", "--curve", "curve.tsv", "--metrics", "gmf.json"],
        cwd=work, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((work / "gmf.json").read_text())
    return summary, pd.read_csv(work / "curve.tsv", sep="\t"), work, proc.stderr


@pytest.mark.slow
def test_two_gloo_processes_train_like_one_with_the_same_global_batch(tmp_path, clustered_split):
    clustered_split(tmp_path / "split", users=USERS, items=ITEMS, liked=12)
    one, one_curve, _, _ = _train(tmp_path, 1)
    two, two_curve, work, stderr = _train(tmp_path, 2)

    assert stderr.count("[pretrain_gmf] wrote") == 1  # rank 0 alone writes and reports
    losses = one_curve.dropna(subset=["loss"]).merge(two_curve.dropna(subset=["loss"]), on="epoch")
    assert len(losses) >= 3
    rel = (losses["loss_y"] - losses["loss_x"]).abs() / losses["loss_x"]
    assert rel.max() < 0.15, losses
    assert losses["loss_y"].iloc[-1] < 0.7 * losses["loss_y"].iloc[0]  # and it learned
    for metric in ("hr@10", "ndcg@10"):
        assert abs(two["valid"][metric] - one["valid"][metric]) <= 0.1, (one, two)
    assert two["refit"]["epochs"] == two["best_epoch"]

    # What rank 0 wrote is a plain checkpoint that the single-process code loads.
    model, ckpt = load_checkpoint(work / "gmf.pt", "gmf", {"num_users": USERS, "num_items": ITEMS, "dim": 8})
    assert ckpt["params"]["train"]["processes"] == 2
    assert ckpt["info"]["trained_on"] == "train+valid"
    assert model.score_all(torch.arange(USERS)).shape == (USERS, ITEMS)
    assert not [p for p in work.iterdir() if p.name.endswith(".tmp")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _batch():
    g = torch.Generator().manual_seed(1)
    users = torch.randint(USERS, (64,), generator=g)
    items = torch.randint(ITEMS, (64,), generator=g)
    labels = (torch.rand(64, generator=g) < 0.3).float()
    return users, items, labels


def _model():
    torch.manual_seed(0)
    return GMF(USERS, ITEMS, dim=8, biases=True)


def _one_ddp_step(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        model = _model()
        net = torch.nn.parallel.DistributedDataParallel(model)
        opt = make_optimizer("adam", model.parameters(), 0.01)
        users, items, labels = (t[rank::2] for t in _batch())
        train_epoch(net, opt, users, items, labels, batch_size=32, l2=0.01, steps=1)
        if rank == 0:
            torch.save(model.state_dict(), out)
    finally:
        dist.destroy_process_group()


def test_one_data_parallel_step_equals_one_step_on_the_whole_batch(tmp_path):
    out = str(tmp_path / "ddp.pt")
    mp.spawn(_one_ddp_step, args=(_free_port(), out), nprocs=2, join=True)
    model = _model()
    opt = make_optimizer("adam", model.parameters(), 0.01)
    users, items, labels = _batch()
    # The global batch in the order the two ranks split it: the loss is a mean, so order is moot.
    train_epoch(model, opt, users, items, labels, batch_size=64, l2=0.01, steps=1)
    ddp = torch.load(out, weights_only=True)
    start = _model().state_dict()
    for key, value in model.state_dict().items():
        assert not torch.equal(value, start[key]) or key.endswith("bias.weight"), key
        torch.testing.assert_close(ddp[key], value, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("processes, message", [
    (2, "train.processes is 2 but torchrun started 3 processes; set train.processes: 3"),
    (3, "train.batch_size 64 does not split evenly over train.processes 3; use a multiple of 3"),
])
def test_mismatched_processes_and_uneven_batches_are_refused(monkeypatch, processes, message):
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(ParamsError, match=message):
        with start(processes, "gloo", 64, torch.device("cpu")):
            pass


def test_nccl_on_cpu_is_refused():
    with pytest.raises(ParamsError, match="nccl needs CUDA GPUs; use gloo"):
        backend_for("nccl", torch.device("cpu"))


def _node(folder: Path, split: Path, port: int, runs_dvc: bool) -> subprocess.Popen:
    """One 'machine' of two: its own checkout folder, one process, torchrun's c10d rendezvous (as
    docs/distributed.md's recipe). The node that runs DVC has DVC_STAGE in its environment."""
    folder.mkdir()
    (folder / "params.yaml").write_text(
        "num_negatives: 2\ntrain:\n  batch_size: 256\n  max_epochs: 2\n  patience: 2\n  processes: 2\n"
        "  backend: gloo\ngmf:\n  dim: 8\ndevice: cpu\n")
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "DVC_STAGE")}
    if runs_dvc:
        env["DVC_STAGE"] = "pretrain_gmf"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc-per-node=1",
           "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}", "--rdzv-id=ncf-test",
           str(ROOT / "stages" / "pretrain_gmf.py"), "--split", str(split), "--out", "gmf.pt",
           "--select", "select.pt", "--curve", "curve.tsv", "--metrics", "gmf.json"]
    return subprocess.Popen(cmd, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.slow
@pytest.mark.parametrize("dvc_node", ["first", "second"])
def test_with_two_nodes_the_node_that_runs_dvc_writes_the_outputs_whatever_its_rank(tmp_path, clustered_split,
                                                                                     dvc_node):
    # With c10d, torchrun numbers the processes by host and process id, not by --node-rank: the
    # node that runs DVC is rank 0 only by luck. Started in the same order, with DVC on the first
    # node and then on the second, one of the two cases has DVC's node at rank 1.
    clustered_split(tmp_path / "split", users=USERS, items=ITEMS, liked=12)
    port = _free_port()
    first = _node(tmp_path / "first", tmp_path / "split", port, runs_dvc=dvc_node == "first")
    second = _node(tmp_path / "second", tmp_path / "split", port, runs_dvc=dvc_node == "second")
    outs = [p.communicate(timeout=300)[0] for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, outs
    for name in ("first", "second"):
        written = sorted(p.name for p in (tmp_path / name).iterdir() if p.name != "params.yaml")
        assert written == (["curve.tsv", "gmf.json", "gmf.pt", "select.pt"] if name == dvc_node else []), name
