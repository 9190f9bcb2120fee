"""Shared fixtures: tiny synthetic MovieLens data in the real file formats.

Nothing here touches real MovieLens data or the network. The synthetic release has 6 users and
12 movies with deliberately awkward content: non-contiguous ids, rows not sorted by user or time,
timestamp ties (one user's last three ratings share a timestamp), a user with only two ratings,
a latin-1 title ("Café (1995)"), a title with parentheses before the year, and an "unknown"
movie without a year.

Builders shared by several test files live here too: ml-100k zips with given files
(`SyntheticRelease.ml100k_zip`), split stage folders (`clustered_split`, `split_folder`) and a local
HTTP server (`http_server`).

Frame fixtures follow a snapshot pattern: the fixture keeps a deep copy of what it yields and
asserts after the test that the test (and the code it called) did not mutate the frame.
"""

from __future__ import annotations

import hashlib
import io
import threading
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import ncf  # noqa: F401  (first: sets how torch computes on the CPU before torch loads)
import numpy as np
import pandas as pd
import pytest

def pytest_collection_modifyitems(config, items):
    """The modules with the most end-to-end (`slow`) tests first, each module's tests in order.

    `make test` runs two pytest-xdist workers that take whole modules in this order
    (`--dist loadfile --no-loadscope-reorder`): the longest modules first, so the two end at about
    the same time rather than one running the last slow module alone while the other idles.
    """
    slow = Counter(item.module.__name__ for item in items if item.get_closest_marker("slow"))
    items.sort(key=lambda item: -slow[item.module.__name__])  # a stable sort keeps each module's order


# The 19 ml-100k genre flags in u.item order (from the release's u.genre). Written out here on
# purpose rather than imported, so the parser is checked against an independent copy.
GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
    "Sci-Fi", "Thriller", "War", "Western",
)

USER_IDS = (1, 2, 4, 7, 9, 10)  # MovieLens ids: not contiguous on purpose
# (item_id, title as in u.item, title without year, year or None, genres in u.genre order)
MOVIES = (
    (3, "Toy Story (1995)", "Toy Story", 1995, ("Animation", "Children's", "Comedy")),
    (5, "Café (1995)", "Café", 1995, ("Drama",)),
    (7, "Seven (Se7en) (1995)", "Seven (Se7en)", 1995, ("Crime", "Thriller")),
    (11, "unknown", "unknown", None, ("unknown",)),
    (13, "Blade Runner (1982)", "Blade Runner", 1982, ("Film-Noir", "Sci-Fi")),
    (17, "Casablanca (1942)", "Casablanca", 1942, ("Drama", "Romance", "War")),
    (19, "Fargo (1996)", "Fargo", 1996, ("Crime", "Drama", "Thriller")),
    (23, "Heat (1995)", "Heat", 1995, ("Action", "Crime", "Thriller")),
    (29, "Alien (1979)", "Alien", 1979, ("Action", "Horror", "Sci-Fi", "Thriller")),
    (31, "Unforgiven (1992)", "Unforgiven", 1992, ("Western",)),
    (37, "Vertigo (1958)", "Vertigo", 1958, ("Mystery", "Thriller")),
    (41, "Fantasia (1940)", "Fantasia", 1940, ("Animation", "Children's", "Musical")),
)


def _ratings_rows() -> list[tuple[int, int, int, int]]:
    """(user_id, item_id, rating, timestamp) in u.data row order (not sorted by anything)."""
    rng = np.random.default_rng(1234)
    item_ids = [m[0] for m in MOVIES]
    rows = []
    # user_id -> number of ratings; user 9 has only two (too short to hold out).
    counts = {1: 12, 2: 7, 4: 5, 7: 9, 9: 2, 10: 6}
    base = 880_000_000
    for u in USER_IDS:
        chosen = rng.choice(item_ids, size=counts[u], replace=False)
        # Timestamps with ties: consecutive pairs share a timestamp for user 7.
        for j, item in enumerate(chosen):
            ts = base + 1000 * u + (10 * (j // 2) if u == 7 else 10 * j)
            rows.append((u, int(item), int(rng.integers(1, 6)), ts))
    # User 4: the last three ratings share one timestamp (the tie-rule case of the split).
    last = max(r[3] for r in rows if r[0] == 4)
    u4 = [i for i, r in enumerate(rows) if r[0] == 4]
    for i in u4[-3:]:
        rows[i] = (rows[i][0], rows[i][1], rows[i][2], last)
    order = rng.permutation(len(rows))  # u.data is not sorted by user or by time
    return [rows[i] for i in order]


@dataclass(frozen=True)
class SyntheticRelease:
    """One synthetic MovieLens release, renderable in every format the project reads."""

    ratings_rows: list = field(default_factory=_ratings_rows)
    movies: tuple = MOVIES

    # --- canonical tables, built independently of ncf.movielens -------------------------

    def ratings(self) -> pd.DataFrame:
        arr = np.array(self.ratings_rows, dtype=np.int64)
        return pd.DataFrame({
            "user_id": arr[:, 0].astype(np.int32),
            "item_id": arr[:, 1].astype(np.int32),
            "rating": arr[:, 2].astype(np.float32),
            "timestamp": arr[:, 3].astype(np.int64),
        })

    def movies_frame(self) -> pd.DataFrame:
        return pd.DataFrame({
            "item_id": np.array([m[0] for m in self.movies], dtype=np.int32),
            "title": [m[2] for m in self.movies],
            "year": [float("nan") if m[3] is None else float(m[3]) for m in self.movies],
            "genres": ["|".join(m[4]) for m in self.movies],
        })

    # --- GroupLens ml-100k files ------------------------------------------------------------

    def u_data(self) -> bytes:
        return "".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in self.ratings_rows).encode("ascii")

    def u_item(self) -> bytes:
        lines = []
        for item_id, title, _, year, genres in self.movies:
            date = f"01-Jan-{year}" if year else ""
            url = f"http://us.imdb.com/M/title-exact?{title.replace(' ', '%20')}" if year else ""
            flags = "|".join("1" if g in genres else "0" for g in GENRES)
            lines.append(f"{item_id}|{title}|{date}||{url}|{flags}\n")
        return "".join(lines).encode("latin-1")

    @staticmethod
    def member(name: str) -> zipfile.ZipInfo:
        """A zip member dated once for all: `writestr(name, ...)` dates it now, so two builds of
        the same zip a second apart would differ, and so would their md5."""
        info = zipfile.ZipInfo(name, date_time=(1998, 4, 23, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        return info

    @staticmethod
    def ml100k_zip(u_data: bytes, u_item: bytes | None, extra: dict[str, bytes | str] | None = None) -> bytes:
        """A zip in GroupLens's ml-100k layout holding these files (no u.item when None), then `extra`
        (member name -> content), for tests that need a broken or unusual release."""
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(SyntheticRelease.member("ml-100k/u.data"), u_data)
            if u_item is not None:
                zf.writestr(SyntheticRelease.member("ml-100k/u.item"), u_item)
            for name, blob in (extra or {}).items():
                zf.writestr(SyntheticRelease.member(name), blob)
        return buf.getvalue()

    def grouplens_zip(self) -> bytes:
        return self.ml100k_zip(self.u_data(), self.u_item(),
                               {"ml-100k/README": "synthetic test data, not MovieLens\n"})

    # --- RecBole atomic files (as shipped in the recbole wheel) -----------------------------

    def recbole_inter(self) -> bytes:
        head = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
        body = "".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in self.ratings_rows)
        return (head + body).encode("utf-8")

    def recbole_item(self) -> bytes:
        head = "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
        body = "".join(
            f"{item_id}\t{plain}\t{year or ''}\t{' '.join(genres)}\n"
            for item_id, _, plain, year, genres in self.movies
        )
        return (head + body).encode("utf-8")

    WHEEL_INTER = "recbole/dataset_example/ml-100k/ml-100k.inter"
    WHEEL_ITEM = "recbole/dataset_example/ml-100k/ml-100k.item"

    def recbole_wheel(self) -> bytes:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, blob in (("recbole/__init__.py", ""), (self.WHEEL_INTER, self.recbole_inter()),
                               (self.WHEEL_ITEM, self.recbole_item()),
                               ("recbole-1.2.1.dist-info/METADATA", "Name: recbole\nVersion: 1.2.1\n")):
                zf.writestr(self.member(name), blob)
        return buf.getvalue()

    # --- facts used to configure a synthetic Release ----------------------------------------

    @property
    def num_ratings(self) -> int:
        return len(self.ratings_rows)

    @property
    def num_users(self) -> int:
        return len({r[0] for r in self.ratings_rows})

    @property
    def num_items(self) -> int:
        return len(self.movies)

    @staticmethod
    def md5(blob: bytes) -> str:
        return hashlib.md5(blob).hexdigest()

    @staticmethod
    def sha256(blob: bytes) -> str:
        return hashlib.sha256(blob).hexdigest()


@pytest.fixture(scope="session")
def synthetic() -> SyntheticRelease:
    return SyntheticRelease()


def _snapshot_fixture(frame: pd.DataFrame):
    """Yield `frame`; afterwards assert it is unchanged (values, dtypes, index, columns)."""
    before = frame.copy(deep=True)
    yield frame
    pd.testing.assert_frame_equal(frame, before, check_exact=True)


@pytest.fixture
def ratings(synthetic) -> pd.DataFrame:
    """Canonical ratings (user_id, item_id, rating, timestamp) in source row order; not mutated."""
    yield from _snapshot_fixture(synthetic.ratings())


@pytest.fixture
def movies(synthetic) -> pd.DataFrame:
    """Canonical movies (item_id, title, year, genres); not mutated."""
    yield from _snapshot_fixture(synthetic.movies_frame())


@pytest.fixture
def unchanged():
    """Register frames/arrays/tensors that must not be mutated by the test's code under test.

    `unchanged(obj)` returns obj; after the test each registered object is compared with a deep
    copy taken at registration time.
    """
    import copy

    import torch

    registered = []

    def register(obj):
        if isinstance(obj, (pd.DataFrame, pd.Series)):
            registered.append((obj, obj.copy(deep=True)))
        elif isinstance(obj, torch.Tensor):
            registered.append((obj, obj.detach().clone()))
        else:
            registered.append((obj, copy.deepcopy(obj)))
        return obj

    yield register
    for obj, before in registered:
        if isinstance(obj, pd.DataFrame):
            pd.testing.assert_frame_equal(obj, before, check_exact=True)
        elif isinstance(obj, pd.Series):
            pd.testing.assert_series_equal(obj, before, check_exact=True)
        elif isinstance(obj, torch.Tensor):
            torch.testing.assert_close(obj, before, rtol=0, atol=0, equal_nan=True,
                                       msg="tensor was mutated")
        else:
            np.testing.assert_array_equal(obj, before)


def write_clustered_split(folder, users: int, items: int, liked: int) -> None:
    """A split stage folder where users of cluster c like items i with i % 3 == c.

    Each user likes `liked` items of their cluster, in random order: all but the last two are
    training, then one validation and one test item. Models that learn rank well on it.
    """
    rng = np.random.default_rng(0)
    rows = {"train": [], "valid": [], "test": []}
    for user in range(users):
        chosen = rng.permutation([i for i in range(items) if i % 3 == user % 3])[:liked]
        rows["train"] += [(user, int(i)) for i in chosen[:-2]]
        rows["valid"].append((user, int(chosen[-2])))
        rows["test"].append((user, int(chosen[-1])))
    frames = {name: pd.DataFrame(pairs, columns=["user", "item"]) for name, pairs in rows.items()}
    write_split(folder, frames["train"], frames["valid"], frames["test"], users, items)


def write_split(folder, train: pd.DataFrame, valid: pd.DataFrame, test: pd.DataFrame, users: int,
                items: int) -> None:
    """A split stage folder with the five files the training stages read, for users 0..users-1 and
    items 0..items-1: train/valid/test hold (user, item) rows; users/items list the ids."""
    folder.mkdir(parents=True)
    for name, frame in (("train", train), ("valid", valid), ("test", test)):
        frame.to_parquet(folder / f"{name}.parquet")
    pd.DataFrame({"user": range(users)}).to_parquet(folder / "users.parquet")
    pd.DataFrame({"item": range(items)}).to_parquet(folder / "items.parquet")


@pytest.fixture
def clustered_split():
    return write_clustered_split


@pytest.fixture
def split_folder():
    """`write_split`: a split folder from the test's own (user, item) frames."""
    return write_split


# --- a local HTTP server -------------------------------------------------------------------------

class Server:
    """A local HTTP server on 127.0.0.1: routes map a path to (status, content type, body); every
    GET path is recorded in `requests`; an unknown path is a 404."""

    def __init__(self):
        self.routes: dict[str, tuple[int, str, bytes]] = {}
        self.requests: list[str] = []
        routes, requests = self.routes, self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                requests.append(self.path)
                status, ctype, body = routes.get(self.path, (404, "text/plain", b"not found"))
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}{path}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def http_server():
    srv = Server()
    yield srv
    srv.close()
