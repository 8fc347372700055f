"""Predictions for beers in v2 or v3 shape: bitterness band, IBU and band probabilities.

The fitted model's pipelines start with the feature code used in training
(`brewops.model.features`), so a beer goes in as the API returns it.
"""

from __future__ import annotations

from typing import Any

from brewops.model import bands, features


def predict_beers(model: Any, beers: Any) -> list[dict[str, Any]]:
    """One prediction per beer (a dict, a list of dicts or a DataFrame of raw records):
    `id`, `name`, `band` (label), `band_index`, `predicted_ibu`, `probabilities` (by band
    label), and `ibu` (the recorded value, or None)."""
    records = features.beer_records(beers)
    if not records:
        return []
    X = features.build_features(records)
    model = getattr(model, "model", model)  # a registry.LoadedModel or the model itself
    probabilities = model.predict_proba(X)
    predicted_ibu = model.predict_ibu(X)
    results = []
    for beer, proba, ibu in zip(records, probabilities, predicted_ibu, strict=True):
        index = int(proba.argmax())
        results.append(
            {
                "id": beer.get("id"),
                "name": beer.get("name"),
                "band": bands.band_label(index),
                "band_index": index,
                "predicted_ibu": round(float(ibu), 1),
                "probabilities": {
                    label: round(float(p), 4) for label, p in zip(bands.LABELS, proba, strict=True)
                },
                "ibu": features.number(beer.get("ibu")),
            }
        )
    return results


def predict_beer(model: Any, beer: dict[str, Any]) -> dict[str, Any]:
    return predict_beers(model, [beer])[0]
