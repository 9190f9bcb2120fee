"""Stage scripts as DVC runs them: --help, and one clear line with exit code 2 on bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p.name for p in (ROOT / "stages").glob("[!_]*.py"))


def run_stage(script: str, *args: str, cwd: Path = ROOT):
    return subprocess.run([sys.executable, str(ROOT / "stages" / script), *args], cwd=cwd,
                          capture_output=True, text=True)


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_describes_the_stage(script):
    proc = run_stage(script, "--help")
    assert proc.returncode == 0
    assert script.removesuffix(".py") + ":" in proc.stdout  # the docstring leads with the stage name
    assert "--params" in proc.stdout


@pytest.mark.parametrize("bad, key", [
    ("num_negatives: 0\n", "num_negatives"),
    ("num_negatives: true\n", "num_negatives"),
    ("gmf:\n  dimm: 8\n", "gmf.dimm"),
    ("data:\n  dataset: ml-99k\n", "data.dataset"),
    ("mlp:\n  layers: []\n", "mlp.layers"),
])
def test_bad_params_give_one_line_and_exit_2_before_any_work(tmp_path, bad, key):
    params = tmp_path / "params.yaml"
    params.write_text(bad)
    out = tmp_path / "split"
    proc = run_stage("split.py", "--params", str(params), "--interactions", "missing.parquet",
                     "--items", "missing.parquet", "--out", str(out),
                     "--catalog", str(tmp_path / "catalog.parquet"), "--report", str(tmp_path / "data.json"),
                     cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and key in lines[0]
    assert "Traceback" not in proc.stderr
    assert not out.exists()


def test_missing_checkpoint_is_one_line(tmp_path):
    (tmp_path / "params.yaml").write_text("seed: 0\n")
    split = tmp_path / "split"
    split.mkdir()
    import pandas as pd

    for name, frame in {
        "train": pd.DataFrame({"user": [0, 0, 1], "item": [0, 1, 1]}),
        "valid": pd.DataFrame({"user": [0], "item": [2]}),
        "test": pd.DataFrame({"user": [0], "item": [3]}),
        "users": pd.DataFrame({"user": [0, 1]}),
        "items": pd.DataFrame({"item": [0, 1, 2, 3]}),
    }.items():
        frame.to_parquet(split / f"{name}.parquet")
    pd.DataFrame({"item": [0, 1, 2, 3], "title": list("abcd")}).to_parquet(tmp_path / "catalog.parquet")
    proc = run_stage("evaluate.py", "--split", str(split), "--catalog", str(tmp_path / "catalog.parquet"),
                     "--models", str(tmp_path / "none"), "--baselines", str(tmp_path / "none"),
                     "--metrics", str(tmp_path / "m.json"), "--ranks", str(tmp_path / "r.parquet"),
                     "--sample", str(tmp_path / "s.md"),
                     cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "neumf.pt: not found" in proc.stderr
    assert not (tmp_path / "m.json").exists()


def test_plot_of_metrics_without_hr10_is_one_line_not_a_traceback(tmp_path):
    # `dvc repro -s evaluate` skips validate; with ks lacking 10 the metrics have no hr@10.
    curves = tmp_path / "curves"
    curves.mkdir()
    for model in ("neumf", "gmf", "mlp"):
        (curves / f"{model}.tsv").write_text("epoch\tloss\tvalid_hr10\tvalid_ndcg10\n1\t0.5\t0.1\t0.05\n")
    (tmp_path / "evaluate.json").write_text('{"neumf": {"hr@5": 0.1, "ndcg@5": 0.05}}')
    (tmp_path / "params.yaml").write_text("evaluate: {ks: [5]}\n")
    proc = run_stage("plot.py", "--curves", str(curves), "--metrics", str(tmp_path / "evaluate.json"),
                     "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "no hr@10 / ndcg@10 for neumf; evaluate.ks must include 10" in proc.stderr
    assert not (tmp_path / "out" / "models.png").exists()


def test_import_meanwhile_imports_on_a_thread_and_a_later_import_waits_for_it(tmp_path, monkeypatch):
    import importlib
    import threading

    from ncf.stage import import_meanwhile

    (tmp_path / "slow_module_for_test.py").write_text(
        "import threading, time\nloaded_on = threading.current_thread().name\ntime.sleep(0.3)\ndone = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "slow_module_for_test", raising=False)
    import_meanwhile("slow_module_for_test")
    module = importlib.import_module("slow_module_for_test")  # waits for the thread's import to end
    assert module.done and module.loaded_on == "import slow_module_for_test" != threading.current_thread().name


def test_reuse_freed_memory_sets_glibcs_malloc():
    import os
    import platform

    # In a child process: the setting is the process's own, and stays for its life.
    code = ("from ncf.stage import reuse_freed_memory; import numpy as np; ok = reuse_freed_memory(); "
            "a = np.ones(50_000_000 // 8); del a; b = np.ones(50_000_000 // 8); print(ok, b.sum())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")})
    glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert out.stdout.split() == [str(glibc), str(float(50_000_000 // 8))]


def test_reuse_freed_memory_with_arrow_puts_pyarrow_on_the_same_heap():
    import os
    import platform

    code = ("import os; os.environ.pop('ARROW_DEFAULT_MEMORY_POOL', None)\n"
            "from ncf.stage import reuse_freed_memory; ok = reuse_freed_memory(arrow=True)\n"
            "import pyarrow as pa; print(ok, pa.default_memory_pool().backend_name)\n"
            "try:\n    reuse_freed_memory(arrow=True)\nexcept RuntimeError as exc:\n    print('late:', exc)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")})
    glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    lines = out.stdout.splitlines()
    assert lines[0] == ("True system" if glibc else "False mimalloc")
    if glibc:  # once pyarrow is loaded its allocator is fixed: a late call says so instead of doing nothing
        assert lines[1].startswith("late: ") and "before pyarrow is imported" in lines[1]


def test_download_of_an_own_file_of_numbers_without_items_file_never_loads_pandas(tmp_path):
    # The download writes the Arrow table it read as it is: loading pandas would cost ~0.2 s of CPU
    # that the CSV reader, on every core, would wait for (and pa.table(), pa.array(), a Python
    # scalar in a compute call or Schema.empty_table() each load it). Text ids with leading zeros
    # ("0011") and ISO timestamps still do: telling them apart takes a scalar, parsing the other pandas.
    (tmp_path / "input").mkdir()
    (tmp_path / "input" / "log.csv").write_text("user,item,when\n1,10,5\n1,11,6\n2,10,7\n")
    (tmp_path / "params.yaml").write_text("data:\n  dataset: file\n  file:\n    interactions: input/log.csv\n"
                                          "    user: user\n    item: item\n    timestamp: when\n")
    probe = (f"import runpy, sys\nsys.path.insert(0, {str(ROOT / 'stages')!r})\n"
             "sys.argv = ['download.py', '--interactions', 'raw', '--items', 'items.parquet']\n"
             "try:\n    runpy.run_path(sys.path[0] + '/download.py', run_name='__main__')\n"
             "finally:\n    print('pandas' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"
    assert "3 interactions, 0 items named" in proc.stderr
    import pandas as pd

    raw = pd.read_parquet(tmp_path / "raw")
    assert raw["user_id"].tolist() == [1, 1, 2] and raw["item_id"].tolist() == [10, 11, 10]
    assert raw["timestamp"].tolist() == [5, 6, 7]
    assert pd.read_parquet(tmp_path / "items.parquet").columns.tolist() == ["item_id", "title"]
