"""The strongest simple baselines, under the same protocol as the neural models.

EASE (Steck, WWW 2019), iALS (Hu, Koren & Volinsky 2008, through the `implicit` library) and
ItemKNN (cosine) are fit on a binary user x item matrix: training interactions to choose their
hyperparameters on the validation item, then training + validation for the refit (as the
neural models). Each fitted model has `score_all(users)`, so the project's masks, full ranking
and metrics apply to it unchanged; `save`/`load` keep it in a self-describing file.

Determinism: EASE and ItemKNN are closed-form (float64 on torch's pinned CPU kernels); iALS
starts from factors seeded by `seed` and `implicit`'s CPU solver updates each user and item
independently, so the thread count does not change its result (the BLAS kernel is pinned in
ncf/__init__.py).
"""

from __future__ import annotations

import io
import itertools
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ncf.errors import CheckpointError
from ncf.io import write_bytes

KINDS = ("ease", "ials", "itemknn")
FORMAT = 1


def interactions(users: np.ndarray, items: np.ndarray, num_users: int, num_items: int):
    """Binary sparse matrix (scipy CSR, float64) [num_users, num_items], a 1 per (user, item) pair."""
    import scipy.sparse

    x = scipy.sparse.csr_matrix((np.ones(len(users)), (np.asarray(users), np.asarray(items))),
                                shape=(num_users, num_items))
    x.sum_duplicates()
    x.data[:] = 1.0
    return x


def _csr(indptr: torch.Tensor, indices: torch.Tensor, shape):
    import scipy.sparse

    return scipy.sparse.csr_matrix((np.ones(len(indices)), indices.numpy(), indptr.numpy()), shape=tuple(shape))


def _gram(x) -> torch.Tensor:
    """X^T X as a dense float64 tensor [items, items] (co-occurrence counts: exact)."""
    return torch.from_numpy((x.T @ x).toarray())


@dataclass
class Linear:
    """Scores X[user] @ weights: EASE's and ItemKNN's item-item model (X: the fitted interactions)."""

    kind: str
    hyper: dict
    x: object              # [users, items] scipy CSR, the interactions it was fit on
    weights: torch.Tensor  # [items, items] float32

    def score_all(self, users: torch.Tensor) -> torch.Tensor:
        rows = torch.from_numpy(self.x[users.cpu().numpy()].toarray().astype(np.float32))
        return rows.to(users.device) @ self.weights.to(users.device)

    def tensors(self) -> dict:
        return {"indptr": torch.from_numpy(self.x.indptr.astype(np.int64)),
                "indices": torch.from_numpy(self.x.indices.astype(np.int64)),
                "shape": torch.tensor(self.x.shape), "weights": self.weights}


@dataclass
class Factors:
    """Scores user_factors[user] @ item_factors.T: iALS."""

    kind: str
    hyper: dict
    user_factors: torch.Tensor  # [users, factors] float32
    item_factors: torch.Tensor  # [items, factors] float32

    def score_all(self, users: torch.Tensor) -> torch.Tensor:
        return self.user_factors[users.cpu()].to(users.device) @ self.item_factors.to(users.device).T

    def tensors(self) -> dict:
        return {"user_factors": self.user_factors, "item_factors": self.item_factors}


def fit_ease(x, l2: float) -> Linear:
    """EASE: B = argmin ||X - XB||^2 + l2 ||B||^2 with diag(B) = 0, in closed form."""
    gram = _gram(x)
    gram.diagonal().add_(l2)
    p = torch.linalg.inv(gram)
    b = -p / p.diagonal()[None, :]
    b.diagonal().zero_()
    return Linear("ease", {"l2": l2}, x, b.float())


def fit_itemknn(x, k: int) -> Linear:
    """Item-based kNN: cosine similarity between item columns, each item keeping its k nearest."""
    gram = _gram(x)
    norms = gram.diagonal().sqrt().clamp(min=1e-12)
    sim = gram / norms[:, None] / norms[None, :]
    sim.diagonal().zero_()
    k = min(k, sim.shape[0] - 1)
    # Column j scores item j from the user's items: keep, per column, its k most similar items.
    top = torch.topk(sim, k, dim=0)
    kept = torch.zeros_like(sim).scatter_(0, top.indices, top.values)
    return Linear("itemknn", {"k": k}, x, kept.float())


def fit_ials(x, factors: int, regularization: float, alpha: float, iterations: int,
             seed: int, threads: int) -> Factors:
    """iALS with `implicit`'s CPU conjugate-gradient solver (confidence 1 + alpha per interaction)."""
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):  # implicit parallelises itself (num_threads)
        model = AlternatingLeastSquares(factors=factors, regularization=regularization, alpha=alpha,
                                        iterations=iterations, calculate_training_loss=False,
                                        num_threads=threads, random_state=seed)
        model.fit(x.astype(np.float32), show_progress=False)
    hyper = {"factors": factors, "regularization": regularization, "alpha": alpha, "iterations": iterations}
    return Factors("ials", hyper, torch.from_numpy(np.asarray(model.user_factors, dtype=np.float32)),
                   torch.from_numpy(np.asarray(model.item_factors, dtype=np.float32)))


def grid(kind: str, params) -> list[dict]:
    """Every hyperparameter setting of `kind` that params.yaml asks to try, in a fixed order."""
    if kind == "ease":
        return [{"l2": v} for v in params.ease.l2]
    if kind == "itemknn":
        return [{"k": v} for v in params.itemknn.k]
    if kind == "ials":
        p = params.ials
        return [{"factors": f, "regularization": r, "alpha": a, "iterations": p.iterations}
                for f, r, a in itertools.product(p.factors, p.regularization, p.alpha)]
    raise ValueError(kind)


def fit(kind: str, x, hyper: dict, seed: int, threads: int):
    if kind == "ease":
        return fit_ease(x, **hyper)
    if kind == "itemknn":
        return fit_itemknn(x, **hyper)
    if kind == "ials":
        return fit_ials(x, **hyper, seed=seed, threads=threads)
    raise ValueError(kind)


def timed_fit(kind: str, x, hyper: dict, seed: int, threads: int):
    start = time.perf_counter()
    model = fit(kind, x, hyper, seed, threads)
    return model, time.perf_counter() - start


def save(model, path: Path, *, trained_on: str, info: dict) -> None:
    """Write a fitted baseline atomically, with what it is and how it was chosen."""
    payload = {"format": FORMAT, "kind": model.kind, "hyper": model.hyper, "trained_on": trained_on,
               "info": info, "tensors": model.tensors()}
    buffer = io.BytesIO()  # in memory: torch.save names the archive after the (random) temp file
    torch.save(payload, buffer)
    write_bytes(buffer.getvalue(), path)


def load(path: Path, shape: dict | None = None):
    """A baseline written by `save`; CheckpointError (one line) when it is not one or does not fit."""
    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        kind, tensors = payload["kind"], payload["tensors"]
    except FileNotFoundError:
        raise CheckpointError(f"{path}: not found; run: dvc repro baselines") from None
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same one-line answer
        raise CheckpointError(f"{path}: not a baseline written by this project ({type(exc).__name__}); "
                              "run: dvc repro baselines") from None
    if kind == "ials":
        model = Factors(kind, payload["hyper"], tensors["user_factors"], tensors["item_factors"])
        users, items = model.user_factors.shape[0], model.item_factors.shape[0]
    elif kind in ("ease", "itemknn"):
        model = Linear(kind, payload["hyper"], _csr(tensors["indptr"], tensors["indices"], tensors["shape"].tolist()),
                       tensors["weights"])
        users, items = model.x.shape
    else:
        raise CheckpointError(f"{path}: unknown baseline kind {kind!r}; run: dvc repro baselines")
    if shape is not None and (users, items) != (shape["num_users"], shape["num_items"]):
        raise CheckpointError(f"{path}: fit on {users:,} users x {items:,} items, but the split has "
                              f"{shape['num_users']:,} x {shape['num_items']:,}; run: dvc repro baselines")
    return model
