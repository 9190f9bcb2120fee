"""The stage figures, checked on what matplotlib drew (not on the PNG's pixels)."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from ncf import plots


@pytest.fixture
def drawn(monkeypatch):
    """The figures `save_figure` was given, left open for the test to inspect."""
    figures = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, path, dpi=120: figures.append(fig))
    yield figures
    plt.close("all")


def test_curves_validated_every_third_epoch_join_the_validated_epochs(drawn, tmp_path):
    nan = np.nan
    curve = pd.DataFrame({"epoch": range(1, 8), "loss": [0.7, 0.6, 0.5, 0.45, 0.4, 0.38, 0.37],
                          "valid_hr10": [nan, nan, 0.3, nan, nan, 0.5, 0.4],
                          "valid_ndcg10": [nan, nan, 0.1, nan, nan, 0.2, 0.15]})
    plots.training_curves({"gmf": curve}, tmp_path / "curves.png")
    ax_hr, ax_loss = drawn[0].axes
    (hr_line,) = ax_hr.get_lines()
    assert list(hr_line.get_xdata()) == [3, 6, 7] and list(hr_line.get_ydata()) == [0.3, 0.5, 0.4]
    (best,) = ax_hr.collections  # the circle on the epoch kept
    assert best.get_offsets().tolist() == [[6.0, 0.5]]
    (loss_line,) = ax_loss.get_lines()
    assert list(loss_line.get_xdata()) == list(range(1, 8))  # every epoch's loss
