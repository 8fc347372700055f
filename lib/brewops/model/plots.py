"""Figures of the model evaluation. Each function returns a matplotlib Figure."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from brewops import plotstyle
from brewops.model import bands

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def plot_confusion_matrix(
    matrix: Sequence[Sequence[int]], title: str = "Confusion matrix"
) -> Figure:
    """Counts, shaded by the share of each true band (rows sum to 1)."""
    import matplotlib.pyplot as plt

    counts = np.asarray(matrix, dtype=float)
    if counts.shape != (bands.N_BANDS, bands.N_BANDS):
        raise ValueError(
            f"a {'x'.join(map(str, counts.shape))} confusion matrix, where this code has "
            f"{bands.N_BANDS} bands: it comes from a model of other bands, which these "
            "labels would misname"
        )
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for (row, col), value in np.ndenumerate(counts):
        background = image.cmap(image.norm(shares[row, col]))
        ax.text(
            col,
            row,
            f"{value:g}\n{shares[row, col]:.0%}",
            ha="center",
            va="center",
            fontsize=9,
            color=plotstyle.text_color_on(background),
        )
    ax.set_xticks(range(bands.N_BANDS), bands.LABELS)
    ax.set_yticks(range(bands.N_BANDS), bands.LABELS)
    ax.set_xlabel("predicted band (IBU)")
    ax.set_ylabel("true band (IBU)")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, label="share of the true band")
    fig.tight_layout()
    return fig


def plot_predicted_vs_actual(
    ibu: Sequence[float],
    predicted_ibu: Sequence[float],
    title: str = "Predicted vs actual IBU",
    ylabel: str = "predicted IBU",
) -> Figure:
    """Scatter on symlog axes (the catalogue spans 0 to 1157 IBU), band edges dashed.

    Any estimate of IBU can go on the vertical axis (a model's, or the Tinseth estimate).
    """
    import matplotlib.pyplot as plt

    actual = np.asarray(ibu, dtype=float)
    predicted = np.asarray(predicted_ibu, dtype=float)
    correct = bands.band_index(actual) == bands.band_index(predicted)
    fig, ax = plt.subplots(figsize=(6, 5.5))
    ax.scatter(
        actual[correct],
        predicted[correct],
        s=14,
        alpha=0.7,
        color=plotstyle.BLUE,
        label="same band",
    )
    ax.scatter(
        actual[~correct],
        predicted[~correct],
        s=18,
        alpha=0.8,
        marker="x",
        color=plotstyle.ORANGE,
        label="other band",
    )
    top = max(actual.max(initial=1), predicted.max(initial=1)) * 1.1
    ax.plot([0, top], [0, top], color="grey", linewidth=1, label="perfect")
    inner = bands.EDGES[1:-1]
    for k, edge in enumerate(inner):
        label = "band edges (" + ", ".join(f"{e:g}" for e in inner) + " IBU)" if k == 0 else None
        ax.axvline(edge, color="grey", linestyle="--", linewidth=0.7, label=label)
        ax.axhline(edge, color="grey", linestyle="--", linewidth=0.7)
    ax.set_xscale("symlog", linthresh=10)
    ax.set_yscale("symlog", linthresh=10)
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_xlabel("actual IBU")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig


def plot_reliability(
    true_band: Sequence[int],
    probabilities: Any,
    title: str = "Reliability of the band probabilities",
    label: str = "model",
) -> Figure:
    """Top-label reliability diagram: for the beers binned by the probability of their
    predicted band (`train.reliability_bins`), the share whose predicted band is right
    against that probability; the diagonal is where honest probabilities lie. Below, how
    many beers each bin holds (a point of few beers says little)."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    from brewops.model import train

    proba = np.asarray(probabilities, dtype=float)
    if proba.ndim != 2 or proba.shape[1] != bands.N_BANDS:
        raise ValueError(
            f"probabilities of shape {proba.shape}, where this code has {bands.N_BANDS} bands: "
            "one row per beer, one column per band"
        )
    table = train.reliability_bins(np.asarray(true_band), proba)
    filled = table[table["n"] > 0]
    ece = train.calibration_metrics(np.asarray(true_band), proba)["ece"]
    fig, (ax, counts) = plt.subplots(
        2, 1, figsize=(6, 6), sharex=True, gridspec_kw={"height_ratios": (3, 1)}
    )
    ax.plot([0, 1], [0, 1], color="grey", linewidth=1, label="honest probabilities")
    ax.plot(
        filled["confidence"],
        filled["accuracy"],
        marker="o",
        color=plotstyle.BLUE,
        label=f"{label} (ECE {ece:.3f})",
        clip_on=False,  # a bin all right or all wrong sits on the frame, drawn whole
    )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("share in the predicted band")
    ax.set_title(title)
    ax.legend(fontsize=9, loc="upper left")
    width = table["upper"] - table["lower"]
    counts.bar(table["lower"] + width / 2, table["n"], width=width * 0.9, color=plotstyle.GREY)
    counts.yaxis.set_major_locator(MaxNLocator(nbins=3, integer=True))
    counts.set_ylabel("beers")
    counts.set_xlabel("probability of the predicted band")
    fig.tight_layout()
    return fig


def plot_importance(importance: pd.DataFrame, top: int = 15, title: str | None = None) -> Figure:
    """Permutation importance (drop in accuracy), the `top` features, with one std."""
    import matplotlib.pyplot as plt

    shown = importance.head(top).iloc[::-1]
    fig, ax = plt.subplots(figsize=(6.5, 0.3 * len(shown) + 1.2))
    ax.barh(shown["feature"], shown["importance"], xerr=shown["std"], color=plotstyle.BLUE)
    ax.axvline(0, color="grey", linewidth=0.8)
    ax.set_xlabel("drop in accuracy when shuffled")
    ax.set_title(title or f"Permutation importance (top {len(shown)})")
    fig.tight_layout()
    return fig


def plot_comparison(
    metrics: dict[str, Any], keys: Sequence[str] = ("accuracy", "macro_f1")
) -> Figure:
    """The model against the baselines, cross-validated and on the newest fifth: a bar
    chart per figure of `keys` (one key named as text is that key)."""
    import matplotlib.pyplot as plt

    keys = [keys] if isinstance(keys, str) else list(keys)
    rows = comparison_frame(metrics)
    width = min(5 * len(keys), plotstyle.MAX_WIDTH)
    fig, axes = plt.subplots(1, len(keys), figsize=(width, 3.5), squeeze=False)
    for ax, key in zip(axes.flat, keys, strict=True):
        table = rows.pivot(index="model", columns="evaluation", values=key)
        # the known ones in a fixed order, any other baseline after them (never left out)
        order = [name for name in _ORDER if name in table.index]
        table = table.loc[order + [name for name in table.index if name not in order]]
        # the evaluations differ in hatching too, not only in colour (greyscale print)
        table.plot.bar(
            ax=ax, rot=0, color=plotstyle.PALETTE[: len(table.columns)], edgecolor="white"
        )
        for bars, hatch in zip(ax.containers, plotstyle.HATCHES, strict=False):
            for bar in bars:
                bar.set_hatch(hatch)
        # "random_forest_6_columns" on one line runs into its neighbours' names
        names = [textwrap.fill(name.replace("_", " "), 14) for name in table.index]
        ax.set_xticks(range(len(names)), names)
        ax.set_title(key)
        if key in _SHARES:  # MAE (IBU) and R² (can be negative) keep their own scale
            ax.set_ylim(0, 1)
        ax.set_xlabel("")
        ax.set_ylabel(_SCORE_LABELS.get(key, key))
        ax.legend(fontsize=8)
    fig.suptitle("The model against the baselines")
    fig.tight_layout()
    return fig


_SCORE_LABELS = {
    "accuracy": "accuracy (share in the right band)",
    "macro_f1": "macro-F1 (mean of the bands' F1)",
}


_SHARES = ("accuracy", "macro_f1")  # shares of the beers: a 0-1 axis

_ORDER = ("model", "tinseth_formula", "random_forest_6_columns", "majority_class")


def calibration_frame(metrics: dict[str, Any]) -> pd.DataFrame:
    """The cross-validated probability scores (`brier`, `log_loss`, `ece`), one row for
    the model and one per baseline that gives probabilities (the Tinseth formula gives
    none: it has no row)."""
    keys = ("brier", "log_loss", "ece")
    rows = {
        "model": metrics["cv"],
        **{name: figures for name, figures in metrics["baselines"].items() if "brier" in figures},
    }
    return pd.DataFrame(
        {name: {k: figures.get(k) for k in keys} for name, figures in rows.items()}
    ).T


def comparison_frame(metrics: dict[str, Any]) -> pd.DataFrame:
    """One row per (model or baseline, evaluation) with the headline figures."""
    keys = ("accuracy", "macro_f1", "mae", "r2", "mae_ibu_le_150", "r2_ibu_le_150")
    rows = []
    for evaluation, model_figures, baselines in (
        ("cross-validation", metrics["cv"], metrics["baselines"]),
        ("newest fifth", metrics["time_split"], metrics["time_split"].get("baselines", {})),
    ):
        for name, figures in (("model", model_figures), *baselines.items()):
            rows.append(
                {"model": name, "evaluation": evaluation, **{k: figures.get(k) for k in keys}}
            )
    return pd.DataFrame(rows)


_EVALUATIONS = (("cross-validation", "cv"), ("newest fifth", "time_split"))


def interval_frame(metrics: dict[str, Any]) -> pd.DataFrame:
    """One row per (model or baseline, evaluation, figure) of `accuracy`, `macro_f1` and
    `mae`: the figure and the `low` and `high` ends of its interval (metrics.json's
    `intervals`). An evaluation without intervals (a version trained before them) has no
    rows."""
    rows = []
    for evaluation, key in _EVALUATIONS:
        found = metrics[key].get("intervals")
        if not found:
            continue
        baselines = metrics["baselines"] if key == "cv" else metrics[key]["baselines"]
        for name, intervals in found["figures"].items():
            figures = metrics[key] if name == "model" else baselines[name]
            for figure, (low, high) in intervals.items():
                rows.append(
                    {
                        "evaluation": evaluation,
                        "model": name,
                        "figure": figure,
                        "value": figures[figure],
                        "low": low,
                        "high": high,
                    }
                )
    return pd.DataFrame(rows, columns=["evaluation", "model", "figure", "value", "low", "high"])


def plot_intervals(
    metrics: dict[str, Any],
    keys: Sequence[str] = ("accuracy", "macro_f1"),
    aims: dict[tuple[str, str], float] | None = None,
) -> Figure:
    """The model and the baselines with their intervals (`interval_frame`), a panel per
    figure of `keys`, the evaluations side by side; `aims`, by (evaluation, figure), are
    drawn as short dashed lines at the model's place."""
    import matplotlib.pyplot as plt

    keys = [keys] if isinstance(keys, str) else list(keys)
    rows = interval_frame(metrics)
    if rows.empty:
        raise ValueError("these metrics hold no intervals: train the model again to compute them")
    confidence = metrics["cv"]["intervals"]["confidence"]
    width = min(5 * len(keys), plotstyle.MAX_WIDTH)
    fig, axes = plt.subplots(1, len(keys), figsize=(width, 3.8), squeeze=False)
    names = [name for name in _ORDER if name in set(rows["model"])]
    names += [name for name in dict.fromkeys(rows["model"]) if name not in names]
    evaluations = list(dict.fromkeys(rows["evaluation"]))
    offsets = np.linspace(-0.15, 0.15, len(evaluations)) if len(evaluations) > 1 else [0.0]
    markers = ("o", "s", "^", "D")
    for ax, key in zip(axes.flat, keys, strict=True):
        for i, evaluation in enumerate(evaluations):
            shown = rows[(rows["figure"] == key) & (rows["evaluation"] == evaluation)]
            shown = shown.set_index("model").reindex(names).dropna(subset=["value"])
            place = np.array([names.index(name) for name in shown.index]) + offsets[i]
            value, low, high = (shown[c].to_numpy(dtype=float) for c in ("value", "low", "high"))
            ax.errorbar(
                place,
                value,
                yerr=[value - low, high - value],
                fmt=markers[i % len(markers)],
                capsize=4,
                color=plotstyle.PALETTE[i],
                label=evaluation,
            )
            aim = (aims or {}).get((evaluation, key))
            if aim is not None and "model" in names:
                at = names.index("model") + offsets[i]
                ax.hlines(
                    aim,
                    at - 0.14,
                    at + 0.14,
                    colors=plotstyle.PALETTE[i],
                    linestyles="--",
                    linewidth=1.5,
                )
        if aims and any(k == key for _, k in aims):
            ax.plot([], [], color="grey", linestyle="--", label="aim")
        # at 14 characters "random forest" runs into "majority class" beside it
        ax.set_xticks(range(len(names)), [textwrap.fill(n.replace("_", " "), 10) for n in names])
        ax.set_xlim(-0.5, len(names) - 0.5)
        ax.set_title(key)
        if key in _SHARES:
            ax.set_ylim(0, 1)
        ax.set_ylabel(_SCORE_LABELS.get(key, key))
        ax.legend(fontsize=8)
    fig.suptitle(f"The model against the baselines, {confidence:.0%} intervals")
    fig.tight_layout()
    return fig


def interval_table(metrics: dict[str, Any]) -> pd.DataFrame:
    """`interval_frame` to read: per (evaluation, model), each figure as "value [low, high]"
    (MAE in IBU to 0.1, the shares to 0.001)."""
    rows = interval_frame(metrics)
    digits = np.where(rows["figure"] == "mae", 1, 3)
    shown = [
        f"{value:.{d}f} [{low:.{d}f}, {high:.{d}f}]"
        for value, low, high, d in zip(
            rows["value"], rows["low"], rows["high"], digits, strict=True
        )
    ]
    table = rows.assign(shown=shown).pivot(
        index=["evaluation", "model"], columns="figure", values="shown"
    )
    # the evaluations as computed, the model first and the baselines in the known order
    names = list(dict.fromkeys(rows["model"]))
    names = [n for n in _ORDER if n in names] + [n for n in names if n not in _ORDER]
    order = [
        (e, n) for e in dict.fromkeys(rows["evaluation"]) for n in names if (e, n) in table.index
    ]
    return table.loc[
        order, [key for key in ("accuracy", "macro_f1", "mae") if key in table.columns]
    ]


def margin_table(metrics: dict[str, Any]) -> pd.DataFrame:
    """Per (evaluation, baseline), the interval of the model's figure minus the baseline's
    on the same beers, as "[low, high]" with signs (MAE in IBU to 0.1, the shares to
    0.001): above 0 for accuracy and macro-F1, below 0 for MAE, is a lead beyond the luck
    of the beers."""
    rows = {}
    for evaluation, key in _EVALUATIONS:
        found = metrics[key].get("intervals")
        for name, figures in (found or {}).get("model_minus", {}).items():
            rows[(evaluation, name)] = {
                figure: f"[{low:+.{1 if figure == 'mae' else 3}f}, "
                f"{high:+.{1 if figure == 'mae' else 3}f}]"
                for figure, (low, high) in figures.items()
            }
    return pd.DataFrame.from_dict(rows, orient="index")
