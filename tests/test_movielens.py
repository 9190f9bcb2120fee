"""ncf.movielens: parsers for both layouts, and `load_release` over every source.

Only synthetic data in the real file layouts (see conftest.py). The grouplens source talks to a
local `http.server` on 127.0.0.1; the pypi source runs a fake `pip download`. No network.
"""

from __future__ import annotations

import contextlib
import io
import re
import socket
import subprocess
import tempfile
import threading
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import ncf.movielens as ml
from ncf.movielens import (
    DataError,
    Release,
    Sizes,
    WheelSource,
    load_release,
    parse_ml100k_zip,
    parse_recbole,
)

NAME = "ml-synth"


# --- helpers and fixtures ------------------------------------------------------------------------

def expect_movies(got: pd.DataFrame, want: pd.DataFrame) -> None:
    """Canonical movies compared value by value (the year as a number, NaN/NA when unknown)."""
    assert list(got.columns) == ["item_id", "title", "year", "genres"]
    assert got["item_id"].dtype == np.int64
    assert got["item_id"].tolist() == want["item_id"].tolist()
    assert got["title"].tolist() == want["title"].tolist()
    assert got["genres"].tolist() == want["genres"].tolist()
    assert pd.api.types.is_numeric_dtype(got["year"])
    got_year = pd.to_numeric(got["year"]).astype("float64").to_numpy()
    np.testing.assert_array_equal(got_year, want["year"].to_numpy(dtype="float64"))


def expect_ratings(got: pd.DataFrame, want: pd.DataFrame) -> None:
    """What a parser returns: want's columns and types."""
    pd.testing.assert_frame_equal(got.reset_index(drop=True), want, check_exact=True)


def expect_interactions(got: pa.Table, want: pd.DataFrame) -> None:
    """What load_release returns: the canonical interactions (ncf.interactions) of want's ratings."""
    got = got.to_pandas()
    assert list(got.columns) == ["user_id", "item_id", "timestamp", "rating"]
    assert [got[c].dtype for c in got.columns] == [np.int64, np.int64, np.int64, np.float64]
    for col in got.columns:
        np.testing.assert_array_equal(got[col].to_numpy(), want[col].to_numpy())


@pytest.fixture(autouse=True)
def offline_and_private_tmp(monkeypatch, tmp_path):
    """No proxy may turn 127.0.0.1 into a network request; temp dirs go to a private folder
    (so `tempfile.gettempdir()` shows exactly what these tests left behind)."""
    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    private = tmp_path / "systmp"
    private.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private))
    yield
    leftovers = [p.name for p in Path(tempfile.gettempdir()).glob("ncf-download-*")]
    assert leftovers == [], f"load_release left temp dirs behind: {leftovers}"


_HELD = []


def closed_port() -> int:
    """A port nothing listens on: bound (so no other process can take it) but never listening,
    so a connection is refused at once. Released when the test session ends."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    _HELD.append(s)
    return s.getsockname()[1]


def make_release(synthetic, url: str, *, md5: str | None = None, sizes: Sizes | None = None,
                 wheel: WheelSource | None = None) -> Release:
    return Release(
        name=NAME,
        url=url,
        md5=md5 if md5 is not None else synthetic.md5(synthetic.grouplens_zip()),
        sizes=sizes or Sizes(synthetic.num_ratings, synthetic.num_users, synthetic.num_items),
        parse_zip=parse_ml100k_zip,
        wheel=wheel,
    )


@pytest.fixture
def register(monkeypatch):
    """Install a synthetic Release as the only known release."""

    def install(release: Release) -> Release:
        monkeypatch.setattr(ml, "RELEASES", {release.name: release})
        return release

    return install


@pytest.fixture
def zip_on_server(http_server, synthetic):
    http_server.routes["/ml-synth.zip"] = (200, "application/zip", synthetic.grouplens_zip())
    return http_server.url("/ml-synth.zip")


@pytest.fixture
def local_zip(tmp_path, synthetic) -> Path:
    path = tmp_path / "ml-synth.zip"
    path.write_bytes(synthetic.grouplens_zip())
    return path


class Log(list):
    def __call__(self, msg: str) -> None:
        assert "\n" not in msg
        self.append(msg)


# --- parsers -------------------------------------------------------------------------------------

def test_parse_ml100k_zip(synthetic):
    with zipfile.ZipFile(io.BytesIO(synthetic.grouplens_zip())) as zf:
        ratings, movies = parse_ml100k_zip(zf)
    expect_ratings(ratings, synthetic.ratings())
    expect_movies(movies, synthetic.movies_frame())
    # Spot checks on the awkward rows, against literal expectations.
    by_id = movies.set_index("item_id")
    assert by_id.loc[5, "title"] == "Café"  # latin-1 in u.item, decoded
    assert by_id.loc[7, "title"] == "Seven (Se7en)"  # only the final "(year)" is the year
    assert pd.isna(by_id.loc[11, "year"]) and by_id.loc[11, "title"] == "unknown"
    assert by_id.loc[11, "genres"] == "unknown"
    assert by_id.loc[3, "genres"] == "Animation|Children's|Comedy"
    assert by_id.loc[13, "year"] == 1982


def test_parse_recbole(synthetic):
    ratings, movies = parse_recbole(synthetic.recbole_inter(), synthetic.recbole_item())
    expect_ratings(ratings, synthetic.ratings())
    expect_movies(movies, synthetic.movies_frame())


def test_both_layouts_give_the_same_tables(synthetic):
    with zipfile.ZipFile(io.BytesIO(synthetic.grouplens_zip())) as zf:
        r1, m1 = parse_ml100k_zip(zf)
    r2, m2 = parse_recbole(synthetic.recbole_inter(), synthetic.recbole_item())
    pd.testing.assert_frame_equal(r1, r2, check_exact=True)
    pd.testing.assert_frame_equal(m1, m2, check_exact=True)


def test_row_order_is_the_files(synthetic):
    with zipfile.ZipFile(io.BytesIO(synthetic.grouplens_zip())) as zf:
        ratings, _ = parse_ml100k_zip(zf)
    rows = [(u, i, t) for u, i, _, t in synthetic.ratings_rows]
    assert list(zip(ratings["user_id"], ratings["item_id"], ratings["timestamp"])) == rows
    assert not ratings["timestamp"].is_monotonic_increasing  # the file is not time-sorted


def test_year_is_nullable_integer(synthetic):
    with zipfile.ZipFile(io.BytesIO(synthetic.grouplens_zip())) as zf:
        _, movies = parse_ml100k_zip(zf)
    assert movies["year"].dtype == "Int16"


def test_missing_member_is_a_data_error(synthetic):
    buf = io.BytesIO(synthetic.ml100k_zip(synthetic.u_data(), None))
    with zipfile.ZipFile(buf) as zf, pytest.raises(DataError, match="ml-100k/u.item"):
        parse_ml100k_zip(zf)


def test_recbole_missing_columns(synthetic):
    inter = b"user_id:token\titem_id:token\trating:float\n1\t2\t3\n"
    with pytest.raises(DataError, match="timestamp"):
        parse_recbole(inter, synthetic.recbole_item())


# --- load_release: grouplens ---------------------------------------------------------------------

def test_grouplens_with_right_checksum(http_server, zip_on_server, synthetic, register):
    register(make_release(synthetic, zip_on_server))
    log = Log()
    ratings, movies, source = load_release(NAME, ("grouplens", "local", "pypi"), verify=True,
                                           timeout_s=5, log=log)
    assert source == "grouplens"
    assert http_server.requests == ["/ml-synth.zip"]
    expect_interactions(ratings, synthetic.ratings())
    expect_movies(movies, synthetic.movies_frame())
    assert log == []


def test_grouplens_wrong_md5_refused_and_cleaned_up(http_server, zip_on_server, synthetic, register):
    register(make_release(synthetic, zip_on_server, md5="0" * 32))
    log = Log()
    with pytest.raises(DataError) as info:
        load_release(NAME, ("grouplens",), verify=True, timeout_s=5, log=log)
    msg = str(info.value)
    assert "\n" not in msg
    assert "grouplens" in msg and "md5" in msg and "0" * 32 in msg
    assert synthetic.md5(synthetic.grouplens_zip()) in msg  # what it got
    assert "data.local_zip" in msg
    # The download landed in a temp dir of its own, which is gone now.
    downloaded = Path(re.search(r"md5 of (\S+) is", msg).group(1))
    assert downloaded.parent.name.startswith("ncf-download-")
    assert Path(downloaded.parent).parent == Path(tempfile.gettempdir())
    assert not downloaded.parent.exists()
    assert len(log) == 1 and "trying the next source" in log[0]


def test_unreachable_url_falls_through_to_local(synthetic, register, local_zip):
    register(make_release(synthetic, f"http://127.0.0.1:{closed_port()}/x.zip"))
    log = Log()
    ratings, movies, source = load_release(NAME, ("grouplens", "local"), local_zip=str(local_zip),
                                           verify=True, timeout_s=5, log=log)
    assert source == "local"
    expect_interactions(ratings, synthetic.ratings())
    assert len(log) == 1 and log[0].startswith("grouplens: cannot fetch")


def test_html_answer_falls_through(http_server, synthetic, register, local_zip):
    page = b"<html><body>Please log in</body></html>"
    http_server.routes["/ml-synth.zip"] = (200, "text/html; charset=utf-8", page)
    register(make_release(synthetic, http_server.url("/ml-synth.zip")))
    log = Log()
    _, _, source = load_release(NAME, ("grouplens", "local"), local_zip=str(local_zip),
                                verify=True, timeout_s=5, log=log)
    assert source == "local"
    assert http_server.requests == ["/ml-synth.zip"]
    assert "web page" in log[0] and "text/html" in log[0]


def test_http_error_falls_through(http_server, synthetic, register, local_zip):
    register(make_release(synthetic, http_server.url("/missing.zip")))  # the server answers 404
    log = Log()
    _, _, source = load_release(NAME, ("grouplens", "local"), local_zip=str(local_zip),
                                timeout_s=5, log=log)
    assert source == "local"
    assert log[0].startswith("grouplens: cannot fetch")


def test_sources_are_tried_in_order(http_server, zip_on_server, synthetic, register, local_zip):
    register(make_release(synthetic, zip_on_server))
    _, _, source = load_release(NAME, ("local", "grouplens"), local_zip=str(local_zip), timeout_s=5,
                                log=Log())
    assert source == "local"
    assert http_server.requests == []  # never reached


# --- load_release: local --------------------------------------------------------------------------

def test_local_missing_path_names_the_param(tmp_path, synthetic, register):
    register(make_release(synthetic, f"http://127.0.0.1:{closed_port()}/x.zip"))
    with pytest.raises(DataError) as info:
        load_release(NAME, ("local",), local_zip=str(tmp_path / "nope.zip"), log=Log())
    assert "data.local_zip" in str(info.value) and "nope.zip" in str(info.value)
    with pytest.raises(DataError, match="data.local_zip"):
        load_release(NAME, ("local",), local_zip="", log=Log())


def test_local_wrong_md5(tmp_path, synthetic, register, local_zip):
    register(make_release(synthetic, "http://127.0.0.1:1/x.zip", md5="f" * 32))
    with pytest.raises(DataError, match=r"local: md5"):
        load_release(NAME, ("local",), local_zip=str(local_zip), verify=True, log=Log())
    # verify=False skips the checksum (for synthetic test data).
    _, _, source = load_release(NAME, ("local",), local_zip=str(local_zip), verify=False, log=Log())
    assert source == "local"


def test_local_corrupt_zip(tmp_path, synthetic, register):
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"PK\x03\x04 definitely not a zip")
    register(make_release(synthetic, "http://127.0.0.1:1/x.zip"))
    with pytest.raises(DataError, match="not a readable zip"):
        load_release(NAME, ("local",), local_zip=str(bad), verify=False, log=Log())


@pytest.mark.parametrize("field", ["ratings", "users", "items"])
def test_size_check(synthetic, register, local_zip, field):
    true_sizes = Sizes(synthetic.num_ratings, synthetic.num_users, synthetic.num_items)
    wrong = replace(true_sizes, **{field: getattr(true_sizes, field) + 1})
    register(make_release(synthetic, "http://127.0.0.1:1/x.zip", sizes=wrong))
    with pytest.raises(DataError) as info:
        load_release(NAME, ("local",), local_zip=str(local_zip), verify=True, log=Log())
    assert "expected" in str(info.value) and "local" in str(info.value)
    ratings, movies, source = load_release(NAME, ("local",), local_zip=str(local_zip), verify=False,
                                           log=Log())
    assert source == "local"
    expect_interactions(ratings, synthetic.ratings())


def test_every_source_failing_lists_them_all(synthetic, register, tmp_path):
    register(make_release(synthetic, f"http://127.0.0.1:{closed_port()}/x.zip", wheel=None))
    with pytest.raises(DataError) as info:
        load_release(NAME, ("grouplens", "local", "pypi"), local_zip=str(tmp_path / "no.zip"),
                     timeout_s=5, log=Log())
    msg = str(info.value)
    assert "\n" not in msg
    assert "tried grouplens, local, pypi" in msg
    for fragment in ("grouplens: cannot fetch", "local:", "pypi: no wheel"):
        assert fragment in msg


def test_unknown_dataset_and_source(synthetic, register, local_zip):
    register(make_release(synthetic, "http://127.0.0.1:1/x.zip"))
    with pytest.raises(DataError, match="ml-99k"):
        load_release("ml-99k", ("local",), log=Log())
    log = Log()
    _, _, source = load_release(NAME, ("ftp", "local"), local_zip=str(local_zip), log=log)
    assert source == "local" and "ftp: unknown source" in log[0]


# --- load_release: pypi (fake `pip download`) -----------------------------------------------------

@pytest.fixture
def fake_pip(monkeypatch, synthetic):
    """Replace subprocess.run inside ncf.movielens with a `pip download` that writes the wheel."""
    calls = []

    def run(cmd, *args, **kwargs):
        calls.append(list(cmd))
        folder = Path(cmd[cmd.index("-d") + 1])
        assert folder.is_dir()
        (folder / "recbole-1.2.1-py3-none-any.whl").write_bytes(synthetic.recbole_wheel())
        return subprocess.CompletedProcess(cmd, 0, stdout="", stderr="")

    monkeypatch.setattr(ml.subprocess, "run", run)
    return calls


def wheel_source(synthetic, *, inter_sha=None, item_sha=None) -> WheelSource:
    return WheelSource(
        requirement="recbole==1.2.1",
        inter=synthetic.WHEEL_INTER,
        inter_sha256=inter_sha or synthetic.sha256(synthetic.recbole_inter()),
        item=synthetic.WHEEL_ITEM,
        item_sha256=item_sha or synthetic.sha256(synthetic.recbole_item()),
    )


def test_pypi_with_right_sha256(fake_pip, synthetic, register):
    register(make_release(synthetic, "http://127.0.0.1:1/x.zip", wheel=wheel_source(synthetic)))
    ratings, movies, source = load_release(NAME, ("pypi",), verify=True, log=Log())
    assert source == "pypi"
    expect_interactions(ratings, synthetic.ratings())
    expect_movies(movies, synthetic.movies_frame())
    (cmd,) = fake_pip
    assert cmd[1:4] == ["-m", "pip", "download"] and "recbole==1.2.1" in cmd
    workdir = Path(cmd[cmd.index("-d") + 1])
    assert workdir.name.startswith("ncf-download-") and not workdir.exists()


@pytest.mark.parametrize("which", ["inter", "item"])
def test_pypi_with_wrong_sha256(fake_pip, synthetic, register, which):
    bad = {f"{which}_sha": "a" * 64}
    register(make_release(synthetic, "http://127.0.0.1:1/x.zip", wheel=wheel_source(synthetic, **bad)))
    with pytest.raises(DataError) as info:
        load_release(NAME, ("pypi",), verify=True, log=Log())
    msg = str(info.value)
    assert "pypi: sha256" in msg and "a" * 64 in msg
    assert (synthetic.WHEEL_INTER if which == "inter" else synthetic.WHEEL_ITEM) in msg


def test_pypi_pip_failure(monkeypatch, synthetic, register):
    def run(cmd, *args, **kwargs):
        return subprocess.CompletedProcess(cmd, 1, stdout="",
                                           stderr="Looking in indexes\nERROR: No matching distribution\n")

    monkeypatch.setattr(ml.subprocess, "run", run)
    register(make_release(synthetic, "http://127.0.0.1:1/x.zip", wheel=wheel_source(synthetic)))
    with pytest.raises(DataError, match="ERROR: No matching distribution"):
        load_release(NAME, ("pypi",), log=Log())


# --- malformed sources must fall through, not crash ----------------------------------------------

def test_wheel_with_malformed_item_file_falls_through(monkeypatch, synthetic, register, local_zip):
    broken_item = b"item_id:token\tmovie_title:token_seq\tclass:token_seq\n3\tToy Story\tComedy\n"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(synthetic.WHEEL_INTER, synthetic.recbole_inter())
        zf.writestr(synthetic.WHEEL_ITEM, broken_item)

    def run(cmd, *args, **kwargs):
        folder = Path(cmd[cmd.index("-d") + 1])
        (folder / "recbole-1.2.1-py3-none-any.whl").write_bytes(buf.getvalue())
        return subprocess.CompletedProcess(cmd, 0, stdout="", stderr="")

    monkeypatch.setattr(ml.subprocess, "run", run)
    register(make_release(synthetic, "http://127.0.0.1:1/x.zip", wheel=wheel_source(synthetic)))
    log = Log()
    _, _, source = load_release(NAME, ("pypi", "local"), local_zip=str(local_zip), verify=False, log=log)
    assert source == "local"
    assert log and log[0].startswith("pypi:")


@pytest.fixture
def not_http_server():
    """A TCP server on 127.0.0.1 that answers every connection with a line that is not HTTP."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    sock.settimeout(0.2)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2)
                with contextlib.suppress(OSError):
                    conn.recv(65536)
                    conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/x.zip"
    stop.set()
    thread.join(timeout=5)
    sock.close()


def test_non_http_answer_falls_through(not_http_server, synthetic, register, local_zip):
    register(make_release(synthetic, not_http_server))
    log = Log()
    _, _, source = load_release(NAME, ("grouplens", "local"), local_zip=str(local_zip), timeout_s=5,
                                log=log)
    assert source == "local"
    assert log[0].startswith("grouplens:")
