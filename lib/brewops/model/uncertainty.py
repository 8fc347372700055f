"""How sure the evaluation's figures are: 95 % intervals around them.

Each figure of the evaluation comes from a few hundred beers, the newest fifth from 64 (one
beer is 1.6 points of accuracy): other beers of the same kind would give other figures.
The intervals say how far the luck of the beers scored can move them:

- `bootstrap`: scipy's bias-corrected and accelerated (BCa) bootstrap, resampling the
  recipes (beers of identical features, one recipe under several names, together, as the
  folds keep them), for accuracy, macro-F1 and MAE of a model and for the difference
  between two models scored on the same beers (paired: the same resample for both);
- `wilson`: the Wilson score interval of a share of independent beers, the accuracy of a
  fixed model on a test set (scipy's `binomtest(...).proportion_ci`).

The figures are sums over the beers (`Tally`), so one resample costs a matrix product, not
a refit: the intervals count the beers' luck, not how the training beers would change a
model. A fixed seed makes them the same on every run.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from brewops.model import PROTOCOL_SEED, bands

CONFIDENCE = 0.95
RESAMPLES = 9999  # scipy's default; a resample is a matrix product, so they cost little
FIGURES = ("accuracy", "macro_f1", "mae")


def wilson(successes: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The Wilson score interval of `successes` out of `n` independent trials."""
    interval = stats.binomtest(int(successes), int(n)).proportion_ci(
        confidence_level=confidence, method="wilson"
    )
    return float(interval.low), float(interval.high)


@dataclass(frozen=True)
class Tally:
    """Per beer, the counts that `FIGURES` of one model are sums of, over its repeats.

    `predicted_band` and `predicted_ibu` hold one row per repeat (a model scored once has
    one row): accuracy and MAE are the mean over the repeats, macro-F1 too, each repeat's
    over the bands present in its truth or its predictions, as `train.classification_metrics`
    computes it.
    """

    columns: np.ndarray  # (beers, columns)
    repeats: int

    @classmethod
    def of(
        cls,
        true_ibu: np.ndarray,
        predicted_band: np.ndarray,
        predicted_ibu: np.ndarray,
    ) -> Tally:
        true_band = bands.band_index(true_ibu)
        predicted_band = np.atleast_2d(predicted_band)
        predicted_ibu = np.atleast_2d(predicted_ibu)
        band = np.arange(bands.N_BANDS)
        is_true = true_band[:, None] == band  # (beers, bands)
        is_predicted = predicted_band[:, :, None] == band  # (repeats, beers, bands)
        columns = [
            np.ones((len(true_band), 1)),
            (predicted_band == true_band).T,
            np.abs(predicted_ibu - np.asarray(true_ibu, dtype=float)).T,
            is_true,
            np.hstack(list(is_predicted)),
            np.hstack(list(is_predicted & is_true)),
        ]
        return cls(np.hstack(columns).astype(float), len(predicted_band))

    def figures(self, sums: np.ndarray) -> np.ndarray:
        """`FIGURES` of beers whose columns add up to `sums` (..., columns): (3, ...)."""
        r, k = self.repeats, bands.N_BANDS
        beers = sums[..., 0]
        correct = sums[..., 1 : 1 + r]
        error = sums[..., 1 + r : 1 + 2 * r]
        start = 1 + 2 * r
        true = sums[..., start : start + k]
        predicted = sums[..., start + k : start + k + r * k].reshape(*sums.shape[:-1], r, k)
        hits = sums[..., start + k + r * k :].reshape(*sums.shape[:-1], r, k)
        # F1 of a band is 2 hits / (its true beers + its predicted beers)
        either = true[..., None, :] + predicted
        present = either > 0
        f1 = np.where(present, 2 * hits / np.where(present, either, 1), 0.0)
        macro_f1 = f1.sum(axis=-1) / present.sum(axis=-1)
        return np.stack(
            [
                correct.mean(axis=-1) / beers,
                macro_f1.mean(axis=-1),
                error.mean(axis=-1) / beers,
            ]
        )


def bootstrap(
    tally: Tally,
    versus: Tally | None = None,
    groups: np.ndarray | None = None,
    *,
    confidence: float = CONFIDENCE,
    resamples: int = RESAMPLES,
    seed: int = PROTOCOL_SEED,
) -> dict[str, list[float]]:
    """BCa bootstrap intervals of `FIGURES` of `tally`, or, with `versus` (another model on
    the same beers), of `tally`'s figures minus `versus`'s, paired. Beers of one `groups`
    label are resampled together (each beer its own group when None)."""
    columns = tally.columns if versus is None else np.hstack([tally.columns, versus.columns])
    split = tally.columns.shape[1]
    if groups is None:
        groups = np.arange(len(columns))
    labels, group = np.unique(groups, return_inverse=True)
    per_group = np.zeros((len(labels), columns.shape[1]))
    np.add.at(per_group, group.ravel(), columns)

    def statistic(chosen: np.ndarray, axis: int = -1) -> np.ndarray:
        sums = _counts(chosen, len(per_group)) @ per_group
        figures = tally.figures(sums[..., :split])
        return figures if versus is None else figures - versus.figures(sums[..., split:])

    with warnings.catch_warnings():
        # a figure that no resample moves (every beer right) has no BCa interval: see below
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        warnings.filterwarnings("ignore", "invalid value encountered", RuntimeWarning)
        result = stats.bootstrap(
            (np.arange(len(per_group)),),
            statistic,
            vectorized=True,
            n_resamples=resamples,
            confidence_level=confidence,
            method="BCa",
            rng=np.random.default_rng(seed),
        )
    low, high = (
        np.asarray(result.confidence_interval.low),
        np.asarray(result.confidence_interval.high),
    )
    # where BCa is undefined, the percentile interval (a single value when none moved)
    tail = 100 * (1 - confidence) / 2
    fallback = np.percentile(result.bootstrap_distribution, [tail, 100 - tail], axis=-1)
    low = np.where(np.isfinite(low), low, fallback[0])
    high = np.where(np.isfinite(high), high, fallback[1])
    return {key: [float(low[i]), float(high[i])] for i, key in enumerate(FIGURES)}


def _counts(chosen: np.ndarray, n: int) -> np.ndarray:
    """How often each of `n` items is drawn in each resample of `chosen` (..., draws)."""
    rows = np.asarray(chosen, dtype=np.int64).reshape(-1, np.shape(chosen)[-1])
    offsets = np.arange(len(rows))[:, None] * n
    counts = np.bincount((rows + offsets).ravel(), minlength=len(rows) * n)
    return counts.reshape(*np.shape(chosen)[:-1], n).astype(float)


def intervals(
    tallies: dict[str, Tally],
    groups: np.ndarray | None = None,
    *,
    seed: int = PROTOCOL_SEED,
    reference: str = "model",
) -> dict[str, Any]:
    """The intervals of one evaluation: `figures`, per model, of its own figures, and
    `model_minus`, per other model, of the `reference` model's figures minus its own; and
    how they were made (`confidence`, `resamples`, `seed`, the `recipes` resampled)."""
    beers = len(tallies[reference].columns)
    return {
        "confidence": CONFIDENCE,
        "method": "BCa bootstrap over the recipes",
        "resamples": RESAMPLES,
        "seed": seed,
        "recipes": beers if groups is None else len(np.unique(groups)),
        "figures": {
            name: bootstrap(tally, groups=groups, seed=seed) for name, tally in tallies.items()
        },
        "model_minus": {
            name: bootstrap(tallies[reference], tally, groups, seed=seed)
            for name, tally in tallies.items()
            if name != reference
        },
    }


def against_aim(
    value: float, interval: list[float], aim: float, higher_is_better: bool = True
) -> str:
    """Where `aim` lies against a figure's interval, as a sentence: inside it, the beers
    scored cannot tell the figure from the aim; outside, they can."""
    low, high = interval
    shown = f"{value:.3f}, interval [{low:.3f}, {high:.3f}]"
    if low <= aim <= high:
        return f"{shown}: the aim {aim:g} lies inside, these beers cannot tell them apart"
    reached = (aim < low) == higher_is_better
    side = "below" if aim < low else "above"
    verdict = "reached" if reached else "not reached"
    return f"{shown}: the aim {aim:g} lies {side} it, {verdict} beyond the beers' luck"
