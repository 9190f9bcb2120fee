"""`ncf share` (ncf.runcache) through real DVC, on a one-stage repository with a directory output.

The whole pipeline's recipe is tested in tests/test_pipeline_e2e.py; here, what that cannot set
up cheaply: a remote an older `ncf share` left with a directory's manifest and none of its files,
and a run-cache entry whose files are gone from the cache.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.env import dvc_env

pytestmark = pytest.mark.slow

MAKE = ("python -c \"import os; os.makedirs('out', exist_ok=True); "
        "[open(f'out/{i}.txt', 'w').write(str(i)) for i in range(int(open('n').read()))]\"")


def sh(cmd: list[str], cwd: Path, ok: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=dvc_env("t", "t@t"), capture_output=True, text=True)
    assert (proc.returncode == 0) == ok, f"{' '.join(cmd)} ({proc.returncode}):\n{proc.stdout}{proc.stderr}"
    return proc


@pytest.fixture
def repo(tmp_path) -> Path:
    """A repository whose one stage wrote the directory `out` (in DVC's cache and run cache)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    sh(["git", "init", "-q"], repo)
    sh(["dvc", "init", "-q"], repo)
    (repo / "n").write_text("3")
    sh(["dvc", "stage", "add", "-q", "-n", "make", "-d", "n", "-o", "out", MAKE], repo)
    sh(["dvc", "repro", "-q"], repo)
    sh(["dvc", "remote", "add", "-q", "-d", "team", str(tmp_path / "remote")], repo)
    sh(["git", "add", "-A"], repo)
    sh(["git", "commit", "-qm", "stage"], repo)
    return repo


def on_remote(remote: Path) -> set[str]:
    return {f"{path.parent.name}{path.name}" for path in (remote / "files" / "md5").glob("*/*")}


def manifest(repo: Path) -> tuple[str, list[str]]:
    """The `.dir` object of `out` in dvc.lock, and the objects it lists."""
    lock = (repo / "dvc.lock").read_text()
    value = next(line.split()[-1] for line in lock.splitlines() if line.strip().startswith("md5:")
                 and line.strip().endswith(".dir"))
    listed = json.loads((repo / ".dvc/cache/files/md5" / value[:2] / value[2:]).read_text())
    return value, [entry["md5"] for entry in listed]


def test_share_mends_a_remote_that_holds_a_manifest_without_its_files(repo, tmp_path):
    value, files = manifest(repo)
    # What an older `ncf share` did: the manifest alone, through repo.cloud.push.
    sh([sys.executable, "-c", "from dvc.repo import Repo\nfrom dvc_data.hashfile.hash_info import HashInfo\n"
        f"with Repo() as r: r.cloud.push({{HashInfo('md5', '{value}')}})"], repo)
    remote = tmp_path / "remote"
    assert on_remote(remote) == {value}
    assert "Everything is up to date" in sh(["dvc", "push"], repo).stdout  # DVC trusts the manifest

    out = sh(["ncf", "share"], repo).stdout
    assert out.startswith("1 run-cache entries and 3 objects pushed; the remote holds every output"), out
    assert on_remote(remote) == {value, *files}
    clone = tmp_path / "clone"
    sh(["git", "clone", "-q", str(repo), str(clone)], tmp_path)
    sh(["dvc", "pull", "-q", "--run-cache"], clone)
    assert sorted(p.read_text() for p in (clone / "out").iterdir()) == ["0", "1", "2"]


def test_share_names_what_is_neither_here_nor_on_the_remote_and_sends_no_manifest_without_it(repo, tmp_path):
    value, files = manifest(repo)
    lost = repo / ".dvc/cache/files/md5" / files[0][:2] / files[0][2:]
    lost.chmod(0o644)
    lost.unlink()
    err = sh(["ncf", "share"], repo, ok=False).stderr
    assert err.count("\n") == 1, err
    assert err.startswith("error: 1 run-cache entries and 2 objects pushed, but 2 outputs"), err
    assert "(out, out/" in err and "then `ncf share`" in err, err
    assert on_remote(tmp_path / "remote") == set(files[1:])  # the files that exist; no manifest
