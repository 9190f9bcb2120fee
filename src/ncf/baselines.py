"""The strongest simple baselines, under the same protocol as the neural models.

EASE (Steck, WWW 2019), iALS (Hu, Koren & Volinsky 2008, through the `implicit` library) and
ItemKNN (cosine) are fit on a binary user x item matrix: training interactions to choose their
hyperparameters on the validation item, then training + validation for the refit (as the
neural models). Each fitted model has `score_all(users)`, so the project's masks, full ranking
and metrics apply to it unchanged; `save`/`load` keep it in a self-describing file.

Memory: nothing here is users x items, and only EASE is items x items: it is fit on at most
`ease.max_items` items, the most popular ones (the others score -inf: never recommended), after
ncf.config.check_baselines has checked that its matrices fit in memory. ItemKNN computes its
similarities a block of items at a time from sparse products and keeps k per item (sparse).

Determinism: EASE and ItemKNN are closed-form (float64 on torch's pinned CPU kernels); iALS
starts from factors seeded by `seed` and `implicit`'s CPU solver updates each user and item
independently, so the thread count does not change its result (the BLAS kernel is pinned in
ncf/__init__.py).
"""

from __future__ import annotations

import io
import itertools
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ncf.errors import CheckpointError
from ncf.io import write_bytes

KINDS = ("ease", "ials", "itemknn")
FORMAT = 2  # 2: ItemKNN keeps sparse weights, EASE the indices of the items it was fit on


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
    """X^T X as a dense float64 tensor [items, items] (co-occurrence counts: exact).

    Filled a block of columns at a time, so that the sparse product never holds all items x
    items co-occurrences at once beside the dense matrix.
    """
    num_items = x.shape[1]
    xt, xc = x.T.tocsr(), x.tocsc()
    out = np.empty((num_items, num_items))
    block = block_items(num_items)
    for start in range(0, num_items, block):
        out[:, start:start + block] = (xt @ xc[:, start:start + block]).toarray()
    return torch.from_numpy(out)


def popular_items(x, count: int) -> np.ndarray:
    """The `count` items with the most interactions in x (ties: the lower index), in index order."""
    counts = np.asarray(x.sum(axis=0)).ravel()
    return np.sort(np.argsort(-counts, kind="stable")[:count])


def _interactive() -> bool:
    """Progress as a redrawn bar: on a terminal, outside CI (where each step gets its own line)."""
    ci = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")
    return sys.stderr.isatty() and not ci


class Progress:
    """Progress of one long fit with an estimate of the time left.

    On a terminal: a tqdm bar. Elsewhere (a log file, `CI=true`): one line per step, at most one
    every `interval` seconds, so that short fits stay quiet and long ones never go silent.
    """

    def __init__(self, desc: str, total: int, unit: str = "step", interval: float = 10.0):
        self.desc, self.total, self.unit, self.interval = desc, total, unit, interval
        self.done, self.start = 0, time.perf_counter()
        self.last = self.start
        self.bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=False) if _interactive() else None

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            return
        now = time.perf_counter()
        if now - self.last < self.interval:
            return
        self.last = now
        elapsed = now - self.start
        left = elapsed / self.done * (self.total - self.done)
        print(f"[baselines] {self.desc}: {self.done:,}/{self.total:,} {self.unit}s ({self.done / self.total:.0%}), "
              f"{elapsed:.0f} s, about {left:.0f} s left", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@dataclass
class Linear:
    """Scores X[user] @ weights: EASE's item-item model (X: the interactions it was fit on).

    `items`: the item indices the weights cover (the most popular ones, `ease.max_items`), or None
    for all items. Items outside it score -inf: never recommended, and a held-out item among them
    ranks last.
    """

    kind: str
    hyper: dict
    x: object              # [users, items] scipy CSR, the interactions it was fit on
    weights: torch.Tensor  # [fitted items, fitted items] float32
    items: torch.Tensor | None = None  # int64 indices of the fitted items (None: all)

    def score_all(self, users: torch.Tensor) -> torch.Tensor:
        rows = self.x[users.cpu().numpy()]
        if self.items is None:
            rows = torch.from_numpy(rows.toarray().astype(np.float32))
            return rows.to(users.device) @ self.weights.to(users.device)
        items = self.items.numpy()
        fitted = torch.from_numpy(rows[:, items].toarray().astype(np.float32)) @ self.weights
        out = torch.full((len(users), self.x.shape[1]), -torch.inf)
        out[:, self.items] = fitted
        return out.to(users.device)

    def tensors(self) -> dict:
        out = {"indptr": torch.from_numpy(self.x.indptr.astype(np.int64)),
               "indices": torch.from_numpy(self.x.indices.astype(np.int64)),
               "shape": torch.tensor(self.x.shape), "weights": self.weights}
        if self.items is not None:
            out["items"] = self.items
        return out


@dataclass
class Neighbours:
    """Scores X[user] @ W with W sparse (k nonzeros per column): ItemKNN. Nothing is items x items."""

    kind: str
    hyper: dict
    x: object        # [users, items] scipy CSR, the interactions it was fit on
    weights: object  # [items, items] scipy CSR float32: column j holds item j's k neighbours

    def score_all(self, users: torch.Tensor) -> torch.Tensor:
        # float64 sums of float32 weights, rounded once to float32.
        scores = (self.x[users.cpu().numpy()] @ self.weights.astype(np.float64)).toarray().astype(np.float32)
        return torch.from_numpy(scores).to(users.device)

    def tensors(self) -> dict:
        w = self.weights
        return {"indptr": torch.from_numpy(self.x.indptr.astype(np.int64)),
                "indices": torch.from_numpy(self.x.indices.astype(np.int64)),
                "shape": torch.tensor(self.x.shape),
                "w_indptr": torch.from_numpy(w.indptr.astype(np.int64)),
                "w_indices": torch.from_numpy(w.indices.astype(np.int64)),
                "w_values": torch.from_numpy(w.data.astype(np.float32))}


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


def fit_ease(x, l2: float, max_items: int | None = None) -> Linear:
    """EASE: B = argmin ||X - XB||^2 + l2 ||B||^2 with diag(B) = 0, in closed form.

    On at most `max_items` items, the most popular in x (check their memory first:
    ncf.config.check_baselines); the others are never recommended (Linear.items).
    """
    num_items = x.shape[1]
    items = None
    if max_items is not None and max_items < num_items:
        items = popular_items(x, max_items)
        x_fit = x[:, items]
    else:
        x_fit = x
    gram = _gram(x_fit)
    gram.diagonal().add_(l2)
    p = torch.linalg.inv(gram)
    del gram
    b = p.div_(-p.diagonal()[None, :])  # -p / diag(p), in place: the same bytes, one matrix less
    b.diagonal().zero_()
    return Linear("ease", {"l2": l2}, x, b.float(), None if items is None else torch.from_numpy(items.astype(np.int64)))


BLOCK_BYTES = 256 * 2**20  # a block of items' similarity columns, dense: [items, block] float64, about 3 copies


def block_items(num_items: int, block_bytes: int = BLOCK_BYTES) -> int:
    """How many items' similarity columns ItemKNN computes at once."""
    return max(1, min(num_items, block_bytes // (3 * 8 * max(num_items, 1))))


def fit_itemknn(x, k: int, block: int | None = None) -> Neighbours:
    """Item-based kNN: cosine similarity between item columns, each item keeping its k nearest.

    The similarities are computed `block` items at a time from the sparse product X^T X[:, block]
    and only the k largest of each column are kept: memory grows with items x block, never with
    items x items. Same neighbours and values as the whole dense matrix would give.
    """
    import scipy.sparse

    num_items = x.shape[1]
    block = block or block_items(num_items)
    k = min(k, num_items - 1)
    xt = x.T.tocsr()  # [items, users]
    xc = x.tocsc()
    norms = torch.from_numpy(np.asarray(xc.sum(axis=0), dtype=np.float64).ravel()).sqrt().clamp(min=1e-12)
    rows, cols, vals = [], [], []
    progress = Progress(f"itemknn k={k}: similarities", num_items, unit="item")
    for start in range(0, num_items, block):
        stop = min(start + block, num_items)
        gram = torch.from_numpy((xt @ xc[:, start:stop]).toarray())  # [items, block] co-occurrences (exact)
        sim = gram / norms[:, None] / norms[None, start:stop]
        span = torch.arange(stop - start)
        sim[span + start, span] = 0.0
        # Column j scores item j from the user's items: keep, per column, its k most similar items.
        top = torch.topk(sim, k, dim=0)
        keep = top.values != 0
        rows.append(top.indices[keep].numpy())
        cols.append((span[None, :].expand(k, -1) + start)[keep].numpy())
        vals.append(top.values[keep].float().numpy())
        progress.update(stop - start)
    progress.close()
    rows, cols, vals = (np.concatenate(a) if a else np.zeros(0) for a in (rows, cols, vals))
    weights = scipy.sparse.csr_matrix((vals.astype(np.float32), (rows, cols)), shape=(num_items, num_items))
    return Neighbours("itemknn", {"k": k}, x, weights)


def fit_ials(x, factors: int, regularization: float, alpha: float, iterations: int,
             seed: int, threads: int) -> Factors:
    """iALS with `implicit`'s CPU conjugate-gradient solver (confidence 1 + alpha per interaction)."""
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    progress = Progress(f"ials factors={factors}", iterations, unit="iteration")
    with threadpool_limits(limits=1, user_api="blas"):  # implicit parallelises itself (num_threads)
        model = AlternatingLeastSquares(factors=factors, regularization=regularization, alpha=alpha,
                                        iterations=iterations, calculate_training_loss=False,
                                        num_threads=threads, random_state=seed)
        model.fit(x.astype(np.float32), show_progress=False, callback=lambda *_: progress.update())
    progress.close()
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


def fit(kind: str, x, hyper: dict, seed: int, threads: int, ease_max_items: int | None = None):
    if kind == "ease":
        return fit_ease(x, **hyper, max_items=ease_max_items)
    if kind == "itemknn":
        return fit_itemknn(x, **hyper)
    if kind == "ials":
        return fit_ials(x, **hyper, seed=seed, threads=threads)
    raise ValueError(kind)


def timed_fit(kind: str, x, hyper: dict, seed: int, threads: int, ease_max_items: int | None = None):
    start = time.perf_counter()
    model = fit(kind, x, hyper, seed, threads, ease_max_items)
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
    if payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: written by an earlier version of this project (format "
                              f"{payload.get('format')}, now {FORMAT}); run: dvc repro baselines")
    if kind == "ials":
        model = Factors(kind, payload["hyper"], tensors["user_factors"], tensors["item_factors"])
        users, items = model.user_factors.shape[0], model.item_factors.shape[0]
    elif kind == "ease":
        model = Linear(kind, payload["hyper"], _csr(tensors["indptr"], tensors["indices"], tensors["shape"].tolist()),
                       tensors["weights"], tensors.get("items"))
        users, items = model.x.shape
    elif kind == "itemknn":
        import scipy.sparse

        x = _csr(tensors["indptr"], tensors["indices"], tensors["shape"].tolist())
        weights = scipy.sparse.csr_matrix((tensors["w_values"].numpy(), tensors["w_indices"].numpy(),
                                           tensors["w_indptr"].numpy()), shape=(x.shape[1], x.shape[1]))
        model = Neighbours(kind, payload["hyper"], x, weights)
        users, items = model.x.shape
    else:
        raise CheckpointError(f"{path}: unknown baseline kind {kind!r}; run: dvc repro baselines")
    if shape is not None and (users, items) != (shape["num_users"], shape["num_items"]):
        raise CheckpointError(f"{path}: fit on {users:,} users x {items:,} items, but the split has "
                              f"{shape['num_users']:,} x {shape['num_items']:,}; run: dvc repro baselines")
    return model
