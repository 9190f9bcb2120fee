"""The README and docs/ stay true to what the repository holds: links resolve, the README stays
short, and its results table is the generated seeds report, not numbers typed by hand."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_the_readme_stays_short():
    assert len((ROOT / "README.md").read_text(encoding="utf-8")) <= 10_000


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_points_to_a_file_that_exists(page):
    text = page.read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+://|#|mailto:", target):
            continue
        path = (page.parent / target.split("#")[0]).resolve()
        assert path.exists(), f"{page.name} links to {target}, which does not exist"


def test_readme_results_are_the_generated_seeds_report():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("<!-- results:start -->")[1].split("<!-- results:end -->")[0]
    rows = [line for line in block.splitlines() if line.startswith("| ")]
    report = (ROOT / "docs/studies/seeds/experiments.md").read_text(encoding="utf-8")
    assert len(rows) >= 8, "the README's results block lost its table"
    for row in rows:
        assert row in report, f"README row not in docs/studies/seeds/experiments.md: {row}"


def test_remotes_md_lists_every_key_of_a_checkpoint(tmp_path):
    from ncf.models import GMF, save_checkpoint

    import torch

    save_checkpoint(GMF(3, 4, 2), tmp_path / "gmf.pt", kind="gmf", params={}, info={})
    keys = torch.load(tmp_path / "gmf.pt", weights_only=True).keys()
    text = (ROOT / "docs/remotes.md").read_text(encoding="utf-8")
    sentence = text.split("A checkpoint is a dict")[1].split("`load_checkpoint`")[0]
    assert set(keys) == set(re.findall(r"`(\w+)`", sentence)), sentence


def test_speed_md_after_columns_are_the_generated_seeds_report():
    """speed.md's "after" HR@10 of NeuMF, GMF and MLP per seed are the seeds report's rows."""
    report = (ROOT / "docs/studies/seeds/experiments.md").read_text(encoding="utf-8")
    head = next(line for line in report.splitlines() if line.startswith("| seed |"))
    models = [cell.strip() for cell in head.strip("|").split("|")]
    per_seed = {cells[0]: dict(zip(models, cells)) for cells in (
        [c.strip() for c in line.strip("|").split("|")] for line in report.split(head)[1].splitlines()
        if re.match(r"\| \d+ \|", line))}
    speed = (ROOT / "docs/speed.md").read_text(encoding="utf-8")
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in speed.splitlines()
            if re.match(r"\| \d \| 0\.", line)]
    assert len(rows) == 5 and set(per_seed) == {"0", "1", "2", "3", "4"}
    for cells in rows:
        seed = cells[0]
        # | seed | NeuMF HR@10 before | after | NDCG before | after | GMF before | after | MLP before | after |
        assert (cells[2], cells[6], cells[8]) == tuple(per_seed[seed][m] for m in ("neumf", "gmf", "mlp")), seed
