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


def training_curves(curves: dict[str, pd.DataFrame], path, base: dict[str, pd.DataFrame] | None = None,
                    names: tuple[str, str] = ("", "")) -> None:
    """Validation HR@10 and training loss per epoch, one line per model, best epoch marked.

    With `base` (another revision's curves, `ncf review`), its lines are drawn dashed in the same
    colours, and `names` (base, this one) tell the two revisions apart in the legend."""
    fig, (ax_hr, ax_loss) = plt.subplots(1, 2, figsize=(11, 4))
    sides = [(curves, "-", f", {names[1]}" if base is not None else "")]
    if base is not None:
        sides.append((base, "--", f", {names[0]}"))
    for frames, style, suffix in sides:
        for name, df in frames.items():
            color, label = COLORS.get(name), LABELS.get(name, name) + suffix
            # Only the validated epochs (`evaluate.valid_every` > 1 leaves the others empty): one
            # line through them, not isolated dots between gaps.
            validated = df.dropna(subset=["valid_hr10"])
            ax_hr.plot(validated["epoch"], validated["valid_hr10"], marker=".", color=color, label=label,
                       linestyle=style)
            best = validated.loc[validated["valid_hr10"].idxmax()]
            ax_hr.scatter([best["epoch"]], [best["valid_hr10"]], s=80, facecolors="none", edgecolors=color)
            trained = df.dropna(subset=["loss"])
            ax_loss.plot(trained["epoch"], trained["loss"], marker=".", color=color, label=label, linestyle=style)
    ax_hr.set(title="Validation HR@10 (circle: epoch kept)", xlabel="epoch", ylabel="HR@10")
    ax_loss.set(title="Training loss (BCE + L2)", xlabel="epoch", ylabel="loss")
    for ax in (ax_hr, ax_loss):
        ax.grid(alpha=0.3)
        ax.legend()
    save_figure(fig, path)


def model_comparison(metrics: dict, path, base: dict | None = None, names: tuple[str, str] = ("", "")) -> None:
    """Test HR@10 and NDCG@10 by model, values on the bars, whiskers of +-1.96 standard errors
    over users (where metrics give `hr@10_se`): how far apart two bars must be to mean much.

    With `base` (another revision's metrics, `ncf review`), each model gets two bars side by side:
    the base revision's hatched and pale, this one's solid; `names` (base, this one) label them."""
    if base is not None:
        _paired_bars(base, metrics, path, names)
        return
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


def _paired_bars(base: dict, new: dict, path, names: tuple[str, str]) -> None:
    import numpy as np
    from matplotlib.patches import Patch

    models = [m for m in new if m in base]
    x = np.arange(len(models))
    colors = [COLORS.get(m, "#999999") for m in models]
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    for ax, key in zip(axes, ("hr@10", "ndcg@10")):
        top = 0.0
        for offset, metrics, style in ((-0.2, base, {"alpha": 0.45, "hatch": "//"}), (0.2, new, {})):
            values = [metrics[m][key] for m in models]
            errors = [1.96 * metrics[m].get(f"{key}_se", 0.0) for m in models]
            bars = ax.bar(x + offset, values, width=0.4, yerr=errors, capsize=3, color=colors, edgecolor="black",
                          error_kw={"elinewidth": 1, "ecolor": "#333333"}, **style)
            ax.bar_label(bars, fmt="%.3f", label_type="center", fontsize=7, rotation=90, color="black")
            top = max(top, *(v + e for v, e in zip(values, errors)))
        ax.set_xticks(x, [LABELS.get(m, m) for m in models], rotation=30)
        ax.set(title=f"Test {key.upper()}", ylabel=key.upper())
        ax.set_ylim(0, top * 1.08 if top > 0 else 1)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("Full ranking, whiskers: 95% over users", y=1.0)
    fig.legend(handles=[Patch(facecolor="#dddddd", hatch="//", edgecolor="black", label=f"{names[0]} (left)"),
                        Patch(facecolor="#777777", edgecolor="black", label=f"{names[1]} (right)")],
               loc="upper center", ncol=2, bbox_to_anchor=(0.5, 0.96), frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.9))
    save_figure(fig, path)
