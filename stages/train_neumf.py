"""train_neumf: NeuMF, initialised from the pretrained GMF and MLP with the alpha fusion.

Epochs are chosen on validation starting from the fusion of the GMF and MLP trained on training
data only (--gmf-select, --mlp-select); the fused model counts as epoch 0, so fine-tuning only
replaces it when it improves validation HR@10. With train.refit, the final model is the fusion of
the refit GMF and MLP (--gmf, --mlp), fine-tuned on training + validation for that many epochs.
With neumf.pretrain false, NeuMF starts from a random initialisation instead.
"""

import _bootstrap  # noqa: F401  (project Python and this checkout's src/)

import torch

from ncf.config import load_params
from ncf.models import NeuMF, load_checkpoint, neumf_from_pretrained
from ncf.protocol import TrainingOutputs, read_split, train_and_save, training, training_args
from ncf.runtime import stage_seed
from ncf.stage import run


def main():
    args = training_args(__doc__, "gmf", "mlp")
    params = load_params(args.params)
    with training(params) as (world, device):
        data = read_split(args.split, device)
        shape = {"num_users": data.num_users, "num_items": data.num_items}

        def builder(gmf_path, mlp_path):
            def build():
                torch.manual_seed(stage_seed(params.seed, "train_neumf:init"))
                if not params.neumf.pretrain:
                    return NeuMF(data.num_users, data.num_items, gmf_dim=params.gmf.dim,
                                 gmf_biases=params.gmf.biases, mlp_dim=params.mlp.dim,
                                 layers=list(params.mlp.layers))
                gmf, _ = load_checkpoint(gmf_path, "gmf", {**shape, "dim": params.gmf.dim,
                                                           "biases": params.gmf.biases})
                mlp, _ = load_checkpoint(mlp_path, "mlp", {**shape, "dim": params.mlp.dim,
                                                           "layers": list(params.mlp.layers)})
                return neumf_from_pretrained(gmf, mlp, alpha=params.neumf.alpha)
            return build

        train_and_save("train_neumf", "neumf", builder(args.gmf_select, args.mlp_select), data, params,
                       TrainingOutputs.from_args(args), optimizer=params.neumf.optimizer, lr=params.neumf.lr,
                       l2=params.neumf.l2, device=device, world=world, validate_initial=params.neumf.pretrain,
                       build_refit=builder(args.gmf, args.mlp))


if __name__ == "__main__":
    run(main)
