"""Vectorised negative sampling from an explicit `torch.Generator`.

For every training positive (u, i), `num_negatives` items are drawn uniformly from the items u
has no training interaction with (rejection sampling over whole tensors: draw, find the draws
that hit a positive of their user, redraw only those). Nothing loops over samples in Python, and
everything stays on the device of the interaction tensors.
"""

from __future__ import annotations

import torch


class NegativeSampler:
    def __init__(self, users: torch.Tensor, items: torch.Tensor, num_items: int):
        self.num_items = int(num_items)
        keys = users.to(torch.int64) * self.num_items + items.to(torch.int64)
        self.keys = torch.unique(keys)  # sorted
        counts = torch.bincount(torch.div(self.keys, self.num_items, rounding_mode="floor"))
        full = torch.nonzero(counts >= self.num_items).flatten()
        if len(full):
            raise ValueError(
                f"user {int(full[0])} has interacted with every item; no negative can be drawn for them"
            )

    def is_positive(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        query = users.to(torch.int64) * self.num_items + items.to(torch.int64)
        idx = torch.searchsorted(self.keys, query).clamp_(max=len(self.keys) - 1)
        return self.keys[idx] == query

    def sample(self, users: torch.Tensor, num_negatives: int, generator: torch.Generator) -> torch.Tensor:
        """[len(users), num_negatives] items, none of them a training positive of its row's user."""
        users = users[:, None].expand(-1, num_negatives)
        negatives = torch.randint(self.num_items, users.shape, generator=generator,
                                  device=users.device)
        bad = self.is_positive(users, negatives)
        while bool(bad.any()):
            negatives[bad] = torch.randint(self.num_items, (int(bad.sum()),), generator=generator,
                                           device=users.device)
            bad[bad.clone()] = self.is_positive(users[bad], negatives[bad])
        return negatives
