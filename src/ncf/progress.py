"""Progress of long work, with an estimate of the time left: a bar on a terminal, lines in logs.

`progress(iterable, desc, total, unit)` wraps a loop in tqdm. On a terminal (stderr is a TTY and
`CI` is not set) it is tqdm's bar, redrawn in place, shown only once the work has run for
`BAR_DELAY_S` (short loops stay silent). Elsewhere (`dvc repro` in CI, output piped to a file, or
`CI=true` on a terminal) a redrawn bar would fill the log with carriage returns, so each refresh
becomes one plain line, at most one every `LINE_INTERVAL_S` seconds, plus a last line at the end
when at least one was printed: work shorter than the interval prints nothing.
Both show done/total, the rate and tqdm's estimate of the time left.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable

from tqdm.auto import tqdm

BAR_DELAY_S = 2.0       # a bar appears only for work that has run this long
LINE_INTERVAL_S = 30.0  # at most one log line per this many seconds of one piece of work
# A log line: "[ncf] mlp validation, epoch 3: 5.12k/65.0k users (8%), 00:31 elapsed, about 05:59 left,  165users/s"
LINE_FORMAT = ("[ncf] {desc}: {n_fmt}/{total_fmt} {unit} ({percentage:.0f}%), {elapsed} elapsed, "
               "about {remaining} left, {rate_fmt}")


def line_mode(stream=None) -> bool:
    """True where a redrawn bar would be unreadable: not a terminal, or CI set (CI=true, CI=1)."""
    stream = stream or sys.stderr
    ci = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        tty = False
    return ci or not tty


class _Lines:
    """A file for tqdm that writes each redraw as one line (tqdm redraws with carriage returns)."""

    def __init__(self, stream):
        self.stream, self.printed = stream, 0

    def write(self, text: str) -> None:
        for part in text.replace("\n", "\r").split("\r"):
            if part.strip():
                self.stream.write(part.rstrip() + "\n")
                self.printed += 1

    def flush(self) -> None:
        self.stream.flush()


class _LineBar(tqdm):
    """tqdm that prints only after LINE_INTERVAL_S, and closes with a line only if it printed before."""

    def display(self, msg=None, pos=None):
        if self.n == 0 and msg is None:  # the initial 0% line: nothing has happened yet
            return True
        return super().display(msg, pos)

    def close(self):
        # getattr: a Ctrl-C inside tqdm's __init__ leaves an object without `disable`, which
        # __del__ then closes; an AttributeError there printed after the one-line message.
        if getattr(self, "disable", True):
            return
        if not self.fp.printed:  # short work: stay silent, and do not print the final state either
            self.disable = True
            return
        if self.last_print_n == self.n:
            self.leave = False  # the last line already says where it ended
        super().close()  # else tqdm's own last line: the final count and time


def progress(iterable: Iterable | None = None, desc: str = "", total: int | None = None, unit: str = "it",
             enabled: bool = True, stream=None) -> tqdm:
    """`iterable` wrapped in a progress display (see the module docstring); `enabled=False`: silent.

    Use it as tqdm: iterate it, or `update(n)` by hand, and `close()` (or `with`) at the end.
    """
    stream = stream or sys.stderr
    if not enabled:
        return tqdm(iterable, total=total, disable=True)
    big = (total or 0) >= 10_000  # 2.94M/8.83M samples; small counts stay whole numbers
    if line_mode(stream):
        return _LineBar(iterable, desc=desc, total=total, unit=unit, file=_Lines(stream), ascii=True,
                        mininterval=LINE_INTERVAL_S, maxinterval=LINE_INTERVAL_S, miniters=1,
                        bar_format=LINE_FORMAT if total or hasattr(iterable, "__len__") else None,
                        unit_scale=big, leave=True)
    return tqdm(iterable, desc=desc, total=total, unit=unit, file=stream, delay=BAR_DELAY_S, leave=False,
                dynamic_ncols=True, unit_scale=big)
