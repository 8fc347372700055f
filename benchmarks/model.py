"""The IBU model: fitting time, model size, loading time, prediction throughput and memory.

    .venv/bin/python benchmarks/model.py [--beers 10000] [--catalog FILE]

Fits the registered model's pipeline once on the catalogue's beers with an IBU (the final
fit of `brewops model train`, without the cross-validation around it), saves it as a
registry version folder, loads it back (checksum check included), then predicts beers
resampled from the catalogue with jittered numbers (`brewops.synth`):

- fit_seconds: one fit of the classifier and the regressor, single-threaded as in training.
- time_split_seconds: the newest-fifth evaluation of `brewops model train` (the model and
  its baselines trained on the older beers, permutation importance, the refits with the
  other forest seeds) on the worker pool, once the pool has started (a first run warms it).
- intervals_seconds: the 95 % intervals `brewops model train` adds (a bootstrap of the
  model's and three baselines' figures and of the model's margins, in cross-validation
  over 5 repeats and on the newest fifth), in this process.
- model_mb: size of `model.joblib` on disk; load_seconds: `registry.load`.
- features_per_s: beers turned into feature rows per second (pure Python, per record).
- predict_per_s: beers predicted per second in one call (features + forests + output dicts).
- one_beer_ms: median time to predict one beer at a time, as a request-per-beer service would.
- peak_rss_mb: peak resident memory of this process.

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import tempfile
import time
from pathlib import Path

ONE_BEER_CALLS = 50


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--beers", type=int, default=10_000, help="beers to predict (default: 10000)"
    )
    parser.add_argument(
        "--catalog", help="catalogue to train on (default: the downloaded punkapi-db file)"
    )
    args = parser.parse_args()
    if args.beers < 1:
        parser.error("--beers must be at least 1")

    from brewops.catalog import CatalogError, load_catalog

    try:
        catalogue = load_catalog(args.catalog)
    except CatalogError as error:  # its message says what to do
        parser.error(str(error))
    # after the catalogue: a refusal need not wait seconds for scikit-learn to import
    from brewops.model import features, predict, registry, train
    from brewops.synth import iter_synthetic_beers

    beers = features.labelled(catalogue)
    ibu = features.ibu_values(beers)
    X = features.build_features(beers)

    started = time.perf_counter()
    model = train.fit_model(train.make_model(train.ModelParams(), n_jobs=1), X, ibu)
    fit_seconds = time.perf_counter() - started
    print(f"fitted on {len(beers)} beers in {fit_seconds:.1f} s", flush=True)

    train.evaluate_time_split(beers, X, ibu)  # starts the worker pool, as the CV does in training
    started = time.perf_counter()
    train.evaluate_time_split(beers, X, ibu)
    time_split_seconds = time.perf_counter() - started
    print(f"time split evaluated in {time_split_seconds:.1f} s", flush=True)

    intervals_seconds = _intervals_seconds(model, X, ibu, beers)
    print(f"intervals computed in {intervals_seconds:.1f} s", flush=True)

    with tempfile.TemporaryDirectory(prefix="brewops-bench-model-") as folder:
        registry.save(model, {}, {"model": train.MODEL_NAME}, folder)
        model_mb = (Path(folder) / registry.MODEL_FILE).stat().st_size / 1e6
        started = time.perf_counter()
        loaded = registry.load(folder)
        load_seconds = time.perf_counter() - started
    print(f"model.joblib {model_mb:.1f} MB, loaded in {load_seconds:.2f} s", flush=True)

    to_predict = list(iter_synthetic_beers(catalogue, args.beers, seed=7))
    started = time.perf_counter()
    features.build_features(to_predict)
    features_seconds = time.perf_counter() - started

    started = time.perf_counter()
    predictions = predict.predict_beers(loaded, to_predict)
    predict_seconds = time.perf_counter() - started
    assert len(predictions) == len(to_predict), (len(predictions), len(to_predict))
    print(f"predicted {len(predictions):,} beers in {predict_seconds:.1f} s", flush=True)

    one_beer = []
    for beer in to_predict[:ONE_BEER_CALLS]:
        started = time.perf_counter()
        predict.predict_beer(loaded, beer)
        one_beer.append(time.perf_counter() - started)

    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    figures = {
        "training_beers": len(beers),
        "fit_seconds": round(fit_seconds, 2),
        "time_split_seconds": round(time_split_seconds, 2),
        "intervals_seconds": round(intervals_seconds, 2),
        "model_mb": round(model_mb, 2),
        "load_seconds": round(load_seconds, 3),
        "beers": len(to_predict),
        "features_per_s": round(len(to_predict) / features_seconds, 1),
        "predict_per_s": round(len(to_predict) / predict_seconds, 1),
        "one_beer_ms": round(statistics.median(one_beer) * 1000, 1),
        "peak_rss_mb": round(peak_kib / 1024, 1),
    }
    print(json.dumps(figures))


def _intervals_seconds(model, X, ibu, beers) -> float:
    """The intervals of a training's two evaluations, timed on the fitted model's own
    predictions standing in for every model's: a resample costs the same whichever."""
    import numpy as np

    from brewops.model import train, uncertainty

    band, predicted = model.predict_band(X), model.predict_ibu(X)
    repeats = train.Protocol().n_repeats
    _, test = train.time_split(beers)
    evaluations = [
        (np.tile(band, (repeats, 1)), np.tile(predicted, (repeats, 1)), np.arange(len(ibu))),
        (band, predicted, test),
    ]
    started = time.perf_counter()
    for predicted_bands, ibus, rows in evaluations:
        # the model and the three baselines
        tally = uncertainty.Tally.of(ibu[rows], predicted_bands[..., rows], ibus[..., rows])
        tallies = {name: tally for name in ("model", "a", "b", "c")}
        uncertainty.intervals(tallies, train.recipes(X.iloc[rows]))
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
