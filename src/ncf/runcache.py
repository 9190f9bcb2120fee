"""Share DVC's run cache with a teammate: the entries, and every output they name, whole.

DVC (3.67) restores a stage from its run cache when its deps and params match an earlier run,
here or, after `dvc pull --run-cache`, anyone's. But `dvc push --run-cache` uploads the entries
and only the outputs of the current workspace. The metrics and curves each stage keeps in git
(`cache: false`) are copied into the local cache by the run cache and never pushed, so a
teammate's `dvc exp run --pull` finds an entry whose files are nowhere and trains again.
`push(remote)` uploads the entries and every object any of them names, so that it does not.

A directory output is one manifest (`<md5>.dir`) listing its files' objects. DVC's own
`stage_cache.get_used_objs` gives the manifest and the files it lists; DVC's transfer sends the
files first and the manifest only once all of them are on the remote. The transfer asks the
remote which objects it holds rather than DVC's local record of the remote, which takes a
manifest on the remote for all of its files: that is the state an earlier `ncf share` (which
sent manifests alone) left, and this way the next one mends it. Afterwards every named object
is looked up on the remote, so a remote that still lacks one is reported, never trusted.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml


@dataclass(frozen=True)
class Shared:
    entries: int  # run-cache entries on the remote
    sent: int  # objects uploaded now (files, manifests)
    missing: tuple[str, ...]  # outputs the entries name that are on the remote neither whole nor at all

    def summary(self) -> str:
        line = f"{self.entries} run-cache entries and {self.sent} objects pushed"
        if not self.missing:
            return f"{line}; the remote holds every output they name"
        shown = ", ".join(self.missing[:5]) + (f" and {len(self.missing) - 5} more" if len(self.missing) > 5 else "")
        return (f"{line}, but {len(self.missing)} outputs they name are neither on the remote nor in this "
                f"clone's cache ({shown}); a teammate's `dvc exp run --pull` of those runs fails: run them "
                "here again (`dvc exp run` with their params), then `ncf share`")


def entry_outputs(runs: Path) -> set[tuple[str, str, str]]:
    """(hash name, value, path) of every output named by the run-cache entries under `runs`."""
    found = set()
    for path in sorted(Path(runs).glob("*/*/*")):
        try:
            entry = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError):
            continue  # an unreadable entry restores nothing either
        for out in entry.get("outs") or []:
            if out.get("md5"):
                found.add((out.get("hash", "md5-dos2unix"), out["md5"], out.get("path", "?")))
    return found


def push(remote: str | None = None) -> Shared:
    """Push the run cache and every object its entries name (directories whole), then check."""
    from dvc.cachemgr import LEGACY_HASH_NAMES
    from dvc.fs.callbacks import TqdmCallback
    from dvc.repo import Repo
    from dvc_data.hashfile.hash_info import HashInfo

    with Repo() as repo:
        entries = repo.stage_cache.push(remote)  # every entry here, as `dvc push --run-cache`
        # Each entry's outputs as DVC sees them when it restores one: a directory is its manifest
        # and the objects the manifest lists. (A manifest not in the cache here gives nothing;
        # the entries' own list below still names it, so the check reports it.)
        named = {obj for objs in repo.stage_cache.get_used_objs(entries, force=True).values() for obj in objs}
        named |= {HashInfo(name, value, obj_name=path)
                  for name, value, path in entry_outputs(Path(repo.stage_cache.cache_dir))}
        sent, missing = 0, []
        for legacy in (True, False):
            objs = {obj for obj in named if (obj.name in LEGACY_HASH_NAMES) == legacy}
            if not objs:
                continue
            cache = repo.cache.legacy if legacy else repo.cache.local
            odb = repo.cloud.get_remote_odb(remote, "push", hash_name="md5-dos2unix" if legacy else "md5")
            # No dest_index: DVC's record of the remote would take a manifest there for its files.
            with TqdmCallback(desc=f"Pushing to {odb.fs.unstrip_protocol(odb.path)}", unit="file") as cb:
                result = repo.cloud.transfer(cache, odb, objs, cache_odb=cache, callback=cb)
            there = set(odb.oids_exist({obj.value for obj in objs}))
            # (DVC counts a manifest it held back, its files being incomplete, as transferred.)
            sent += len({obj.value for obj in result.transferred} & there)
            missing += sorted({obj.obj_name or obj.value for obj in objs if obj.value not in there})
    return Shared(len(entries), sent, tuple(missing))
