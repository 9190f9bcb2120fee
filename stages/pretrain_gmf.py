"""pretrain_gmf: train GMF (Adam, early stopping on validation HR@10), then refit it.

The best validation epoch, trained on training data only, goes to --select; with train.refit,
the same model trained afresh on training + validation data for that many epochs goes to --out.
With train.processes above one, the stage runs data-parallel under torchrun.
"""

import _bootstrap  # noqa: F401  (project Python and this checkout's src/)

import torch

from ncf.config import load_params
from ncf.models import GMF
from ncf.protocol import TrainingOutputs, read_split, train_and_save, training, training_args
from ncf.runtime import stage_seed
from ncf.stage import run


def main():
    args = training_args(__doc__)
    params = load_params(args.params)
    with training(params) as (world, device):
        data = read_split(args.split, device)

        def build():
            torch.manual_seed(stage_seed(params.seed, "pretrain_gmf:init"))
            return GMF(data.num_users, data.num_items, dim=params.gmf.dim, biases=params.gmf.biases)

        train_and_save("pretrain_gmf", "gmf", build, data, params, TrainingOutputs.from_args(args),
                       optimizer="adam", lr=params.gmf.lr, l2=params.gmf.l2, device=device, world=world)


if __name__ == "__main__":
    run(main)
