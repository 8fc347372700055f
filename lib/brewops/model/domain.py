"""Whether a beer is like the beers a model was trained on.

A forest answers for a feature value beyond those it was trained on as for the nearest one
it saw, and knows a hop variety only through the alpha acids the hop table gives it: the
prediction of a beer with either is an extrapolation. At training, the model card records
each feature's range over the beers trained on (`data.feature_ranges`: the smallest and
largest value, so no training beer lies outside) and the hop varieties of their recipes
(`data.hop_varieties`); a prediction's `outside_training` names what lies outside them.
Cards written before they were recorded have neither: the check cannot run (None).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from brewops.model import features

RANGES_KEY = "feature_ranges"
HOPS_KEY = "hop_varieties"


class DomainError(ValueError):
    """A model card whose training ranges are not in the shape training writes them."""


@dataclass(frozen=True)
class TrainingDomain:
    """Each feature's (smallest, largest) value over the training beers (None for a
    feature none of them had), and the hop varieties of their recipes."""

    ranges: Mapping[str, tuple[float, float] | None]
    hop_varieties: frozenset[str]

    @classmethod
    def of(cls, X: pd.DataFrame, records: Sequence[Mapping[str, Any]]) -> TrainingDomain:
        """The domain of the training beers: `X` their feature matrix, `records` the
        beers themselves (as `features.labelled` returns them)."""
        low, high = X.min(), X.max()  # NaN (a missing value) is left out of both
        ranges = {
            name: None if math.isnan(low[name]) else (float(low[name]), float(high[name]))
            for name in X.columns
        }
        hops = frozenset().union(*(beer_hop_varieties(beer) for beer in records))
        return cls(ranges, hops)

    def card_entries(self) -> dict[str, Any]:
        """What the model card's `data` holds of it."""
        return {
            RANGES_KEY: {
                name: None if span is None else list(span) for name, span in self.ranges.items()
            },
            HOPS_KEY: sorted(self.hop_varieties),
        }

    @classmethod
    def from_card(cls, card: Mapping[str, Any]) -> TrainingDomain | None:
        """The domain a model card records; None for a card written before it was.
        DomainError for one edited into another shape."""
        data = card.get("data")
        if not isinstance(data, Mapping) or (RANGES_KEY not in data and HOPS_KEY not in data):
            return None
        ranges, hops = data.get(RANGES_KEY), data.get(HOPS_KEY)
        if not isinstance(ranges, Mapping) or not all(_is_span(span) for span in ranges.values()):
            raise DomainError(f"data.{RANGES_KEY} is not a [smallest, largest] pair per feature")
        if not isinstance(hops, list) or not all(isinstance(hop, str) for hop in hops):
            raise DomainError(f"data.{HOPS_KEY} is not a list of hop names")
        return cls(
            {name: None if span is None else (span[0], span[1]) for name, span in ranges.items()},
            frozenset(hops),
        )

    def outside(
        self, X: pd.DataFrame, records: Sequence[Mapping[str, Any]]
    ) -> list[dict[str, Any]]:
        """Per beer (a row of `X`, its record in `records`): `features`, each feature
        outside its training range with the beer's `value` and the `trained` range, and
        `new_hops`, the varieties of its recipe no training recipe had. A missing value is
        not outside: the model fills it in from the training beers."""
        spans = {name: span for name in X.columns if (span := self.ranges.get(name)) is not None}
        checked = list(spans)
        low = np.array([float(span[0]) for span in spans.values()])
        high = np.array([float(span[1]) for span in spans.values()])
        values = X[checked].to_numpy(dtype=float)
        with np.errstate(invalid="ignore"):  # NaN compares as neither
            beyond = (values < low) | (values > high)
        if len(records) != len(X):
            raise ValueError(f"{len(X)} rows of features for {len(records)} beers")
        result = []
        for row, record in enumerate(records):
            result.append(
                {
                    "features": {
                        checked[column]: {
                            "value": round(float(values[row, column]), 4),
                            "trained": [float(low[column]), float(high[column])],
                        }
                        for column in np.flatnonzero(beyond[row])
                    },
                    "new_hops": sorted(beer_hop_varieties(record) - self.hop_varieties),
                }
            )
        return result


def _is_span(span: Any) -> bool:
    return span is None or (
        isinstance(span, list)
        and len(span) == 2
        and all(isinstance(x, int | float) and not isinstance(x, bool) for x in span)
    )


def beer_hop_varieties(beer: Mapping[str, Any]) -> set[str]:
    """The hop varieties of a beer's recipe, as the `hop_varieties` feature counts them."""
    ingredients = beer.get("ingredients")
    hops = ingredients.get("hops") if isinstance(ingredients, Mapping) else None
    return features.hop_variety_names(hops)


def is_outside(outside: Mapping[str, Any] | None) -> bool:
    """Whether a prediction's `outside_training` names anything (False when unknown)."""
    return bool(outside and (outside["features"] or outside["new_hops"]))


def describe(outside: Mapping[str, Any] | None) -> str | None:
    """A prediction's `outside_training` as one short line: "" when the beer is like the
    training beers, None when that could not be checked."""
    if outside is None:
        return None
    parts = [
        f"{name} {entry['value']:g} (trained {entry['trained'][0]:g} to {entry['trained'][1]:g})"
        for name, entry in outside["features"].items()
    ]
    if outside["new_hops"]:
        parts.append("new hops: " + ", ".join(outside["new_hops"]))
    return "; ".join(parts)


def summary(outside: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """How many beers have anything outside the training data (`n`), a feature outside
    (`n_features`) or a hop never trained on (`n_new_hops`), and how many beers each
    feature (`by_feature`) and each hop (`by_hop`) took outside, most first."""
    by_feature: Counter[str] = Counter()
    by_hop: Counter[str] = Counter()
    for entry in outside:
        by_feature.update(list(entry["features"]))
        by_hop.update(entry["new_hops"])
    return {
        "n": sum(is_outside(entry) for entry in outside),
        "n_features": sum(bool(entry["features"]) for entry in outside),
        "n_new_hops": sum(bool(entry["new_hops"]) for entry in outside),
        "by_feature": dict(by_feature.most_common()),
        "by_hop": dict(by_hop.most_common()),
    }
