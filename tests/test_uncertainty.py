"""The intervals of the evaluation's figures: known cases, determinism, coverage."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import mean_absolute_error

from brewops.model import bands, train, uncertainty

# an IBU in the middle of each band
MIDDLE = np.array([15.0, 40.0, 60.0, 90.0])


def _predictions(rng, n, repeats=1, right=0.65):
    """Random beers and predictions right about `right` of the time, `repeats` rows."""
    ibu = MIDDLE[rng.integers(0, bands.N_BANDS, n)]
    true = bands.band_index(ibu)
    guessed = rng.integers(0, bands.N_BANDS, (repeats, n))
    predicted = np.where(rng.random((repeats, n)) < right, true, guessed)
    return ibu, predicted, ibu + rng.normal(0, 10, (repeats, n))


def _wilson_by_hand(k, n, z=1.959963984540054):
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


@pytest.mark.parametrize("k, n", [(0, 10), (10, 10), (43, 64), (206, 320), (1, 1)])
def test_the_wilson_interval_is_the_textbook_one(k, n):
    assert uncertainty.wilson(k, n) == pytest.approx(_wilson_by_hand(k, n), abs=1e-12)


def test_the_wilson_interval_of_0_of_10_is_the_tabled_one():
    # Newcombe (1998), table I: 0/10 -> 0 to 0.2775
    low, high = uncertainty.wilson(0, 10)
    assert low == 0 and high == pytest.approx(0.2775, abs=1e-4)


@pytest.mark.parametrize("repeats", [1, 3])
def test_the_tally_gives_the_figures_the_protocol_reports(repeats):
    ibu, predicted, predicted_ibu = _predictions(np.random.default_rng(1), 90, repeats)
    predicted[:, :3] = 2  # a band predicted for beers of other bands
    figures = uncertainty.Tally.of(ibu, predicted, predicted_ibu)
    accuracy, macro_f1, mae = figures.figures(figures.columns.sum(axis=0))
    per_repeat = [train.classification_metrics(bands.band_index(ibu), p) for p in predicted]
    assert accuracy == pytest.approx(np.mean([m["accuracy"] for m in per_repeat]))
    assert macro_f1 == pytest.approx(np.mean([m["macro_f1"] for m in per_repeat]))
    assert mae == pytest.approx(np.mean([mean_absolute_error(ibu, p) for p in predicted_ibu]))


def test_macro_f1_of_the_tally_averages_over_the_bands_present_as_the_protocol_does():
    ibu = MIDDLE[[0, 0, 1, 1, 1]]  # no beer of the two bitterest bands, none predicted
    predicted = np.array([0, 1, 1, 1, 0])
    tally = uncertainty.Tally.of(ibu, predicted, ibu)
    macro_f1 = tally.figures(tally.columns.sum(axis=0))[1]
    assert macro_f1 == pytest.approx(
        train.classification_metrics(bands.band_index(ibu), predicted)["macro_f1"]
    )
    assert macro_f1 == pytest.approx((0.5 + 2 / 3) / 2)


def test_the_intervals_hold_the_figure_and_are_the_same_on_every_run():
    ibu, predicted, predicted_ibu = _predictions(np.random.default_rng(2), 120, repeats=2)
    tally = uncertainty.Tally.of(ibu, predicted, predicted_ibu)
    figures = dict(zip(uncertainty.FIGURES, tally.figures(tally.columns.sum(axis=0)), strict=True))
    found = uncertainty.bootstrap(tally, seed=5)
    for key, (low, high) in found.items():
        assert low < figures[key] < high, key
    assert uncertainty.bootstrap(tally, seed=5) == found
    assert uncertainty.bootstrap(tally, seed=6) != found


def test_a_figure_no_resample_moves_has_an_interval_of_that_figure_alone():
    ibu = MIDDLE[np.arange(40) % bands.N_BANDS]
    perfect = uncertainty.Tally.of(ibu, bands.band_index(ibu), ibu)
    assert uncertainty.bootstrap(perfect, resamples=200) == {
        "accuracy": [1.0, 1.0],
        "macro_f1": [1.0, 1.0],
        "mae": [0.0, 0.0],
    }
    # a model against itself differs by nothing, whichever beers are drawn
    ibu, predicted, predicted_ibu = _predictions(np.random.default_rng(3), 50)
    tally = uncertainty.Tally.of(ibu, predicted, predicted_ibu)
    assert uncertainty.bootstrap(tally, tally, resamples=200) == {
        key: [0.0, 0.0] for key in uncertainty.FIGURES
    }


def test_the_difference_of_models_scored_on_the_same_beers_is_paired():
    # two models that differ on 3 of 200 beers: each figure is uncertain by points, their
    # difference by little, because every resample draws the same beers for both
    ibu, predicted, predicted_ibu = _predictions(np.random.default_rng(4), 200)
    other = predicted.copy()
    wrong = np.flatnonzero(predicted[0] == bands.band_index(ibu))[:3]
    other[0, wrong] = (other[0, wrong] + 1) % bands.N_BANDS
    first = uncertainty.Tally.of(ibu, predicted, predicted_ibu)
    second = uncertainty.Tally.of(ibu, other, predicted_ibu)
    low, high = uncertainty.bootstrap(first, second)["accuracy"]
    assert 0 <= low <= 3 / 200 <= high <= 0.05
    alone_low, alone_high = uncertainty.bootstrap(first)["accuracy"]
    assert alone_high - alone_low > 3 * (high - low)


def test_the_beers_of_one_recipe_are_drawn_together():
    # every beer twice: resampled by recipe, the intervals are those of the beers once;
    # resampled beer by beer, the copies pass for independent beers and narrow them
    ibu, predicted, predicted_ibu = _predictions(np.random.default_rng(5), 60)
    once = uncertainty.Tally.of(ibu, predicted, predicted_ibu)
    twice = uncertainty.Tally.of(np.tile(ibu, 2), np.tile(predicted, 2), np.tile(predicted_ibu, 2))
    recipe = np.tile(np.arange(60), 2)
    grouped = uncertainty.bootstrap(twice, groups=recipe, resamples=500)
    expected = uncertainty.bootstrap(once, resamples=500)
    for key in uncertainty.FIGURES:
        assert grouped[key] == pytest.approx(expected[key]), key
    low, high = uncertainty.bootstrap(twice, resamples=500)["accuracy"]
    assert high - low < 0.8 * (expected["accuracy"][1] - expected["accuracy"][0])


def test_the_intervals_cover_the_true_accuracy_about_95_times_in_100():
    # 300 test sets of 64 beers from a model right 67 % of the time: how often does each
    # interval hold 0.67? (a fixed generator: the same count on every run)
    rng = np.random.default_rng(6)
    truth, n, trials = 0.67, 64, 300
    wilson_hits = bootstrap_hits = 0
    for trial in range(trials):
        ibu, predicted, predicted_ibu = _predictions(rng, n, right=0.0)
        right = rng.random(n) < truth
        predicted[0, right] = bands.band_index(ibu)[right]
        predicted[0, ~right] = (bands.band_index(ibu)[~right] + 1) % bands.N_BANDS
        low, high = uncertainty.wilson(int(right.sum()), n)
        wilson_hits += low <= truth <= high
        tally = uncertainty.Tally.of(ibu, predicted, predicted_ibu)
        low, high = uncertainty.bootstrap(tally, resamples=999, seed=trial)["accuracy"]
        bootstrap_hits += low <= truth <= high
    assert 0.91 <= wilson_hits / trials <= 0.99
    assert 0.89 <= bootstrap_hits / trials <= 0.99


def test_the_intervals_of_an_evaluation_name_how_they_were_made():
    ibu, predicted, predicted_ibu = _predictions(np.random.default_rng(7), 80)
    guess = np.zeros_like(predicted)
    found = uncertainty.intervals(
        {
            "model": uncertainty.Tally.of(ibu, predicted, predicted_ibu),
            "guess": uncertainty.Tally.of(ibu, guess, np.full_like(predicted_ibu, 40.0)),
        },
        np.arange(80) // 2,
        seed=9,
    )
    assert found["confidence"] == 0.95 and found["seed"] == 9 and found["recipes"] == 40
    assert set(found["figures"]) == {"model", "guess"}
    assert set(found["model_minus"]) == {"guess"}
    assert found["model_minus"]["guess"]["accuracy"][0] > 0  # far better than a guess


@pytest.mark.parametrize(
    "aim, higher_is_better, says",
    [
        (0.65, True, "the aim 0.65 lies inside, these beers cannot tell them apart"),
        (0.70, True, "the aim 0.7 lies above it, not reached beyond the beers' luck"),
        (0.55, True, "the aim 0.55 lies below it, reached beyond the beers' luck"),
        (0.55, False, "the aim 0.55 lies below it, not reached beyond the beers' luck"),
    ],
)
def test_an_aim_is_placed_against_the_interval(aim, higher_is_better, says):
    sentence = uncertainty.against_aim(0.644, [0.6, 0.68], aim, higher_is_better)
    assert sentence == f"0.644, interval [0.600, 0.680]: {says}"
