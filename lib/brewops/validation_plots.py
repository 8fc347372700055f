"""Plots for the validation report: distributions with out-of-range values marked."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

from brewops import plotstyle, schema

if TYPE_CHECKING:
    from matplotlib.figure import Figure

OUT_OF_RANGE_COLOR = plotstyle.RED


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
    df: pd.DataFrame, columns: Sequence[schema.Column] | None = None, ncols: int = 3
) -> Figure:
    """One histogram per column of the values inside the plausible range (shaded). Values
    outside it are red markers pinned to the edge they lie beyond, labelled with the beer
    id and the value above the bars, so one wild value (ph 79) does not squash the
    histogram."""
    import matplotlib.pyplot as plt

    columns = [c for c in (columns or ranged_columns()) if c.name in df]
    df = df.reset_index(drop=True)  # rows are told apart by label below: one row, one label
    nrows = max(1, math.ceil(len(columns) / ncols))
    width = min(3 * ncols, plotstyle.MAX_WIDTH)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, 3 * nrows + 0.4), squeeze=False)
    labelled = []  # (axes, its histogram bars, label lines stacked at its busier edge)
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
        _, _, bars = ax.hist(inside, bins=30, color=plotstyle.BLUE)
        ax.axvspan(
            col.minimum if col.minimum is not None else low,
            col.maximum if col.maximum is not None else high,
            color=plotstyle.GREY,
            alpha=0.15,
            label="plausible range",
        )
        labelled.append((ax, bars, _mark_outliers(ax, outliers, col)))
        nulls = int(values.isna().sum())
        ax.set_title(f"{col.name}: {len(outliers)} out of range, {nulls} null", fontsize=10)
        ax.set_xlabel(col.comment, fontsize=8)
        ax.set_ylabel("beers", fontsize=8)
    for ax in list(axes.flat)[len(columns) :]:
        ax.set_visible(False)
    # one legend for every panel, above them: inside a panel it would cover its labels
    entries: dict[str, Any] = {}
    for ax in axes.flat[: len(columns)]:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            entries.setdefault(label, handle)
    if entries:
        fig.legend(entries.values(), entries.keys(), fontsize=8, loc="upper right", ncols=2)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()))
    for ax, bars, lines in labelled:  # once the panels have their final size
        _make_room_for_labels(ax, bars, lines)
    return fig


# The labels of the values out of range hang from the top of the panel, one line each.
_LABEL_TOP = 4  # points below the top of the panel
_LABEL_STEP = 11  # points between two labels


def _make_room_for_labels(ax: Any, bars: Any, lines: int) -> None:
    """Raise the top of the vertical axis until the histogram stays below `lines` labels."""
    if not lines:
        return
    height = ax.get_window_extent().height * 72 / ax.figure.dpi  # in points
    share = min((_LABEL_TOP + _LABEL_STEP * lines + 2) / height, 0.8)
    tallest = max((bar.get_height() for bar in bars), default=0)
    ax.set_ylim(0, max(ax.get_ylim()[1], tallest / (1 - share)))


# Beyond this many values out of range on one side, the labels would fill the panel: the
# furthest out are named, and a last line says how many more there are.
MAX_LABELS_PER_SIDE = 8


def _mark_outliers(ax: Any, outliers: pd.DataFrame, col: schema.Column) -> int:
    """Mark the values out of range at the edge they lie beyond, and label them from the
    top of the panel down on that side; returns the most labels stacked on one side."""
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
    stacked = 0
    for side, rows in (("low", ordered[below]), ("high", ordered[~below])):
        edge, marker, align = (low, "<", "left") if side == "low" else (high, ">", "right")
        if rows.empty:
            continue
        # one marker per value, all at the edge, in one collection: a collection per value
        # costs seconds per thousand values
        ax.scatter(
            [edge] * len(rows),
            [0] * len(rows),
            marker=marker,
            s=70,
            color=OUT_OF_RANGE_COLOR,
            zorder=3,
            clip_on=False,
            label=label,
        )
        label = None
        texts = [f"id {ident}: {x:g}" for x, ident in zip(rows["_x"], rows["id"], strict=True)]
        if len(texts) > MAX_LABELS_PER_SIDE:  # the values furthest out, then how many more
            shown = MAX_LABELS_PER_SIDE - 1
            more = f"… and {len(texts) - shown} more"
            texts = [*texts[:shown], more] if side == "low" else [more, *texts[-shown:]]
        stacked = max(stacked, len(texts))
        for k, text in enumerate(texts):
            ax.annotate(
                text,
                (edge, 1),
                xycoords=("data", "axes fraction"),
                textcoords="offset points",
                xytext=(0, -_LABEL_TOP - _LABEL_STEP * k),
                ha=align,
                va="top",
                fontsize=8,
                color=OUT_OF_RANGE_COLOR,
            )
    return stacked


def plot_gravities(df: pd.DataFrame) -> Figure:
    """target_fg against target_og; beers whose final gravity exceeds the original in red."""
    import matplotlib.pyplot as plt

    df = df.reset_index(drop=True)  # rows are told apart by label below: one row, one label
    fg = pd.to_numeric(df["target_fg"], errors="coerce")
    og = pd.to_numeric(df["target_og"], errors="coerce")
    above = (fg > og).fillna(False)
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.scatter(og[~above], fg[~above], s=12, alpha=0.6, color=plotstyle.BLUE, label="fg ≤ og")
    ax.scatter(
        og[above],
        fg[above],
        s=40,
        marker="x",
        color=OUT_OF_RANGE_COLOR,
        label=f"fg > og ({int(above.sum())})",
    )
    both = pd.concat([fg, og]).dropna()
    if not both.empty:
        ax.plot([both.min(), both.max()], [both.min(), both.max()], "k--", lw=0.8, label="fg = og")
    points = pd.DataFrame({"og": og[above], "fg": fg[above], "id": df.loc[above, "id"]})
    _label_close_points(ax, points)
    ax.set_title("Target final against original gravity")
    ax.set_xlabel(schema.column("target_og").comment)
    ax.set_ylabel(schema.column("target_fg").comment)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


# Marked beers closer than this share of the axis span (about a label's height) share a label.
_SAME_LABEL_SPAN = 0.04
# A label names this many beers at most: a crowd of close beers (a big catalogue) would
# give one label thousands of ids long.
MAX_IDS_PER_LABEL = 4


def chained_groups(xy: Any, span: float) -> Any:
    """Group label of each point: points closer than `span` are in one group, and so are
    chains of them (single linkage cut at `span`).

    The closest neighbours of every point are edges of the Delaunay triangulation, so its
    edges stand in for all pairs: n log n, where all pairs take n² memory (gigabytes for
    the tens of thousands of beers of a large catalogue)."""
    import numpy as np
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import Delaunay, QhullError

    xy = np.asarray(xy, dtype=float)
    # equal points are one vertex for the triangulation, and in one group anyway
    unique, index = np.unique(xy, axis=0, return_inverse=True)
    index = index.reshape(-1)
    if len(unique) < 3:
        edges = np.array([(0, 1)] if len(unique) == 2 else [], dtype=int).reshape(-1, 2)
    else:
        try:
            mesh = Delaunay(unique)
        except QhullError:  # all on one line: neighbours along it
            order = np.lexsort(unique.T[::-1])
            edges = np.column_stack([order[:-1], order[1:]])
        else:
            triangles = mesh.simplices
            edges = np.vstack(
                [
                    triangles[:, [0, 1]],
                    triangles[:, [1, 2]],
                    triangles[:, [0, 2]],
                    # points too close to a vertex to be one: joined to that vertex
                    mesh.coplanar[:, [0, 2]],
                ]
            )
    if len(edges):
        edges = edges[np.hypot(*(unique[edges[:, 0]] - unique[edges[:, 1]]).T) <= span]
    n = len(unique)
    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n))
    return connected_components(graph, directed=False)[1][index]


def _label_close_points(ax: Any, points: pd.DataFrame) -> None:
    """Label beers (og, fg, id) with their ids, one label per group of close points at the
    group's highest point: drawn apart, the labels of close points would overprint."""
    if points.empty:
        return
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()  # the span the diagonal gives them
    scaled = points[["og", "fg"]].to_numpy(dtype=float) / [x1 - x0 or 1, y1 - y0 or 1]
    groups = chained_groups(scaled, _SAME_LABEL_SPAN)
    for _, group in points.assign(group=groups).groupby("group", sort=False):
        top = group.loc[group["fg"].idxmax()]
        ids = [str(ident) for ident in sorted(group["id"])]
        if len(ids) > MAX_IDS_PER_LABEL:  # a crowd of beers: a few ids, and how many
            ids = [*ids[: MAX_IDS_PER_LABEL - 1], f"… ({len(ids)} beers)"]
        label = ", ".join(ids)
        ax.annotate(
            label, (top["og"], top["fg"]), textcoords="offset points", xytext=(3, 3), fontsize=8
        )
