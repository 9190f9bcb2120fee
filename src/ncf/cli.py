"""The `ncf` command: tools that read what the pipeline wrote.

    ncf compare HEAD neg16             NeuMF of the last commit vs. experiment neg16
    ncf compare workspace:gmf workspace:neumf
                                       two models of the current run
    ncf recommend --user 196 -k 10 --history 5
                                       top 10 unseen movies for MovieLens user 196
    ncf report                         table and figures of all experiments (dvc exp show)
    ncf share                          push the run cache and its outputs, for teammates
    ncf review origin/main             what the workspace changed against origin/main, for a PR

A side is `[REV][:MODEL]`: REV is `workspace` (default), a git revision or a DVC experiment
name; MODEL is neumf (default), gmf, mlp, popularity, ease, ials or itemknn. Ranks come from
data/evaluate/ranks.parquet of that revision, read through DVC (`dvc pull` it if missing).
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from ncf.compare import paired, table
from ncf.registry import MODELS

RANKS = "data/evaluate/ranks.parquet"


class CliError(RuntimeError):
    """A problem with what the user asked for; printed as one line, exit code 2."""


def parse_side(text: str) -> tuple[str | None, str]:
    rev, _, model = text.partition(":")
    if not model and rev in MODELS:  # `ncf compare gmf neumf`: two models of the workspace
        rev, model = "", rev
    model = model or "neumf"
    if model not in MODELS:
        raise CliError(f"{text}: unknown model {model!r}; use one of {', '.join(MODELS)}")
    return (None if rev in ("", "workspace") else rev), model


def read_ranks(rev: str | None) -> pd.DataFrame:
    import dvc.api
    from dvc.exceptions import DvcException

    try:
        with dvc.api.open(RANKS, rev=rev, mode="rb") as fh:
            return pd.read_parquet(io.BytesIO(fh.read()))
    except FileNotFoundError:
        raise CliError(f"{RANKS} is missing{f' at {rev}' if rev else ''}; run `dvc repro` "
                       "(or `dvc pull`) first") from None
    except DvcException as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "neither as a DVC output" in first or "not in cache" in first.lower():
            raise CliError(f"{RANKS} of {rev or 'the workspace'} is not in the local DVC cache; `dvc pull` "
                           f"it from a remote, or `dvc exp apply {rev}` and `dvc repro` to rebuild it") from None
        raise CliError(f"cannot read {RANKS} at {rev or 'workspace'}: {first}") from None


def read_side(rev: str | None) -> pd.DataFrame:
    """Ranks of a revision (through DVC), or of a ranks parquet file given by its path."""
    if rev and rev.endswith(".parquet"):
        try:
            return pd.read_parquet(rev)
        except (OSError, ValueError) as exc:
            raise CliError(f"{rev}: not a readable ranks file ({type(exc).__name__})") from None
    return read_ranks(rev)


def compare(args) -> None:
    sides_a, sides_b = args.a.split(","), args.b.split(",")
    if len(sides_a) != len(sides_b):
        raise CliError(f"A names {len(sides_a)} runs and B {len(sides_b)}; pair them one to one "
                       "(e.g. seed0-old,seed1-old seed0-new,seed1-new)")
    frames: dict = {}
    runs_a, runs_b, users = [], [], None
    for text_a, text_b in zip(sides_a, sides_b):
        (rev_a, model_a), (rev_b, model_b) = parse_side(text_a), parse_side(text_b)
        for rev in (rev_a, rev_b):
            if rev not in frames:
                frames[rev] = read_side(rev)
        a = frames[rev_a][["user", "item", model_a]].rename(columns={model_a: "a"})
        b = frames[rev_b][["user", "item", model_b]].rename(columns={model_b: "b"})
        both = a.merge(b, on="user", suffixes=("_a", "_b")).sort_values("user")
        if len(both) < len(a) or len(both) < len(b) or not (both["item_a"] == both["item_b"]).all() \
                or (users is not None and not np.array_equal(users, both["user"].to_numpy())):
            raise CliError("the sides were evaluated on different test users or items "
                           "(another split or dataset); a paired comparison needs the same ones")
        users = both["user"].to_numpy()
        runs_a.append(both["a"].to_numpy())
        runs_b.append(both["b"].to_numpy())
    results = [paired(np.stack(runs_a), np.stack(runs_b), metric, args.k,
                      resamples=args.resamples, seed=args.seed) for metric in ("hr", "ndcg")]
    runs = f", {len(runs_a)} runs a side (differences averaged per user over runs)" if len(runs_a) > 1 else ""
    print(f"A = {args.a}, B = {args.b}: {len(users)} test users, paired{runs}")
    print(table(results, "A", "B"))
    significant = [r.metric for r in results if r.p_value < 0.05]
    verdict = (f"difference in {', '.join(significant)} is unlikely to be noise (p < 0.05)" if significant
               else "no difference distinguishable from noise at p < 0.05")
    print(verdict)


def recommend(args) -> None:
    """One user's top K, ranked by `ncf.recommend.recommend`: the same function, hence the same
    list, as the recommend stage's data/recommendations.parquet (same checkpoint and device)."""
    from ncf.evaluate import ItemMask
    from ncf.models import CheckpointError, load_checkpoint
    from ncf.recommend import describe, recommend as rank

    split = args.split
    users = read_table(split / "users.parquet")
    num_items = len(read_table(split / "items.parquet"))
    items = read_table(args.catalog)
    if len(items) != num_items:
        raise CliError(f"{args.catalog}: lists {len(items):,} items, but {split} has {num_items:,}; "
                       "pass the catalog the split stage wrote with it (--catalog data/catalog.parquet)")
    seen = pd.concat([read_table(split / f"{n}.parquet") for n in ("train", "valid", "test")])
    # Ids as in the data may be numbers or strings: compare them as text.
    row = users.index[users["user_id"].astype(str) == args.user]
    if not len(row):
        ids = users["user_id"]
        known = f"{ids.min()}-{ids.max()}" if pd.api.types.is_numeric_dtype(ids) else \
            "e.g. " + ", ".join(map(str, ids.iloc[[0, len(ids) // 2, -1]]))
        raise CliError(f"user {args.user} is not in {split}/users.parquet (ids as in the data: {known})")
    user = int(users.loc[row[0], "user"])
    try:
        model, ckpt = load_checkpoint(args.model, None,  # the kind the checkpoint says it holds
                                      {"num_users": len(users), "num_items": num_items})
    except CheckpointError as exc:
        raise CliError(str(exc)) from None
    model.eval()
    mine = seen[seen["user"] == user]
    mask = ItemMask(mine["user"].to_numpy(np.int64), mine["item"].to_numpy(np.int64), len(users))
    _, top, scores = rank(model.score_all, [user], mask, args.k, len(users))  # only unseen movies
    top, scores = top[0][top[0] >= 0], scores[0][top[0] >= 0]
    print(f"Top {len(top)} for user {args.user} ({len(mine)} interactions), "
          f"{ckpt['kind']} checkpoint {args.model}:")
    for rank_, (item, score) in enumerate(zip(top, scores), start=1):
        print(f"{rank_:>3}. {describe(items.iloc[int(item)])}  [logit {score:+.2f}]")
    if args.history:
        recent = mine.sort_values("timestamp", kind="stable").tail(args.history) \
            if "timestamp" in mine else mine.tail(args.history)
        print(f"Last {len(recent)} rated (latest last; held-out validation/test items included):")
        for item in recent["item"]:
            print(f"     {describe(items.iloc[int(item)])}")


def read_table(path: Path) -> pd.DataFrame:
    """A parquet file the pipeline wrote, or one line saying how to get it back."""
    try:
        return pd.read_parquet(path)
    except FileNotFoundError:
        raise CliError(f"{path}: missing; run `dvc repro` (or `dvc pull`) first") from None
    except (OSError, ValueError) as exc:  # truncated or not parquet (pyarrow raises both kinds)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]
        raise CliError(f"{path}: unreadable ({first}); restore it with `dvc checkout` or rerun `dvc repro`") from None


def report(args) -> None:
    import json
    import subprocess

    from ncf.report import ReplaceError, build

    if args.from_json:
        try:
            text = args.from_json.read_text()
        except OSError as exc:
            raise CliError(f"{args.from_json}: cannot read it ({exc.strerror or type(exc).__name__})") from None
    else:
        dvc = Path(sys.executable).parent / "dvc"
        cmd = [str(dvc) if dvc.exists() else "dvc", "exp", "show", "--json"]
        proc = subprocess.run(cmd + (["--all-commits"] if args.all_commits else []), capture_output=True, text=True)
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["unknown error"])[-1]
            raise CliError(f"`dvc exp show --json` failed: {last}")
        text = proc.stdout
    try:
        shown = json.loads(text)
    except ValueError:
        raise CliError(f"{args.from_json or '`dvc exp show --json`'}: not valid JSON; save it with "
                       "`dvc exp show --json > FILE`") from None
    if not isinstance(shown, list):
        raise CliError(f"{args.from_json or '`dvc exp show --json`'}: expected the list `dvc exp show --json` "
                       f"prints, got a {type(shown).__name__}")
    if args.out.exists() and not args.out.is_dir():
        raise CliError(f"--out {args.out}: is a file; give a folder")
    if any(parent.exists() and not parent.is_dir() for parent in args.out.parents):
        raise CliError(f"--out {args.out}: a parent of it is a file; give a folder")
    from functools import lru_cache

    ranks_of = None if args.no_tests or args.from_json else lru_cache(maxsize=None)(read_ranks)
    lock_of = lru_cache(maxsize=None)(read_lock)
    if not isinstance(shown, list) or not all(isinstance(commit, dict) and "rev" in commit for commit in shown):
        raise CliError(f"{args.from_json or '`dvc exp show --json`'}: not what `dvc exp show --json` prints "
                       "(a list of commits, each with a rev); save it with `dvc exp show --json > FILE`")
    try:
        print(build(shown, args.out, vary=args.vary, ranks_of=ranks_of, resamples=args.resamples,
                    lock_of=lock_of, force=args.force))
    except ReplaceError as exc:
        raise CliError(str(exc)) from None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CliError(f"cannot build the report: {exc or type(exc).__name__}") from None
    except OSError as exc:
        raise CliError(f"--out {args.out}: cannot write there ({exc.strerror or type(exc).__name__}); "
                       "give a folder you can write to") from None
    print(f"(written to {args.out}/)")


def read_lock(rev: str):
    """The dvc.lock of a git revision (a commit or an experiment's), parsed; None if git cannot
    give it (a saved `dvc exp show --json` from another repository, say)."""
    import subprocess

    import yaml

    try:
        proc = subprocess.run(["git", "show", f"{rev}:dvc.lock"], capture_output=True, text=True)
    except OSError:
        return None
    if proc.returncode != 0:
        return None
    try:
        lock = yaml.safe_load(proc.stdout)
    except yaml.YAMLError:
        return None
    return lock if isinstance(lock, dict) else None


def share(args) -> None:
    from dvc.exceptions import DvcException

    from ncf.runcache import push

    try:
        shared = push(args.remote)
    except DvcException as exc:
        text = " ".join(line.strip() for line in str(exc).strip().splitlines()) or type(exc).__name__
        raise CliError(f"cannot push the run cache: {text}") from None
    if shared.missing:
        raise CliError(shared.summary())
    print(shared.summary())


def review(args) -> None:
    from ncf.review import ReviewError, review

    if args.out.suffix != ".md" or args.out.is_dir():
        raise CliError(f"--out {args.out}: give a .md file (its figures go in the folder beside it named like it)")
    try:
        text = review(args.base, args.rev, args.out, resamples=args.resamples, seed=args.seed)
    except ReviewError as exc:
        raise CliError(str(exc)) from None
    except OSError as exc:
        raise CliError(f"--out {args.out}: cannot write there ({exc.strerror or type(exc).__name__}); "
                       "give a path you can write to") from None
    print(text.split("\n")[2])  # the verdict
    for line in text.splitlines():
        if line.startswith("Pull first: "):
            print(line, file=sys.stderr)
    print(f"(written to {args.out} and {args.out.with_suffix('')}/)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ncf", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("compare", help="paired HR/NDCG difference of two models, with a CI and p-value",
                       description=("Paired bootstrap 95% CI and sign-flip permutation p-value of the "
                                    "per-user HR@K and NDCG@K difference B - A."))
    p.add_argument("a", help=("side A: [REV][:MODEL], e.g. HEAD, HEAD:gmf, my-exp:mlp, gmf; REV may be a "
                              "ranks .parquet file; several runs (seeds) separated by commas are paired "
                              "with B's in order and pooled over users and seeds"))
    p.add_argument("b", help="side B, same form (as many runs as A)")
    p.add_argument("-k", type=int, default=10, help="cut-off K (default: %(default)s)")
    p.add_argument("--resamples", type=int, default=10_000, help="bootstrap / permutation draws")
    p.add_argument("--seed", type=int, default=0, help="seed of the resampling (default: %(default)s)")
    p.set_defaults(func=compare)

    r = sub.add_parser("recommend", help="top-K unseen movies for one user, with titles and scores",
                       description="Top-K movies the user has not rated, scored by a trained checkpoint.")
    r.add_argument("--user", required=True, help="user id as in the data (MovieLens: as in u.data; your own: as in "
                   "your file)")
    r.add_argument("-k", type=int, default=10, help="how many movies (default: %(default)s)")
    r.add_argument("--history", type=int, default=0, metavar="N", help="also show the user's last N rated movies")
    r.add_argument("--model", type=Path, default=Path("models/neumf.pt"), help="checkpoint (default: %(default)s)")
    r.add_argument("--split", type=Path, default=Path("data/split"), help="split folder (default: %(default)s)")
    r.add_argument("--catalog", type=Path, default=Path("data/catalog.parquet"),
                   help="movie titles (default: %(default)s)")
    r.set_defaults(func=recommend)

    rep = sub.add_parser("report", help="markdown table and figures of all DVC experiments",
                         description=("Reads `dvc exp show --json`, groups experiments whose params differ "
                                      "only in the seed (mean, std, number of seeds), tests each "
                                      "configuration against the default one, paired over test users and "
                                      "seeds, and draws one figure per param that varies (the lab's studies). "
                                      "An experiment whose evaluate stage did not run for its params (one "
                                      "that reran part of the pipeline) is named, not reported; --out is "
                                      "written whole, and a report there made from more runs is kept "
                                      "unless --force."))
    rep.add_argument("--out", type=Path, default=Path("reports"), help="output folder (default: %(default)s)")
    rep.add_argument("--from-json", type=Path, help="read a saved `dvc exp show --json` instead of running it")
    rep.add_argument("--all-commits", action="store_true",
                     help="also read experiments based on earlier commits (dvc exp show --all-commits)")
    rep.add_argument("--vary", action="append", metavar="PARAM",
                     help=("report only the baseline commit and the experiments that differ from it in "
                           "PARAM (repeatable) or the seed, e.g. --vary mlp.layers; --vary seed gives the "
                           "spread over seeds of every model"))
    rep.add_argument("--no-tests", action="store_true",
                     help=("skip the paired tests (each configuration's NeuMF against the default's, and "
                           "with seeds only, every model against NeuMF), which read each run's ranks "
                           "through DVC; on by default except with --from-json"))
    rep.add_argument("--resamples", type=int, default=10_000, help="bootstrap / permutation draws of those tests")
    rep.add_argument("--force", action="store_true",
                     help="replace a report in --out even if it was made from more runs than this one")
    rep.set_defaults(func=report)

    sh = sub.add_parser("share", help="push DVC's run cache and every output it names to a remote",
                        description=("`dvc push --run-cache` and, beyond it, the metrics and curves the run "
                                     "cache keeps (DVC pushes only the workspace's): a teammate's "
                                     "`dvc pull --run-cache` then `dvc exp run --pull -S ...` restores any "
                                     "configuration run here instead of training it."))
    sh.add_argument("-r", "--remote", help="DVC remote name (default: the repository's default remote)")
    sh.set_defaults(func=share)

    rv = sub.add_parser("review", help="what a change did against BASE: params, data, metrics, paired tests, figures",
                        description=("Writes a markdown report for a pull request (reports/review.md and its "
                                     "figures in reports/review/): the params and data report that differ, every "
                                     "model's test HR@10 and NDCG@10 on both sides with standard errors and the "
                                     "paired difference over users (95%% CI, p-value, as ncf compare), both "
                                     "revisions' training curves and test metrics, and whether anything moved "
                                     "beyond noise. Reads what DVC has (git, cache, default remote); trains "
                                     "nothing. See docs/review.md."))
    rv.add_argument("base", nargs="?", default="main", help="the revision to compare with (default: %(default)s)")
    rv.add_argument("--rev", help="review this commit or experiment instead of the workspace")
    rv.add_argument("--out", type=Path, default=Path("reports/review.md"), help="the report (default: %(default)s)")
    rv.add_argument("--resamples", type=int, default=10_000, help="bootstrap / permutation draws")
    rv.add_argument("--seed", type=int, default=0, help="seed of the resampling (default: %(default)s)")
    rv.set_defaults(func=review)
    return parser


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "k", 1) < 1 or getattr(args, "resamples", 1) < 1 or getattr(args, "history", 0) < 0:
            raise CliError("-k and --resamples must be at least 1, --history at least 0")
        args.func(args)
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)

