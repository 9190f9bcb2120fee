"""pretrain_mlp: train the MLP (Adam, early stopping on validation HR@10) and keep its best epoch."""

import _bootstrap  # noqa: F401  (project Python and this checkout's src/)

from pathlib import Path

import torch

from ncf.config import load_params
from ncf.models import MLP
from ncf.stage import parser, read_split, run, train_and_save
from ncf.train import resolve_device, stage_seed


def main():
    p = parser(__doc__)
    p.add_argument("--split", required=True, type=Path, help="input: the split stage's folder")
    p.add_argument("--out", required=True, type=Path, help="output: checkpoint")
    p.add_argument("--curve", required=True, type=Path, help="output: per-epoch TSV")
    p.add_argument("--metrics", required=True, type=Path, help="output: training summary JSON")
    args = p.parse_args()
    params = load_params(args.params)
    device = resolve_device(params.device)
    data = read_split(args.split, device)
    torch.manual_seed(stage_seed(params.seed, "pretrain_mlp:init"))
    model = MLP(data.num_users, data.num_items, dim=params.mlp.dim, layers=list(params.mlp.layers))
    train_and_save("pretrain_mlp", "mlp", model, data, params, device, optimizer="adam",
                   lr=params.mlp.lr, l2=params.mlp.l2, out=args.out, curve=args.curve,
                   metrics=args.metrics)


if __name__ == "__main__":
    run(main)
