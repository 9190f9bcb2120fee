"""Figures drawn from what the stages wrote: per-epoch TSVs and metrics/evaluate.json."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from ncf.io import output_file  # noqa: E402

COLORS = {"neumf": "#4C72B0", "gmf": "#DD8452", "mlp": "#55A868", "popularity": "#8C8C8C"}
LABELS = {"neumf": "NeuMF", "gmf": "GMF", "mlp": "MLP", "popularity": "Popularity"}


def _save(fig, path) -> None:
    with output_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
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
    _save(fig, path)


def model_comparison(metrics: dict, path) -> None:
    """Test HR@10 and NDCG@10 by model, with the values written on the bars."""
    models = list(metrics)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, key in zip(axes, ("hr@10", "ndcg@10")):
        values = [metrics[m][key] for m in models]
        bars = ax.bar([LABELS.get(m, m) for m in models], values,
                      color=[COLORS.get(m, "#999999") for m in models], edgecolor="black")
        ax.bar_label(bars, fmt="%.4f", padding=2)
        ax.set(title=f"Test {key.upper()} (full ranking)", ylabel=key.upper())
        ax.set_ylim(0, max(values) * 1.2 if max(values) > 0 else 1)
        ax.grid(axis="y", alpha=0.3)
    _save(fig, path)
