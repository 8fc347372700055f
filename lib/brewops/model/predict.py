"""Predictions for beers in v2 or v3 shape: bitterness band, IBU and band probabilities.

The fitted model's pipelines start with the feature code used in training
(`brewops.model.features`), so a beer goes in as the API returns it.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Sequence
from typing import Any

import pandas as pd

from brewops.model import bands, domain, features
from brewops.schema import as_beer_ids


def checked_beer_ids(ids: Any, name: str = "the beer ids") -> list[int]:
    """`ids` as a list of beer ids, or a ValueError naming `name` and saying what they
    must be: a number or a string ("1,2") would otherwise fail after the training, or
    match no beer."""
    found = as_beer_ids(ids)
    if found is None:
        raise ValueError(f"{name} must be a list of beer ids such as [1, 25, 100], not {ids!r}")
    return found


def beers_with_ids(
    beers: Sequence[dict[str, Any]], ids: Iterable[int]
) -> tuple[list[dict[str, Any]], list[int]]:
    """(the beers among `beers` whose id is in `ids`, in their order; the ids none has)."""
    wanted = set(checked_beer_ids(ids))
    chosen = [beer for beer in beers if beer.get("id") in wanted]
    return chosen, sorted(wanted - {beer.get("id") for beer in chosen})


def beers_to_predict(
    beers: Sequence[dict[str, Any]], ids: Iterable[int]
) -> tuple[list[dict[str, Any]], list[str]]:
    """(the beers of `ids` to predict, lines saying what was not as asked): the ids no
    beer has are named, and with none of them there, the first five beers are taken."""
    chosen, not_found = beers_with_ids(beers, ids)
    notes = []
    if not_found:
        notes.append(f"no beer with an IBU has id {', '.join(map(str, not_found))}: not predicted")
    if not chosen:
        notes.append("none of predict_ids is in the data: predicting the first five beers")
        chosen = list(beers[:5])
    return chosen, notes


# Beers whose features are one step of a progress bar (under a second's work). The forests
# then predict all beers at once: in steps of this size they take three times as long.
CHUNK_BEERS = 1000


def feature_matrix(
    records: Sequence[dict[str, Any]], *, progress: bool = False, desc: str = "predict"
) -> pd.DataFrame:
    """`features.build_features` of plain records (`features.beer_records`; not made plain
    again), the per-beer work of a prediction, built CHUNK_BEERS beers at a time so that a
    progress bar on stderr (tqdm's; a widget in a notebook) follows it when `progress` is
    true."""
    from brewops.progress import ProgressBar

    parts = []
    with ProgressBar(total=len(records), desc=desc, unit=" beers", disable=not progress) as bar:
        for start in range(0, len(records), CHUNK_BEERS):
            parts.append(features.features_of_records(records[start : start + CHUNK_BEERS]))
            bar.update(len(parts[-1]))
    return pd.concat(parts, ignore_index=True) if parts else features.build_features([])


def predict_beers(
    model: Any,
    beers: Any,
    trained_on: Collection[str] | None = None,
    *,
    progress: bool = False,
    training_domain: domain.TrainingDomain | None = None,
) -> list[dict[str, Any]]:
    """One prediction per beer (a dict, a list of dicts or a DataFrame of raw records):
    `id`, `name`, `band` (label), `band_index`, `predicted_ibu`, `predicted_ibu_band` (the
    band `predicted_ibu` lies in), `estimated_ibu`, `probabilities` (by band label), `ibu`
    (the recorded IBU as a number, None when it is not one), `seen_in_training` and
    `outside_training` (`brewops.json_schemas.schema("prediction")` is their JSON Schema).

    `estimated_ibu` is the recipe's Tinseth estimate (the feature `tinseth_ibu`, rounded as
    `predicted_ibu` is): the brewer's own formula from the hop schedule, the reference the
    model is measured against (`tinseth_formula` in the metrics); None when the recipe's
    amounts are beyond what can be computed, or a hop's amount is in a unit not known.

    `band` (the most probable band) and `predicted_ibu` come from two models, a classifier
    and a regressor, and need not agree: `predicted_ibu_band` says where the IBU lies. In
    cross-validation they differ for about one beer in five, nearly always by one band,
    and `band` is then the more often right of the two (`band_ibu_disagreement` in the
    metrics).

    `trained_on` is the model card's `data.beer_keys`: with it, `seen_in_training` says
    whether the model was trained on a beer of that name (its prediction is then
    in-sample, no test of the model); without it, `seen_in_training` is None (unknown).

    `training_domain` is what the model card records of the training beers
    (`domain.TrainingDomain.from_card`): with it, `outside_training` names what makes the
    beer unlike them, its `features` outside their training range (each with its `value`
    and the `trained` range) and its `new_hops`, varieties no training recipe had (both
    empty for a beer like the training beers); the prediction of such a beer is an
    extrapolation. Without it, `outside_training` is None (not checked).
    `progress`: a progress bar of their features, on stderr.
    """
    known = None if trained_on is None else set(trained_on)
    records = features.beer_records(beers)
    if not records:
        return []
    X = feature_matrix(records, progress=progress)
    model = getattr(model, "model", model)  # a registry.LoadedModel or the model itself
    probabilities = model.predict_proba(X)
    predicted_ibu = model.predict_ibu(X)
    outside = (
        [None] * len(records) if training_domain is None else training_domain.outside(X, records)
    )
    results = []
    estimates = X["tinseth_ibu"].to_numpy(dtype=float)
    for beer, proba, ibu, estimate, unlike in zip(
        records, probabilities, predicted_ibu, estimates, outside, strict=True
    ):
        index = int(proba.argmax())
        shown_ibu = round(float(ibu), 1)  # its band is that of the figure shown
        results.append(
            {
                "id": beer.get("id"),
                "name": beer.get("name"),
                "band": bands.band_label(index),
                "band_index": index,
                "predicted_ibu": shown_ibu,
                "predicted_ibu_band": bands.band_label(bands.band_index(shown_ibu)[0]),
                "estimated_ibu": None if math.isnan(estimate) else round(float(estimate), 1),
                "probabilities": {
                    label: round(float(p), 4) for label, p in zip(bands.LABELS, proba, strict=True)
                },
                "ibu": features.number(beer.get("ibu")),
                "seen_in_training": None if known is None else features.beer_key(beer) in known,
                "outside_training": unlike,
            }
        )
    return results


def predict_beer(
    model: Any,
    beer: dict[str, Any],
    trained_on: Collection[str] | None = None,
    training_domain: domain.TrainingDomain | None = None,
) -> dict[str, Any]:
    return predict_beers(model, [beer], trained_on, training_domain=training_domain)[0]


def predictions_frame(
    predictions: list[dict[str, Any]], model_version: str | None = None
) -> pd.DataFrame:
    """`predict_beers`' predictions as a table: one column per band probability, named
    `p <band>` as in the out-of-fold predictions, instead of one column of dicts;
    `outside_training` as one line of text (`domain.describe`); and `model_version`, the
    version that predicted, as `brewops model predict` gives it on each line (None for a
    model not registered)."""
    rest = [
        {
            **{k: v for k, v in p.items() if k != "probabilities"},
            "outside_training": domain.describe(p.get("outside_training")),
            # a row copied out of the table still says what made it
            "model_version": model_version,
        }
        for p in predictions
    ]
    probabilities = [p["probabilities"] for p in predictions]
    by_band = pd.DataFrame(probabilities, columns=list(bands.LABELS)).add_prefix("p ")
    return pd.DataFrame(rest).join(by_band)
