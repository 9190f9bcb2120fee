"""Every MovieLens release: its real zip layout parses into the same canonical tables."""

from __future__ import annotations

import hashlib
import io
import zipfile
from dataclasses import replace

import pandas as pd
import pytest

import ncf.movielens as ml
from ncf.config import DATASETS
from ncf.movielens import RELEASES, DataError, load_release

LAYOUT = {  # release -> (folder in the zip, format)
    "ml-1m": ("ml-1m", "dat"), "ml-10m": ("ml-10M100K", "dat"), "ml-20m": ("ml-20m", "csv"),
    "ml-25m": ("ml-25m", "csv"), "ml-32m": ("ml-32m", "csv"), "ml-latest-small": ("ml-latest-small", "csv"),
}


def release_zip(synthetic, name: str) -> bytes:
    folder, kind = LAYOUT[name]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        if kind == "dat":
            rows = "".join(f"{u}::{i}::{r}::{t}\n" for u, i, r, t in synthetic.ratings_rows)
            zf.writestr(f"{folder}/ratings.dat", rows)
            movies = "".join(f"{m[0]}::{m[1]}::{'|'.join(m[4])}\n" for m in synthetic.movies)
            zf.writestr(f"{folder}/movies.dat", movies.encode("latin-1"))  # ml-1m is latin-1
        else:
            rows = "".join(f"{u},{i},{r}.0,{t}\n" for u, i, r, t in synthetic.ratings_rows)
            zf.writestr(f"{folder}/ratings.csv", "userId,movieId,rating,timestamp\n" + rows)
            titles = "".join(f'{m[0]},"{m[1]}",{"|".join(m[4])}\n' for m in synthetic.movies)
            zf.writestr(f"{folder}/movies.csv", ("movieId,title,genres\n" + titles).encode("utf-8"))
        zf.writestr(f"{folder}/README.txt", "synthetic, not MovieLens")
    return buf.getvalue()


def test_every_configurable_dataset_has_a_release():
    assert set(DATASETS) == set(RELEASES) | {"file"}  # file: a team's own (ncf.interactions)
    for name, release in RELEASES.items():
        assert release.url.endswith(f"/{name}.zip")


@pytest.mark.parametrize("name", sorted(LAYOUT))
def test_layout_parses_to_the_canonical_tables(synthetic, name):
    ratings, movies = RELEASES[name].parse_zip(zipfile.ZipFile(io.BytesIO(release_zip(synthetic, name))))
    want = synthetic.ratings()
    pd.testing.assert_frame_equal(ratings, want, check_dtype=False)
    assert movies["title"].tolist() == [m[2] for m in synthetic.movies]  # year split off
    assert [None if pd.isna(y) else int(y) for y in movies["year"]] == [m[3] for m in synthetic.movies]
    assert movies["genres"].tolist() == ["|".join(m[4]) for m in synthetic.movies]


@pytest.mark.parametrize("name", sorted(LAYOUT))
def test_local_source_with_and_without_verification(synthetic, name, tmp_path):
    path = tmp_path / f"{name}.zip"
    path.write_bytes(release_zip(synthetic, name))
    ratings, _, source = load_release(name, ("local",), local_zip=str(path), verify=False, log=lambda _: None)
    assert source == "local" and len(ratings) == synthetic.num_ratings
    with pytest.raises(DataError, match="md5|no published md5"):
        load_release(name, ("local",), local_zip=str(path), verify=True, log=lambda _: None)


def test_ratings_dat_with_a_bad_line_names_it(synthetic):
    blob = release_zip(synthetic, "ml-1m")
    buf = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(blob)) as src, zipfile.ZipFile(buf, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("ratings.dat"):
                data += b"12::x::3::881250949\n"
            dst.writestr(info, data)
    with pytest.raises(DataError, match=rf"ratings.dat line {synthetic.num_ratings + 1}: item_id is 'x'"):
        RELEASES["ml-1m"].parse_zip(zipfile.ZipFile(io.BytesIO(buf.getvalue())))


def test_latest_small_uses_grouplens_published_md5(synthetic, monkeypatch, http_server):
    blob = release_zip(synthetic, "ml-latest-small")
    digest = hashlib.md5(blob).hexdigest()
    http_server.routes["/ml-latest-small.zip"] = (200, "application/zip", blob)
    http_server.routes["/ml-latest-small.zip.md5"] = (200, "text/plain",
                                                      f"MD5 (ml-latest-small.zip) = {digest}\n".encode())
    url = http_server.url("/ml-latest-small.zip")
    monkeypatch.setitem(RELEASES, "ml-latest-small", replace(RELEASES["ml-latest-small"], url=url))
    ratings, _, source = load_release("ml-latest-small", ("grouplens",), verify=True, log=lambda _: None)
    assert source == "grouplens" and len(ratings) == synthetic.num_ratings
    http_server.routes["/ml-latest-small.zip.md5"] = (200, "text/plain", b"MD5 (ml-latest-small.zip) = " + b"0" * 32)
    with pytest.raises(DataError, match="expected 0{32}"):
        load_release("ml-latest-small", ("grouplens",), verify=True, log=lambda _: None)
    assert ml.RELEASES["ml-latest-small"].md5 is None


def test_latest_small_from_a_local_zip_asks_for_verify_false_and_not_for_the_zip_again(synthetic, tmp_path):
    path = tmp_path / "ml-latest-small.zip"
    path.write_bytes(release_zip(synthetic, "ml-latest-small"))
    with pytest.raises(DataError) as info:
        load_release("ml-latest-small", ("local",), local_zip=str(path), verify=True, log=lambda _: None)
    msg = str(info.value)
    assert "set data.verify: false" in msg and "set data.local_zip" not in msg, msg
    ratings, _, source = load_release("ml-latest-small", ("local",), local_zip=str(path), verify=False,
                                      log=lambda _: None)
    assert source == "local" and len(ratings) == synthetic.num_ratings
