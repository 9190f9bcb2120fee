"""`make bench` end to end on a tiny split: every part runs in its own process and reports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.bench import main as bench_main
from ncf.config import load_params

ROOT = Path(__file__).resolve().parents[1]


def test_benchmarks_sit_beside_the_package_and_import_ncf_before_torch():
    # Not in what users import: the package's sources hold no benchmark, and setuptools looks for
    # packages to install under src/ only, where benchmarks/ is not.
    import tomllib

    find = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    assert find["where"] == ["src"] and not (ROOT / "src" / "benchmarks").exists()
    assert [p.name for p in (ROOT / "src").iterdir() if (p / "__init__.py").exists()] == ["ncf"]
    assert not [name for name in ("bench", "scale", "devicebench") if (ROOT / "src" / "ncf" / f"{name}.py").exists()]
    # `python -m benchmarks.<name>` loads the package first, and the package loads `ncf` (which
    # sets how torch computes on the CPU) before any benchmark brings in torch.
    probe = "import sys, benchmarks; print('ncf' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "False"]


def test_bench_measures_training_evaluation_and_the_busy_epoch(tmp_path, clustered_split):
    clustered_split(tmp_path / "split", users=60, items=90, liked=20)
    out = tmp_path / "bench.json"
    bench_main(["--split", str(tmp_path / "split"), "--batch-size", "256", "--repeats", "1", "--epochs", "1",
                "--skip-repro", "--skip-big", "--out", str(out)])
    report = json.loads(out.read_text())
    for key in ("neumf_epoch_s", "floor_epoch_s", "seed_epoch_s", "eval_s", "gmf_eval_s", "seed_eval_s"):
        assert report[key] >= 0, key
    for key in ("valid_hr10", "seed_valid_hr10"):
        assert 0 <= report[key] <= 1, key
    assert report["train_peak_rss_mb"] > 0 and report["eval_peak_rss_mb"] > 0
    # The targets are ratios: each is there and positive, even where a time rounds to 0.000 s.
    for key in ("epoch_vs_floor", "seed_vs_epoch", "seed_eval_vs_eval", "seed_eval_vs_gmf_eval"):
        assert report[key] > 0, key
    assert "repro_s" not in report and "big_eval_s" not in report  # skipped as asked
    # An epoch at the params' defaults, quiet and beside a busy core.
    assert report["quiet_epoch_s"] > 0 and report["busy_epoch_s"] > 0
    # The ratio comes from unrounded times; the times in the report are rounded to 3 digits.
    assert report["busy_epoch_ratio"] == pytest.approx(report["busy_epoch_s"] / report["quiet_epoch_s"], rel=0.1)
    assert report["busy_epoch_threads"] == load_params("params.yaml").threads  # the params' setting


def test_gpu_bench_runs_on_cpu_at_tiny_sizes_and_checks_its_numbers(tmp_path, clustered_split):
    from benchmarks.devicebench import main as device_main

    clustered_split(tmp_path / "split", users=60, items=90, liked=20)
    out = tmp_path / "bench-gpu.json"
    device_main(["--device", "cpu", "--split", str(tmp_path / "split"), "--interactions", "20000",
                 "--epochs", "3", "--batch-size", "512", "--big-batch", "4096", "--lr", "0.01",
                 "--out", str(out)])
    report = json.loads(out.read_text())
    assert report["device"] == "cpu"
    for name in ("ml100k", "ml20m"):
        assert report[f"{name}_samples_per_s"] > 0 and report[f"{name}_eval_s"] >= 0
        assert report[f"{name}_loss"][-1] < report[f"{name}_loss"][0]
        assert report[f"{name}_ranked_users"] > 0
    assert report["ml100k_valid_hr10"] > 3 * 10 / 90  # the clusters were learnt
    assert 0 < report["ml20m_vs_nvidia_a100"]


def test_stage_times_come_from_dvcs_own_output(tmp_path):
    # The "fit time" of each model in bench.json: each stage's share of a real `dvc repro`.
    from benchmarks.bench import _dvc_stages

    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "dvc.yaml").write_text(
        "stages:\n"
        "  slow:\n    cmd: python -c \"import time; time.sleep(1.0); open('a', 'w').write('a')\"\n    outs: [a]\n"
        "  quick:\n    cmd: python -c \"open('b', 'w').write(open('a').read())\"\n    deps: [a]\n    outs: [b]\n")
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"]):
        subprocess.run(cmd, cwd=repo, check=True, capture_output=True,
                       env={**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"})
    seconds, log, stages = _dvc_stages(repo, "repro")
    assert list(stages) == ["slow", "quick"] and "Running stage 'quick'" in log
    assert 1.0 <= stages["slow"] < seconds and 0 < stages["quick"] < stages["slow"]
