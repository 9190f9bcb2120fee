"""pretrain_mlp: train the MLP (Adam, early stopping on validation HR@10) and keep its best epoch."""

import _bootstrap  # noqa: F401  (project Python and this checkout's src/)

import torch

from ncf.config import load_params
from ncf.models import MLP
from ncf.stage import read_split, run, train_and_save, training_args
from ncf.train import resolve_device, stage_seed


def main():
    args = training_args(__doc__)
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
