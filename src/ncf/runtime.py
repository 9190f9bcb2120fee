"""How torch computes for a stage: threads, device, and the seeds each stage derives.

`setup(params)` applies the params that decide how torch computes (the number of CPU threads)
and resolves the device; `stage_seed` gives each stage a seed of its own from the global one.
The CPU kernels themselves are pinned when `ncf` is imported (see ncf/__init__.py).
"""

from __future__ import annotations

import os
import zlib

import numpy as np
import torch

from ncf.config import Params
from ncf.errors import ParamsError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ParamsError("device: cuda was asked for but no CUDA GPU is visible; set device: auto or cpu")
        # Same params, same GPU model -> same numbers (cuBLAS needs this set before its first call).
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    return torch.device(name)


def setup(params: Params) -> torch.device:
    """Use `params.threads` CPU threads and return the device `params.device` resolves to."""
    torch.set_num_threads(params.threads)
    return resolve_device(params.device)


def stage_seed(seed: int, stage: str) -> int:
    """A seed of its own for each stage, derived from the global one (stable across runs)."""
    return int(np.random.SeedSequence([seed, zlib.crc32(stage.encode())]).generate_state(1)[0])
