"""Make a stage run this checkout's `ncf` code with the project's Python.

DVC runs `python stages/<stage>.py` with whatever `python` is first on PATH, and queued
experiments run in a copy of the repository under `.dvc/tmp/exps/`. So each stage puts its own
checkout's `src/` first on the import path and re-executes itself with the nearest
`.venv/bin/python` above it whenever it runs under another Python (a conda or system Python
may have torch, but not the pinned versions).
"""

import importlib.util
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

_NEEDED = ("torch", "pandas", "pyarrow", "yaml", "tqdm", "matplotlib")


def _venv_python():
    for folder in (ROOT, *ROOT.parents):
        candidate = folder / ".venv" / "bin" / "python"
        if candidate.exists():
            return candidate
    return None


_venv = _venv_python()
if _venv is not None and Path(sys.prefix).resolve() != _venv.parent.parent.resolve() \
        and not os.environ.get("NCF_REEXEC"):
    os.environ["NCF_REEXEC"] = "1"
    os.execv(str(_venv), [str(_venv), *sys.argv])
if any(importlib.util.find_spec(name) is None for name in _NEEDED):
    print(f"error: {sys.executable} lacks the project's packages; run `make setup` "
          "(or `source .venv/bin/activate`) first", file=sys.stderr)
    sys.exit(2)

import ncf  # noqa: E402,F401  (before torch: sets how torch computes on the CPU, see ncf/__init__.py)
