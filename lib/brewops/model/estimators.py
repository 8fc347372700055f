"""The estimators of the IBU model, scikit-learn compatible.

- `BeerFeatures`: beer records in, the feature matrix out (the feature code of
  `brewops.model.features`, so training and prediction share it).
- `OrdinalForestClassifier`: the bands are ordered, so the classifier learns the three
  questions "IBU above 30?", "above 50?", "above 70?" with one random forest each (Frank &
  Hall, 2001) and combines them into band probabilities. Each forest is constrained to be
  monotone in the Tinseth estimate: more isomerised alpha acids never make a beer less
  likely to be bitter, which keeps the model sensible on recipes unlike the training ones.
- `IbuModel`: the fitted pair (band classifier, IBU regressor) that the registry stores.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin
from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import Pipeline

from brewops.model import bands, features


class BeerFeatures(TransformerMixin, BaseEstimator):
    """Beer records (list of dicts, one dict or a DataFrame of raw records) -> features.

    A feature matrix that already has the feature columns passes through unchanged, so a
    fitted pipeline accepts either.
    """

    def fit(self, X: Any, y: Any = None) -> BeerFeatures:
        self.n_features_in_ = len(features.FEATURE_COLUMNS)
        return self

    def transform(self, X: Any) -> pd.DataFrame:
        if isinstance(X, pd.DataFrame) and list(X.columns) == list(features.FEATURE_COLUMNS):
            return X
        return features.build_features(features.beer_records(X))

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return np.asarray(features.FEATURE_COLUMNS, dtype=object)


class OrdinalForestClassifier(ClassifierMixin, BaseEstimator):
    """Ordered classes through one binary random forest per threshold (y > k)."""

    def __init__(
        self,
        n_estimators: int = 200,
        min_samples_leaf: int = 1,
        max_features: str | float = "sqrt",
        increasing: Sequence[str] = (),
        random_state: int | None = None,
        n_jobs: int | None = None,
    ):
        self.n_estimators = n_estimators
        self.min_samples_leaf = min_samples_leaf
        self.max_features = max_features
        self.increasing = increasing
        self.random_state = random_state
        self.n_jobs = n_jobs

    def fit(self, X: Any, y: Any) -> OrdinalForestClassifier:
        y = np.asarray(y)
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise ValueError("need at least two classes")
        columns = list(X.columns) if isinstance(X, pd.DataFrame) else None
        self.n_features_in_ = np.asarray(X).shape[1]
        monotonic = [
            1 if columns is not None and name in self.increasing else 0
            for name in (columns or range(self.n_features_in_))
        ]
        self.forests_ = []
        for index, threshold in enumerate(self.classes_[:-1]):
            forest = RandomForestClassifier(
                n_estimators=self.n_estimators,
                min_samples_leaf=self.min_samples_leaf,
                max_features=self.max_features,
                monotonic_cst=monotonic if any(monotonic) else None,
                random_state=None if self.random_state is None else self.random_state + index,
                n_jobs=self.n_jobs,
            )
            # classes_ are the labels seen, so both sides of every threshold hold beers
            target = (y > threshold).astype(int)
            self.forests_.append(forest.fit(np.asarray(X, dtype=float), target))
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        values = np.asarray(X, dtype=float)
        above = np.column_stack([_positive_proba(forest, values) for forest in self.forests_])
        # P(y > k) must not grow with k; the forests are fitted separately, so enforce it.
        above = np.minimum.accumulate(above, axis=1)
        lower = np.column_stack([np.ones(len(values)), above])
        upper = np.column_stack([above, np.zeros(len(values))])
        return np.clip(lower - upper, 0.0, 1.0)

    def predict(self, X: Any) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


def _positive_proba(forest: Any, X: np.ndarray) -> np.ndarray:
    return forest.predict_proba(X)[:, list(forest.classes_).index(1)]


@dataclass
class IbuModel:
    """The fitted model: band classifier and IBU regressor, both starting from raw beers."""

    classifier: Pipeline
    regressor: Pipeline
    feature_columns: tuple[str, ...] = field(default=features.FEATURE_COLUMNS)
    band_labels: tuple[str, ...] = field(default=bands.LABELS)

    def features(self, beers: Any) -> pd.DataFrame:
        return BeerFeatures().transform(beers)

    def differences_from_code(self) -> list[str]:
        """How the bands and features the model was trained with differ from this code's
        (empty when they match): the model's columns and classes mean nothing otherwise."""
        differences = []
        if tuple(self.band_labels) != bands.LABELS:
            differences.append(
                f"bands {', '.join(self.band_labels)}, where this code has {', '.join(bands.LABELS)}"
            )
        trained, current = tuple(self.feature_columns), features.FEATURE_COLUMNS
        if trained != current:
            new = [name for name in current if name not in trained]
            gone = [name for name in trained if name not in current]
            changes = [f"this code adds {', '.join(new)}"] if new else []
            changes += [f"this code lacks {', '.join(gone)}"] if gone else []
            differences.append(
                f"{len(trained)} features, where this code has {len(current)} "
                f"({'; '.join(changes) or 'in another order'})"
            )
        return differences

    def predict_proba(self, beers: Any) -> np.ndarray:
        """Probabilities of the bands (columns in band order)."""
        X = self.features(beers)
        proba = self.classifier.predict_proba(X)
        full = np.zeros((len(X), bands.N_BANDS))
        full[:, self.classifier.classes_.astype(int)] = proba
        return full

    def predict_band(self, beers: Any) -> np.ndarray:
        return np.argmax(self.predict_proba(beers), axis=1)

    def predict_ibu(self, beers: Any) -> np.ndarray:
        """Predicted IBU (the regressor learns log1p(IBU))."""
        return np.expm1(self.regressor.predict(self.features(beers)))
