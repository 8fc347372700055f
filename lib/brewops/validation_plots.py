"""Plots for the validation report: distributions with out-of-range values marked."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from brewops import schema

OUT_OF_RANGE_COLOR = "tab:red"


def ranged_columns() -> list[schema.Column]:
    return [
        c
        for c in schema.CLEANED_COLUMNS
        if c.glue_type == "double" and (c.minimum is not None or c.maximum is not None)
    ]


def out_of_range(df: pd.DataFrame, col: schema.Column) -> pd.DataFrame:
    """Rows whose `col` value lies outside the column's plausible range."""
    values = pd.to_numeric(df[col.name], errors="coerce")
    outside = pd.Series(False, index=df.index)
    if col.minimum is not None:
        outside |= values < col.minimum
    if col.maximum is not None:
        outside |= values > col.maximum
    return df[outside.fillna(False)]


def plot_distributions(
    df: pd.DataFrame, columns: Sequence[schema.Column] | None = None, ncols: int = 4
) -> Any:
    """One histogram per column of the values inside the plausible range (shaded). Values
    outside it are red markers pinned to the edge they lie beyond, labelled with the beer
    id and the value, so one wild value (ph 79) does not squash the histogram."""
    import matplotlib.pyplot as plt

    columns = [c for c in (columns or ranged_columns()) if c.name in df]
    nrows = max(1, math.ceil(len(columns) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4 * ncols, 3 * nrows), squeeze=False)
    for ax, col in zip(axes.flat, columns, strict=False):
        values = pd.to_numeric(df[col.name], errors="coerce")
        outliers = out_of_range(df, col)
        inside = values.drop(outliers.index).dropna()
        low = col.minimum if col.minimum is not None else inside.min()
        high = col.maximum if col.maximum is not None else inside.max()
        if len(inside):
            low, high = min(low, inside.min()), max(high, inside.max())
        margin = (high - low) * 0.03 or 1
        ax.set_xlim(low - margin, high + margin)
        ax.hist(inside, bins=30, color="tab:blue", alpha=0.8)
        ax.axvspan(
            col.minimum if col.minimum is not None else low,
            col.maximum if col.maximum is not None else high,
            color="tab:green",
            alpha=0.08,
            label="plausible range",
        )
        _mark_outliers(ax, outliers, col)
        nulls = int(values.isna().sum())
        ax.set_title(f"{col.name}: {len(outliers)} out of range, {nulls} null", fontsize=10)
        ax.set_xlabel(col.comment, fontsize=8)
    for ax in list(axes.flat)[len(columns) :]:
        ax.set_visible(False)
    if columns:
        axes.flat[0].legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    return fig


def _mark_outliers(ax: Any, outliers: pd.DataFrame, col: schema.Column) -> None:
    low, high = ax.get_xlim()
    ordered = outliers.assign(_x=pd.to_numeric(outliers[col.name])).sort_values("_x")
    # the side is the one of the plausible range the value is past, not of the axis: the
    # axis has a margin, so a value just below the minimum can still be inside it
    below = (
        ordered["_x"] < col.minimum
        if col.minimum is not None
        else pd.Series(False, index=ordered.index)
    )
    label: str | None = "out of range (at the edge)"  # once, whichever side comes first
    for side, rows in (("low", ordered[below]), ("high", ordered[~below])):
        edge, marker, align = (low, "<", "left") if side == "low" else (high, ">", "right")
        for k, (x, ident) in enumerate(zip(rows["_x"], rows["id"], strict=True)):
            ax.scatter(
                [edge],
                [0],
                marker=marker,
                s=70,
                color=OUT_OF_RANGE_COLOR,
                zorder=3,
                clip_on=False,
                label=label,
            )
            label = None
            ax.annotate(
                f"id {ident}: {x:g}",
                (edge, 0),
                textcoords="offset points",
                xytext=(0, 10 + 11 * k),
                ha=align,
                fontsize=8,
                color=OUT_OF_RANGE_COLOR,
            )


def plot_gravities(df: pd.DataFrame) -> Any:
    """target_fg against target_og; beers whose final gravity exceeds the original in red."""
    import matplotlib.pyplot as plt

    fg = pd.to_numeric(df["target_fg"], errors="coerce")
    og = pd.to_numeric(df["target_og"], errors="coerce")
    above = (fg > og).fillna(False)
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.scatter(og[~above], fg[~above], s=12, alpha=0.6, label="fg ≤ og")
    ax.scatter(
        og[above],
        fg[above],
        s=40,
        marker="x",
        color=OUT_OF_RANGE_COLOR,
        label=f"fg > og ({int(above.sum())})",
    )
    # beers with the same gravities share one label: drawn apart, their ids would overprint
    points = pd.DataFrame({"og": og[above], "fg": fg[above], "id": df.loc[above, "id"]})
    for (x, y), ids in points.groupby(["og", "fg"], sort=False)["id"]:
        label = ", ".join(str(ident) for ident in ids)
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(3, 3), fontsize=7)
    both = pd.concat([fg, og]).dropna()
    if not both.empty:
        ax.plot([both.min(), both.max()], [both.min(), both.max()], "k--", lw=0.8, label="fg = og")
    ax.set_title("Target final against original gravity")
    ax.set_xlabel(schema.column("target_og").comment)
    ax.set_ylabel(schema.column("target_fg").comment)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
