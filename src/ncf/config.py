"""params.yaml -> one frozen, typed, validated `Params` object.

Every stage calls `load_params()` before doing any work, so a typo or a bad value stops the
pipeline with one line (`ParamsError`) naming the dotted key, the value given and what is
allowed. Library code never reads params.yaml; it receives these objects.

Why not pydantic (installed with DVC): its strict mode gives types, ranges, choices and unknown
keys declaratively, but not the messages users see here. Each problem must be one line naming
the dotted key with a "did you mean" for a misspelt one, `-S lr=1e-5` (a YAML string) must read
as a number while `true` must not, and the first problem must stop the run; with pydantic that
is a custom error formatter, a custom float type and a custom unknown-key hook, about as much
code as the checks below (`_scalar`, `_value`, `_build`: about 80 lines), plus a dependency on
DVC's pydantic version. Dataclasses keep `Params` frozen and hashable with no dependency.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ncf.errors import ParamsError

# Releases with a source and a parser (see movielens.py); ml-100k also has an offline source.
# `file`: a team's own interactions file (data.file, ncf.interactions).
DATASETS = ("ml-100k", "ml-1m", "ml-10m", "ml-20m", "ml-25m", "ml-32m", "ml-latest-small", "file")
FILE_FORMATS = ("auto", "csv", "tsv", "parquet")
POSITIVES = ("all", "rated")
REPEATS = ("latest", "first")
SHORT_USERS = ("train", "drop")
INPUT_DIR = "input"  # the folder of the data files that the download stage depends on (dvc.yaml)
SOURCES = ("grouplens", "local", "pypi")
DEVICES = ("auto", "cpu", "cuda")
OPTIMIZERS = ("sgd", "adam")
BACKENDS = ("auto", "gloo", "nccl")
RECOMMENDERS = ("neumf", "gmf", "mlp")  # checkpoints the recommend stage can serve (models/<name>.pt)


# Range checks: (predicate, text shown to the user).
POSITIVE = (lambda v: v > 0, "> 0")
AT_LEAST_1 = (lambda v: v >= 1, ">= 1")
NON_NEGATIVE = (lambda v: v >= 0, ">= 0")
UNIT = (lambda v: 0 <= v <= 1, "between 0 and 1")


@dataclass(frozen=True)
class FileParams:
    interactions: str = "input/interactions.csv"
    items: str = ""
    format: str = field(default="auto", metadata={"choices": FILE_FORMATS})
    user: str = "user_id"
    item: str = "item_id"
    timestamp: str = "timestamp"
    rating: str = ""
    title: str = "title"


@dataclass(frozen=True)
class DataParams:
    dataset: str = field(default="ml-100k", metadata={"choices": DATASETS})
    sources: tuple[str, ...] = field(default=SOURCES, metadata={"choices": SOURCES})
    local_zip: str = ""
    verify: bool = True
    timeout_s: float = field(default=10.0, metadata={"rule": POSITIVE})
    file: FileParams = FileParams()


@dataclass(frozen=True)
class SplitParams:
    positives: str = field(default="all", metadata={"choices": POSITIVES})
    min_rating: float = 4.0
    repeats: str = field(default="latest", metadata={"choices": REPEATS})
    short_users: str = field(default="train", metadata={"choices": SHORT_USERS})
    min_item_interactions: int = field(default=1, metadata={"rule": AT_LEAST_1})


@dataclass(frozen=True)
class TrainParams:
    batch_size: int = field(default=16384, metadata={"rule": AT_LEAST_1})
    max_epochs: int = field(default=60, metadata={"rule": AT_LEAST_1})
    patience: int = field(default=5, metadata={"rule": AT_LEAST_1})
    refit: bool = True
    processes: int = field(default=1, metadata={"rule": AT_LEAST_1})
    backend: str = field(default="auto", metadata={"choices": BACKENDS})


@dataclass(frozen=True)
class GMFParams:
    dim: int = field(default=64, metadata={"rule": AT_LEAST_1})
    biases: bool = True
    lr: float = field(default=0.015, metadata={"rule": POSITIVE})
    l2: float = field(default=0.01, metadata={"rule": NON_NEGATIVE})


@dataclass(frozen=True)
class MLPParams:
    dim: int = field(default=64, metadata={"rule": AT_LEAST_1})
    layers: tuple[int, ...] = field(default=(128, 64, 32), metadata={"rule": AT_LEAST_1})
    lr: float = field(default=0.008, metadata={"rule": POSITIVE})
    l2: float = field(default=0.001, metadata={"rule": NON_NEGATIVE})


@dataclass(frozen=True)
class NeuMFParams:
    pretrain: bool = True
    alpha: float = field(default=0.5, metadata={"rule": UNIT})
    optimizer: str = field(default="sgd", metadata={"choices": OPTIMIZERS})
    lr: float = field(default=0.03, metadata={"rule": POSITIVE})
    l2: float = field(default=0.001, metadata={"rule": NON_NEGATIVE})


@dataclass(frozen=True)
class EASEParams:
    l2: tuple[float, ...] = field(default=(30.0, 100.0, 300.0, 1000.0), metadata={"rule": POSITIVE})
    max_items: int = field(default=10_000, metadata={"rule": AT_LEAST_1})


@dataclass(frozen=True)
class IALSParams:
    factors: tuple[int, ...] = field(default=(128, 256), metadata={"rule": AT_LEAST_1})
    regularization: tuple[float, ...] = field(default=(3.0, 10.0), metadata={"rule": POSITIVE})
    alpha: tuple[float, ...] = field(default=(1.0,), metadata={"rule": POSITIVE})
    iterations: int = field(default=20, metadata={"rule": AT_LEAST_1})


@dataclass(frozen=True)
class ItemKNNParams:
    k: tuple[int, ...] = field(default=(10, 20, 50), metadata={"rule": AT_LEAST_1})


@dataclass(frozen=True)
class EvaluateParams:
    ks: tuple[int, ...] = field(default=(5, 10, 20), metadata={"rule": AT_LEAST_1})
    chunk_users: int = field(default=1024, metadata={"rule": AT_LEAST_1})
    valid_users: int = field(default=0, metadata={"rule": NON_NEGATIVE})
    valid_every: int = field(default=1, metadata={"rule": AT_LEAST_1})


@dataclass(frozen=True)
class RecommendParams:
    k: int = field(default=10, metadata={"rule": AT_LEAST_1})
    model: str = field(default="neumf", metadata={"choices": RECOMMENDERS})


@dataclass(frozen=True)
class Params:
    seed: int = field(default=0, metadata={"rule": NON_NEGATIVE})
    num_negatives: int = field(default=8, metadata={"rule": AT_LEAST_1})
    device: str = field(default="auto", metadata={"choices": DEVICES})
    threads: int = field(default=2, metadata={"rule": AT_LEAST_1})
    data: DataParams = DataParams()
    split: SplitParams = SplitParams()
    train: TrainParams = TrainParams()
    gmf: GMFParams = GMFParams()
    mlp: MLPParams = MLPParams()
    neumf: NeuMFParams = NeuMFParams()
    ease: EASEParams = EASEParams()
    ials: IALSParams = IALSParams()
    itemknn: ItemKNNParams = ItemKNNParams()
    evaluate: EvaluateParams = EvaluateParams()
    recommend: RecommendParams = RecommendParams()

    def to_dict(self) -> dict:
        """Plain dict (lists, not tuples) for checkpoints and logs."""
        return _plain(dataclasses.asdict(self))


def _plain(obj):
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def _describe(value) -> str:
    return f"{value!r} ({type(value).__name__})"


def _scalar(key: str, value, kind: type):
    """Coerce one YAML scalar to `kind` or raise ParamsError. A bool is never a number."""
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise ParamsError(f"{key}: expected true or false, got {_describe(value)}")
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ParamsError(f"{key}: expected a whole number, got {_describe(value)}")
    if kind is float:
        if isinstance(value, bool):
            raise ParamsError(f"{key}: expected a number, got {_describe(value)}")
        if isinstance(value, (int, float)):
            try:
                out = float(value)
            except OverflowError:
                raise ParamsError(f"{key}: {value!r} is too large for a number") from None
        elif isinstance(value, str):
            # `dvc exp run -S lr=1e-5` writes 1e-5, which YAML 1.1 reads as a string.
            try:
                out = float(value)
            except (ValueError, OverflowError):
                raise ParamsError(f"{key}: expected a number, got {_describe(value)}") from None
        else:
            raise ParamsError(f"{key}: expected a number, got {_describe(value)}")
        if not math.isfinite(out):
            raise ParamsError(f"{key}: expected a finite number, got {value!r}")
        return out
    if kind is str:
        if isinstance(value, str):
            return value
        raise ParamsError(f"{key}: expected a string, got {_describe(value)}")
    raise TypeError(kind)  # pragma: no cover - a programming error in this module


def _value(key: str, value, hint, meta):
    choices = meta.get("choices")
    rule = meta.get("rule")
    if typing.get_origin(hint) is tuple:
        (item_kind, _ellipsis) = typing.get_args(hint)
        if not isinstance(value, list) or not value:
            raise ParamsError(f"{key}: expected a non-empty list, got {_describe(value)}")
        items = tuple(_scalar(f"{key}[{i}]", v, item_kind) for i, v in enumerate(value))
        checked = [(f"{key}[{i}]", v) for i, v in enumerate(items)]
    else:
        items = _scalar(key, value, hint)
        checked = [(key, items)]
    for name, v in checked:
        if choices is not None and v not in choices:
            raise ParamsError(f"{key}: {v!r} is not one of {', '.join(choices)}")
        if rule is not None and not rule[0](v):
            raise ParamsError(f"{name}: {v!r} is not allowed; it must be {rule[1]}")
    return items


def _build(cls, raw, prefix: str):
    if not isinstance(raw, dict):
        where = prefix.rstrip(".") or "params.yaml"
        raise ParamsError(f"{where}: expected a mapping of keys, got {_describe(raw)}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in raw:
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f"; did you mean {prefix}{close[0]}?" if close else f"; known keys: {', '.join(names)}"
            raise ParamsError(f"{prefix}{key}: unknown key{hint}")
    values = {}
    for f in dataclasses.fields(cls):
        if f.name not in raw:
            continue
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            values[f.name] = _build(hint, raw[f.name], f"{prefix}{f.name}.")
        else:
            values[f.name] = _value(f"{prefix}{f.name}", raw[f.name], hint, f.metadata)
    return cls(**values)


def parse_params(raw) -> Params:
    """Validate an already-loaded mapping (from YAML) into Params."""
    if raw is None:
        raw = {}
    return _build(Params, raw, "")


def check_runnable(params: Params, num_items: int | None = None) -> None:
    """Refuse, in one line, combinations of valid values that no stage could run with.

    Called by the validate stage before any other stage runs (DVC removes a stage's outputs
    before it runs, so a stage that fails on its params would have lost them already).
    `num_items`: the dataset's number of movies, where known.
    """
    train, ks = params.train, params.evaluate.ks
    if train.batch_size % train.processes:
        raise ParamsError(f"train.batch_size {train.batch_size} does not split evenly over train.processes "
                          f"{train.processes}; use a multiple of {train.processes}")
    if 10 not in ks:
        raise ParamsError(f"evaluate.ks: {list(ks)} lacks 10; HR@10 and NDCG@10 are the headline metrics "
                          "(model selection, plots, `dvc metrics diff`): add 10")
    if num_items is not None and max(ks) >= num_items:
        raise ParamsError(f"evaluate.ks: {max(ks)} is not below the {num_items:,} movies of {params.data.dataset}, "
                          "so every HR@K would be 1.0; use cut-offs below that")
    if num_items is not None:
        check_baselines(params, num_items)


# EASE inverts an items x items float64 matrix: while it does, the Gram matrix, its LU copy and
# the inverse are alive at once (3 x 8 bytes per cell), beside the float32 weights of up to two
# models the baselines stage still holds (the best so far and the previous one: 2 x 4 bytes).
EASE_BYTES_PER_CELL = 3 * 8 + 2 * 4
MEMORY_SHARE = 0.75  # of the machine's memory, the most EASE's matrices may take (data and scores need the rest)


def ease_items(params: Params, num_items: int) -> int:
    """How many items EASE is fit on: the `ease.max_items` most popular ones, or all of them."""
    return min(num_items, params.ease.max_items)


def ease_fit_bytes(items: int) -> int:
    """Peak bytes of EASE's dense matrices when fit on `items` items."""
    return EASE_BYTES_PER_CELL * items * items


def memory_limit_bytes() -> int | None:
    """The memory this process may use: physical memory, or less under a cgroup or address-space limit."""
    import resource

    limits = []
    try:
        limits.append(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not on Linux
        pass
    soft, _hard = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        limits.append(soft)
    try:
        text = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if text.isdigit():
            limits.append(int(text))
    except OSError:
        pass
    return min(limits) if limits else None


def check_baselines(params: Params, num_items: int, limit_bytes: int | None = None) -> None:
    """Refuse (ParamsError, one line) an EASE fit whose dense matrices would not fit in memory.

    Called by the validate stage where the catalogue size is known, and by the baselines stage
    before it allocates anything. ItemKNN and iALS need no check: their memory grows with the
    interactions and the items, never with items x items.
    """
    limit = memory_limit_bytes() if limit_bytes is None else limit_bytes
    n = ease_items(params, num_items)
    need = ease_fit_bytes(n)
    if limit is None or need <= MEMORY_SHARE * limit:
        return
    most = math.isqrt(int(MEMORY_SHARE * limit) // EASE_BYTES_PER_CELL)
    raise ParamsError(f"ease.max_items: fitting EASE on {n:,} of the {num_items:,} movies needs about "
                      f"{need / 1e9:.1f} GB ({n:,} x {n:,} matrices: three float64 to invert, two float32 of "
                      f"weights), more than {MEMORY_SHARE:.0%} of the {limit / 1e9:.1f} GB this machine allows; "
                      f"set ease.max_items to {most:,} or less (EASE then fits the most popular movies and "
                      "never recommends the rest)")


def check_data(params: Params, root: str | Path = ".") -> None:
    """Refuse, before the download stage removes anything, a data.file setup DVC cannot follow.

    The download stage depends on the folder `input/` (dvc.yaml): a file elsewhere would not
    rerun the pipeline when it changes. The file's content is checked by the download stage.
    """
    data = params.data
    if data.dataset != "file":
        return
    f = data.file
    for key, value in (("interactions", f.interactions), ("items", f.items)):
        if not value and key == "items":
            continue
        path = Path(value)
        inside = not path.is_absolute() and path.parts[:1] == (INPUT_DIR,) and ".." not in path.parts
        if not inside:
            raise ParamsError(f"data.file.{key}: {value!r} is not inside {INPUT_DIR}/, so DVC would not rerun the "
                              f"pipeline when it changes; copy it there, `dvc add {INPUT_DIR}/<name>`, and set "
                              f"data.file.{key}: {INPUT_DIR}/<name>")
        full = Path(root) / path
        if not full.is_file():
            what = "is a folder" if full.is_dir() else "does not exist"
            raise ParamsError(f"data.file.{key}: {value} {what}; put the file there (`dvc pull` if it is "
                              f"tracked), or fix data.file.{key}")
    if params.split.positives == "rated" and not f.rating:
        raise ParamsError("split.positives: rated needs ratings, but data.file.rating is \"\"; name the "
                          "file's rating column, or set split.positives: all")


def _keys(cls, prefix: str = ""):
    for f in dataclasses.fields(cls):
        hint = typing.get_type_hints(cls)[f.name]
        if dataclasses.is_dataclass(hint):
            yield from _keys(hint, f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}"


MISSING = object()  # what `lookup` returns for a key that is not there


def lookup(mapping, dotted: str):
    """The value at a dotted key (`gmf.lr`) of a nested mapping, or MISSING."""
    node = mapping
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return MISSING
        node = node[part]
    return node


def check_complete(path: str | Path = "params.yaml") -> None:
    """Refuse a params.yaml that leaves out a key (the validate stage's check).

    Stages fill a missing key with its default, but DVC reads the keys each stage declares from
    the file itself and, where one is missing, fails that stage after removing its outputs.
    """
    raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    missing = [key for key in _keys(Params) if lookup(raw, key) is MISSING]
    if missing:
        first = missing[0]
        value = lookup(Params().to_dict(), first)
        more = f" (and {len(missing) - 1} more: {', '.join(missing[1:4])}{', ...' if len(missing) > 4 else ''})" \
            if len(missing) > 1 else ""
        raise ParamsError(f"{path}: {first} is missing{more}; DVC reads every key from the file, so write "
                          f"it out (default: {first.split('.')[-1]}: {json.dumps(value)}), or `git checkout "
                          f"HEAD -- {path}` for the committed file")


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate params.yaml; every problem becomes a one-line ParamsError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ParamsError(f"{path}: not found; run from the project root, where params.yaml is") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ParamsError(f"{path}: not valid YAML{where}; fix the syntax there") from None
    return parse_params(raw)

