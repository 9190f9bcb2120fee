"""GMF, MLP and NeuMF (He et al., WWW 2017) as modules that return logits, plus the fusion.

Each model is built from two paths:
- `GMFPath`: user and item embeddings whose element-wise product is the feature vector, with
  optional user and item biases added straight to the logit;
- `MLPPath`: user and item embeddings, concatenated, through a ReLU tower.
GMF = GMFPath + a linear output; MLP = MLPPath + a linear output; NeuMF = both paths with one
linear output over their concatenated features. `neumf_from_pretrained` builds NeuMF from a
trained GMF and MLP with the paper's alpha fusion, so that with alpha = 0.5 the fused logit is
exactly 0.5 * (GMF logit + MLP logit).

`forward(users, items, reg)` appends to the list `reg`, when one is given, the sum of squares of
the embeddings (and biases) it looked up, so the L2 penalty costs no second lookup. Every model
has `score_all(users)` for full ranking (all items at once, batched, without
materialising more than `pair_budget` MLP activations) and `model_args`, the keyword arguments
that rebuild it (stored in checkpoints).
"""

from __future__ import annotations

import io

import torch
import torch.nn.functional as F
from torch import nn

from ncf.errors import CheckpointError

# Most (user, item) pairs x hidden units an MLP tower holds in memory at once while ranking.
PAIR_BUDGET = 1 << 21  # 8 MB of float32 stays in cache; 64 MB chunks ranked ml-100k slower


def _looked_up_squares(table: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Sum of squares of table[rows], rows repeated as often as they occur, without the lookup."""
    counts = torch.bincount(rows, minlength=len(table)).to(table.dtype)
    return counts @ table.pow(2).sum(dim=1)


def _embedding(n: int, dim: int) -> nn.Embedding:
    emb = nn.Embedding(n, dim)
    nn.init.normal_(emb.weight, std=0.01)  # the paper's initialisation
    return emb


class GMFPath(nn.Module):
    def __init__(self, num_users: int, num_items: int, dim: int, biases: bool):
        super().__init__()
        self.user = _embedding(num_users, dim)
        self.item = _embedding(num_items, dim)
        self.biases = biases
        if biases:
            self.user_bias = nn.Embedding(num_users, 1)
            self.item_bias = nn.Embedding(num_items, 1)
            nn.init.zeros_(self.user_bias.weight)
            nn.init.zeros_(self.item_bias.weight)

    def features(self, users, items, reg=None):
        p, q = self.user(users), self.item(items)
        if reg is not None:
            reg.append(p.pow(2).sum() + q.pow(2).sum())
        return p * q

    def bias(self, users, items, reg=None):
        if not self.biases:
            return 0.0
        bu, bi = self.user_bias(users).squeeze(-1), self.item_bias(items).squeeze(-1)
        if reg is not None:
            reg.append(bu.pow(2).sum() + bi.pow(2).sum())
        return bu + bi

    def score_all(self, users, weight):
        """[len(users), num_items] logit contributions of this path, given the output weights."""
        scores = (self.user(users) * weight) @ self.item.weight.T
        if self.biases:
            scores = scores + self.user_bias(users) + self.item_bias.weight.T
        return scores



class MLPPath(nn.Module):
    def __init__(self, num_users: int, num_items: int, dim: int, layers: list[int]):
        super().__init__()
        self.user = _embedding(num_users, dim)
        self.item = _embedding(num_items, dim)
        widths = [2 * dim, *layers]
        self.tower = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))

    def features(self, users, items, reg=None):
        first = self.tower[0]
        num_users, dim = self.user.weight.shape
        if len(users) > num_users + len(self.item.weight):
            # The first layer on [p_u, q_i] is W_u p_u + W_i q_i + b: when the batch holds more
            # pairs than there are users and items, project each whole table once and look the
            # projections up (the same function and gradients, a fraction of the work). The L2
            # term likewise sums each row's squares times the number of times it is looked up.
            h = F.embedding(users, torch.addmm(first.bias, self.user.weight, first.weight[:, :dim].T))
            h = torch.relu_(h.add_(F.embedding(items, self.item.weight @ first.weight[:, dim:].T)))
            if reg is not None:
                reg.append(_looked_up_squares(self.user.weight, users)
                           + _looked_up_squares(self.item.weight, items))
        else:
            p, q = self.user(users), self.item(items)
            if reg is not None:
                reg.append(p.pow(2).sum() + q.pow(2).sum())
            h = torch.relu(first(torch.cat([p, q], dim=-1)))
        for layer in self.tower[1:]:
            h = torch.relu(layer(h))
        return h

    def score_all(self, users, weight):
        """Tower outputs for every (user, item) pair, dotted with `weight`, in bounded memory.

        The first layer on [p_u, q_i] equals W_u p_u + W_i q_i + b, so the user and item halves
        are computed once each and broadcast, instead of once per pair.
        """
        first, rest = self.tower[0], self.tower[1:]
        dim = self.user.embedding_dim
        user_part = self.user(users) @ first.weight[:, :dim].T + first.bias  # [U, h1]
        item_part = self.item.weight @ first.weight[:, dim:].T  # [I, h1]
        num_items, width = item_part.shape
        step = max(1, PAIR_BUDGET // (num_items * width))
        # Written into one tensor made up front: kept as a list of small [step, items] pieces
        # between the blocks' large temporaries, they fragmented the heap, and the process grew
        # by about one last-layer activation per block (11.9 GB after 1,024 users x 58,513 items).
        out = torch.empty(len(users), num_items, dtype=item_part.dtype, device=item_part.device)
        for start in range(0, len(users), step):
            h = torch.relu(user_part[start:start + step, None, :] + item_part[None, :, :])
            for layer in rest:
                h = torch.relu(layer(h))
            out[start:start + step] = h @ weight
        return out


class GMF(nn.Module):
    def __init__(self, num_users: int, num_items: int, dim: int = 32, biases: bool = False):
        super().__init__()
        self.model_args = dict(num_users=num_users, num_items=num_items, dim=dim, biases=biases)
        self.path = GMFPath(num_users, num_items, dim, biases)
        self.out = nn.Linear(dim, 1)

    def forward(self, users, items, reg=None):
        return self.out(self.path.features(users, items, reg)).squeeze(-1) + self.path.bias(users, items, reg)

    def score_all(self, users):
        return self.path.score_all(users, self.out.weight[0]) + self.out.bias


class MLP(nn.Module):
    def __init__(self, num_users: int, num_items: int, dim: int = 32, layers: list[int] = (64, 32, 16)):
        super().__init__()
        layers = [int(w) for w in layers]
        self.model_args = dict(num_users=num_users, num_items=num_items, dim=dim, layers=layers)
        self.path = MLPPath(num_users, num_items, dim, layers)
        self.out = nn.Linear(layers[-1], 1)

    def forward(self, users, items, reg=None):
        return self.out(self.path.features(users, items, reg)).squeeze(-1)

    def score_all(self, users):
        return self.path.score_all(users, self.out.weight[0]) + self.out.bias


class NeuMF(nn.Module):
    def __init__(
        self,
        num_users: int,
        num_items: int,
        gmf_dim: int = 32,
        gmf_biases: bool = False,
        mlp_dim: int = 32,
        layers: list[int] = (64, 32, 16),
    ):
        super().__init__()
        layers = [int(w) for w in layers]
        self.model_args = dict(num_users=num_users, num_items=num_items, gmf_dim=gmf_dim,
                               gmf_biases=gmf_biases, mlp_dim=mlp_dim, layers=layers)
        self.gmf = GMFPath(num_users, num_items, gmf_dim, gmf_biases)
        self.mlp = MLPPath(num_users, num_items, mlp_dim, layers)
        self.out = nn.Linear(gmf_dim + layers[-1], 1)

    def forward(self, users, items, reg=None):
        h = torch.cat([self.gmf.features(users, items, reg), self.mlp.features(users, items, reg)], dim=-1)
        return self.out(h).squeeze(-1) + self.gmf.bias(users, items, reg)

    def score_all(self, users):
        w = self.out.weight[0]
        gmf_dim = self.gmf.user.embedding_dim
        return (self.gmf.score_all(users, w[:gmf_dim]) + self.mlp.score_all(users, w[gmf_dim:])
                + self.out.bias)


MODELS = {"gmf": GMF, "mlp": MLP, "neumf": NeuMF}


@torch.no_grad()
def neumf_from_pretrained(gmf: GMF, mlp: MLP, alpha: float = 0.5) -> NeuMF:
    """NeuMF whose paths are copies of `gmf` and `mlp`, output layer [alpha h_GMF, (1-alpha) h_MLP].

    Biases follow the same weights, so the fused logit is alpha * GMF + (1 - alpha) * MLP.
    """
    if gmf.model_args["num_users"] != mlp.model_args["num_users"] or \
            gmf.model_args["num_items"] != mlp.model_args["num_items"]:
        raise ValueError("GMF and MLP were trained on different numbers of users or items")
    model = NeuMF(
        gmf.model_args["num_users"], gmf.model_args["num_items"],
        gmf_dim=gmf.model_args["dim"], gmf_biases=gmf.model_args["biases"],
        mlp_dim=mlp.model_args["dim"], layers=mlp.model_args["layers"],
    )
    model.gmf.load_state_dict(gmf.path.state_dict())
    model.mlp.load_state_dict(mlp.path.state_dict())
    if model.gmf.biases:
        model.gmf.user_bias.weight.mul_(alpha)
        model.gmf.item_bias.weight.mul_(alpha)
    model.out.weight.copy_(torch.cat([alpha * gmf.out.weight, (1 - alpha) * mlp.out.weight], dim=1))
    model.out.bias.copy_(alpha * gmf.out.bias + (1 - alpha) * mlp.out.bias)
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --- checkpoints -----------------------------------------------------------------------------

CHECKPOINT_FORMAT = 1


def save_checkpoint(model: nn.Module, path, *, kind: str, params: dict, info: dict) -> None:
    """Write a self-describing checkpoint: what it is, how to rebuild it, what made it."""
    from ncf.io import write_bytes

    ckpt = {
        "format": CHECKPOINT_FORMAT,
        "kind": kind,
        "model_args": dict(model.model_args),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "params": params,
        "info": info,
    }
    # Serialise in memory: torch.save names the archive after the file it writes to, and the
    # temporary name is random, so saving to the temp file directly would differ run to run.
    buffer = io.BytesIO()
    torch.save(ckpt, buffer)
    write_bytes(buffer.getvalue(), path)


def load_checkpoint(path, kind: str | None, expected_args: dict | None = None, map_location="cpu"):
    """Rebuild the model stored at `path` (tensors and plain types only: weights_only=True).

    `kind` None accepts whichever model the checkpoint says it holds.
    """
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: not found; run `dvc repro` to train it") from None
    except Exception as exc:  # torch raises many types for corrupt or unsafe files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable checkpoint ({first}); retrain it with `dvc repro`") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not an ncf checkpoint of format {CHECKPOINT_FORMAT}; retrain it")
    if kind is None and ckpt.get("kind") in MODELS:
        kind = ckpt["kind"]
    if ckpt.get("kind") != kind:
        raise CheckpointError(f"{path}: holds a {ckpt.get('kind')!r} model, expected {kind!r}")
    args = ckpt["model_args"]
    for key, want in (expected_args or {}).items():
        if isinstance(want, tuple):
            want = list(want)
        if args.get(key) != want:
            raise CheckpointError(
                f"{path}: built with {key}={args.get(key)!r}, but the params ask for {want!r}; "
                "rerun the stage that trains it (`dvc repro`)"
            )
    model = MODELS[kind](**args)
    model.load_state_dict(ckpt["state_dict"])
    return model, ckpt
