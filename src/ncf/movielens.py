"""MovieLens: where each release comes from, how it is checked, and how it is parsed.

Every source ends in the canonical tables of ncf.interactions, through the same checks as a
team's own file (`canonical_interactions`):
- interactions: user_id, item_id (MovieLens's own ids), timestamp, rating, in the source file's
  row order (the split's tie rule depends on that order);
- items: item_id, title, year, genres ('|'-joined).

Sources, tried in the order `data.sources` gives:
- grouplens: the release's zip from GroupLens, md5-checked;
- local: a copy of that zip on disk (`data.local_zip`), md5-checked;
- pypi: the RecBole 1.2.1 wheel, fetched with `pip download` (so whatever index pip is configured
  for answers); it ships ml-100k as RecBole atomic files. Both files are sha256-checked and read
  straight out of the wheel; RecBole is never installed or imported.

Archives are never extracted to disk: the expected members are read by exact name, so an entry
whose path points outside a folder (zip-slip) cannot write anywhere.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import re
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ncf.errors import DataError
from ncf.interactions import MOVIELENS_COLUMNS, canonical_interactions


# The 19 genre flags of ml-100k's u.item, in file order (from the release's u.genre).
GENRES_100K = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
    "Sci-Fi", "Thriller", "War", "Western",
)


@dataclass(frozen=True)
class Sizes:
    ratings: int
    users: int
    items: int


@dataclass(frozen=True)
class WheelSource:
    """A MovieLens copy shipped inside a wheel on the package index."""

    requirement: str
    inter: str
    inter_sha256: str
    item: str
    item_sha256: str


@dataclass(frozen=True)
class Release:
    name: str
    url: str
    md5: str | None  # None: read GroupLens's `<zip>.md5` file at download time
    sizes: Sizes | None  # None: a release updated in place, with no fixed size
    parse_zip: Callable[[zipfile.ZipFile], tuple[pd.DataFrame, pd.DataFrame]]
    wheel: WheelSource | None = None


# --- parsers -------------------------------------------------------------------------------

def _read_member(zf: zipfile.ZipFile, name: str) -> bytes:
    try:
        return zf.read(name)
    except KeyError:
        raise DataError(f"archive has no member {name!r}; is it really this MovieLens release?") from None


def _split_title(raw: pd.Series) -> tuple[pd.Series, pd.Series]:
    """'Toy Story (1995)' -> ('Toy Story', 1995); titles without a year keep year <NA>."""
    parts = raw.str.extract(r"^(?P<title>.*?)\s*\((?P<year>\d{4})\)\s*$")
    title = parts["title"].fillna(raw.str.strip())
    year = pd.to_numeric(parts["year"], errors="coerce").astype("Int16")
    return title, year


RATING_COLUMNS = ("user_id", "item_id", "rating", "timestamp")


def _numeric_ratings(df: pd.DataFrame, name: str, first_line: int) -> pd.DataFrame:
    """Strings -> numbers, refusing (DataError naming file, line and value) anything else.

    Policy: a ratings file with a malformed line is refused as a whole; the source is then
    considered broken and the next source is tried. Published MovieLens files have none.
    """
    if df.empty:
        raise DataError(f"{name} holds no ratings")
    out = {}
    for col in RATING_COLUMNS:
        values = pd.to_numeric(df[col].str.strip(), errors="coerce")
        bad = values.isna().to_numpy()
        if col != "rating":  # ids and timestamps are whole numbers
            bad = bad | ~np.isclose(values.fillna(0).to_numpy(np.float64) % 1, 0)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DataError(f"{name} line {row + first_line}: {col} is {df[col].iloc[row]!r}, "
                            "not a number; the file is corrupt, fetch it again")
        out[col] = values
    return pd.DataFrame(out)


def _ratings_frame(df: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "user_id": df["user_id"].astype("int32"),
        "item_id": df["item_id"].astype("int32"),
        "rating": df["rating"].astype("float32"),
        "timestamp": df["timestamp"].astype("int64"),
    })


def parse_ratings(blob: bytes, name: str, sep: str = "\t", header: bool = False) -> pd.DataFrame:
    """A ratings file with 4 columns (user, item, rating, timestamp), in file order.

    Read with numeric types first (fast on tens of millions of rows); if that fails, read as
    strings to name the first bad line and value.
    """
    if not blob.strip():
        raise DataError(f"{name} is empty")
    if sep == "::":  # the C parser takes one-character separators only
        blob, sep = blob.replace(b"::", b"\t"), "\t"
    opts = dict(sep=sep, header=None, skiprows=1 if header else 0)
    try:
        raw = pd.read_csv(io.BytesIO(blob), dtype={0: "int64", 1: "int64", 2: "float64", 3: "int64"}, **opts)
        numeric = True
    except (ValueError, pd.errors.ParserError):
        raw = pd.read_csv(io.BytesIO(blob), dtype="string", keep_default_na=False, **opts)
        numeric = False
    if raw.shape[1] != len(RATING_COLUMNS):
        what = "tab-separated" if sep == "\t" else f"{sep!r}-separated"
        raise DataError(f"{name} has {raw.shape[1]} {what} columns, expected 4 "
                        "(user id, item id, rating, timestamp)")
    raw.columns = list(RATING_COLUMNS)
    if numeric and not raw.isna().any().any():
        return raw
    return _numeric_ratings(raw.astype("string"), name, first_line=2 if header else 1)


def parse_ml100k_zip(zf: zipfile.ZipFile) -> tuple[pd.DataFrame, pd.DataFrame]:
    """GroupLens's ml-100k.zip: ml-100k/u.data (tab) and ml-100k/u.item (pipe, latin-1)."""
    ratings = parse_ratings(_read_member(zf, "ml-100k/u.data"), "ml-100k/u.data")
    item = _read_member(zf, "ml-100k/u.item")
    cols = ["item_id", "title", "release_date", "video_release_date", "url", *GENRES_100K]
    movies = pd.read_csv(
        io.BytesIO(item), sep="|", header=None, names=cols, encoding="latin-1",
        dtype={"item_id": "int64", "title": "string"}, keep_default_na=False,
    )
    flags = movies[list(GENRES_100K)].astype(bool).to_numpy()
    genres = ["|".join(g for g, on in zip(GENRES_100K, row) if on) for row in flags]
    title, year = _split_title(movies["title"])
    return _ratings_frame(ratings), _movies_frame(movies["item_id"], title, year, genres)


def _text(blob: bytes) -> str:
    """Newer releases are UTF-8; ml-1m and ml-10m predate that and are latin-1."""
    try:
        return blob.decode("utf-8")
    except UnicodeDecodeError:
        return blob.decode("latin-1")


def dat_parser(folder: str) -> Callable[[zipfile.ZipFile], tuple[pd.DataFrame, pd.DataFrame]]:
    """ml-1m and ml-10m: '::'-separated ratings.dat and movies.dat (MovieID::Title::Genres)."""

    def parse(zf: zipfile.ZipFile):
        ratings = parse_ratings(_read_member(zf, f"{folder}/ratings.dat"), f"{folder}/ratings.dat", sep="::")
        lines = _text(_read_member(zf, f"{folder}/movies.dat")).splitlines()
        parts = [line.split("::") for line in lines if line.strip()]
        bad = next((i for i, p in enumerate(parts) if len(p) != 3 or not p[0].strip().isdigit()), None)
        if bad is not None:
            raise DataError(f"{folder}/movies.dat line {bad + 1}: expected MovieID::Title::Genres")
        title, year = _split_title(pd.Series([p[1] for p in parts], dtype="string"))
        return _ratings_frame(ratings), _movies_frame([int(p[0]) for p in parts], title, year,
                                                      [p[2].strip() for p in parts])

    return parse


def csv_parser(folder: str) -> Callable[[zipfile.ZipFile], tuple[pd.DataFrame, pd.DataFrame]]:
    """ml-20m, ml-25m, ml-32m, ml-latest-small: UTF-8 CSV with a header (userId,movieId,...)."""

    def parse(zf: zipfile.ZipFile):
        ratings = parse_ratings(_read_member(zf, f"{folder}/ratings.csv"), f"{folder}/ratings.csv",
                                sep=",", header=True)
        movies = pd.read_csv(io.BytesIO(_read_member(zf, f"{folder}/movies.csv")), dtype="string",
                             keep_default_na=False)
        if list(movies.columns[:3]) != ["movieId", "title", "genres"]:
            raise DataError(f"{folder}/movies.csv: expected the header movieId,title,genres")
        title, year = _split_title(movies["title"])
        return _ratings_frame(ratings), _movies_frame(movies["movieId"].astype("int64"), title, year,
                                                      movies["genres"])

    return parse


def parse_recbole(inter: bytes, item: bytes) -> tuple[pd.DataFrame, pd.DataFrame]:
    """RecBole atomic files: a typed header (`user_id:token ...`), tab-separated rows."""
    if not inter.strip():
        raise DataError("RecBole .inter file is empty")
    ratings = pd.read_csv(io.BytesIO(inter), sep="\t", dtype="string", keep_default_na=False)
    ratings.columns = [c.split(":")[0] for c in ratings.columns]
    missing = set(RATING_COLUMNS) - set(ratings.columns)
    if missing:
        raise DataError(f"RecBole .inter file lacks columns {sorted(missing)}")
    ratings = _numeric_ratings(ratings, "RecBole .inter file", first_line=2)
    movies = pd.read_csv(io.BytesIO(item), sep="\t", dtype="string", keep_default_na=False)
    movies.columns = [c.split(":")[0] for c in movies.columns]
    missing = {"item_id", "movie_title", "release_year", "class"} - set(movies.columns)
    if missing:
        raise DataError(f"RecBole .item file lacks columns {sorted(missing)}")
    year = pd.to_numeric(movies["release_year"], errors="coerce").astype("Int16")
    genres = movies["class"].fillna("").str.split().str.join("|")
    # RecBole's copy spells u.item's "unknown" (item 267) "unkonwn": keep the sources identical.
    movies["movie_title"] = movies["movie_title"].replace("unkonwn", "unknown")
    items = movies["item_id"].astype("int64")
    return _ratings_frame(ratings), _movies_frame(items, movies["movie_title"], year, genres)


def _movies_frame(item_id, title, year, genres) -> pd.DataFrame:
    return pd.DataFrame({
        "item_id": pd.Series(item_id).astype("int64").array,
        "title": pd.Series(title).astype("string").array,
        "year": pd.Series(year).astype("Int16").array,  # nullable: some movies have no year
        "genres": pd.Series(list(genres), dtype="string").array,
    })


GROUPLENS = "https://files.grouplens.org/datasets/movielens"

RELEASES: dict[str, Release] = {
    "ml-100k": Release(
        name="ml-100k",
        url="https://files.grouplens.org/datasets/movielens/ml-100k.zip",
        md5="0e33842e24a9c977be4e0107933c0723",
        sizes=Sizes(ratings=100_000, users=943, items=1_682),
        parse_zip=parse_ml100k_zip,
        wheel=WheelSource(
            requirement="recbole==1.2.1",
            inter="recbole/dataset_example/ml-100k/ml-100k.inter",
            inter_sha256="4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",
            item="recbole/dataset_example/ml-100k/ml-100k.item",
            item_sha256="51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532",
        ),
    ),
    # Sizes are the published counts: ratings, users, and movies listed in the movies file.
    "ml-1m": Release("ml-1m", f"{GROUPLENS}/ml-1m.zip", "c4d9eecfca2ab87c1945afe126590906",
                     Sizes(1_000_209, 6_040, 3_883), dat_parser("ml-1m")),
    "ml-10m": Release("ml-10m", f"{GROUPLENS}/ml-10m.zip", "ce571fd55effeba0271552578f2648bd",
                      Sizes(10_000_054, 69_878, 10_681), dat_parser("ml-10M100K")),
    "ml-20m": Release("ml-20m", f"{GROUPLENS}/ml-20m.zip", "cd245b17a1ae2cc31bb14903e1204af3",
                      Sizes(20_000_263, 138_493, 27_278), csv_parser("ml-20m")),
    "ml-25m": Release("ml-25m", f"{GROUPLENS}/ml-25m.zip", "6b51fb2759a8657d3bfcbfc42b592ada",
                      Sizes(25_000_095, 162_541, 62_423), csv_parser("ml-25m")),
    "ml-32m": Release("ml-32m", f"{GROUPLENS}/ml-32m.zip", "d472be332d4daa821edc399621853b57",
                      Sizes(32_000_204, 200_948, 87_585), csv_parser("ml-32m")),
    # ml-latest-small is updated in place: no fixed checksum or sizes; GroupLens's .md5 file is used.
    "ml-latest-small": Release("ml-latest-small", f"{GROUPLENS}/ml-latest-small.zip", None, None,
                               csv_parser("ml-latest-small")),
}


# --- checks --------------------------------------------------------------------------------

def file_digest(path: Path, algorithm: str) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, algorithm).hexdigest()


def check_sizes(release: Release, ratings: pd.DataFrame, movies: pd.DataFrame) -> None:
    if release.sizes is None:
        return
    got = Sizes(len(ratings), ratings["user_id"].nunique(), movies["item_id"].nunique())
    if got != release.sizes:
        raise DataError(
            f"{release.name}: expected {release.sizes.ratings:,} ratings, {release.sizes.users:,} users "
            f"and {release.sizes.items:,} movies, got {got.ratings:,}, {got.users:,} and {got.items:,}; "
            "the source holds another file than the published release"
        )


def _open_zip(path: Path, source: str) -> zipfile.ZipFile:
    try:
        zf = zipfile.ZipFile(path)
        bad = zf.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise DataError(f"{source}: {path.name} is not a readable zip ({exc}); fetch it again") from None
    if bad is not None:
        raise DataError(f"{source}: member {bad!r} of {path.name} is corrupt; fetch the zip again")
    return zf


def _parse_checked_zip(release: Release, path: Path, source: str, verify: bool, expected_md5=None):
    expected_md5 = expected_md5 or release.md5
    if verify:
        if expected_md5 is None:
            raise DataError(f"{source}: no fixed md5 is known for {release.name}, which GroupLens updates in "
                            "place; set data.verify: false to use this zip unchecked, or take it from GroupLens, "
                            "which publishes the current md5")
        md5 = file_digest(path, "md5")
        if md5 != expected_md5:
            raise DataError(f"{source}: md5 of {path} is {md5}, expected {expected_md5} for {release.name}")
    with _open_zip(path, source) as zf:
        return release.parse_zip(zf)


# --- sources -------------------------------------------------------------------------------

def _published_md5(release: Release, timeout_s: float) -> str:
    """GroupLens publishes `<zip>.md5` beside each zip: 'MD5 (ml-latest-small.zip) = <hex>'."""
    with urllib.request.urlopen(release.url + ".md5", timeout=timeout_s) as resp:
        text = resp.read(4096).decode("ascii", "replace")
    found = re.search(r"\b([0-9a-f]{32})\b", text)
    if not found:
        raise DataError(f"grouplens: {release.url}.md5 holds no md5")
    return found.group(1)


def fetch_grouplens(release: Release, workdir: Path, timeout_s: float, verify: bool):
    target = workdir / Path(release.url).name
    try:
        expected_md5 = release.md5 or (_published_md5(release, timeout_s) if verify else None)
        with urllib.request.urlopen(release.url, timeout=timeout_s) as resp:
            ctype = resp.headers.get("Content-Type", "")
            if "html" in ctype:
                raise DataError(f"grouplens: {release.url} answered with a web page ({ctype}), not a zip")
            total = int(resp.headers.get("Content-Length") or 0) or None
            with open(target, "wb") as out, tqdm(
                total=total, unit="B", unit_scale=True, desc=f"download {release.name}",
                disable=None, leave=False,
            ) as bar:
                while chunk := resp.read(1 << 16):
                    out.write(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, http.client.HTTPException, TimeoutError, OSError) as exc:
        reason = " ".join(str(getattr(exc, "reason", exc)).split())[:200]  # one line
        raise DataError(f"grouplens: cannot fetch {release.url} ({reason})") from None
    return _parse_checked_zip(release, target, "grouplens", verify, expected_md5)


def fetch_local(release: Release, local_zip: str, verify: bool):
    if not local_zip:
        raise DataError("local: skipped, data.local_zip is empty (set it to the path of the release's zip)")
    path = Path(local_zip).expanduser()
    if path.is_dir():
        raise DataError(f"local: {path} is a folder, not the release's zip; point data.local_zip at the zip file")
    if not path.is_file():
        raise DataError(f"local: {path} does not exist; fix data.local_zip")
    return _parse_checked_zip(release, path, "local", verify)


def fetch_wheel(release: Release, workdir: Path, verify: bool):
    if release.wheel is None:
        raise DataError(f"pypi: no wheel on the package index ships {release.name}")
    wheel = release.wheel
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "--quiet", wheel.requirement, "-d", str(workdir)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(workdir.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        last = (proc.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
        raise DataError(f"pypi: `pip download {wheel.requirement}` failed ({last})")
    with _open_zip(wheels[0], "pypi") as zf:
        inter = _read_member(zf, wheel.inter)
        item = _read_member(zf, wheel.item)
    if verify:
        for name, blob, want in ((wheel.inter, inter, wheel.inter_sha256), (wheel.item, item, wheel.item_sha256)):
            got = hashlib.sha256(blob).hexdigest()
            if got != want:
                raise DataError(f"pypi: sha256 of {name} in {wheels[0].name} is {got}, expected {want}")
    return parse_recbole(inter, item)


def load_release(
    name: str,
    sources: tuple[str, ...],
    local_zip: str = "",
    verify: bool = True,
    timeout_s: float = 10.0,
    log: Callable[[str], None] = print,
) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """Try each source in order; return (interactions, items, source used) or raise DataError.

    The interactions are canonical (ncf.interactions), checked as a team's own file would be."""
    if name not in RELEASES:
        raise DataError(f"data.dataset: {name!r} is not one of {', '.join(RELEASES)}")
    release = RELEASES[name]
    failures = []
    for source in sources:
        with tempfile.TemporaryDirectory(prefix="ncf-download-") as tmp:
            try:
                if source == "grouplens":
                    ratings, movies = fetch_grouplens(release, Path(tmp), timeout_s, verify)
                elif source == "local":
                    ratings, movies = fetch_local(release, local_zip, verify)
                elif source == "pypi":
                    ratings, movies = fetch_wheel(release, Path(tmp), verify)
                else:
                    raise DataError(f"{source}: unknown source; use grouplens, local or pypi")
                if verify:
                    check_sizes(release, ratings, movies)
            except DataError as exc:
                msg = str(exc) if str(exc).startswith(f"{source}:") else f"{source}: {exc}"
                log(f"{msg}; trying the next source")
                failures.append(msg)
                continue
            except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
                msg = f"{source}: cannot parse {release.name} ({str(exc).splitlines()[0]})"
                log(f"{msg}; trying the next source")
                failures.append(msg)
                continue
        return canonical_interactions(ratings, MOVIELENS_COLUMNS, release.name, prefix="ml."), movies, source
    # The last hint must not ask for what was already done: a local zip given and refused.
    hint = ("the reasons say what is wrong with the zip data.local_zip names" if "local" in sources and local_zip
            else "put the zip on disk and set data.local_zip")
    raise DataError(
        f"no source could provide {release.name} (tried {', '.join(sources)}): "
        + " | ".join(failures)
        + f"; {hint}"
    )
