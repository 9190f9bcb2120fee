"""Environments for the subprocesses the benchmarks start (and the end-to-end tests share)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # the checkout that holds benchmarks/


def dvc_env(name: str, email: str) -> dict[str, str]:
    """os.environ for running `dvc` and `git` in a throwaway repository: this interpreter's folder
    first on PATH (so `dvc` and the stages' `python` are this venv's), DVC's analytics off, and a
    git identity for the commits that `dvc exp` makes."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email,
            "GIT_COMMITTER_NAME": name, "GIT_COMMITTER_EMAIL": email}


def module_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """`base` (default os.environ) with this checkout first on PYTHONPATH, so that `python -m
    benchmarks.<name>` finds the benchmarks from any working folder (they are not installed with
    the package)."""
    base = os.environ if base is None else base
    paths = [str(ROOT), *filter(None, base.get("PYTHONPATH", "").split(os.pathsep))]
    return {**base, "PYTHONPATH": os.pathsep.join(paths)}
