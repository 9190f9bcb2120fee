"""What every stage script shares: argument parsing, one-line errors and log lines.

`run()` turns every user-facing error (bad params, unusable data or checkpoints, a diverging
loss) into one line on stderr and exit code 2, without a traceback; outputs are written
atomically, so nothing that was already there is half-overwritten. Nothing here loads torch,
so the data stages and `plot` start quickly and depend on none of the training code.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from ncf.errors import USER_ERRORS


def parser(doc: str) -> argparse.ArgumentParser:
    """An argument parser whose --help shows the stage script's docstring."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params", default="params.yaml", type=Path, help="params file (default: %(default)s)")
    return p


# Brings back every output of the last commit, byte for byte: git holds params, dvc.lock, the
# metrics and plot data; DVC's cache the models and data that dvc.lock names.
# From HEAD, not from git's index: the project's `core.autostage` stages dvc.lock after every
# successful `dvc repro`, and `git checkout --` alone would restore that run, not the commit.
# The paths leave git's index first (`rm --cached`: the files stay): `dvc exp run` can leave an
# index entry with HEAD's blob but the stat of a file that differs from it (same size, same
# second), and `git checkout HEAD --` then skips the file as up to date (issue 22).
_PATHS = "params.yaml dvc.lock metrics plots"
RESTORE = (f"git rm -rqf --cached --ignore-unmatch -- {_PATHS} && git checkout HEAD -- {_PATHS} "
           "&& dvc checkout")


def _speaks() -> bool:
    """Data-parallel ranks fail together, so one says why: rank 0, or, on several machines, the
    first process on the one DVC runs (whatever its rank; see ncf.distributed.writer_rank)."""
    if "DVC_STAGE" in os.environ and "LOCAL_RANK" in os.environ:
        return os.environ["LOCAL_RANK"] == "0"
    return os.environ.get("RANK", "0") == "0"


def _say_interrupted() -> None:
    if _speaks():
        print(f"interrupted: nothing was left half-written, but under DVC this stage's previous outputs "
              f"were removed before it ran; `dvc repro` finishes the run, or `{RESTORE}` "
              "goes back to the last commit's outputs", file=sys.stderr, flush=True)


def exit_interrupted(signum=None, frame=None):
    """Ctrl-C or SIGTERM before `run` took over: stages/_bootstrap.py routes them here, so a
    signal during the stage script's imports ends it with the one line, not a traceback."""
    _say_interrupted()
    os._exit(130)  # nothing is written yet; a KeyboardInterrupt here would unwind through torch's imports


def _catch(signum: int, handler) -> None:
    if signal.getsignal(signum) != signal.SIG_IGN:  # ignored by the parent (a background job): keep it so
        signal.signal(signum, handler)


def _interrupt(signum, frame):
    raise KeyboardInterrupt  # so that `output_file` removes its temp file on the way out


def _restore_hint() -> str:
    """Under DVC (which names the stage in DVC_STAGE) the stage's previous outputs were removed
    before it ran: say how to get them back. Not for validate, whose only output is a marker."""
    stage = os.environ.get("DVC_STAGE", "")
    if not stage or stage.split(":")[-1] == "validate":
        return ""
    return f"; DVC removed this stage's previous outputs: `{RESTORE}` brings back the last commit's"


def run(main: Callable[[], None]) -> None:
    _catch(signal.SIGINT, signal.default_int_handler)
    _catch(signal.SIGTERM, _interrupt)
    speaks = _speaks()
    try:
        main()
    except USER_ERRORS as exc:
        if speaks:
            print(f"error: {exc}{_restore_hint()}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        _say_interrupted()
        sys.exit(130)


def log(stage: str, msg: str) -> None:
    print(f"[{stage}] {msg}", file=sys.stderr, flush=True)


def import_meanwhile(module: str) -> None:
    """Start importing `module` on a thread and return at once: a stage that needs pandas only for
    its last step (the split) imports it (~0.3 s of Python) while its reads and sorts, which
    release the GIL, run. Importing it later waits for this import to end, as Python's import
    lock does for any two threads. Call it once the modules needed before that step are loaded, so
    the two threads never import the same module at the same time."""
    import importlib
    import threading

    threading.Thread(target=importlib.import_module, args=(module,), name=f"import {module}", daemon=True).start()


def reuse_freed_memory(arrow: bool = False) -> bool:
    """Keep the memory that numpy frees for the next array, instead of handing it back to the OS.

    The data stages allocate and free arrays of hundreds of MB one after another. glibc's malloc
    maps each of them apart and unmaps it when freed, so the next one is faulted in again page by
    page: at 20 M rows, ~0.5 s of system time in the split. Here large blocks come from the heap,
    whose free top is kept, on one arena for all threads (a helper thread's arena could not hold
    them). Freed memory stays counted in the process's memory until it ends, but is reused first,
    so the peak barely moves. Only where the C library has mallopt (glibc); elsewhere nothing
    changes (False). pyarrow's allocator is set apart, before pyarrow loads (MIMALLOC_PURGE_DELAY in
    ncf/__init__.py).

    With `arrow`, pyarrow allocates from that same heap too (its system pool, not mimalloc), so
    what Arrow frees numpy reuses and the other way round. The split gains (20 M rows: 2.15-2.33 s
    instead of 2.47-3.15 s, peak 1.6 GB instead of 2.2 GB, in four runs each side by side): the
    tables it reads are freed before numpy's arrays are made. The download does not (2.51-2.88 s
    against 2.26-3.12 s): its CSV table lives while its arrays are made."""
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    M_TRIM_THRESHOLD, M_MMAP_MAX, M_ARENA_MAX = -1, -4, -8
    ok = all([mallopt(option, value) == 1  # mallopt: 1 on success
              for option, value in ((M_ARENA_MAX, 1), (M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, 2**31 - 1))])
    if ok and arrow:  # read once, when pyarrow loads (pa.set_memory_pool would miss the C++ readers)
        if "pyarrow" in sys.modules:
            raise RuntimeError("reuse_freed_memory(arrow=True) must be called before pyarrow is imported")
        os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
    return ok
