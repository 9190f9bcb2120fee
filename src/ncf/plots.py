"""Figures drawn from what the stages wrote: per-epoch TSVs and metrics/evaluate.json."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from ncf.io import output_file  # noqa: E402
from ncf.registry import COLORS, LABELS  # noqa: E402


def save_figure(fig, path, dpi: int = 120) -> None:
    """Write `fig` as a PNG atomically (the stages' and `ncf report`'s figures) and close it."""
    with output_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)


def training_curves(curves: dict[str, pd.DataFrame], path) -> None:
    """Validation HR@10 and training loss per epoch, one line per model, best epoch marked."""
    fig, (ax_hr, ax_loss) = plt.subplots(1, 2, figsize=(11, 4))
    for name, df in curves.items():
        color = COLORS.get(name)
        ax_hr.plot(df["epoch"], df["valid_hr10"], marker=".", color=color, label=LABELS.get(name, name))
        best = df.loc[df["valid_hr10"].idxmax()]
        ax_hr.scatter([best["epoch"]], [best["valid_hr10"]], s=80, facecolors="none", edgecolors=color)
        trained = df.dropna(subset=["loss"])
        ax_loss.plot(trained["epoch"], trained["loss"], marker=".", color=color, label=LABELS.get(name, name))
    ax_hr.set(title="Validation HR@10 (circle: epoch kept)", xlabel="epoch", ylabel="HR@10")
    ax_loss.set(title="Training loss (BCE + L2)", xlabel="epoch", ylabel="loss")
    for ax in (ax_hr, ax_loss):
        ax.grid(alpha=0.3)
        ax.legend()
    save_figure(fig, path)


def model_comparison(metrics: dict, path) -> None:
    """Test HR@10 and NDCG@10 by model, values on the bars, whiskers of +-1.96 standard errors
    over users (where metrics give `hr@10_se`): how far apart two bars must be to mean much."""
    models = list(metrics)
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    for ax, key in zip(axes, ("hr@10", "ndcg@10")):
        values = [metrics[m][key] for m in models]
        errors = [1.96 * metrics[m].get(f"{key}_se", 0.0) for m in models]
        bars = ax.bar([LABELS.get(m, m) for m in models], values, yerr=errors, capsize=4,
                      error_kw={"elinewidth": 1, "ecolor": "#333333"},
                      color=[COLORS.get(m, "#999999") for m in models], edgecolor="black")
        ax.bar_label(bars, fmt="%.4f", padding=2, label_type="center", color="white", fontsize=9,
                     fontweight="bold")
        ax.set(title=f"Test {key.upper()} (full ranking; whiskers: 95% over users)", ylabel=key.upper())
        top = max(v + e for v, e in zip(values, errors))
        ax.set_ylim(0, top * 1.1 if top > 0 else 1)
        ax.tick_params(axis="x", labelrotation=30)
        ax.grid(axis="y", alpha=0.3)
    save_figure(fig, path)
