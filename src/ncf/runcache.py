"""Share DVC's run cache with a teammate: the entries, and every output they name.

DVC (3.67) restores a stage from its run cache when its deps and params match an earlier run,
here or, after `dvc pull --run-cache`, anyone's. But `dvc push --run-cache` uploads the entries
and only the outputs of the current workspace. The metrics and curves each stage keeps in git
(`cache: false`) are copied into the local cache by the run cache and never pushed, so a
teammate's `dvc exp run --pull` finds an entry whose files are nowhere and trains again.
`push(remote)` uploads the entries and every object any of them names, so that it does not.
"""

from __future__ import annotations

from pathlib import Path

import yaml


def entry_outputs(runs: Path) -> set[tuple[str, str]]:
    """(hash name, value) of every output named by the run-cache entries under `runs`."""
    found = set()
    for path in sorted(Path(runs).glob("*/*/*")):
        try:
            entry = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError):
            continue  # an unreadable entry restores nothing either
        for out in entry.get("outs") or []:
            if out.get("md5"):
                found.add((out.get("hash", "md5-dos2unix"), out["md5"]))
    return found


def push(remote: str | None = None) -> tuple[int, int, int]:
    """Push the run cache and its outputs; (entries, objects sent, objects missing here)."""
    from dvc.repo import Repo
    from dvc_data.hashfile.hash_info import HashInfo

    with Repo() as repo:
        entries = repo.stage_cache.push(remote)
        objs = {HashInfo(name, value) for name, value in entry_outputs(Path(repo.stage_cache.cache_dir))}
        result = repo.cloud.push(objs, remote=remote)
    return len(entries), len(result.transferred), len(result.failed)
