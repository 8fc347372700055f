"""The validation report's figures: what they mark out of range, and where."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from matplotlib import colors

from brewops import plotstyle, schema, validation_plots
from fixtures.figures import legibility_problems

ABV = schema.column("abv")  # plausible range 0 to 20
PH = schema.column("ph")  # plausible range 2.5 to 7


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": [1, 2, 3, 4, 5, 6],
            "abv": [0.0, 5.0, 20.0, 30.0, 25.0, -1.0],  # the range's ends are inside it
            "ph": [4.0, 5.0, None, 6.0, 79.0, 3.0],
        }
    )


def test_the_ranged_columns_are_the_numbers_with_a_plausible_range():
    names = [c.name for c in validation_plots.ranged_columns()]
    assert names == ["abv", "ibu", "target_fg", "target_og", "ebc", "srm", "ph"]


def test_out_of_range_rows_lie_beyond_either_end_and_not_on_it():
    frame = _frame()
    assert validation_plots.out_of_range(frame, ABV)["id"].tolist() == [4, 5, 6]
    assert validation_plots.out_of_range(frame, PH)["id"].tolist() == [5]  # a null is not


def test_one_panel_per_column_present_and_the_rest_hidden():
    fig = validation_plots.plot_distributions(_frame())  # abv and ph of the seven ranged
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(fig.axes) == 3 and len(visible) == 2  # a row of three
    assert [ax.get_title() for ax in visible] == [
        "abv: 3 out of range, 0 null",
        "ph: 1 out of range, 1 null",
    ]
    assert visible[0].get_xlabel() == ABV.comment

    many = validation_plots.plot_distributions(_frame(), columns=[ABV, PH], ncols=1)
    assert len(many.axes) == 2  # a row for each, not one row for both


def test_the_histogram_holds_the_values_inside_the_range_on_an_axis_spanning_it():
    fig = validation_plots.plot_distributions(_frame(), columns=[ABV])
    ax = fig.axes[0]
    bars = [p for p in ax.patches if p.get_label() != "plausible range"]
    assert sum(bar.get_height() for bar in bars) == 3  # 0, 5 and 20; not -1, 25, 30
    [span] = [p for p in ax.patches if p.get_label() == "plausible range"]
    left, right = span.get_x(), span.get_x() + span.get_width()
    assert (left, right) == (0, 20)
    low, high = ax.get_xlim()
    assert low < 0 and high > 20  # both ends of the range show, with a margin
    assert high < 25  # the values beyond it do not stretch the axis


def test_values_out_of_range_are_labelled_at_the_edge_they_are_past():
    fig = validation_plots.plot_distributions(_frame(), columns=[ABV])
    ax = fig.axes[0]
    low, high = ax.get_xlim()
    labels = [(t.get_text(), t.xy, t.get_position()) for t in ax.texts]
    assert labels == [  # from the top of the panel (1 in axes fraction) down
        ("id 6: -1", (low, 1), (0, -4)),
        ("id 5: 25", (high, 1), (0, -4)),  # ordered by value, stacked downwards
        ("id 4: 30", (high, 1), (0, -15)),
    ]
    markers = [tuple(point) for c in ax.collections for point in c.get_offsets()]
    assert markers == [(low, 0), (high, 0), (high, 0)]


def test_many_values_out_of_range_name_the_furthest_out_and_count_the_rest():
    # a big catalogue: labels for all of them would run far below the panel
    frame = pd.DataFrame(
        {
            "id": range(1, 31),
            "abv": [-float(i) for i in range(1, 11)] + [50.0 + i for i in range(20)],
        }
    )
    fig = validation_plots.plot_distributions(frame, columns=[ABV])
    ax = fig.axes[0]
    low, high = ax.get_xlim()
    shown = validation_plots.MAX_LABELS_PER_SIDE - 1
    low_side = [t.get_text() for t in ax.texts if t.xy == (low, 1)]
    high_side = [t.get_text() for t in ax.texts if t.xy == (high, 1)]
    assert low_side == [f"id {i}: -{i}" for i in range(10, 10 - shown, -1)] + [
        f"… and {10 - shown} more"
    ]
    assert high_side == [f"… and {20 - shown} more"] + [
        f"id {i}: {39 + i}" for i in range(31 - shown, 31)
    ]
    markers = [tuple(point) for c in ax.collections for point in c.get_offsets()]
    assert len(markers) == 30  # every value is still marked at its edge


def test_the_legend_names_the_out_of_range_marker_once():
    # values past both ends: a marker at each edge, one legend entry for them
    fig = validation_plots.plot_distributions(_frame(), columns=[ABV])
    [legend] = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == [
        "plausible range",
        "out of range (at the edge)",
    ]


def test_the_legend_names_the_marker_of_a_later_panel_too():
    frame = _frame().assign(abv=5.0)  # only ph is out of range, in the second panel
    [legend] = validation_plots.plot_distributions(frame, columns=[ABV, PH]).legends
    assert [t.get_text() for t in legend.get_texts()] == [
        "plausible range",
        "out of range (at the edge)",
    ]


def test_labels_out_of_range_stay_clear_of_the_bars_and_inside_the_panel():
    # a tall bar at the high edge, where three labels of values past it are stacked
    abv = [19.5] * 40 + [5.0] * 10 + [25.0, 30.0, 41.0, -1.0]
    frame = pd.DataFrame({"id": range(1, len(abv) + 1), "abv": abv})
    fig = validation_plots.plot_distributions(frame, columns=[ABV])
    fig.canvas.draw()
    ax = fig.axes[0]
    panel = ax.get_window_extent()
    bars = [p.get_window_extent() for p in ax.patches if p.get_label() != "plausible range"]
    assert len(ax.texts) == 4
    for text in ax.texts:
        box = text.get_window_extent()
        assert not any(box.overlaps(bar) for bar in bars), text.get_text()
        assert panel.y0 <= box.y0 and box.y1 <= panel.y1, text.get_text()
    # room for the three labels of the busier side, not for those of both sides
    gap = min(t.get_window_extent().y0 for t in ax.texts) - max(bar.y1 for bar in bars)
    assert gap * 72 / fig.dpi < validation_plots._LABEL_STEP
    assert ax.get_ylabel() == "beers"


def test_a_column_missing_from_the_frame_is_left_out():
    fig = validation_plots.plot_distributions(_frame()[["id", "ph"]], columns=[ABV, PH])
    assert [ax.get_title() for ax in fig.axes if ax.get_visible()] == ["ph: 1 out of range, 1 null"]


def test_gravities_mark_only_a_final_gravity_above_the_original():
    frame = pd.DataFrame(
        {"id": [1, 2, 3], "target_fg": [1010, 1050, 1012], "target_og": [1050, 1050, 1005]}
    )
    ax = validation_plots.plot_gravities(frame).axes[0]
    inside, above = ax.collections
    assert len(inside.get_offsets()) == 2  # equal gravities are not above
    assert above.get_offsets().tolist() == [[1005, 1012]]
    assert [t.get_text() for t in ax.texts] == ["3"]
    [diagonal] = ax.lines
    assert list(diagonal.get_xdata()) == list(diagonal.get_ydata()) == [1005, 1050]
    assert "fg > og (1)" in [t.get_text() for t in ax.get_legend().get_texts()]


def test_gravities_label_beers_at_the_same_point_once_and_name_the_axes():
    frame = pd.DataFrame(  # ids 28, 127 and 131 of the real catalogue share 1064 > 1013
        {
            "id": [28, 127, 131, 70],
            "target_fg": [1064, 1064, 1064, 1102],
            "target_og": [1013] * 3 + [1026],
        }
    )
    ax = validation_plots.plot_gravities(frame).axes[0]
    assert sorted(t.get_text() for t in ax.texts) == ["28, 127, 131", "70"]
    assert ax.get_xlabel() == schema.column("target_og").comment
    assert ax.get_ylabel() == schema.column("target_fg").comment
    assert ax.get_title()


def test_gravities_label_a_crowd_of_close_beers_with_a_few_ids_and_how_many():
    frame = pd.DataFrame(
        {
            "id": range(1, 11),
            "target_og": [1050.0] * 10,
            "target_fg": [1060.0 + i / 10 for i in range(10)],
        }
    )
    ax = validation_plots.plot_gravities(frame).axes[0]
    assert [t.get_text() for t in ax.texts] == ["1, 2, 3, … (10 beers)"]


def test_a_crowd_of_beers_is_grouped_without_a_distance_for_every_pair(monkeypatch):
    from scipy.spatial import distance

    def every_pair(*args, **kwargs):
        raise AssertionError("all pairs: n² memory, gigabytes for a large catalogue")

    monkeypatch.setattr(distance, "pdist", every_pair)
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "id": range(1, 2001),
            "target_og": rng.uniform(900, 1100, 2000),
            "target_fg": rng.uniform(1150, 1170, 2000),
        }
    )
    ax = validation_plots.plot_gravities(frame).axes[0]
    assert [t.get_text() for t in ax.texts] == ["1, 2, 3, … (2000 beers)"]


@pytest.mark.parametrize("seed", range(3))
def test_groups_are_the_single_linkage_clusters_cut_at_the_span(seed):
    from scipy.cluster.hierarchy import fclusterdata

    rng = np.random.default_rng(seed)
    xy = rng.random((300, 2))
    near = xy[40:60] + 1e-13  # too close for the triangulation to tell apart
    xy = np.vstack([xy, xy[:40], near, [[0.5, y] for y in np.linspace(0, 1, 30)]])

    groups = validation_plots.chained_groups(xy, 0.04)

    expected = fclusterdata(xy, 0.04, criterion="distance", method="single")
    assert len(set(zip(groups, expected, strict=True))) == len(set(expected)) == len(set(groups))


@pytest.mark.parametrize(
    "xy", [[[0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]]]
)
def test_groups_of_too_few_points_to_triangulate(xy):
    assert len(set(validation_plots.chained_groups(xy, 0.5))) == len({tuple(p) for p in xy})


def test_gravities_of_beers_without_gravities_draw_no_diagonal():
    frame = pd.DataFrame({"id": [1, 2], "target_fg": [None, None], "target_og": [None, None]})
    ax = validation_plots.plot_gravities(frame).axes[0]
    assert len(ax.lines) == 0 and len(ax.texts) == 0


def test_gravities_labels_of_close_beers_do_not_overprint():
    frame = pd.DataFrame(  # the real catalogue's beers with fg > og near og 1008, fg 1045
        {
            "id": [214, 228, 223, 193, 221, 222, 1],
            "target_og": [1008, 1010, 1008, 1007, 1007, 1015, 1100],
            "target_fg": [1049, 1047, 1044, 1040, 1032, 1125, 1020],
        }
    )
    fig = validation_plots.plot_gravities(frame)
    fig.canvas.draw()
    ax = fig.axes[0]
    boxes = {t.get_text(): t.get_window_extent() for t in ax.texts}
    # one label for the close four, their ids in order, at the highest of them
    assert {t.get_text(): t.xy for t in ax.texts}["193, 214, 223, 228"] == (1008, 1049)
    for (one, a), (other, b) in itertools.combinations(boxes.items(), 2):
        assert not a.overlaps(b), (one, other)
    assert sorted(", ".join(boxes).split(", "), key=int) == [
        "193",
        "214",
        "221",
        "222",
        "223",
        "228",
    ]


def test_the_figures_are_legible_at_the_width_notebooks_show():
    # every ranged column, one out of range: the panel labels and the marks' labels too
    frame = pd.DataFrame(
        {
            "id": [1, 2, 3],
            **{c.name: [c.maximum or 1.0] * 3 for c in validation_plots.ranged_columns()},
        }
    ).assign(ph=[4.0, 5.0, 79.0], target_fg=[1010, 1064, 1012], target_og=[1050, 1013, 1040])
    for fig in (validation_plots.plot_distributions(frame), validation_plots.plot_gravities(frame)):
        assert not legibility_problems(fig)


def test_the_marks_take_their_colours_from_the_shared_palette():
    # tab10's red markers on a green range look alike to deuteranopes
    ax = validation_plots.plot_distributions(_frame(), columns=[ABV]).axes[0]
    marks = [*ax.patches, *ax.collections]
    used = {colors.to_hex(mark.get_facecolor()) for mark in marks}
    assert used <= set(plotstyle.PALETTE), used - set(plotstyle.PALETTE)
    assert len(used) == 3  # the bars, the plausible range and the values out of it


def _two_reads(first: pd.DataFrame, second: pd.DataFrame) -> pd.DataFrame:
    # frames read apart and concatenated keep their own row labels: 0, 1, 0, 1
    return pd.concat([first, second])


def test_the_histogram_of_a_frame_with_repeated_row_labels_keeps_every_value_in_range():
    frame = _two_reads(
        pd.DataFrame({"id": [1, 2], "abv": [5.0, 30.0]}),
        pd.DataFrame({"id": [3, 4], "abv": [30.0, 6.0]}),
    )
    ax = validation_plots.plot_distributions(frame, columns=[ABV]).axes[0]
    bars = [p for p in ax.patches if p.get_label() != "plausible range"]
    assert sum(bar.get_height() for bar in bars) == 2  # 5 and 6; not 30 twice
    assert ax.get_title() == "abv: 2 out of range, 0 null"


def test_gravities_of_a_frame_with_repeated_row_labels_label_each_beer():
    frame = _two_reads(
        pd.DataFrame({"id": [1], "target_fg": [1064], "target_og": [1013]}),
        pd.DataFrame({"id": [2, 3], "target_fg": [1064, 1102], "target_og": [1013, 1026]}),
    )
    ax = validation_plots.plot_gravities(frame).axes[0]
    assert sorted(t.get_text() for t in ax.texts) == ["1, 2", "3"]
