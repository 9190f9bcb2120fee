"""train_neumf: NeuMF, initialised from the pretrained GMF and MLP with the alpha fusion.

With neumf.pretrain false it is trained from a random initialisation instead. After the
fusion, the untrained fused model counts as epoch 0, so fine-tuning only replaces it when it
improves validation HR@10.
"""

import _bootstrap  # noqa: F401  (project Python and this checkout's src/)

import torch

from ncf.config import load_params
from ncf.models import NeuMF, load_checkpoint, neumf_from_pretrained
from ncf.stage import read_split, run, train_and_save, training_args
from ncf.train import resolve_device, stage_seed


def main():
    args = training_args(__doc__, "gmf", "mlp")
    params = load_params(args.params)
    device = resolve_device(params.device)
    data = read_split(args.split, device)
    shape = {"num_users": data.num_users, "num_items": data.num_items}
    torch.manual_seed(stage_seed(params.seed, "train_neumf:init"))
    if params.neumf.pretrain:
        gmf, _ = load_checkpoint(args.gmf, "gmf", {**shape, "dim": params.gmf.dim, "biases": params.gmf.biases})
        mlp, _ = load_checkpoint(args.mlp, "mlp", {**shape, "dim": params.mlp.dim, "layers": list(params.mlp.layers)})
        model = neumf_from_pretrained(gmf, mlp, alpha=params.neumf.alpha)
    else:
        model = NeuMF(data.num_users, data.num_items, gmf_dim=params.gmf.dim, gmf_biases=params.gmf.biases,
                      mlp_dim=params.mlp.dim, layers=list(params.mlp.layers))
    train_and_save("train_neumf", "neumf", model, data, params, device, optimizer=params.neumf.optimizer,
                   lr=params.neumf.lr, l2=params.neumf.l2, out=args.out, curve=args.curve,
                   metrics=args.metrics, validate_initial=params.neumf.pretrain)


if __name__ == "__main__":
    run(main)
