"""Exploring a crawled catalogue: tables of the schema, nulls and quirks, the hop schedule,
and the plots notebook 01 shows. Input: v2-shaped beers (what the client returns)."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import LogLocator, StrMethodFormatter

from brewops import plotstyle
from brewops.catalog import json_type
from brewops.model import hops
from brewops.schema import CLEANED_COLUMNS

NUMERIC_FIELDS = ("abv", "ibu", "target_fg", "target_og", "ebc", "srm", "ph", "attenuation_level")
DISTRIBUTION_FIELDS = ("abv", "ibu", "ebc", "ph")
_AXIS_LABELS = {c.name: c.comment for c in CLEANED_COLUMNS}  # with units
LOG_SPAN = 100  # largest / smallest value shown from which a histogram's axis is logarithmic
HOP_STAGES = ("start", "middle", "end", "flame out / whirlpool", "dry hop / fermenter", "other")

Beers = Sequence[dict[str, Any]]


# ----------------------------------------------------------------------------- frames


def beers_frame(beers: Beers) -> pd.DataFrame:
    """One row per beer: the numeric fields plus a few derived counts."""
    rows = []
    for b in beers:
        hops = b["ingredients"]["hops"]
        grams = [g for g in (hop_grams(h) for h in hops) if g is not None]
        rows.append(
            {
                "id": b["id"],
                "name": b["name"],
                "first_brewed": b["first_brewed"],
                "brewed_year": brewed_year(b["first_brewed"]),
                **{f: b.get(f) for f in NUMERIC_FIELDS},
                "n_malts": len(b["ingredients"]["malt"]),
                "n_hops": len(hops),
                "hop_grams": sum(grams) if grams else None,
                "has_image": bool(b.get("image_url")),
            }
        )
    frame = pd.DataFrame(rows)
    for field in NUMERIC_FIELDS:
        frame[field] = frame[field].astype("float64")
    return frame.set_index("id").sort_index()


def brewed_year(first_brewed: str | None) -> int | None:
    match = re.search(r"(\d{4})$", first_brewed or "")
    return int(match.group(1)) if match else None


def schema_table(beers: Beers) -> pd.DataFrame:
    """Every field path seen (lists as `[]`), its JSON types, how often null, an example."""
    types: dict[str, Counter[str]] = defaultdict(Counter)
    examples: dict[str, Any] = {}

    def walk(path: str, value: Any) -> None:
        types[path][json_type(value)] += 1
        if value is not None and not isinstance(value, dict | list):
            examples.setdefault(path, value)
        if isinstance(value, dict):
            for key, item in value.items():
                walk(f"{path}.{key}" if path else key, item)
        elif isinstance(value, list):
            for item in value:
                walk(f"{path}[]", item)

    for beer in beers:
        walk("", beer)
    types.pop("", None)
    rows = [
        {
            "field": path,
            "types": ", ".join(sorted(t for t in seen if t != "null")) or "null",
            "values": sum(seen.values()),
            "nulls": seen.get("null", 0),
            "example": examples.get(path, ""),
        }
        for path, seen in types.items()
    ]
    return pd.DataFrame(rows).set_index("field")


def null_table(beers: Beers) -> pd.DataFrame:
    """Top-level fields that hold nulls, with counts and ids."""
    rows = []
    for field in beers[0] if beers else ():
        ids = [b["id"] for b in beers if b.get(field) is None]
        if ids:
            rows.append(
                {
                    "field": field,
                    "nulls": len(ids),
                    "share": len(ids) / len(beers),
                    "ids": _ids(ids),
                }
            )
    frame = pd.DataFrame(rows, columns=["field", "nulls", "share", "ids"])
    return frame.sort_values("nulls", ascending=False).set_index("field")


def _ids(ids: Iterable[int], limit: int = 8) -> str:
    ids = sorted(ids)
    shown = ", ".join(str(i) for i in ids[:limit])
    return shown + (f", … (+{len(ids) - limit})" if len(ids) > limit else "")


# ----------------------------------------------------------------------------- quirks

_CANONICAL_ADD = {"start", "middle", "end", "dry hop"}
_CANONICAL_ATTRIBUTE = {"bitter", "flavour", "aroma"}


def quirks_table(beers: Beers) -> pd.DataFrame:
    """The data quirks a cleaner must survive: one row per quirk, with the beers showing it."""
    found: list[tuple[str, list[int]]] = []
    for field in (*NUMERIC_FIELDS, "image_url"):
        found.append((f"{field} is null", [b["id"] for b in beers if b.get(field) is None]))
    for col in CLEANED_COLUMNS:
        if col.python_type is not float or col.name not in NUMERIC_FIELDS:
            continue
        outside = [
            b["id"]
            for b in beers
            if b.get(col.name) is not None
            and not (col.minimum or 0) <= b[col.name] <= (col.maximum or float("inf"))
        ]
        found.append((f"{col.name} outside [{col.minimum:g}, {col.maximum:g}]", outside))
    found.append(
        (
            "target_fg > target_og",
            [
                b["id"]
                for b in beers
                if b.get("target_fg") is not None
                and b.get("target_og") is not None
                and b["target_fg"] > b["target_og"]
            ],
        )
    )
    found.append(
        (
            "first_brewed is a bare year (YYYY)",
            [b["id"] for b in beers if re.fullmatch(r"\d{4}", b["first_brewed"] or "")],
        )
    )
    hops_of = {b["id"]: b["ingredients"]["hops"] for b in beers}
    found.append(
        (
            "hop add: mixed case or free text",
            [
                i
                for i, hops in hops_of.items()
                if any(h["add"] not in _CANONICAL_ADD and not h["add"].isdigit() for h in hops)
            ],
        )
    )
    found.append(
        (
            "hop add: minutes instead of a stage",
            [i for i, hops in hops_of.items() if any(h["add"].strip().isdigit() for h in hops)],
        )
    )
    found.append(
        (
            "hop attribute: mixed case or misspelt",
            [
                i
                for i, hops in hops_of.items()
                if any(h["attribute"] not in _CANONICAL_ATTRIBUTE for h in hops)
            ],
        )
    )
    found.append(
        (
            "hop amount not in grams",
            [i for i, hops in hops_of.items() if any(h["amount"]["unit"] != "grams" for h in hops)],
        )
    )
    found.append(
        (
            "malt amount not in kilograms",
            [
                b["id"]
                for b in beers
                if any(m["amount"]["unit"] != "kilograms" for m in b["ingredients"]["malt"])
            ],
        )
    )
    rows = [{"quirk": q, "beers": len(ids), "ids": _ids(ids)} for q, ids in found if ids]
    return pd.DataFrame(rows, columns=["quirk", "beers", "ids"]).set_index("quirk")


# ----------------------------------------------------------------------------- hops


def hop_stage(add: str) -> str:
    """Map the free-text `add` of a hop addition to a brewing stage."""
    text = add.strip().lower()
    if text.isdigit():
        return _stage_of_minutes(int(text))
    if text in ("start", "first wort hops", "mash", "kettle"):
        return "start"
    if text in ("middle", "end"):
        return text
    if text in ("flame out", "whirlpool"):
        return "flame out / whirlpool"
    if text in ("dry hop", "fv", "fv addition", "secondary", "maturation"):
        return "dry hop / fermenter"
    return "other"


def _stage_of_minutes(minutes: int) -> str:
    """Minutes before the end of the boil as the nearest DIY Dog stage word, with the
    minutes `brewops.model.hops` assumes for each word: 60 (start), 30 (middle), 5 (end)."""
    if minutes == 0:
        return "flame out / whirlpool"
    if minutes >= (hops.BOIL_MINUTES + hops.MIDDLE_MINUTES) / 2:
        return "start"
    return "middle" if minutes >= (hops.MIDDLE_MINUTES + hops.HOT_WORT_MINUTES) / 2 else "end"


def hop_attribute(attribute: str) -> str:
    text = attribute.strip().lower()
    if text.startswith("bit"):
        return "bitter"
    if text.startswith("flav"):
        return "flavour"
    return text


def hop_grams(hop: dict[str, Any]) -> float | None:
    amount = hop["amount"]
    if amount["value"] is None:
        return None
    unit = amount["unit"].strip().lower()
    if unit in ("grams", "gram", "g"):
        return float(amount["value"])
    if unit in ("kilograms", "kilogram", "kg"):
        return float(amount["value"]) * 1000
    return None  # "ml", "total": not a mass


def hop_additions(beers: Beers) -> pd.DataFrame:
    """One row per hop addition, with the stage and attribute normalised."""
    rows = [
        {
            "id": b["id"],
            "hop": h["name"],
            "add": h["add"],
            "stage": hop_stage(h["add"]),
            "attribute": hop_attribute(h["attribute"]),
            "grams": hop_grams(h),
        }
        for b in beers
        for h in b["ingredients"]["hops"]
    ]
    return pd.DataFrame(rows, columns=["id", "hop", "add", "stage", "attribute", "grams"])


def hop_schedule_summary(beers: Beers) -> pd.DataFrame:
    """Per stage: additions, beers, distinct hops, median grams, the usual attribute."""
    additions = hop_additions(beers)
    summary = additions.groupby("stage").agg(
        additions=("hop", "size"),
        beers=("id", "nunique"),
        distinct_hops=("hop", "nunique"),
        median_grams=("grams", "median"),
        main_attribute=("attribute", lambda s: s.mode().iat[0] if not s.mode().empty else None),
        raw_add_values=("add", _most_common),
    )
    order = [s for s in HOP_STAGES if s in summary.index]
    return summary.loc[order]


def _most_common(values: pd.Series, limit: int = 6) -> str:
    """The most frequent values first, and how many more there are."""
    counts = values.value_counts()
    shown = ", ".join(counts.index[:limit])
    return shown + (f", … (+{len(counts) - limit})" if len(counts) > limit else "")


def top_hops(beers: Beers, n: int = 10) -> pd.DataFrame:
    """The `n` hops used by the most beers: beers, additions and total grams, by hop."""
    additions = hop_additions(beers)
    return (
        additions.groupby("hop")
        .agg(beers=("id", "nunique"), additions=("id", "size"), total_grams=("grams", "sum"))
        .sort_values(["beers", "additions"], ascending=False)
        .head(n)
    )


# ----------------------------------------------------------------------------- plots


def _figure(
    figsize: tuple[float, float], panels: int = 1, ncols: int = 1
) -> tuple[Figure, list[Any]]:
    """A figure made through pyplot, so Jupyter knows how to draw it, then closed, so the
    inline backend does not draw it a second time: the caller returns it for display.
    `panels` axes, `ncols` to a row; a grid's unused places are left empty."""
    nrows = -(-panels // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=figsize, squeeze=False, layout="constrained")
    plt.close(fig)
    for ax in axes.flat[panels:]:
        fig.delaxes(ax)
    return fig, list(axes.flat[:panels])


def plot_distributions(frame: pd.DataFrame, fields: Sequence[str] = DISTRIBUTION_FIELDS) -> Figure:
    """Histograms of the given fields (nulls left out), one panel each. The bins span the
    bulk of the values (up to the 99th percentile) so that a few extreme values (abv 55,
    ph 79) do not squash everything into one bar; those beyond are counted in the title.
    Values that span two decades or more (ebc) are binned on a log axis."""
    fields = _field_list(fields)
    # two panels to a row: four in one row would be shrunk to the notebook's width
    ncols = min(len(fields), 2) or 1
    nrows = -(-len(fields) // ncols)
    fig, axes = _figure(
        figsize=(min(4.5 * ncols, plotstyle.MAX_WIDTH), 3.2 * nrows),
        panels=len(fields),
        ncols=ncols,
    )
    for ax, field in zip(axes, fields, strict=True):
        values = frame[field].dropna()
        upper = float(values.quantile(0.99)) if len(values) else 0.0
        shown = values[values <= upper]
        beyond = int((values > upper).sum())
        bins: Any = 30
        if len(shown) and shown.min() > 0 and shown.max() / shown.min() >= LOG_SPAN:
            # spanning decades (ebc 2 to 400): log bins, or the pale beers share one bar
            bins = np.geomspace(shown.min(), shown.max(), 31)
            ax.set_xscale("log")
            ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(StrMethodFormatter("{x:g}"))  # "20", not a power of ten
        ax.hist(shown, bins=bins, color=plotstyle.BROWN, edgecolor="white")
        title = f"{field} (n={len(values)}, median {values.median():.3g})"
        if beyond:  # said from the data (abv 18), not the interpolated percentile (18.228)
            title += f"\n{beyond} above {shown.max():g} not shown (max {values.max():g})"
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(_AXIS_LABELS.get(field, field))
        ax.set_ylabel("beers")
    return fig


def plot_ibu_vs_abv(frame: pd.DataFrame, ibu_max: float | None = None) -> Figure:
    """IBU against ABV; `ibu_max` trims the axis so the few extreme IBUs do not flatten it."""
    data = frame[["abv", "ibu"]].dropna()
    fig, (ax,) = _figure(figsize=(6, 4.5))
    # the beers above ibu_max are left out, not only clipped: their ABV would stretch the x axis
    shown = data if ibu_max is None else data[data["ibu"] <= ibu_max]
    ax.scatter(shown["abv"], shown["ibu"], s=14, alpha=0.6, color=plotstyle.BLUE)
    if ibu_max is not None:
        ax.set_ylim(0, ibu_max)
        hidden = len(data) - len(shown)
        if hidden:
            ax.set_title(f"IBU vs ABV ({hidden} beer(s) above IBU {ibu_max:g} not shown)")
    if not ax.get_title():
        ax.set_title("IBU vs ABV")
    ax.set_xlabel("ABV (%)")
    ax.set_ylabel("IBU")
    return fig


def _field_list(fields: Sequence[str]) -> list[str]:
    """`fields` as a list; one field named as text is that field, not its letters."""
    return [fields] if isinstance(fields, str) else list(fields)


def correlations(frame: pd.DataFrame, fields: Sequence[str] = NUMERIC_FIELDS) -> pd.DataFrame:
    """Spearman correlations: rank-based, so the outliers (abv 55, ph 79) do not dominate."""
    return frame[_field_list(fields)].corr(method="spearman")


def plot_correlation_heatmap(frame: pd.DataFrame, fields: Sequence[str] = NUMERIC_FIELDS) -> Figure:
    """The Spearman correlations of `fields` (`correlations`) as a shaded, annotated grid."""
    fields = _field_list(fields)
    corr = correlations(frame, fields)
    fig, (ax,) = _figure(figsize=(7, 6))
    image = ax.imshow(corr.to_numpy(), cmap="RdBu_r", vmin=-1, vmax=1)
    ax.set_xticks(range(len(fields)), labels=fields, rotation=45, ha="right")
    ax.set_yticks(range(len(fields)), labels=fields)
    for i in range(len(fields)):
        for j in range(len(fields)):
            value = corr.iat[i, j]
            ax.text(
                j,
                i,
                f"{value:.2f}",
                ha="center",
                va="center",
                fontsize=8,
                color=plotstyle.text_color_on(image.cmap(image.norm(value))),
            )
    fig.colorbar(image, ax=ax, label="Spearman correlation")
    ax.set_title("Correlation of the numeric fields")
    return fig


# ----------------------------------------------------------------------------- figures


def catalogue_figures(beers: Beers) -> dict[str, Any]:
    """Key figures of a crawled catalogue, for the run summary."""
    frame = beers_frame(beers)
    ids = [b["id"] for b in beers]
    return {
        "beers_crawled": len(beers),
        "unique_ids": len(set(ids)),
        "min_id": min(ids) if ids else None,
        "max_id": max(ids) if ids else None,
        "ibu_nulls": int(frame["ibu"].isna().sum()),
        "ebc_nulls": int(frame["ebc"].isna().sum()),
        "ph_nulls": int(frame["ph"].isna().sum()),
        "quirks": len(quirks_table(beers)),
        "hop_additions": int(frame["n_hops"].sum()),
        "median_abv": float(frame["abv"].median()),
        "median_ibu": float(frame["ibu"].median()),
    }
