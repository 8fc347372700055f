"""The evaluation figures draw what they are given."""

import itertools

import numpy as np
import pandas as pd
import pytest
from matplotlib import colors

from brewops import plotstyle
from brewops.model import bands, plots
from fixtures.figures import legibility_problems, low_contrast_cell_numbers


def test_confusion_matrix_shows_counts_and_row_shares():
    matrix = [[8, 2, 0, 0], [1, 3, 0, 0], [0, 0, 5, 5], [0, 0, 0, 4]]
    fig = plots.plot_confusion_matrix(matrix, title="folds")
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert len(texts) == bands.N_BANDS**2
    assert texts[0] == "8\n80%"
    assert texts[bands.N_BANDS + 1] == "3\n75%"
    assert texts[-1] == "4\n100%"
    assert fig.axes[0].get_title() == "folds"


def test_confusion_matrix_with_an_empty_true_band():
    matrix = [[1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]
    texts = [t.get_text() for t in plots.plot_confusion_matrix(matrix).axes[0].texts]
    assert texts[bands.N_BANDS] == "0\n0%"


@pytest.mark.parametrize(
    "shape",
    [(bands.N_BANDS + 1, bands.N_BANDS + 1), (bands.N_BANDS, bands.N_BANDS + 1)],
    ids=["other-bands", "not-square"],
)
def test_a_confusion_matrix_of_other_bands_is_refused(shape):
    # e.g. the metrics.json of a model trained before the band edges changed
    rows, columns = shape
    with pytest.raises(
        ValueError,
        match=f"a {rows}x{columns} confusion matrix, where this code has {bands.N_BANDS} bands",
    ):
        plots.plot_confusion_matrix(np.ones(shape))


def test_predicted_vs_actual_splits_points_by_band_agreement():
    actual = np.array([10.0, 45.0, 60.0, 90.0, 1157.0])
    estimate = np.array([12.0, 55.0, 65.0, 40.0, 95.0])  # 3 in the same band, 2 not
    fig = plots.plot_predicted_vs_actual(
        actual, estimate, title="estimate", ylabel="Tinseth estimate (IBU)"
    )
    ax = fig.axes[0]
    same, other = ax.collections
    assert len(same.get_offsets()) == 3
    assert len(other.get_offsets()) == 2
    # told apart by colours of the shared palette, not only by the marker
    hues = [colors.to_hex(series.get_facecolor()[0]) for series in (same, other)]
    assert set(hues) <= set(plotstyle.PALETTE) and hues[0] != hues[1]
    assert ax.get_ylabel() == "Tinseth estimate (IBU)"
    assert ax.get_xlim()[1] >= 1157.0


def test_reliability_draws_each_filled_bin_against_the_diagonal():
    true_band = np.array([0, 1, 2, 3])
    proba = np.array(
        [
            [0.75, 0.25, 0.0, 0.0],
            [0.25, 0.75, 0.0, 0.0],
            [0.0, 0.0, 0.45, 0.55],  # wrong
            [0.0, 0.0, 0.35, 0.65],
        ]
    )
    fig = plots.plot_reliability(true_band, proba, title="folds")
    ax, counts = fig.axes
    diagonal, model = ax.lines
    assert diagonal.get_xydata().tolist() == [[0, 0], [1, 1]]
    # one point per filled bin: (0.5, 0.6], (0.6, 0.7], (0.7, 0.8]
    np.testing.assert_allclose(model.get_xydata(), [[0.55, 0.0], [0.65, 1.0], [0.75, 1.0]])
    assert colors.to_hex(model.get_color()) in plotstyle.PALETTE
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["honest probabilities", "model (ECE 0.350)"]
    assert ax.get_title() == "folds"
    assert ax.get_ylabel() == "share in the predicted band"
    assert counts.get_xlabel() == "probability of the predicted band"
    assert [round(bar.get_height()) for bar in counts.patches] == [0] * 5 + [1, 1, 2, 0, 0]
    assert (ax.get_xlim(), ax.get_ylim()) == ((0, 1), (0, 1))


def test_reliability_of_probabilities_of_other_bands_is_refused():
    with pytest.raises(ValueError, match=f"where this code has {bands.N_BANDS} bands"):
        plots.plot_reliability([0, 1], np.full((2, bands.N_BANDS + 1), 0.2))


def test_importance_shows_the_top_features_largest_first():
    importance = pd.DataFrame(
        {
            "feature": [f"f{i}" for i in range(20)],
            "importance": np.linspace(0.2, 0.0, 20),
            "std": 0.01,
        }
    )
    fig = plots.plot_importance(importance, top=5)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == ["f4", "f3", "f2", "f1", "f0"]  # barh draws bottom-up


def test_comparison_frame_and_figure_cover_model_and_baselines():
    figures = {"accuracy": 0.6, "macro_f1": 0.55, "mae": 20.0, "r2": 0.3}
    baselines = {
        "majority_class": {"accuracy": 0.3, "macro_f1": 0.1, "mae": 40.0, "r2": -0.1},
        "random_forest_6_columns": {"accuracy": 0.5, "macro_f1": 0.45, "mae": 30.0, "r2": 0.1},
    }
    metrics = {
        "cv": figures,
        "baselines": baselines,
        "time_split": {**figures, "baselines": baselines},
    }
    frame = plots.comparison_frame(metrics)
    assert len(frame) == 6
    assert set(frame["evaluation"]) == {"cross-validation", "newest fifth"}
    fig = plots.plot_comparison(metrics)
    assert [ax.get_title() for ax in fig.axes] == ["accuracy", "macro_f1"]
    assert [ax.get_ylabel() for ax in fig.axes] == [
        "accuracy (share in the right band)",
        "macro-F1 (mean of the bands' F1)",
    ]
    assert fig.get_suptitle()
    assert len(fig.axes[0].patches) == 6  # 3 models x 2 evaluations
    assert [ax.get_ylim() for ax in fig.axes] == [(0, 1), (0, 1)]  # shares of the beers


def test_comparison_names_stand_at_least_an_em_apart():
    figures = {"accuracy": 0.6, "macro_f1": 0.55}
    baselines = {"majority_class": figures, "random_forest_6_columns": figures}
    metrics = {"cv": figures, "baselines": baselines, "time_split": {**figures, "baselines": {}}}
    fig = plots.plot_comparison(metrics)
    fig.canvas.draw()
    for ax in fig.axes:
        labels = ax.get_xticklabels()
        em = labels[0].get_fontsize() * fig.dpi / 72  # points to pixels
        boxes = [label.get_window_extent() for label in labels]
        gaps = [right.x0 - left.x1 for left, right in itertools.pairwise(boxes)]
        assert min(gaps) >= em, ([label.get_text() for label in labels], gaps)


def test_confusion_matrix_cells_sit_at_true_row_and_predicted_column():
    matrix = [[8, 2, 0, 0], [1, 3, 0, 0], [0, 0, 5, 5], [0, 0, 0, 4]]
    ax = plots.plot_confusion_matrix(matrix).axes[0]
    cell = {t.get_position(): t for t in ax.texts}
    assert cell[(1, 0)].get_text() == "2\n20%"  # true band 0, predicted band 1
    assert cell[(0, 1)].get_text() == "1\n25%"
    assert (cell[(0, 0)].get_color(), cell[(1, 0)].get_color()) == ("white", "black")
    [image] = ax.images
    assert image.get_array()[0].tolist() == [0.8, 0.2, 0.0, 0.0]  # shaded by row share
    assert image.get_clim() == (0, 1)
    assert [t.get_text() for t in ax.get_xticklabels()] == list(bands.LABELS)
    assert [t.get_text() for t in ax.get_yticklabels()] == list(bands.LABELS)
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("predicted band (IBU)", "true band (IBU)")


def test_predicted_vs_actual_plots_actual_across_and_the_estimate_up():
    actual = np.array([10.0, 40.0])
    estimate = np.array([25.0, 400.0])  # the first in the same band, the second far above
    ax = plots.plot_predicted_vs_actual(actual, estimate).axes[0]
    same, other = ax.collections
    assert same.get_offsets().tolist() == [[10.0, 25.0]]
    assert other.get_offsets().tolist() == [[40.0, 400.0]]
    assert ax.get_xlim()[1] == ax.get_ylim()[1] == pytest.approx(440.0)  # the larger, +10 %
    assert (ax.get_xscale(), ax.get_yscale()) == ("symlog", "symlog")
    dashed = [line for line in ax.lines if line.get_linestyle() == "--"]
    assert len(dashed) == 2 * (bands.N_BANDS - 1)  # each inner band edge, on both axes
    assert ax.get_title() == "Predicted vs actual IBU"
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["same band", "other band", "perfect", "band edges (30, 50, 70 IBU)"]


def test_importance_shows_one_std_and_the_title_given():
    importance = pd.DataFrame(
        {"feature": ["a", "b", "c"], "importance": [0.3, 0.2, 0.1], "std": [0.05, 0.02, 0.01]}
    )
    ax = plots.plot_importance(importance).axes[0]
    assert ax.get_title() == "Permutation importance (top 3)"
    [errorbars] = ax.collections
    assert [round(seg[1][0] - seg[0][0], 6) for seg in errorbars.get_segments()] == [
        0.02,
        0.04,
        0.1,
    ]
    titled = plots.plot_importance(importance, title="IBU model").axes[0]
    assert titled.get_title() == "IBU model"


def test_comparison_shows_each_evaluations_own_baselines_in_a_fixed_order():
    def figures(accuracy: float) -> dict:
        return {"accuracy": accuracy, "macro_f1": accuracy / 2, "mae_ibu_le_150": 9.0}

    metrics = {
        "cv": figures(0.6),
        "baselines": {"majority_class": figures(0.3), "random_forest_6_columns": figures(0.5)},
        "time_split": {
            **figures(0.7),
            "baselines": {"majority_class": figures(0.2), "random_forest_6_columns": figures(0.4)},
        },
    }
    frame = plots.comparison_frame(metrics)
    newest = frame[frame["evaluation"] == "newest fifth"].set_index("model")["accuracy"]
    assert newest.to_dict() == {"model": 0.7, "majority_class": 0.2, "random_forest_6_columns": 0.4}
    assert frame["mae_ibu_le_150"].tolist() == [9.0] * 6

    ax = plots.plot_comparison(metrics).axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == [
        "model",
        "random forest\n6 columns",
        "majority class",
    ]
    # pandas draws the bars evaluation by evaluation: cross-validation first
    heights = [round(p.get_height(), 6) for p in ax.patches]
    assert heights == [0.6, 0.5, 0.3, 0.7, 0.4, 0.2]
    assert ax.get_ylim() == (0, 1)


def test_confusion_matrix_numbers_keep_their_contrast_on_mid_shades():
    # shares from 40 % to 70 % on the diagonal, where white on mid-blue was hard to read
    matrix = [[40, 60, 0, 0], [45, 55, 0, 0], [0, 0, 60, 40], [0, 0, 30, 70]]
    ax = plots.plot_confusion_matrix(matrix).axes[0]
    assert ax.texts
    assert not low_contrast_cell_numbers(ax)


def test_comparison_tells_the_evaluations_apart_by_hatching_not_only_colour():
    figures = {"accuracy": 0.6, "macro_f1": 0.55}
    baselines = {"majority_class": figures}
    metrics = {
        "cv": figures,
        "baselines": baselines,
        "time_split": {**figures, "baselines": baselines},
    }
    ax = plots.plot_comparison(metrics).axes[0]
    cross_validation, newest = ax.containers
    assert {bar.get_hatch() or "" for bar in cross_validation} != {
        bar.get_hatch() or "" for bar in newest
    }
    handles = ax.get_legend().legend_handles  # the legend shows the hatching too
    assert (handles[0].get_hatch() or "") != (handles[1].get_hatch() or "")
    # and in the two colours whose lightness differs (test_plotstyle), for greyscale print
    faces = [colors.to_hex(bars[0].get_facecolor()) for bars in (cross_validation, newest)]
    assert faces == list(plotstyle.PALETTE[:2])


def test_the_evaluation_figures_are_legible_at_the_width_notebooks_show():
    figures = {"accuracy": 0.6, "macro_f1": 0.55}
    baselines = {"majority_class": figures, "random_forest_6_columns": figures}
    metrics = {"cv": figures, "baselines": baselines, "time_split": {**figures, "baselines": {}}}
    importance = pd.DataFrame({"feature": ["a", "b"], "importance": [0.2, 0.1], "std": 0.01})
    for fig in (
        plots.plot_confusion_matrix([[8, 2, 0, 0], [1, 3, 0, 0], [0, 0, 5, 5], [0, 0, 0, 4]]),
        plots.plot_predicted_vs_actual([10.0, 45.0, 1157.0], [12.0, 55.0, 95.0]),
        plots.plot_importance(importance),
        plots.plot_comparison(metrics),
        plots.plot_reliability([0, 1, 3], np.eye(bands.N_BANDS)[[0, 2, 3]] * 0.7 + 0.075),
    ):
        assert not legibility_problems(fig)


def test_comparison_of_errors_scales_its_axis_to_them():
    # MAE is in IBU and R² can be negative: the 0-1 axis of the shares would cut their bars
    figures = {"accuracy": 0.6, "macro_f1": 0.55, "mae": 20.0, "r2": 0.3}
    baselines = {
        "majority_class": {"accuracy": 0.3, "macro_f1": 0.1, "mae": 40.0, "r2": -0.4},
        "random_forest_6_columns": {"accuracy": 0.5, "macro_f1": 0.45, "mae": 30.0, "r2": 0.1},
    }
    metrics = {"cv": figures, "baselines": baselines, "time_split": {**figures, "baselines": {}}}
    accuracy, mae, r2 = plots.plot_comparison(metrics, keys=("accuracy", "mae", "r2")).axes
    assert accuracy.get_ylim() == (0, 1)
    assert mae.get_ylim()[1] >= 40.0
    assert r2.get_ylim()[0] <= -0.4


def test_comparison_of_one_key_named_as_text_is_that_key():
    figures = {"accuracy": 0.6, "macro_f1": 0.55}
    baselines = {"majority_class": {"accuracy": 0.3, "macro_f1": 0.1}}
    metrics = {"cv": figures, "baselines": baselines, "time_split": {**figures, "baselines": {}}}

    fig = plots.plot_comparison(metrics, keys="accuracy")

    assert [ax.get_title() for ax in fig.axes] == ["accuracy"]


def test_comparison_figure_shows_every_baseline_of_the_metrics():
    figures = {"accuracy": 0.6, "macro_f1": 0.55}
    baselines = {
        "majority_class": figures,
        "random_forest_6_columns": figures,
        "linear_regression": figures,
    }
    metrics = {"cv": figures, "baselines": baselines, "time_split": {**figures, "baselines": {}}}
    ax = plots.plot_comparison(metrics).axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == [
        "model",
        "random forest\n6 columns",
        "majority class",
        "linear\nregression",
    ]


def test_calibration_frame_has_a_row_for_the_model_and_each_baseline():
    metrics = {
        "cv": {"brier": 0.47, "log_loss": 1.08, "ece": 0.06, "accuracy": 0.64},
        "baselines": {
            "majority_class": {"brier": 0.75, "log_loss": 1.38, "ece": 0.01},
            "random_forest_6_columns": {"brier": 0.62, "log_loss": 1.53, "ece": 0.10},
        },
    }
    frame = plots.calibration_frame(metrics)
    assert list(frame.index) == ["model", "majority_class", "random_forest_6_columns"]
    assert list(frame.columns) == ["brier", "log_loss", "ece"]
    assert frame.loc["random_forest_6_columns", "log_loss"] == 1.53


def test_the_tinseth_formula_is_compared_next_to_the_model_and_has_no_probability_row():
    def figures(accuracy: float, probabilities: bool = True) -> dict:
        scores = {"brier": 1 - accuracy, "log_loss": 1.0, "ece": 0.1} if probabilities else {}
        return {"accuracy": accuracy, "macro_f1": accuracy, "mae": 20.0, **scores}

    baselines = {
        "majority_class": figures(0.3),
        "random_forest_6_columns": figures(0.5),
        "tinseth_formula": figures(0.55, probabilities=False),  # an estimate, no probabilities
    }
    metrics = {
        "cv": figures(0.6),
        "baselines": baselines,
        "time_split": {**figures(0.7), "baselines": baselines},
    }
    # the probability scores only of those that give probabilities: no row of NaN
    assert list(plots.calibration_frame(metrics).index) == [
        "model",
        "majority_class",
        "random_forest_6_columns",
    ]
    ax = plots.plot_comparison(metrics).axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == [
        "model",
        "tinseth\nformula",
        "random forest\n6 columns",
        "majority class",
    ]


def _with_intervals():
    """Metrics of a model and two baselines, with intervals in both evaluations."""

    def figures(accuracy, macro_f1, mae):
        return {"accuracy": accuracy, "macro_f1": macro_f1, "mae": mae}

    def around(found, spread):
        return {key: [value - spread, value + spread] for key, value in found.items()}

    model, forest, guess = (
        figures(0.64, 0.65, 19.6),
        figures(0.51, 0.5, 24.8),
        figures(0.3, 0.1, 32.0),
    )
    intervals = {
        "confidence": 0.95,
        "figures": {
            "model": around(model, 0.05),
            "forest": around(forest, 0.04),
            "guess": around(guess, 0.03),
        },
        "model_minus": {},
    }
    return {
        "cv": {**model, "intervals": intervals},
        "baselines": {"forest": forest, "guess": guess},
        "time_split": {
            **figures(0.67, 0.63, 11.2),
            "baselines": {"forest": forest, "guess": guess},
        },
    }


def test_the_interval_frame_gives_each_figure_with_the_ends_of_its_interval():
    metrics = _with_intervals()
    frame = plots.interval_frame(metrics)
    # the newest fifth holds no intervals here (a version trained before them): no rows
    assert set(frame["evaluation"]) == {"cross-validation"}
    assert len(frame) == 3 * 3
    forest_mae = frame[(frame["model"] == "forest") & (frame["figure"] == "mae")].iloc[0]
    assert (forest_mae["value"], forest_mae["low"], forest_mae["high"]) == (24.8, 24.76, 24.84)
    table = plots.interval_table(metrics)
    assert list(table.columns) == ["accuracy", "macro_f1", "mae"]
    assert table.loc[("cross-validation", "model"), "accuracy"] == "0.640 [0.590, 0.690]"
    assert table.loc[("cross-validation", "forest"), "mae"] == "24.8 [24.8, 24.8]"


def test_the_interval_figure_draws_an_error_bar_per_model_and_the_aims():
    metrics = _with_intervals()
    metrics["time_split"]["intervals"] = {
        **metrics["cv"]["intervals"],
        "figures": {"model": {"accuracy": [0.55, 0.8], "macro_f1": [0.5, 0.75], "mae": [8, 15]}},
    }
    aims = {("cross-validation", "accuracy"): 0.68, ("newest fifth", "accuracy"): 0.7}
    fig = plots.plot_intervals(metrics, aims=aims)

    accuracy, macro_f1 = fig.axes
    assert [ax.get_title() for ax in fig.axes] == ["accuracy", "macro_f1"]
    assert [t.get_text() for t in accuracy.get_xticklabels()] == ["model", "forest", "guess"]
    bars = [c for c in accuracy.containers]
    assert len(bars) == 2  # one series per evaluation
    cv_points = bars[0].lines[0].get_ydata()
    np.testing.assert_allclose(cv_points, [0.64, 0.51, 0.3])
    np.testing.assert_allclose(bars[1].lines[0].get_ydata(), [0.67])  # the model alone
    ends = bars[0].lines[2][0].get_segments()
    np.testing.assert_allclose(
        [segment[:, 1] for segment in ends], [[0.59, 0.69], [0.47, 0.55], [0.27, 0.33]]
    )
    aims_drawn = [c for c in accuracy.collections if c.get_linestyle()[0][1] is not None]
    assert sorted(seg[0][1] for c in aims_drawn for seg in c.get_segments()) == [0.68, 0.7]
    assert "aim" in [t.get_text() for t in accuracy.get_legend().get_texts()]
    assert "aim" not in [t.get_text() for t in macro_f1.get_legend().get_texts()]
    assert "95%" in fig.get_suptitle()
    assert not legibility_problems(fig)


def test_metrics_without_intervals_have_no_interval_figure():
    figures = {"accuracy": 0.6, "macro_f1": 0.55, "mae": 20.0}
    metrics = {"cv": figures, "baselines": {}, "time_split": {**figures, "baselines": {}}}
    assert plots.interval_frame(metrics).empty
    with pytest.raises(ValueError, match="train the model again"):
        plots.plot_intervals(metrics)


def test_the_margin_table_gives_the_interval_of_the_model_minus_each_baseline():
    metrics = _with_intervals()
    metrics["cv"]["intervals"]["model_minus"] = {
        "forest": {"accuracy": [0.081, 0.186], "macro_f1": [-0.01, 0.2], "mae": [-7.94, -2.86]}
    }
    table = plots.margin_table(metrics)
    assert table.loc[("cross-validation", "forest")].to_dict() == {
        "accuracy": "[+0.081, +0.186]",
        "macro_f1": "[-0.010, +0.200]",
        "mae": "[-7.9, -2.9]",
    }
    assert len(table) == 1  # the newest fifth has no intervals here
