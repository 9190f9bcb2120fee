"""Make a stage run this checkout's `ncf` code with the project's Python.

DVC runs `python stages/<stage>.py` with whatever `python` is first on PATH, and queued
experiments run in a copy of the repository under `.dvc/tmp/exps/`. So each stage puts its own
checkout's `src/` first on the import path and re-executes itself with the nearest
`.venv/bin/python` above it whenever it runs under another Python (a conda or system Python
may have torch, but not the pinned versions). Before anything heavy loads, Ctrl-C is made to
end the stage with ncf.stage's one line (what was lost, how to get it back), not a traceback
from inside torch's imports.
"""

import os
import signal
import sys


_signalled = []


def _interrupted(signum, frame):
    stage = sys.modules.get("ncf.stage")
    if stage is None or not hasattr(stage, "exit_interrupted"):  # still loading (below): it says so when done
        _signalled.append(signum)
        return
    stage.exit_interrupted()


# First, before any other import: from here on a Ctrl-C or SIGTERM ends the stage with ncf.stage's
# one line (what was lost, how to get it back); ncf.stage.run takes over after the imports.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src"))
for _signum in (signal.SIGINT, signal.SIGTERM):
    if signal.getsignal(_signum) != signal.SIG_IGN:  # ignored by the parent (a background job): keep it so
        signal.signal(_signum, _interrupted)

# The standard library only; importing it runs ncf/__init__.py, which sets how torch computes on
# the CPU and so must come before torch loads.
from ncf.stage import exit_interrupted  # noqa: E402

if _signalled:
    exit_interrupted()

import importlib.util  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

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
