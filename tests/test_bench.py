"""`make bench` end to end on a tiny split: every part runs in its own process and reports."""

from __future__ import annotations

import json

from ncf.bench import main as bench_main


def test_bench_measures_training_and_evaluation_against_the_seed_loop(tmp_path, clustered_split):
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
