"""Bad data files and interrupted stages: a clear refusal, nothing written, nothing half-written.

Policies (docs/troubleshooting.md): a ratings file with a malformed line, no rows,
non-numeric or fractional ids or timestamps is refused as a whole and the next source is tried;
repeated (user, item) pairs keep the latest and are counted; users with fewer than three
ratings stay in training only and are counted.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from ncf.movielens import DataError, load_release, parse_ml100k_zip, parse_recbole

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("u_data, fragment", [
    (b"", "u.data is empty"),
    (b"\n\n", "u.data is empty"),
    (b"1\t2\t3\t881250949\n1\tabc\t3\t881250950\n", "line 2: item_id is 'abc'"),
    (b"1\t2\t3\t881250949\n2\t3\t4\tyesterday\n", "line 2: timestamp is 'yesterday'"),
    (b"1.5\t2\t3\t881250949\n", "line 1: user_id is '1.5'"),
    (b"1\t2\t3\n1\t3\t4\n", "3 tab-separated columns, expected 4"),
    (b"1\t2\t3\t4\t5\n1\t3\t4\t5\t6\n", "5 tab-separated columns, expected 4"),
])
def test_malformed_u_data_is_refused_with_file_line_and_value(synthetic, u_data, fragment):
    with pytest.raises(DataError, match=fragment.replace(".", r"\.")):
        parse_ml100k_zip(zipfile.ZipFile(io.BytesIO(synthetic.ml100k_zip(u_data, synthetic.u_item()))))


def test_malformed_recbole_inter_names_the_line_after_the_header(synthetic):
    inter = synthetic.recbole_inter() + b"7\t3\tfive\t880000000\n"
    with pytest.raises(DataError, match=rf"line {synthetic.num_ratings + 2}: rating is 'five'"):
        parse_recbole(inter, synthetic.recbole_item())


def test_a_refused_local_file_falls_through_to_the_next_source_and_every_reason_is_reported(synthetic, tmp_path):
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"PK\x03\x04 truncated")
    ragged = tmp_path / "ragged.zip"
    ragged.write_bytes(synthetic.ml100k_zip(b"1\t2\t3\t4\n1\t3\t4\t5\t6\n", synthetic.u_item()))
    logged = []
    for path, reason in ((bad, "not a readable zip"), (ragged, "cannot parse ml-100k")):
        with pytest.raises(DataError) as err:
            load_release("ml-100k", ("local",), local_zip=str(path), verify=False, log=logged.append)
        message = str(err.value)
        assert "\n" not in message and reason in message and "data.local_zip" in message
    assert len(logged) == 2 and all(line.startswith("local: ") for line in logged)


def test_archive_entries_pointing_outside_are_never_written(synthetic, tmp_path, monkeypatch):
    """Zip-slip: members are read by exact name, never extracted, so '../' entries write nothing."""
    monkeypatch.chdir(tmp_path)
    blob = synthetic.ml100k_zip(synthetic.u_data(), synthetic.u_item(),
                                {"../../evil.txt": b"pwned", "/tmp/ncf-evil-absolute.txt": b"pwned",
                                 "ml-100k/../../evil2.txt": b"pwned"})
    local = tmp_path / "slip.zip"
    local.write_bytes(blob)
    ratings, _, source = load_release("ml-100k", ("local",), local_zip=str(local), verify=False,
                                      log=lambda _: None)
    assert source == "local" and len(ratings) == synthetic.num_ratings
    written = {p.name for p in tmp_path.rglob("*")} | {p.name for p in tmp_path.parent.rglob("evil*")}
    assert not {n for n in written if "evil" in n}
    assert not Path("/tmp/ncf-evil-absolute.txt").exists()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_an_interrupted_training_stage_leaves_the_previous_outputs_untouched(tmp_path, signum, split_folder):
    users, items = 40, 30
    train = pd.DataFrame([(u, (u + k) % items) for u in range(users) for k in range(5)], columns=["user", "item"])
    valid = pd.DataFrame({"user": range(users), "item": [(u + 5) % items for u in range(users)]})
    split_folder(tmp_path / "split", train, valid, valid.assign(item=(valid.item + 1) % items), users, items)
    (tmp_path / "params.yaml").write_text(
        "train:\n  max_epochs: 100000\n  patience: 100000\n  batch_size: 64\ngmf:\n  dim: 4\n")
    outputs = {name: tmp_path / name for name in ("gmf.pt", "select.pt", "gmf.tsv", "gmf.json")}
    for path in outputs.values():
        path.write_bytes(b"previous run")
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "stages" / "pretrain_gmf.py"), "--split", "split",
         "--out", "gmf.pt", "--select", "select.pt", "--curve", "gmf.tsv", "--metrics", "gmf.json"],
        cwd=tmp_path, stderr=subprocess.PIPE, text=True,
        # A shell that starts jobs in the background makes them ignore SIGINT; undo that here.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    for line in proc.stderr:  # wait until training is under way
        if "epoch 2:" in line or time.monotonic() > deadline:
            break
    proc.send_signal(signum)
    rest = proc.communicate(timeout=60)[1]
    assert proc.returncode == 130
    assert rest.strip().splitlines()[-1].startswith("interrupted: ")
    assert "Traceback" not in rest
    for path in outputs.values():
        assert path.read_bytes() == b"previous run"
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_a_local_zip_that_is_a_folder_is_named_as_such(tmp_path):
    with pytest.raises(DataError, match=r"local: .* is a folder, not the release's zip"):
        load_release("ml-100k", ("local",), local_zip=str(tmp_path), log=lambda _: None)
