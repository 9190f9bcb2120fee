"""One training loop for GMF, MLP and NeuMF, with early stopping on the validation item.

Each epoch draws fresh negatives for every training positive (sampling.py), shuffles positives
and negatives together with a generator seeded by (seed, epoch, rank), and steps through the
tensors in batches: no Dataset, no DataLoader, no per-sample Python. After each epoch the
validation HR@10 and NDCG@10 come from full ranking with the user's training items masked; the
state kept is the best epoch on validation (never on test), and training stops after `patience`
epochs without a better one (`fit_select`). On large catalogues validation can cost more than
the epoch: `valid_users` ranks a fixed, seeded sample of the validation users instead of all of
them (its standard errors go into the curve), and `valid_every` validates every N-th epoch only
(docs/scale.md says what each costs and risks); the defaults validate every user every epoch.
`fit_epochs` instead trains a fixed number of epochs without validation: the refit on training +
validation data (protocol.py). Both set up a `TrainLoop` and train each epoch with its `train`,
which shows the epoch's progress with the time left (progress.py), as validation does.

Data-parallel (distributed.py): rank r of R trains on positives r, r + R, r + 2R, ... with its
own negatives and batches of batch_size / R, so that one optimiser step sees the same global
batch as one process would; DistributedDataParallel averages the gradients, every rank takes
the same number of steps, and only rank 0 validates (its decision is broadcast).
"""

from __future__ import annotations

import copy
import math
import sys
import time
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from ncf.distributed import World
from ncf.errors import TrainingError
from ncf.evaluate import ItemMask, rank_held_out
from ncf.metrics import hit_rate, ndcg, standard_errors
from ncf.progress import line_mode, progress
from ncf.sampling import NegativeSampler

# A mean log loss this high is divergence, not learning: a model that knows nothing scores
# log 2 = 0.69, and the L2 term of a sane model is a fraction of that. Stop rather than save it.
DIVERGED_LOSS = 100.0

SELECT_K = 10  # early stopping and model selection use validation HR@10, then NDCG@10


def epoch_generator(seed: int, epoch: int, rank: int, device) -> torch.Generator:
    """The generator of one rank's negatives and shuffling in one epoch: seeded by all three."""
    state = int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1)[0])
    return torch.Generator(device=device).manual_seed(state)


@dataclass
class TrainData:
    """The training interactions and the validation items, ready on one device."""

    users: torch.Tensor
    items: torch.Tensor
    num_users: int
    num_items: int
    valid_users: np.ndarray
    valid_items: np.ndarray

    @cached_property
    def mask(self) -> ItemMask:
        """The training items, excluded when ranking the validation item; built on first use only."""
        return ItemMask(self.users.cpu().numpy(), self.items.cpu().numpy(), self.num_users,
                        device=self.users.device)

    @classmethod
    def from_frames(cls, train: pd.DataFrame, valid: pd.DataFrame, num_users: int, num_items: int,
                    device="cpu") -> TrainData:
        users = train["user"].to_numpy(np.int64, copy=True)  # parquet arrays are read-only
        items = train["item"].to_numpy(np.int64, copy=True)
        return cls(
            users=torch.as_tensor(users, device=device),
            items=torch.as_tensor(items, device=device),
            num_users=num_users,
            num_items=num_items,
            valid_users=valid["user"].to_numpy(np.int64),
            valid_items=valid["item"].to_numpy(np.int64),
        )

    def with_validation(self) -> TrainData:
        """Training and validation interactions together, with nothing left to validate on."""
        device = self.users.device
        users = torch.cat([self.users, torch.as_tensor(self.valid_users.copy(), device=device)])
        items = torch.cat([self.items, torch.as_tensor(self.valid_items.copy(), device=device)])
        none = np.zeros(0, np.int64)
        return TrainData(users=users, items=items, num_users=self.num_users, num_items=self.num_items,
                         valid_users=none, valid_items=none)


@dataclass
class FitResult:
    best_epoch: int
    best_valid: dict[str, float]
    epochs_run: int
    state_dict: dict
    history: list[dict] = field(default_factory=list)

    def history_frame(self) -> pd.DataFrame:
        columns = ["epoch", "loss", "valid_hr10", "valid_ndcg10"]
        if any("valid_hr10_se" in row for row in self.history):  # a sample of the validation users
            columns += ["valid_hr10_se", "valid_ndcg10_se"]
        return pd.DataFrame(self.history, columns=columns)


def validation_sample(data: TrainData, size: int, seed: int) -> np.ndarray | None:
    """Positions in `data.valid_users` of a fixed sample of `size` of them (sorted), drawn from
    `seed`; None (every validation user) when `size` is 0 or not below their number."""
    if size <= 0 or size >= len(data.valid_users):
        return None
    return np.sort(np.random.default_rng(seed).choice(len(data.valid_users), size=size, replace=False))


def validate(model, data: TrainData, chunk_users: int, device, sample: np.ndarray | None = None,
             desc: str = "validation") -> dict[str, float]:
    """Validation HR@10 and NDCG@10 by full ranking; over `sample` (positions in data.valid_users)
    when given, then with their standard errors over the sampled users (`hr@10_se`, `ndcg@10_se`)."""
    users, items = data.valid_users, data.valid_items
    if sample is not None:
        users, items = users[sample], items[sample]
    model.eval()
    ranks = rank_held_out(model.score_all, users, items, data.mask, chunk_users=chunk_users, device=device,
                          desc=desc)
    model.train()
    out = {"hr@10": hit_rate(ranks, SELECT_K), "ndcg@10": ndcg(ranks, SELECT_K)}
    if sample is not None:
        errors = standard_errors(ranks, SELECT_K)
        out.update({"hr@10_se": errors[f"hr@{SELECT_K}_se"], "ndcg@10_se": errors[f"ndcg@{SELECT_K}_se"]})
    return out


def make_optimizer(name: str, params, lr: float) -> torch.optim.Optimizer:
    if name == "adam":
        # The fused kernel is several times faster than the per-tensor loop on CPU and GPU.
        return torch.optim.Adam(params, lr=lr, fused=True)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    raise ValueError(f"unknown optimizer {name!r}")


def epoch_samples(pos_users: torch.Tensor, pos_items: torch.Tensor, sampler: NegativeSampler,
                  num_negatives: int, generator: torch.Generator):
    """Positives and freshly drawn negatives of one epoch, shuffled: (users, items, labels)."""
    n = len(pos_users)
    negatives = sampler.sample(pos_users, num_negatives, generator)
    users = torch.cat([pos_users, pos_users.repeat_interleave(num_negatives)])
    items = torch.cat([pos_items, negatives.reshape(-1)])
    labels = torch.zeros(len(users), device=users.device)
    labels[:n] = 1.0
    order = torch.randperm(len(users), generator=generator, device=users.device)
    return users[order], items[order], labels[order]


# Most samples (positives + negatives) held at once: an epoch bigger than this is drawn and shuffled
# a chunk at a time, so training memory is bounded by the chunk, not by the epoch (25 M ratings
# x 9 samples would be about 5 GB of index tensors, held twice while shuffling).
CHUNK_SAMPLES = 1 << 22


def epoch_chunks(samples: int) -> int:
    """How many chunks an epoch of `samples` samples is cut into (at least one)."""
    return max(1, -(-samples // CHUNK_SAMPLES))


def sample_epoch(pos_users: torch.Tensor, pos_items: torch.Tensor, sampler: NegativeSampler,
                 num_negatives: int, generator: torch.Generator, chunks: int = 1):
    """One epoch's samples as `chunks` shuffled pieces of (users, items, labels).

    The positives are put in a random order and cut into `chunks` near-equal runs; each run gets
    its fresh negatives and is shuffled together with them. Every positive appears once with
    `num_negatives` negatives drawn as in `epoch_samples`; only the shuffle is two-level.
    """
    n = len(pos_users)
    if chunks == 1:
        yield epoch_samples(pos_users, pos_items, sampler, num_negatives, generator)
        return
    order = torch.randperm(n, generator=generator, device=pos_users.device)
    for k in range(chunks):
        run = order[n * k // chunks:n * (k + 1) // chunks]
        yield epoch_samples(pos_users[run], pos_items[run], sampler, num_negatives, generator)


def train_epoch(model, opt, users, items, labels, *, batch_size: int, l2: float,
                steps: int | None = None) -> float:
    """One pass over prepared (users, items, labels) tensors; returns the mean loss.

    The samples are cut into `steps` batches of near-equal size, at most `batch_size` each
    (by default as few as that allows); data-parallel ranks pass the same `steps`.
    """
    total = torch.zeros((), device=users.device)
    steps = steps or -(-len(users) // batch_size)
    bounds = [len(users) * k // steps for k in range(steps + 1)]
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        u, i, y = users[lo:hi], items[lo:hi], labels[lo:hi]
        reg = [] if l2 else None
        loss = F.binary_cross_entropy_with_logits(model(u, i, reg), y)
        if l2:
            loss = loss + l2 * sum(reg) / len(u)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += loss.detach() * len(u)
    return float(total) / max(len(users), 1)


def run_epoch(model, opt, pos_users: torch.Tensor, pos_items: torch.Tensor, sampler: NegativeSampler, *,
              num_negatives: int, generator: torch.Generator, batch_size: int, l2: float,
              chunks: int | None = None, steps: int | None = None, bar=None) -> tuple[float, int]:
    """Train one epoch on the positives with fresh negatives: (summed loss, samples seen).

    The epoch is drawn `chunks` pieces at a time (by default as few as CHUNK_SAMPLES allows),
    each cut into `steps` batches (by default as few as `batch_size` allows). `bar`, a progress
    display (progress.py), advances by each chunk's samples.
    """
    chunks = chunks or epoch_chunks(len(pos_users) * (1 + num_negatives))
    total, count = 0.0, 0
    for users, items, labels in sample_epoch(pos_users, pos_items, sampler, num_negatives, generator, chunks):
        loss = train_epoch(model, opt, users, items, labels, batch_size=batch_size, l2=l2, steps=steps)
        total, count = total + loss * len(users), count + len(users)
        if bar is not None:
            bar.update(len(users))
    return total, count


def snapshot(model: torch.nn.Module) -> dict:
    """A copy of the model's state on the CPU, untouched by further training."""
    return copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})


class TrainLoop:
    """One training run's shared parts, and one epoch of it (`train`).

    Puts the model on `device` in training mode (wrapped in DistributedDataParallel when
    data-parallel), makes the optimiser and the negative sampler, and takes this rank's shard of
    the positives, cut into the same number of chunks and steps per chunk on every rank (DDP
    steps together). `batch_size` is the global batch: each rank steps through batch_size / size.
    Progress goes to a bar on a terminal, else one log line an epoch; only rank 0 speaks.
    """

    def __init__(self, model: torch.nn.Module, data: TrainData, *, name: str, num_negatives: int,
                 batch_size: int, optimizer: str, lr: float, l2: float, seed: int, device,
                 world: World = World(), log=None):
        log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.log = log if world.main else (lambda msg: None)  # rank 0 speaks for all
        self.name, self.num_negatives, self.lr, self.l2, self.seed, self.world = \
            name, num_negatives, lr, l2, seed, world
        self.device = device = torch.device(device)
        model.to(device).train()
        self.net = model
        if world.size > 1:
            self.net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        self.opt = make_optimizer(optimizer, model.parameters(), lr)
        self.sampler = NegativeSampler(data.users, data.items, data.num_items)
        self.users, self.items = data.users[world.rank::world.size], data.items[world.rank::world.size]
        largest_shard = -(-len(data.users) // world.size)
        self.local_batch = batch_size // world.size
        self.chunks = epoch_chunks(largest_shard * (1 + num_negatives))
        per_chunk = -(-largest_shard // self.chunks)
        self.steps = max(1, -(-per_chunk * (1 + num_negatives) // self.local_batch))

    def train(self, epoch: int, what: str | None = None) -> float:
        """Train epoch `epoch` (numbered from 1) on this rank's shard; the mean loss over all ranks.
        `what` names the run in the progress display (default: the model's name).

        A loss that is not finite, or above DIVERGED_LOSS, raises TrainingError naming the params.
        """
        generator = epoch_generator(self.seed, epoch, self.world.rank, self.device)
        with progress(desc=f"{what or self.name} epoch {epoch}", total=len(self.users) * (1 + self.num_negatives),
                      unit="samples", enabled=self.world.main) as bar:
            local = run_epoch(self.net, self.opt, self.users, self.items, self.sampler,
                              num_negatives=self.num_negatives, generator=generator, batch_size=self.local_batch,
                              l2=self.l2, chunks=self.chunks, steps=self.steps, bar=bar)
        total, count = self.world.sum(list(local), self.device)
        mean_loss = total / max(count, 1)
        if not math.isfinite(mean_loss) or mean_loss > DIVERGED_LOSS:
            shown = mean_loss if not math.isfinite(mean_loss) else f"{mean_loss:.3g} (diverged: above {DIVERGED_LOSS})"
            raise TrainingError(
                f"{self.name}: the training loss became {shown} in epoch {epoch}; "
                f"lower {self.name}.lr (now {self.lr}) or raise {self.name}.l2 (now {self.l2})"
            )
        return mean_loss

    def epochs(self, what: str, count: int) -> tqdm:
        """Epochs 1 .. `count`, with a progress bar titled `what` (on rank 0, on a terminal)."""
        return tqdm(range(1, count + 1), desc=what, unit="epoch", file=sys.stderr,
                    disable=None if self.world.main and not line_mode() else True)

    def report(self, bar: tqdm, what: str, epoch: int, summary: str) -> None:
        """Show one epoch's summary: on the bar, or as a log line when there is no bar."""
        if bar.disable:
            self.log(f"[{what}] epoch {epoch}: {summary}")
        else:
            bar.set_postfix_str(summary)


def validate_everywhere(model, data: TrainData, chunk_users: int, device, world: World,
                        sample: np.ndarray | None = None, desc: str = "validation") -> dict[str, float]:
    """Validation HR@10 and NDCG@10 (and their standard errors with a `sample`), computed on rank 0
    and broadcast to every rank."""
    keys = ["hr@10", "ndcg@10"] + (["hr@10_se", "ndcg@10_se"] if sample is not None else [])
    mine = validate(model, data, chunk_users, device, sample, desc) if world.main else {}
    values = world.from_main([mine[k] for k in keys] if world.main else [0.0] * len(keys), device)
    return dict(zip(keys, values))


def history_row(epoch: int, loss: float | None, valid: dict[str, float] | None = None) -> dict:
    valid = valid or {}
    row = {"epoch": epoch, "loss": loss, "valid_hr10": valid.get("hr@10"), "valid_ndcg10": valid.get("ndcg@10")}
    if "hr@10_se" in valid:
        row.update(valid_hr10_se=valid["hr@10_se"], valid_ndcg10_se=valid["ndcg@10_se"])
    return row


def fit_select(
    model: torch.nn.Module,
    data: TrainData,
    *,
    name: str,
    num_negatives: int,
    batch_size: int,
    max_epochs: int,
    patience: int,
    optimizer: str,
    lr: float,
    l2: float,
    seed: int,
    device,
    chunk_users: int = 1024,
    validate_initial: bool = False,
    valid_users: int = 0,
    valid_every: int = 1,
    valid_seed: int = 0,
    world: World = World(),
    log=None,
) -> FitResult:
    """Train `model` in place with early stopping; return the best epoch's state.

    Epochs are compared by validation HR@10, then NDCG@10; training stops after `patience`
    epochs without a better one, or after `max_epochs`. With `validate_initial`, the untrained
    state counts as epoch 0 (used for NeuMF after the pretraining fusion, which may already be
    the best model). `batch_size` is the global batch (see TrainLoop).
    `valid_users` above 0 validates on that many validation users, drawn once from `valid_seed`
    (`validation_sample`), and writes their standard errors into the history; `valid_every` N
    validates only epochs N, 2N, ... and the last one: only those can be chosen or stop training.
    """
    loop = TrainLoop(model, data, name=name, num_negatives=num_negatives, batch_size=batch_size,
                     optimizer=optimizer, lr=lr, l2=l2, seed=seed, device=device, world=world, log=log)
    sample = validation_sample(data, valid_users, valid_seed)
    if sample is not None:
        loop.log(f"[{name}] validating on {len(sample):,} of {len(data.valid_users):,} validation users "
                 f"(a fixed sample)")

    def check(epoch):
        return validate_everywhere(model, data, chunk_users, loop.device, world, sample,
                                   desc=f"{name} validation, epoch {epoch}")

    history: list[dict] = []
    best_key, best_epoch, best_state, best_valid = None, 0, None, {}
    if validate_initial:
        best_valid = check(0)
        history.append(history_row(0, None, best_valid))
        best_key, best_state = (best_valid["hr@10"], best_valid["ndcg@10"]), snapshot(model)
        loop.log(f"[{name}] epoch 0 (before training): valid hr@10 {best_valid['hr@10']:.4f}")

    bar = loop.epochs(name, max_epochs)
    epoch = 0
    for epoch in bar:
        start = time.perf_counter()
        mean_loss = loop.train(epoch)
        if epoch % valid_every and epoch != max_epochs:
            history.append(history_row(epoch, round(mean_loss, 6)))
            loop.report(bar, name, epoch, f"loss {mean_loss:.4f}  (not validated)  "
                                          f"{time.perf_counter() - start:.1f}s")
            continue
        valid = check(epoch)
        history.append(history_row(epoch, round(mean_loss, 6), valid))
        key = (valid["hr@10"], valid["ndcg@10"])
        improved = best_key is None or key > best_key
        if improved:
            best_key, best_epoch, best_valid, best_state = key, epoch, valid, snapshot(model)
        seconds = time.perf_counter() - start
        se = f" (se {valid['hr@10_se']:.4f})" if "hr@10_se" in valid else ""
        loop.report(bar, name, epoch, f"loss {mean_loss:.4f}  valid hr@10 {key[0]:.4f}{se} ndcg@10 {key[1]:.4f}"
                                      f"{'  *' if improved else ''}  {seconds:.1f}s")
        if epoch - best_epoch >= patience:
            break
    bar.close()
    loop.log(f"[{name}] best epoch {best_epoch} of {epoch}: valid hr@10 {best_valid['hr@10']:.4f} "
             f"ndcg@10 {best_valid['ndcg@10']:.4f}")
    return FitResult(best_epoch=best_epoch, best_valid=best_valid, epochs_run=epoch,
                     state_dict=best_state, history=history)


def fit_epochs(
    model: torch.nn.Module,
    data: TrainData,
    *,
    name: str,
    epochs: int,
    num_negatives: int,
    batch_size: int,
    optimizer: str,
    lr: float,
    l2: float,
    seed: int,
    device,
    world: World = World(),
    log=None,
) -> FitResult:
    """Train `model` in place for exactly `epochs` epochs, without validating; return its last state.

    The refit on training + validation data (protocol.py); 0 epochs return the initial state.
    """
    loop = TrainLoop(model, data, name=name, num_negatives=num_negatives, batch_size=batch_size,
                     optimizer=optimizer, lr=lr, l2=l2, seed=seed, device=device, world=world, log=log)
    what = f"{name} refit"
    history: list[dict] = []
    bar = loop.epochs(what, epochs)
    epoch = 0
    for epoch in bar:
        start = time.perf_counter()
        mean_loss = loop.train(epoch, what)
        history.append(history_row(epoch, round(mean_loss, 6)))
        loop.report(bar, what, epoch, f"loss {mean_loss:.4f}  {time.perf_counter() - start:.1f}s")
    bar.close()
    loop.log(f"[{what}] trained {epoch} epochs on {len(data.users):,} positives")
    return FitResult(best_epoch=epoch, best_valid={}, epochs_run=epoch, state_dict=snapshot(model),
                     history=history)
