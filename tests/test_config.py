"""ncf.config: params.yaml -> frozen, validated Params; every problem is a one-line ParamsError."""

from __future__ import annotations

import copy
import dataclasses
import re
from pathlib import Path

import pytest
import yaml

from ncf.config import Params, ParamsError, load_params, parse_params

PARAMS_YAML = Path(__file__).resolve().parents[1] / "params.yaml"


@pytest.fixture(scope="module")
def raw() -> dict:
    """The repo's params.yaml as plain YAML (what a user wrote)."""
    return yaml.safe_load(PARAMS_YAML.read_text(encoding="utf-8"))


def with_value(raw: dict, dotted: str, value) -> dict:
    """A deep copy of `raw` with `dotted` (e.g. 'gmf.lr') set to `value`."""
    out = copy.deepcopy(raw)
    *parents, leaf = dotted.split(".")
    node = out
    for key in parents:
        node = node[key]
    node[leaf] = value
    return out


def error_of(raw: dict) -> str:
    with pytest.raises(ParamsError) as info:
        parse_params(raw)
    msg = str(info.value)
    assert "\n" not in msg and "\r" not in msg, f"ParamsError must be one line: {msg!r}"
    assert msg.strip(), "ParamsError must say something"
    return msg


def _leaves(node, prefix=""):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _leaves(v, f"{prefix}{k}.")
    else:
        yield prefix[:-1], node


# --- the repo's own params.yaml ----------------------------------------------------------------

def test_repo_params_load_and_round_trip(raw):
    params = load_params(PARAMS_YAML)
    assert isinstance(params, Params)
    # Every value in the file arrives unchanged (lists as lists after to_dict) and no key is
    # missing from or added to the file.
    assert params.to_dict() == raw
    # And the plain dict validates back into an equal object.
    assert parse_params(params.to_dict()) == params


def test_repo_params_values_typed(raw):
    params = load_params(PARAMS_YAML)
    for dotted, value in _leaves(raw):
        got = params
        for part in dotted.split("."):
            got = getattr(got, part)
        if isinstance(value, list):
            assert isinstance(got, tuple) and list(got) == value, dotted
        else:
            assert got == value and type(got) is type(value), dotted


def test_every_key_in_params_yaml_has_a_one_line_comment(raw):
    """Every leaf key line carries a `# ...` comment on the same line."""
    leaf_lines = {}
    stack: list[tuple[int, str]] = []
    for lineno, line in enumerate(PARAMS_YAML.read_text(encoding="utf-8").splitlines(), 1):
        m = re.match(r"^(\s*)([A-Za-z_][\w]*):(.*)$", line)
        if not m:
            continue
        indent, key, rest = len(m.group(1)), m.group(2), m.group(3)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        dotted = ".".join([s[1] for s in stack] + [key])
        value_part = rest.split("#", 1)[0].strip()
        if value_part == "":  # a section header
            stack.append((indent, key))
            continue
        leaf_lines[dotted] = (lineno, rest)
    # The line scan found exactly the keys YAML sees, so no key escaped the check.
    assert set(leaf_lines) == {k for k, _ in _leaves(raw)}
    for dotted, (lineno, rest) in leaf_lines.items():
        assert "#" in rest, f"params.yaml:{lineno}: {dotted} has no comment"
        comment = rest.split("#", 1)[1].strip()
        assert len(comment) >= 5, f"params.yaml:{lineno}: {dotted} has an empty comment"


def test_missing_keys_take_defaults():
    assert parse_params({}) == Params()
    assert parse_params(None) == Params()
    assert parse_params({"gmf": {"dim": 8}}).gmf.dim == 8
    assert parse_params({"gmf": {"dim": 8}}).gmf.lr == Params().gmf.lr


def test_params_is_frozen():
    params = parse_params({})
    with pytest.raises(dataclasses.FrozenInstanceError):
        params.seed = 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        params.gmf.dim = 3
    assert isinstance(params.mlp.layers, tuple)  # not a list that could be mutated in place
    assert isinstance(params.evaluate.ks, tuple)


# --- accepted spellings ------------------------------------------------------------------------

def test_string_float_from_dvc_is_accepted(raw):
    # `dvc exp run -S gmf.lr=1e-5` writes `lr: 1e-5`, which YAML 1.1 reads as a string.
    assert yaml.safe_load("lr: 1e-5")["lr"] == "1e-5"  # the premise of the feature
    params = parse_params(with_value(raw, "gmf.lr", "1e-5"))
    assert params.gmf.lr == 1e-05 and type(params.gmf.lr) is float


def test_string_float_through_load_params(tmp_path, raw):
    text = PARAMS_YAML.read_text(encoding="utf-8").replace("lr: 0.015", "lr: 1e-5", 1)  # the first lr is gmf.lr
    assert "lr: 1e-5" in text
    path = tmp_path / "params.yaml"
    path.write_text(text, encoding="utf-8")
    assert load_params(path).gmf.lr == 1e-05


def test_int_where_float_expected_is_accepted(raw):
    params = parse_params(with_value(raw, "data.timeout_s", 5))
    assert params.data.timeout_s == 5.0 and type(params.data.timeout_s) is float


# --- rejected values ---------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("dotted", "value", "fragments"),
    [
        ("num_negatives", True, ["num_negatives", "True"]),          # a bool is never a number
        ("num_negatives", 2.5, ["num_negatives", "2.5"]),            # a count must be whole
        ("train.batch_size", 2.5, ["train.batch_size", "2.5"]),
        ("num_negatives", 0, ["num_negatives", "0", ">= 1"]),
        ("gmf.lr", -0.001, ["gmf.lr", "-0.001", "> 0"]),
        ("gmf.lr", "fast", ["gmf.lr", "fast"]),
        ("gmf.lr", "nan", ["gmf.lr", "finite"]),
        ("gmf.l2", -1.0, ["gmf.l2", ">= 0"]),
        ("gmf.biases", 1, ["gmf.biases", "true or false"]),
        ("mlp.layers", [], ["mlp.layers", "non-empty list"]),
        ("mlp.layers", 64, ["mlp.layers", "list"]),
        ("mlp.layers", [64, 0, 16], ["mlp.layers[1]", "0", ">= 1"]),
        ("mlp.layers", [64, True], ["mlp.layers[1]"]),
        ("neumf.alpha", 1.5, ["neumf.alpha", "between 0 and 1"]),
        ("neumf.optimizer", "rmsprop", ["neumf.optimizer", "rmsprop", "sgd", "adam"]),
        ("data.dataset", "ml-99k", ["data.dataset", "ml-99k", "ml-100k"]),
        ("data.sources", ["grouplens", "ftp"], ["data.sources", "ftp", "grouplens", "local", "pypi"]),
        ("device", "tpu", ["device", "tpu", "auto", "cpu", "cuda"]),
        ("evaluate.ks", [10, 0], ["evaluate.ks[1]", ">= 1"]),
        ("seed", -1, ["seed", ">= 0"]),
        ("gmf", 3, ["gmf", "mapping"]),
    ],
)
def test_bad_values_are_one_line_errors(raw, dotted, value, fragments):
    msg = error_of(with_value(raw, dotted, value))
    for fragment in fragments:
        assert fragment in msg, f"{fragment!r} not in {msg!r}"


@pytest.mark.parametrize(
    ("edit", "typo", "suggestion"),
    [
        ({"num_negative": 4}, "num_negative", "num_negatives"),
        ({"gmf": {"dimm": 8}}, "gmf.dimm", "gmf.dim"),
        ({"mlp": {"layer": [8]}}, "mlp.layer", "mlp.layers"),
        ({"evalute": {}}, "evalute", "evaluate"),
    ],
)
def test_unknown_key_suggests_close_match(raw, edit, typo, suggestion):
    broken = copy.deepcopy(raw)
    for key, value in edit.items():
        if isinstance(value, dict) and key in broken:
            broken[key].update(value)
        else:
            broken[key] = value
    msg = error_of(broken)
    assert msg.startswith(f"{typo}:"), msg
    assert "unknown key" in msg
    assert f"did you mean {suggestion}?" in msg


def test_unknown_key_without_close_match_lists_known_keys(raw):
    msg = error_of(with_value(raw, "gmf.zzzzzz", 1))
    assert "gmf.zzzzzz" in msg
    for known in ("dim", "biases", "lr", "l2"):
        assert known in msg


def test_invalid_yaml_is_one_line_error(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("seed: 0\ngmf:\n  dim: [64\n  lr: 0.1\n", encoding="utf-8")
    with pytest.raises(ParamsError) as info:
        load_params(path)
    msg = str(info.value)
    assert "\n" not in msg
    assert str(path) in msg and "YAML" in msg
    assert re.search(r"line \d+", msg)


def test_missing_file_is_one_line_error(tmp_path):
    with pytest.raises(ParamsError) as info:
        load_params(tmp_path / "nope.yaml")
    assert "\n" not in str(info.value)
    assert "nope.yaml" in str(info.value)


def test_top_level_not_a_mapping(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("- 1\n- 2\n", encoding="utf-8")
    with pytest.raises(ParamsError) as info:
        load_params(path)
    assert "\n" not in str(info.value)
    assert "mapping" in str(info.value)


def test_huge_int_for_a_float_is_a_params_error(raw):
    msg = error_of(with_value(raw, "data.timeout_s", 10**400))
    assert "data.timeout_s" in msg


def test_every_param_is_documented_in_docs_params():
    table = (Path(__file__).resolve().parents[1] / "docs" / "params.md").read_text()

    def keys(cls, prefix=""):
        for f in dataclasses.fields(cls):
            default = getattr(cls, f.name, None)  # a section's default is an instance of its class
            if dataclasses.is_dataclass(default):
                yield from keys(type(default), f"{prefix}{f.name}.")
            else:
                yield f"{prefix}{f.name}"

    missing = [k for k in keys(Params) if f"| `{k}` |" not in table]
    assert not missing, f"the param table in docs/params.md lacks {missing}"


def test_the_param_table_gives_the_defaults_of_params_yaml():
    root = Path(__file__).resolve().parents[1]
    table = (root / "docs" / "params.md").read_text()
    documented = {key: yaml.safe_load(default.strip()) for key, default in
                  re.findall(r"^\| `([a-z0-9_.]+)` \|([^|]*)\|", table, flags=re.M)}

    def flat(node, prefix=""):
        for key, value in node.items():
            if isinstance(value, dict):
                yield from flat(value, f"{prefix}{key}.")
            else:
                yield f"{prefix}{key}", value

    committed = dict(flat(yaml.safe_load((root / "params.yaml").read_text())))
    wrong = {k: (documented.get(k), v) for k, v in committed.items() if documented.get(k) != v}
    assert not wrong, f"docs/params.md's default column differs from params.yaml (table, yaml): {wrong}"


def test_the_committed_params_are_the_documented_defaults():
    assert load_params(Path(__file__).resolve().parents[1] / "params.yaml") == Params()


@pytest.mark.parametrize(("change", "message"), [
    ({"train": {"processes": 3, "batch_size": 1024}},
     "train.batch_size 1024 does not split evenly over train.processes 3"),
    ({"evaluate": {"ks": [5, 20]}}, "evaluate.ks: [5, 20] lacks 10"),
])
def test_combinations_no_stage_could_run_are_refused(change, message):
    from ncf.config import check_runnable

    with pytest.raises(ParamsError) as exc:
        check_runnable(parse_params(change))
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_cut_offs_beyond_the_catalogue_are_refused_when_its_size_is_known():
    from ncf.config import check_runnable

    params = parse_params({"evaluate": {"ks": [10, 10000]}})
    check_runnable(params)  # size unknown: nothing to compare with
    with pytest.raises(ParamsError, match="evaluate.ks: 10000 is not below the 1,682 movies of ml-100k"):
        check_runnable(params, num_items=1682)
    check_runnable(parse_params({}), num_items=1682)  # the defaults run


def test_a_params_file_that_leaves_out_a_key_is_refused_by_the_completeness_check(tmp_path):
    from ncf.config import check_complete

    committed = (Path(__file__).resolve().parents[1] / "params.yaml").read_text()
    check_complete(Path(__file__).resolve().parents[1] / "params.yaml")  # the committed file is complete
    lacking = tmp_path / "params.yaml"
    lacking.write_text("\n".join(line for line in committed.splitlines() if "chunk_users" not in line))
    with pytest.raises(ParamsError, match=r"evaluate.chunk_users is missing; .*default: chunk_users: 1024"):
        check_complete(lacking)
    lacking.write_text("")
    with pytest.raises(ParamsError, match=r"seed is missing \(and \d+ more: num_negatives, device, threads, \.\.\.\)"):
        check_complete(lacking)
