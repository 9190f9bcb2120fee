"""Top-K recommendations a person can read: unseen movies by score, with title, year and genres."""

from __future__ import annotations

import pandas as pd
import torch


@torch.no_grad()
def top_k(model, user: int, exclude: list[int], k: int) -> tuple[list[int], list[float]]:
    """The k best-scored items for `user` (contiguous id) that are not in `exclude`."""
    scores = model.score_all(torch.tensor([user]))[0].float()
    if exclude:
        scores[torch.tensor(exclude)] = -torch.inf
    top = torch.topk(scores, min(k, int(torch.isfinite(scores).sum())))
    return top.indices.tolist(), top.values.tolist()


def describe(movie) -> str:
    """'Fargo (1996) - Crime, Drama, Thriller' from a row of data/catalog.parquet."""
    year = "" if pd.isna(movie.get("year")) else f" ({int(movie['year'])})"
    genres = str(movie.get("genres") or "").replace("|", ", ")
    return f"{movie.get('title')}{year}" + (f" - {genres}" if genres else "")
