"""The evaluation figures draw what they are given."""

import numpy as np
import pandas as pd

from brewops.model import bands, plots


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
    assert ax.get_ylabel() == "Tinseth estimate (IBU)"
    assert ax.get_xlim()[1] >= 1157.0


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
    assert len(fig.axes[0].patches) == 6  # 3 models x 2 evaluations
