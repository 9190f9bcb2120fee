"""ncf.progress: a bar on a terminal, plain lines with the time left in logs and under CI."""

from __future__ import annotations

import io

import pytest

from ncf import progress as prog


class Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize(("ci", "stream", "lines"), [
    ("", Terminal(), False), ("true", Terminal(), True), ("1", Terminal(), True), ("false", Terminal(), False),
    ("", io.StringIO(), True),
])
def test_lines_under_ci_or_without_a_terminal_else_a_bar(monkeypatch, ci, stream, lines):
    monkeypatch.setenv("CI", ci)
    assert prog.line_mode(stream) is lines


def test_long_work_in_a_log_gets_plain_lines_with_the_time_left(monkeypatch):
    monkeypatch.setattr(prog, "LINE_INTERVAL_S", 0.0)  # as if every step took longer than the interval
    out = io.StringIO()
    for _ in prog.progress(range(6), desc="mlp validation", unit="users", stream=out):
        pass
    text = out.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert len(lines) == 6  # one per step, the last one not repeated
    assert all(line.startswith("[ncf] mlp validation: ") and "left" in line for line in lines)
    assert lines[-1].startswith("[ncf] mlp validation: 6/6 users (100%)")


def test_short_work_in_a_log_prints_nothing():
    out = io.StringIO()
    bar = prog.progress(desc="quick", total=100, stream=out)
    bar.update(100)
    bar.close()
    assert out.getvalue() == ""


def test_disabled_progress_prints_nothing_anywhere():
    out = Terminal()
    for _ in prog.progress(range(3), desc="x", enabled=False, stream=out):
        pass
    assert out.getvalue() == ""
