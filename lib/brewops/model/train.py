"""Training and the fixed evaluation protocol of the IBU model.

The protocol, fixed so results compare between runs:
- beers without an IBU are left out, one record per id;
- repeated stratified 5-fold cross-validation (5 repeats, fixed seeds) of the model and of
  two baselines on the same folds: the majority class, and a random forest on the six
  numeric cleaned columns (what the public solutions of the challenge do); beside them the
  brewer's own formula, the recipe's Tinseth estimate (`tinseth_formula`: nothing fitted,
  no band probabilities); beers whose features are identical (one recipe under several
  names) are in one fold;
- classification: accuracy, macro-F1, per-class precision/recall, confusion matrix;
- the band probabilities: Brier score, log loss and top-label expected calibration error;
  regression of IBU: MAE and R², over all beers and over beers with IBU <= 150;
- a split by `first_brewed`: train on the older beers, test on the newest fifth, as a
  proxy for beers the model has never seen;
- permutation importance of each feature on that newest fifth;
- for both evaluations, 95 % intervals of accuracy, macro-F1 and MAE, and of the model's
  margins over the baselines (`uncertainty`): how far the luck of the beers scored could
  move them.

Features are computed once per beer: they depend on that beer alone (no statistics of
other beers), so computing them before splitting is the same as computing them per fold.
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.impute import SimpleImputer
from sklearn.metrics import (
    accuracy_score,
    brier_score_loss,
    confusion_matrix,
    f1_score,
    log_loss,
    mean_absolute_error,
    precision_recall_fscore_support,
    r2_score,
)
from sklearn.model_selection import RepeatedStratifiedKFold
from sklearn.pipeline import Pipeline

from brewops import provenance, schema
from brewops.errors import ActionableError
from brewops.interrupts import in_background
from brewops.model import MAX_SEED, PROTOCOL_SEED, bands, domain, features, uncertainty
from brewops.model.estimators import BeerFeatures, IbuModel, OrdinalForestClassifier
from brewops.model.predict import feature_matrix

MODEL_NAME = "ibu-band-ordinal-forest"
REGRESSION_CAP = 150.0  # regression metrics are also reported over beers with IBU <= this
# The regressors learn log1p(IBU) with IBU clipped to the plausible range of the schema:
# the catalogue's 1085 and 1157 are transcription errors (they equal the beers' OG) and
# would otherwise pull the predictions of similar recipes far up.
IBU_CLIP = schema.column("ibu").maximum or 300.0


class TrainingError(ValueError, ActionableError):
    """The data cannot be trained on with the protocol; the message says what is missing."""


@dataclass(frozen=True)
class Protocol:
    """How the model is evaluated. The defaults are the fixed protocol."""

    n_splits: int = 5
    n_repeats: int = 5
    seed: int = PROTOCOL_SEED
    time_test_fraction: float = 0.2
    # The newest fifth is 64 beers, one beer 1.6 points, and the forest seed alone moves the
    # figure by about that much: the split is also run with this many forest seeds and the
    # spread reported next to the registered seed's figure.
    time_split_seeds: int = 5
    importance_repeats: int = 5
    n_jobs: int = 2

    def __post_init__(self) -> None:
        # refused here, not by scikit-learn minutes into the training, naming the field
        at_least = {
            "n_splits": 2,
            "n_repeats": 1,
            "seed": 0,
            "time_split_seeds": 1,
            "importance_repeats": 1,
        }
        for name, minimum in at_least.items():
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | np.integer)
                or value < minimum
            ):
                raise TrainingError(
                    f"Protocol {name}={value!r}: it must be a whole number, at least {minimum}"
                )
        if self.seed > MAX_SEED:
            raise TrainingError(f"Protocol seed={self.seed}: it must be at most {MAX_SEED}")
        if not 0 < self.time_test_fraction < 1:
            raise TrainingError(
                f"Protocol time_test_fraction={self.time_test_fraction!r}: it must be between "
                "0 and 1 (the share of the newest beers tested on)"
            )
        if self.n_jobs == 0:
            raise TrainingError(
                "Protocol n_jobs=0 would run no fold: use 1 or more, or -1 for one per CPU"
            )


def usable_cpus() -> int:
    """The CPUs this process may run on, as joblib counts them: its affinity (`taskset`, a
    cpuset) and a container's CPU quota, where `os.cpu_count()` gives the machine's."""
    from joblib import cpu_count

    return int(cpu_count())


def workers(n_jobs: int, tasks: int) -> int:
    """The worker processes for the protocol's `n_jobs` to run `tasks` fits, at most one per
    usable CPU: two on one CPU only take turns, each with its own copy of the libraries and
    the data. And at most one per task: joblib starts every worker asked for at once, and
    `n_jobs=-1` on 64 CPUs started 64 of them (0.2 GB each once at work) for 25 folds."""
    from joblib import effective_n_jobs

    return max(1, min(effective_n_jobs(n_jobs), usable_cpus(), tasks))


def end_with(parent: int) -> None:
    """Run in each worker process as it starts: the worker ends once `parent` has. A worker
    outlives a parent that was killed (SIGKILL, the OOM killer, a caller's timeout): it
    finishes the fits it holds, then waits 300 s for more, 0.2 GB each, and the files the
    fits share stay in /dev/shm until every worker has gone."""
    import os
    import threading
    import time

    import psutil

    try:
        process = psutil.Process(parent)
    except psutil.NoSuchProcess:
        os._exit(1)

    def alive() -> bool:
        try:  # killed, the parent is a zombie until whoever started it reaps it
            return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:  # reaped meanwhile
            return False

    def watch() -> None:
        while alive():
            time.sleep(1)
        os._exit(1)

    threading.Thread(target=watch, name="end with the parent", daemon=True).start()


# What joblib's workers leave behind when a training is killed with its whole process group
# (a caller's timeout, the OOM killer), resource trackers included: the semaphores loky names
# after the pid that made them, and the folders of the arrays the fits share. On tmpfs
# (/dev/shm) they hold memory until the machine restarts.
_WORKER_FILES = re.compile(r"^(?:sem\.loky-|joblib_memmapping_folder_)(\d+)[-_]")


def worker_file_folders() -> list[Path]:
    """Where joblib's workers keep their files: /dev/shm (the semaphores, and the shared
    arrays when it has room), and joblib's other temporary folder."""
    import os
    import tempfile

    other = os.environ.get("JOBLIB_TEMP_FOLDER") or tempfile.gettempdir()
    shared_memory = Path("/dev/shm")  # noqa: S108  # joblib's; only what it left is removed
    return list(dict.fromkeys([shared_memory, Path(other)]))


def remove_stale_worker_files(folders: list[Path] | None = None) -> list[Path]:
    """Remove the worker files of killed trainings from `folders` (`worker_file_folders`):
    those of this user named after a process that no longer runs. Returns them."""
    import os
    import shutil

    import psutil

    removed = []
    for folder in worker_file_folders() if folders is None else folders:
        try:
            entries = list(folder.iterdir())
        except OSError:  # no such folder here (macOS has no /dev/shm)
            continue
        for entry in entries:
            found = _WORKER_FILES.match(entry.name)
            if found is None or psutil.pid_exists(int(found.group(1))):
                continue
            try:
                if entry.lstat().st_uid != os.getuid():
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
            except OSError:  # gone meanwhile, or not ours to remove
                continue
            removed.append(entry)
    return removed


def in_parallel(n_jobs: int, tasks: int, **options: Any) -> Any:
    """joblib's Parallel for `tasks` fits (`workers`), on worker processes that end with this
    one (`end_with`). What the workers of a killed training left behind is removed first."""
    import os

    from joblib import Parallel

    remove_stale_worker_files()
    return Parallel(
        n_jobs=workers(n_jobs, tasks), initializer=end_with, initargs=(os.getpid(),), **options
    )


@dataclass(frozen=True)
class ModelParams:
    """Hyper-parameters of the model (chosen a priori, not searched on the folds)."""

    # 300 trees per threshold: with 100 the newest-fifth accuracy moved by +-0.015 with the
    # seed alone; more trees halve that spread without changing what the forests learn.
    n_estimators: int = 300
    min_samples_leaf: int = 1
    max_features: str = "sqrt"
    regressor_estimators: int = 100
    increasing: tuple[str, ...] = ("tinseth_ibu", "log_tinseth_ibu")
    random_state: int = 7

    def __post_init__(self) -> None:
        # a name that is not a feature would leave the model unconstrained without a word
        unknown = [name for name in self.increasing if name not in features.FEATURE_COLUMNS]
        if unknown:
            raise TrainingError(
                f"ModelParams increasing names {', '.join(unknown)}, not in "
                "features.FEATURE_COLUMNS: name the features the model must be monotone in"
            )


@dataclass
class TrainingResult:
    """What `train` returns: the model fitted on every beer, its metrics and model card,
    and the evaluation's features, predictions and permutation importance."""

    model: IbuModel
    metrics: dict[str, Any]
    card: dict[str, Any]
    features: pd.DataFrame
    # the first repeat: every beer predicted once, by a model that never saw it
    out_of_fold: pd.DataFrame
    time_split_predictions: pd.DataFrame
    importance: pd.DataFrame = field(default_factory=pd.DataFrame)


# ---------------------------------------------------------------------------------------
# Models


def _imputer() -> SimpleImputer:
    # keep_empty_features: a column that is empty in one training set keeps its place
    return SimpleImputer(strategy="median", keep_empty_features=True).set_output(transform="pandas")


def make_model(params: ModelParams = ModelParams(), n_jobs: int | None = None) -> IbuModel:
    classifier = Pipeline(
        [
            ("features", BeerFeatures()),
            ("impute", _imputer()),
            (
                "classify",
                OrdinalForestClassifier(
                    n_estimators=params.n_estimators,
                    min_samples_leaf=params.min_samples_leaf,
                    max_features=params.max_features,
                    increasing=params.increasing,
                    random_state=params.random_state,
                    n_jobs=n_jobs,
                ),
            ),
        ]
    )
    monotonic = [1 if name in params.increasing else 0 for name in features.FEATURE_COLUMNS]
    regressor = Pipeline(
        [
            ("features", BeerFeatures()),
            ("impute", _imputer()),
            (
                "regress",
                RandomForestRegressor(
                    n_estimators=params.regressor_estimators,
                    min_samples_leaf=params.min_samples_leaf,
                    monotonic_cst=monotonic,
                    random_state=params.random_state,
                    n_jobs=n_jobs,
                ),
            ),
        ]
    )
    return IbuModel(classifier=classifier, regressor=regressor)


def regression_target(ibu: np.ndarray) -> np.ndarray:
    return np.log1p(np.clip(ibu, 0.0, IBU_CLIP))


def fit_model(model: IbuModel, X: pd.DataFrame, ibu: np.ndarray) -> IbuModel:
    model.classifier.fit(X, bands.band_index(ibu))
    model.regressor.fit(X, regression_target(ibu))
    return model


@dataclass
class _Baseline:
    """A baseline: classifier and regressor on a subset of the feature columns."""

    name: str
    columns: tuple[str, ...]
    make_classifier: Callable[[], Any]
    make_regressor: Callable[[], Any]

    def fit(self, X: pd.DataFrame, ibu: np.ndarray) -> _Baseline:
        self.classifier_ = self.make_classifier().fit(X[list(self.columns)], bands.band_index(ibu))
        self.regressor_ = self.make_regressor().fit(X[list(self.columns)], regression_target(ibu))
        return self

    def predict_band(self, X: pd.DataFrame) -> np.ndarray:
        return self.classifier_.predict(X[list(self.columns)])

    def predict_ibu(self, X: pd.DataFrame) -> np.ndarray:
        return np.expm1(self.regressor_.predict(X[list(self.columns)]))

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Probabilities of the bands, a column for every band (0 for one never seen)."""
        proba = self.classifier_.predict_proba(X[list(self.columns)])
        full = np.zeros((len(X), bands.N_BANDS))
        full[:, np.asarray(self.classifier_.classes_).astype(int)] = proba
        return full


TINSETH_FORMULA = "tinseth_formula"


class TinsethFormula:
    """The brewer's own estimate as a reference: the recipe's Tinseth IBU (the feature
    `tinseth_ibu`) is the predicted IBU, and the band it lies in the predicted band.

    Nothing is fitted, so it scores the same under any folds; what the model adds over it
    is what it learns beyond the formula. It gives no band probabilities (one estimate, not
    a distribution over the bands), so it has no `brier`, `log_loss` or `ece`; its
    `band_ibu_disagreement` is 0, its band being that of its IBU. A recipe whose estimate is
    missing (an amount beyond what the forests compute in, made NaN by
    `features.build_features`) counts as 0 IBU, as a recipe without a hop it can count."""

    name = TINSETH_FORMULA

    def fit(self, X: pd.DataFrame, ibu: np.ndarray) -> TinsethFormula:
        return self

    def predict_ibu(self, X: pd.DataFrame) -> np.ndarray:
        return np.nan_to_num(X["tinseth_ibu"].to_numpy(dtype=float), nan=0.0)

    def predict_band(self, X: pd.DataFrame) -> np.ndarray:
        return bands.band_index(self.predict_ibu(X))

    def predict_proba(self, X: pd.DataFrame) -> None:
        """None: the formula gives no band probabilities."""
        return None


def make_baselines(seed: int, n_jobs: int | None = None) -> list[_Baseline | TinsethFormula]:
    """The majority class, the six-column random forest (scikit-learn defaults, as the
    public solutions use it; missing values filled with the median) and the Tinseth
    formula (`TinsethFormula`). The majority class
    gives the bands their shares of the training beers as probabilities (it predicts the
    commonest): the no-skill reference of the probability scores, where probability 1 on
    its one band would be only a certain answer, mostly wrong."""
    # the baselines read their columns from the model's feature matrix
    missing = [name for name in features.BASELINE_COLUMNS if name not in features.FEATURE_COLUMNS]
    if missing:
        raise TrainingError(
            f"features.BASELINE_COLUMNS names {', '.join(missing)}, not in "
            "features.FEATURE_COLUMNS: the baselines read their columns from the feature "
            "matrix, so keep those columns in it"
        )
    return [
        _Baseline(
            "majority_class",
            features.BASELINE_COLUMNS,
            lambda: DummyClassifier(strategy="prior"),
            lambda: DummyRegressor(strategy="median"),
        ),
        _Baseline(
            "random_forest_6_columns",
            features.BASELINE_COLUMNS,
            lambda: Pipeline(
                [
                    ("impute", _imputer()),
                    ("classify", RandomForestClassifier(random_state=seed, n_jobs=n_jobs)),
                ]
            ),
            lambda: Pipeline(
                [
                    ("impute", _imputer()),
                    ("regress", RandomForestRegressor(random_state=seed, n_jobs=n_jobs)),
                ]
            ),
        ),
        TinsethFormula(),
    ]


# ---------------------------------------------------------------------------------------
# Metrics


def classification_metrics(true_band: np.ndarray, predicted_band: np.ndarray) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class figures and confusion matrix over the four bands.

    A band in neither the truth nor the predictions has nothing to score: its per-class
    figures are None and macro-F1 averages over the other bands (counting it as 0 would
    punish a catalogue for simply lacking a band).
    """
    labels = list(range(bands.N_BANDS))
    present = np.union1d(true_band, predicted_band).astype(int).tolist()
    precision, recall, f1, support = precision_recall_fscore_support(
        true_band, predicted_band, labels=labels, zero_division=0
    )
    return {
        "accuracy": float(accuracy_score(true_band, predicted_band)),
        "macro_f1": float(
            f1_score(true_band, predicted_band, labels=present, average="macro", zero_division=0)
        ),
        "per_class": {
            bands.LABELS[i]: {
                "precision": float(precision[i]) if i in present else None,
                "recall": float(recall[i]) if i in present else None,
                "f1": float(f1[i]) if i in present else None,
                "support": int(support[i]),
            }
            for i in labels
        },
        "confusion_matrix": confusion_matrix(true_band, predicted_band, labels=labels).tolist(),
    }


def regression_metrics(true_ibu: np.ndarray, predicted_ibu: np.ndarray) -> dict[str, float]:
    capped = true_ibu <= REGRESSION_CAP
    return {
        "mae": float(mean_absolute_error(true_ibu, predicted_ibu)),
        "r2": _r2(true_ibu, predicted_ibu),
        "mae_ibu_le_150": float(mean_absolute_error(true_ibu[capped], predicted_ibu[capped]))
        if capped.any()
        else math.nan,
        "r2_ibu_le_150": _r2(true_ibu[capped], predicted_ibu[capped]),
        "n_ibu_le_150": int(capped.sum()),
    }


def _r2(true: np.ndarray, predicted: np.ndarray) -> float:
    return float(r2_score(true, predicted)) if len(true) > 1 else math.nan


RELIABILITY_BINS = 10  # bins of the top-label confidence, 0.1 wide


def reliability_bins(
    true_band: np.ndarray, proba: np.ndarray, n_bins: int = RELIABILITY_BINS
) -> pd.DataFrame:
    """The top-label reliability table: the beers binned by the probability of their
    predicted band (the confidence), in equal-width bins closed on the right as
    scikit-learn's `calibration_curve` bins them; per bin its edges, `n`, the mean
    `confidence` and the `accuracy` (share whose predicted band is the true one; NaN in an
    empty bin). Honest probabilities put every bin's accuracy at its confidence."""
    proba = np.asarray(proba, dtype=float)
    confidence = proba.max(axis=1)
    correct = proba.argmax(axis=1) == np.asarray(true_band)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.searchsorted(edges[1:-1], confidence)
    n = np.bincount(which, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(which, confidence, minlength=n_bins) / n
        accuracy = np.bincount(which, correct, minlength=n_bins) / n
    return pd.DataFrame(
        {
            "lower": edges[:-1],
            "upper": edges[1:],
            "n": n,
            "confidence": mean_confidence,
            "accuracy": accuracy,
        }
    )


def calibration_metrics(true_band: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """How far the band probabilities are from what happens.

    - `brier`: the multiclass Brier score, the squared distance from the probabilities to
      the true band's one-hot vector summed over the bands (0 best, 2 worst);
    - `log_loss`: the mean of -ln(probability of the true band); a true band given
      probability 0 counts as scikit-learn's clipped 2.2e-16 (36 per beer);
    - `ece`: the top-label expected calibration error, over `reliability_bins`: the mean
      distance between a bin's accuracy and its confidence, weighted by its beers.
    """
    labels = list(range(bands.N_BANDS))
    table = reliability_bins(true_band, proba)
    filled = table[table["n"] > 0]
    gap = (filled["accuracy"] - filled["confidence"]).abs()
    return {
        "brier": float(brier_score_loss(true_band, proba, labels=labels)),
        "log_loss": float(log_loss(true_band, proba, labels=labels)),
        "ece": float((gap * filled["n"]).sum() / filled["n"].sum()),
    }


def band_ibu_disagreement(predicted_band: np.ndarray, predicted_ibu: np.ndarray) -> float:
    """The share of beers whose predicted IBU lies in another band than their predicted
    band: the classifier and the regressor are separate models and need not agree."""
    return float(np.mean(np.asarray(predicted_band) != bands.band_index(predicted_ibu)))


def band_ibu_breakdown(out_of_fold: pd.DataFrame) -> dict[str, Any]:
    """Where band and predicted IBU disagree in out-of-fold predictions (columns `band`,
    `predicted_band`, `predicted_ibu`): how many beers (`beers`), how many of them more
    than one band apart (`more_than_one_band`), and the share of them whose predicted band
    (`band_right`) or whose IBU's band (`ibu_band_right`) is the true band (NaN if none)."""
    band = out_of_fold["band"].to_numpy()
    predicted = out_of_fold["predicted_band"].to_numpy()
    ibu_band = bands.band_index(out_of_fold["predicted_ibu"].to_numpy())
    differ = ibu_band != predicted
    band_right = float((predicted == band)[differ].mean()) if differ.any() else math.nan
    ibu_right = float((ibu_band == band)[differ].mean()) if differ.any() else math.nan
    return {
        "beers": int(differ.sum()),
        "more_than_one_band": int((np.abs(ibu_band - predicted) > 1).sum()),
        "band_right": band_right,
        "ibu_band_right": ibu_right,
    }


def all_metrics(
    true_ibu: np.ndarray,
    predicted_band: np.ndarray,
    predicted_ibu: np.ndarray,
    proba: np.ndarray | None = None,
) -> dict[str, Any]:
    """Every figure of one set of predictions; those of the probabilities (`brier`,
    `log_loss`, `ece`) when `proba`, the band probabilities, is given."""
    true_band = bands.band_index(true_ibu)
    return {
        "n": len(true_ibu),
        **classification_metrics(true_band, predicted_band),
        **regression_metrics(true_ibu, predicted_ibu),
        **(calibration_metrics(true_band, proba) if proba is not None else {}),
        "band_ibu_disagreement": band_ibu_disagreement(predicted_band, predicted_ibu),
    }


def evaluate_catalogue(
    model: IbuModel,
    beers: list[dict[str, Any]],
    trained_on: list[str] | None,
    *,
    progress: bool = False,
    training_domain: domain.TrainingDomain | None = None,
) -> dict[str, Any]:
    """Scores of a model on labelled beers: over all of them, and over the beers it was not
    trained on (told apart by `features.beer_key`) when the list of those is known.
    `progress`: a progress bar of their features, on stderr.

    With `training_domain` (`domain.TrainingDomain.from_card`), `outside_training` counts
    the beers with a feature outside its training range or a hop never trained on
    (`domain.summary`), and scores them (`outside`) apart from the others (`inside`): over
    the beers not trained on when those are known, as a beer trained on is recalled. Without
    it, `outside_training` is None (not checked).

    `tinseth_formula` scores the recipes' Tinseth estimate (`TinsethFormula`) on the same
    beers, and under its `unseen` on the same beers not trained on (None when unknown or
    none): what the model adds over the brewer's own formula."""
    X = feature_matrix(beers, progress=progress, desc="evaluate")
    ibu = features.ibu_values(beers)
    proba = model.predict_proba(X)
    predicted_band = np.argmax(proba, axis=1)  # what `predict_band` gives
    predicted_ibu = model.predict_ibu(X)

    def scores(chosen: np.ndarray) -> dict[str, Any] | None:
        if not chosen.any():
            return None
        return with_accuracy_interval(
            all_metrics(ibu[chosen], predicted_band[chosen], predicted_ibu[chosen], proba[chosen])
        )

    result = with_accuracy_interval(all_metrics(ibu, predicted_band, predicted_ibu, proba))
    new = np.ones(len(beers), dtype=bool)
    if trained_on is None:
        result.update(seen_in_training=None, unseen=None)
    else:
        known = set(trained_on)
        new = np.array([features.beer_key(beer) not in known for beer in beers])
        result["seen_in_training"] = int((~new).sum())
        result["unseen"] = scores(new)
    formula = TinsethFormula()
    estimate_band, estimate = formula.predict_band(X), formula.predict_ibu(X)
    result["tinseth_formula"] = {
        **all_metrics(ibu, estimate_band, estimate),
        "unseen": all_metrics(ibu[new], estimate_band[new], estimate[new])
        if trained_on is not None and new.any()
        else None,
    }
    result["outside_training"] = None
    if training_domain is not None:
        outside = training_domain.outside(X, beers)
        flagged = np.array([domain.is_outside(entry) for entry in outside])
        result["outside_training"] = {
            **domain.summary(outside),
            "outside": scores(flagged & new),
            "inside": scores(~flagged & new),
        }
    return result


def with_accuracy_interval(figures: dict[str, Any]) -> dict[str, Any]:
    """`figures` and `accuracy_interval`, the Wilson 95 % interval of their accuracy: the
    beers scored as independent trials of a fixed model."""
    right = round(figures["accuracy"] * figures["n"])
    return {**figures, "accuracy_interval": list(uncertainty.wilson(right, figures["n"]))}


_SCALARS = ("accuracy", "macro_f1", "mae", "r2", "mae_ibu_le_150", "r2_ibu_le_150")
_PROBABILITY_SCALARS = ("brier", "log_loss", "ece", "band_ibu_disagreement")


def _summarise(per_repeat: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean (and spread across repeats) of pooled out-of-fold metrics of each repeat."""
    summary: dict[str, Any] = {"n": per_repeat[0]["n"], "repeats": len(per_repeat)}
    for key in (*_SCALARS, *(k for k in _PROBABILITY_SCALARS if k in per_repeat[0])):
        values = np.array([m[key] for m in per_repeat], dtype=float)
        summary[key] = float(values.mean())
        summary[f"{key}_std"] = float(values.std())
    summary["per_class"] = {
        label: {
            stat: _mean_of_known([m["per_class"][label][stat] for m in per_repeat])
            for stat in ("precision", "recall", "f1")
        }
        | {"support": per_repeat[0]["per_class"][label]["support"]}
        for label in bands.LABELS
    }
    summary["confusion_matrix"] = np.sum(
        [m["confusion_matrix"] for m in per_repeat], axis=0
    ).tolist()
    return summary


def _mean_of_known(values: list[float | None]) -> float | None:
    """The mean over the repeats where a band had something to score (None if none did)."""
    known = [value for value in values if value is not None]
    return float(np.mean(known)) if known else None


# ---------------------------------------------------------------------------------------
# The protocol


def first_brewed_order(text: Any) -> float:
    """`MM/YYYY` or `YYYY` as a fractional year (a year alone counts as its middle)."""
    if not isinstance(text, str):
        return math.nan
    match = re.fullmatch(r"\s*(?:(\d{1,2})\s*[/-]\s*)?(\d{4})\s*", text)
    if not match:
        return math.nan
    month = int(match.group(1)) if match.group(1) else 6.5
    if not 1 <= month <= 12:  # "13/2016" is no date, not January 2017
        return math.nan
    return int(match.group(2)) + (month - 0.5) / 12.0


def _brewed_order(text: Any) -> float:
    """`first_brewed_order`, an unknown date the oldest (NaN would compare as no date)."""
    brewed = first_brewed_order(text)
    return -math.inf if math.isnan(brewed) else brewed


def time_split(
    beers: list[dict[str, Any]], test_fraction: float = 0.2
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the older beers (train) and of the newest `test_fraction` (test), by
    `first_brewed`, ties and unknown dates broken by id (unknown dates count as oldest)."""
    keys = [
        (_brewed_order(b.get("first_brewed")), features.id_sort_key(b.get("id"))) for b in beers
    ]
    order = sorted(range(len(beers)), key=lambda i: keys[i])
    n_test = max(1, round(len(beers) * test_fraction))
    return np.array(sorted(order[:-n_test])), np.array(sorted(order[-n_test:]))


def cross_validate(
    X: pd.DataFrame,
    ibu: np.ndarray,
    protocol: Protocol = Protocol(),
    params: ModelParams = ModelParams(),
    progress: bool = False,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Model and baselines on the same repeated stratified folds (`cv_splits`).

    Returns the metrics ({"cv": ..., "baselines": {...}}) and the first repeat's
    out-of-fold predictions.
    """
    from joblib import delayed

    from brewops.progress import ProgressBar

    band = bands.band_index(ibu)
    splits = cv_splits(X, band, protocol)
    names = ["model"] + [b.name for b in make_baselines(protocol.seed)]
    pred_band = {name: np.zeros((protocol.n_repeats, len(ibu)), dtype=int) for name in names}
    pred_ibu = {name: np.zeros((protocol.n_repeats, len(ibu))) for name in names}
    pred_proba: dict[str, np.ndarray] = {}  # of those that give probabilities
    # Folds run in parallel processes, each single-threaded: the forests are small, so
    # threads inside one forest would mostly wait on each other.
    results = in_parallel(protocol.n_jobs, len(splits), return_as="generator")(
        delayed(_run_fold)(X, ibu, train, test, protocol.seed, params) for train, test in splits
    )
    progress_bar = ProgressBar(
        results, total=len(splits), desc="cross-validation folds", disable=not progress
    )
    for fold, ((_, test), fold_result) in enumerate(zip(splits, progress_bar, strict=True)):
        repeat = fold // protocol.n_splits
        fold_proba, fold_bands, fold_ibu = fold_result
        for name in names:
            pred_band[name][repeat, test] = fold_bands[name]
            pred_ibu[name][repeat, test] = fold_ibu[name]
        for name, proba in fold_proba.items():  # the Tinseth formula gives none
            shape = (protocol.n_repeats, len(ibu), bands.N_BANDS)
            pred_proba.setdefault(name, np.zeros(shape))[repeat, test] = proba

    summaries = {
        name: _summarise(
            [
                all_metrics(
                    ibu,
                    pred_band[name][r],
                    pred_ibu[name][r],
                    pred_proba[name][r] if name in pred_proba else None,
                )
                for r in range(protocol.n_repeats)
            ]
        )
        for name in names
    }
    for summary in summaries.values():
        summary["folds"] = protocol.n_splits
    summaries["model"]["intervals"] = uncertainty.intervals(
        {name: uncertainty.Tally.of(ibu, pred_band[name], pred_ibu[name]) for name in names},
        recipes(X),
        seed=protocol.seed,
    )
    out_of_fold = pd.DataFrame(
        {
            "ibu": ibu,
            "band": band,
            "predicted_band": pred_band["model"][0],
            "predicted_ibu": pred_ibu["model"][0],
        }
    )
    for i, label in enumerate(bands.LABELS):
        out_of_fold[f"p {label}"] = pred_proba["model"][0][:, i]
    metrics = {"cv": summaries.pop("model"), "baselines": summaries}
    return metrics, out_of_fold


def cv_splits(
    X: pd.DataFrame, band: np.ndarray, protocol: Protocol = Protocol()
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The (train, test) rows of every fold, repeat after repeat: repeated stratified folds
    of the distinct feature rows, each row's beers together.

    Beers whose features are identical (one recipe under several names) share a fold: a
    copy in the training folds would be recalled, not predicted. Without such beers the
    folds are those of `RepeatedStratifiedKFold` on the beers themselves.
    """
    recipe = recipes(X)
    _, first = np.unique(recipe, return_index=True)  # recipes in the order of their first beer
    folds = RepeatedStratifiedKFold(
        n_splits=protocol.n_splits, n_repeats=protocol.n_repeats, random_state=protocol.seed
    )
    return [
        (np.flatnonzero(np.isin(recipe, train)), np.flatnonzero(np.isin(recipe, test)))
        for train, test in folds.split(first, band[first])
    ]


def recipes(X: pd.DataFrame) -> np.ndarray:
    """Per beer the number of its recipe, 0 for the first beer's and counting up in the
    order of their first beer: beers whose features are identical share one."""
    # hash_pandas_object: equal rows (NaN in the same places too) get equal hashes
    _, first, recipe = np.unique(
        pd.util.hash_pandas_object(X, index=False).to_numpy(),
        return_index=True,
        return_inverse=True,
    )
    return np.argsort(np.argsort(first))[recipe.ravel()]


def _run_fold(
    X: pd.DataFrame,
    ibu: np.ndarray,
    train: np.ndarray,
    test: np.ndarray,
    seed: int,
    params: ModelParams,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray]]:
    model = fit_model(make_model(params, n_jobs=1), X.iloc[train], ibu[train])
    proba = {"model": model.predict_proba(X.iloc[test])}
    predicted_bands = {"model": np.argmax(proba["model"], axis=1)}
    predicted_ibu = {"model": model.predict_ibu(X.iloc[test])}
    for baseline in make_baselines(seed, n_jobs=1):
        baseline.fit(X.iloc[train], ibu[train])
        probabilities = baseline.predict_proba(X.iloc[test])
        if probabilities is not None:  # the Tinseth formula gives none
            proba[baseline.name] = probabilities
        predicted_bands[baseline.name] = baseline.predict_band(X.iloc[test])
        predicted_ibu[baseline.name] = baseline.predict_ibu(X.iloc[test])
    return proba, predicted_bands, predicted_ibu


def evaluate_time_split(
    beers: list[dict[str, Any]],
    X: pd.DataFrame,
    ibu: np.ndarray,
    protocol: Protocol = Protocol(),
    params: ModelParams = ModelParams(),
) -> tuple[dict[str, Any], pd.DataFrame, pd.DataFrame]:
    """Train on the older beers, test on the newest fifth; permutation importance there."""
    from joblib import delayed

    train, test = time_split(beers, protocol.time_test_fraction)
    seeds = [params.random_state + i for i in range(max(1, protocol.time_split_seeds))]
    # The model, its baselines and the refits with the other forest seeds run side by side
    # in the workers: fitted here, the model would keep the other workers waiting.
    first, *refitted = in_parallel(protocol.n_jobs, len(seeds))(
        [delayed(_time_split_model)(X, ibu, train, test, protocol, params)]
        + [
            delayed(_time_split_bands)(X, ibu, train, test, replace(params, random_state=seed))
            for seed in seeds[1:]
        ]
    )
    predicted_band, predicted_ibu, baseline_predictions, importance = first
    dates = [beers[i].get("first_brewed") for i in test]
    result: dict[str, Any] = {
        "n_train": len(train),
        "n_test": len(test),
        "test_first_brewed_from": min(dates, key=_brewed_order),
        "test_first_brewed_to": max(dates, key=_brewed_order),
        **all_metrics(ibu[test], predicted_band, predicted_ibu),
        "baselines": {
            name: all_metrics(ibu[test], band, predicted)
            for name, (band, predicted) in baseline_predictions.items()
        },
    }
    result["over_seeds"] = _time_split_over_seeds(
        bands.band_index(ibu[test]), seeds, [predicted_band, *refitted]
    )
    result["intervals"] = uncertainty.intervals(
        {
            "model": uncertainty.Tally.of(ibu[test], predicted_band, predicted_ibu),
            **{
                name: uncertainty.Tally.of(ibu[test], band, predicted)
                for name, (band, predicted) in baseline_predictions.items()
            },
        },
        recipes(X.iloc[test]),
        seed=protocol.seed,
    )
    correct = int(np.sum(predicted_band == bands.band_index(ibu[test])))
    result["intervals"]["accuracy_wilson"] = list(uncertainty.wilson(correct, len(test)))
    predictions = pd.DataFrame(
        {
            "id": [beers[i].get("id") for i in test],
            "name": [beers[i].get("name") for i in test],
            "first_brewed": dates,
            "ibu": ibu[test],
            "band": bands.band_index(ibu[test]),
            "predicted_band": predicted_band,
            "predicted_ibu": predicted_ibu,
        }
    )
    return result, predictions, importance


def _time_split_model(
    X: pd.DataFrame,
    ibu: np.ndarray,
    train: np.ndarray,
    test: np.ndarray,
    protocol: Protocol,
    params: ModelParams,
) -> tuple[np.ndarray, np.ndarray, dict[str, tuple[np.ndarray, np.ndarray]], pd.DataFrame]:
    """The model and the baselines trained on the older beers: their predictions of the
    newest fifth (band, IBU) and the model's permutation importance there."""
    model = fit_model(make_model(params, n_jobs=1), X.iloc[train], ibu[train])
    baseline_predictions = {}
    for baseline in make_baselines(protocol.seed, n_jobs=1):
        baseline.fit(X.iloc[train], ibu[train])
        baseline_predictions[baseline.name] = (
            baseline.predict_band(X.iloc[test]),
            baseline.predict_ibu(X.iloc[test]),
        )
    importance = feature_importance(model, X.iloc[test], ibu[test], protocol)
    return (
        model.predict_band(X.iloc[test]),
        model.predict_ibu(X.iloc[test]),
        baseline_predictions,
        importance,
    )


def _time_split_over_seeds(
    true_band: np.ndarray, seeds: list[int], predicted_bands: list[np.ndarray]
) -> dict[str, Any]:
    """Band accuracy and macro-F1 on the newest fifth for consecutive forest seeds, the
    first being the model's own."""
    per_seed = [classification_metrics(true_band, b) for b in predicted_bands]
    accuracy = [m["accuracy"] for m in per_seed]
    macro_f1 = [m["macro_f1"] for m in per_seed]
    return {
        "seeds": seeds,
        "accuracy": accuracy,
        "macro_f1": macro_f1,
        "accuracy_mean": float(np.mean(accuracy)),
        "accuracy_std": float(np.std(accuracy)),
        "macro_f1_mean": float(np.mean(macro_f1)),
        "macro_f1_std": float(np.std(macro_f1)),
    }


def seed_spread_summary(split: dict[str, Any]) -> str:
    """One line on how the newest-fifth figures vary with the forest seed."""
    spread = split["over_seeds"]
    return (
        f"newest fifth over {len(spread['seeds'])} forest seeds: "
        f"accuracy {spread['accuracy_mean']:.3f} ± {spread['accuracy_std']:.3f}, "
        f"macro-F1 {spread['macro_f1_mean']:.3f} ± {spread['macro_f1_std']:.3f} "
        f"(one beer is {1 / split['n_test']:.3f})"
    )


def _time_split_bands(
    X: pd.DataFrame, ibu: np.ndarray, train: np.ndarray, test: np.ndarray, params: ModelParams
) -> np.ndarray:
    classifier = make_model(params, n_jobs=1).classifier
    classifier.fit(X.iloc[train], bands.band_index(ibu[train]))
    return classifier.predict(X.iloc[test])


def feature_importance(
    model: IbuModel, X: pd.DataFrame, ibu: np.ndarray, protocol: Protocol = Protocol()
) -> pd.DataFrame:
    """Drop in accuracy when one feature's values are shuffled among the given beers.

    The shuffles are scikit-learn's `permutation_importance` ones (same seed, same order),
    but every shuffled copy is predicted in one call: a forest predicts each beer on its
    own, so the predictions are the same, without a call of the 900 trees per copy.
    """
    true_band = bands.band_index(ibu)
    copies = permuted_copies(X, protocol.importance_repeats, protocol.seed)
    predicted = model.classifier.predict(pd.concat([X, *copies], ignore_index=True))
    correct = (predicted == np.tile(true_band, 1 + len(copies))).reshape(1 + len(copies), len(X))
    baseline_score, *scores = [float(row.mean()) for row in correct]
    importances = baseline_score - np.array(scores).reshape(X.shape[1], protocol.importance_repeats)
    frame = pd.DataFrame(
        {
            "feature": list(X.columns),
            "importance": np.mean(importances, axis=1),
            "std": np.std(importances, axis=1),
        }
    )
    return frame.sort_values(["importance", "feature"], ascending=[False, True]).reset_index(
        drop=True
    )


def permuted_copies(X: pd.DataFrame, n_repeats: int, seed: int) -> list[pd.DataFrame]:
    """The copies of `X` that scikit-learn's `permutation_importance(..., n_repeats,
    random_state=seed)` scores, in its order: for each column, `n_repeats` successive
    shuffles of that column alone, each column starting from the same seed."""
    column_seed = np.random.RandomState(seed).randint(np.iinfo(np.int32).max + 1)
    values = X.to_numpy(copy=True)
    copies = []
    for column in range(X.shape[1]):
        random_state = np.random.RandomState(column_seed)
        permuted = values.copy()
        order = np.arange(len(X))
        for _ in range(n_repeats):
            random_state.shuffle(order)
            permuted[:, column] = permuted[order, column]
            copies.append(pd.DataFrame(permuted.copy(), columns=X.columns))
    return copies


# ---------------------------------------------------------------------------------------
# Training end to end


def check_trainable(beers: list[dict[str, Any]], protocol: Protocol = Protocol()) -> None:
    """Refuse labelled beers the protocol cannot run on (TrainingError says what to add)."""
    if not beers:
        raise TrainingError(
            "no beer in the catalogue has an IBU: nothing to train on. "
            "Use a catalogue whose beers have IBU values."
        )
    counts = bands.counts(features.ibu_values(beers))
    present = [label for label, count in zip(bands.LABELS, counts, strict=True) if count]
    if len(present) < 2:
        raise TrainingError(
            f"all {len(beers)} beers with an IBU are in the band {present[0]}: the model "
            "needs beers of at least two bands. Add beers of other bitterness."
        )
    # stratified folds put beers of every band into every fold
    short = [
        f"{label} has {count}"
        for label, count in zip(bands.LABELS, counts, strict=True)
        if 0 < count < protocol.n_splits
    ]
    if short:
        raise TrainingError(
            f"too few beers per band for {protocol.n_splits}-fold cross-validation: "
            f"{', '.join(short)}, and each band needs at least {protocol.n_splits}. "
            f"Add beers of {'that band' if len(short) == 1 else 'those bands'}, or use fewer folds."
        )
    older, _ = time_split(beers, protocol.time_test_fraction)
    older_bands = np.unique(bands.band_index(features.ibu_values([beers[i] for i in older])))
    if len(older_bands) < 2:
        raise TrainingError(
            "the older beers (all but the newest by first_brewed) are all in the band "
            f"{bands.band_label(int(older_bands[0]))}: the test on the newest beers has "
            "nothing to learn from. Add older beers of other bitterness."
        )


# Not data of the beer: the image differs between shapes (a URL in v2, a file name in v3),
# and the tables add when a record was ingested (the partition's day, the cleaned rows' time).
_NOT_BEER_DATA = frozenset({"image_url", "image", schema.PARTITION_KEY, "ingested_at"})


def data_checksum(beers: list[dict[str, Any]]) -> str:
    """sha256 of the records used, as canonical JSON (sorted keys, by id): the same beers
    have one checksum whichever shape they come in, from a catalogue file or a table, and
    on whichever day they were ingested."""
    beers = [
        {k: _canonical_numbers(v) for k, v in b.items() if k not in _NOT_BEER_DATA} for b in beers
    ]
    canonical = json.dumps(beers, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _canonical_numbers(value: Any) -> Any:
    """A whole float as the integer it is: a table's double column gives 60.0 for the 60
    of a catalogue file."""
    if isinstance(value, dict):
        return {key: _canonical_numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_canonical_numbers(item) for item in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def library_versions() -> dict[str, str]:
    import joblib
    import sklearn

    return {
        "python": platform.python_version(),
        "scikit-learn": sklearn.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "joblib": joblib.__version__,
    }


def train(
    data: Any,
    protocol: Protocol = Protocol(),
    params: ModelParams = ModelParams(),
    progress: bool = False,
    source: dict[str, Any] | None = None,
) -> TrainingResult:
    """Run the protocol on `data` (beer records in any accepted form) and fit the final
    model on all of it. `source` (e.g. the catalogue file and its checksum) goes into the
    model card."""
    beers = features.labelled(data)
    check_trainable(beers, protocol)
    X = features.build_features(beers)
    ibu = features.ibu_values(beers)

    # While the folds run in the worker processes this one only waits: it fits the final
    # model meanwhile. Here, not in a worker: a model sent back from one saves to other
    # bytes (its strings are no longer shared), and model.joblib must not change.
    # Ctrl-C in the folds, or a fold that failed, is not kept waiting for the final fit.
    fitted = in_background(fit_model, make_model(params, n_jobs=1), X, ibu)
    metrics, out_of_fold = cross_validate(X, ibu, protocol, params, progress=progress)
    model = fitted.result()
    out_of_fold.insert(0, "name", [b.get("name") for b in beers])
    out_of_fold.insert(0, "id", [b.get("id") for b in beers])
    time_result, time_predictions, importance = evaluate_time_split(beers, X, ibu, protocol, params)
    metrics["time_split"] = time_result
    metrics["permutation_importance"] = {
        row.feature: {"mean": float(row.importance), "std": float(row.std)}
        for row in importance.itertuples()
    }
    checksum = data_checksum(beers)
    metrics["data"] = {"rows_used": len(beers), "sha256": checksum}
    card = model_card(
        beers, metrics, protocol, params, checksum, source, domain.TrainingDomain.of(X, beers)
    )
    return TrainingResult(model, metrics, card, X, out_of_fold, time_predictions, importance)


def model_card(
    beers: list[dict[str, Any]],
    metrics: dict[str, Any],
    protocol: Protocol,
    params: ModelParams,
    checksum: str,
    source: dict[str, Any] | None = None,
    training_domain: domain.TrainingDomain | None = None,
) -> dict[str, Any]:
    """The model card; `training_domain` (computed from `beers` when not given) gives its
    `data.feature_ranges` and `data.hop_varieties`."""
    if training_domain is None:
        training_domain = domain.TrainingDomain.of(feature_matrix(beers), beers)
    headline = {
        key: metrics["cv"][key]
        for key in ("accuracy", "macro_f1", "mae", "r2", "mae_ibu_le_150", "r2_ibu_le_150")
    }
    per_band = bands.counts(features.ibu_values(beers))
    limitations = (
        "Alpha acids are typical values per hop variety, not the lot used; the "
        "catalogue's IBU values contain transcription errors (e.g. 1085, 1157)."
    )
    unseen = [label for label, count in zip(bands.LABELS, per_band, strict=True) if not count]
    if unseen:  # a forest gives a class it never saw probability 0
        several = len(unseen) > 1
        limitations += (
            f" No beer of the band{'s' * several} {', '.join(unseen)} was in the training "
            f"data: the model never predicts {'them' if several else 'it'}."
        )
    return {
        "model": MODEL_NAME,
        "task": "Bitterness band of a beer, IBU bands "
        + ", ".join(bands.LABELS)
        + "; and its IBU (regression).",
        "trained_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "data": {
            "sha256": checksum,
            "rows_used": len(beers),
            "ids": [min(b["id"] for b in beers), max(b["id"] for b in beers)]
            if all(isinstance(b.get("id"), int) for b in beers)
            else None,
            "source": source or {},
            "rule": "deduplicated by id (the last record of a repeated id wins); "
            "beers without an IBU excluded",
            # so an evaluation can tell the beers the model has seen from new ones
            "beer_keys": sorted({features.beer_key(beer) for beer in beers}),
            "beers_per_band": dict(zip(bands.LABELS, per_band, strict=True)),
            # so a prediction can say when a beer is unlike those trained on
            **training_domain.card_entries(),
        },
        "features": list(features.FEATURE_COLUMNS),
        "baseline_features": list(features.BASELINE_COLUMNS),
        "params": asdict(params),
        "protocol": asdict(protocol),
        "library_versions": library_versions(),
        "code": provenance.code_version(),
        "metrics": {
            "cv": headline,
            "baselines": {
                name: {k: m[k] for k in ("accuracy", "macro_f1", "mae")}
                for name, m in metrics["baselines"].items()
            },
            "time_split": {
                **{k: metrics["time_split"][k] for k in ("n_test", "accuracy", "macro_f1", "mae")},
                **{
                    f"{k}_over_seeds": metrics["time_split"]["over_seeds"][k]
                    for k in ("accuracy_mean", "accuracy_std")
                },
            },
            **({"intervals": card_intervals(metrics)} if "intervals" in metrics["cv"] else {}),
        },
        "intended_use": "Estimating the bitterness of home-brew recipes in the Punk API / DIY Dog "
        "format. Not a substitute for a laboratory IBU measurement.",
        "limitations": limitations,
    }


def card_intervals(metrics: dict[str, Any]) -> dict[str, Any]:
    """The model card's intervals: the model's own, and those of its lead over each
    baseline (model minus baseline), in cross-validation and on the newest fifth."""
    evaluations = {
        "cv": metrics["cv"]["intervals"],
        "time_split": metrics["time_split"]["intervals"],
    }
    return {
        "confidence": evaluations["cv"]["confidence"],
        **{name: found["figures"]["model"] for name, found in evaluations.items()},
        **{f"{name}_model_minus": found["model_minus"] for name, found in evaluations.items()},
    }
