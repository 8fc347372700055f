"""Exploration helpers on the real catalogue: the documented quirks must show up."""

from __future__ import annotations

from pathlib import Path

import pytest
from matplotlib.figure import Figure

from brewops import explore
from brewops.punkapi.server import running_server
from brewops.runner import discover, execute
from fixtures.figures import legibility_problems, low_contrast_cell_numbers


@pytest.fixture(scope="module")
def frame(catalog_beers):
    return explore.beers_frame(catalog_beers)


def _beer(beer_id: int, hops=(), malts=("kilograms",), **fields):
    """A minimal v2-shaped beer: hops as (name, add, attribute, value, unit)."""
    return {
        "id": beer_id,
        "name": f"beer {beer_id}",
        "first_brewed": "09/2007",
        "image_url": None,
        "ingredients": {
            "hops": [
                {"name": n, "add": a, "attribute": t, "amount": {"value": v, "unit": u}}
                for n, a, t, v, u in hops
            ],
            "malt": [{"name": "m", "amount": {"value": 1, "unit": u}} for u in malts],
        },
        **{f: None for f in explore.NUMERIC_FIELDS},
        **fields,
    }


def test_beers_frame(frame):
    assert len(frame) == 325 and frame.index.is_unique
    assert frame.loc[24, "abv"] == 55
    assert frame.loc[106, "n_hops"] > 0
    assert frame.loc[1, "brewed_year"] == 2007
    assert (frame.loc[1, "n_malts"], frame.loc[1, "n_hops"]) == (3, 5)
    assert (~frame["has_image"]).sum() == 61  # the beers whose image_url is null


def test_a_beer_without_hops_by_mass_has_no_hop_grams():
    by_volume = _beer(1, hops=[("Extract", "start", "bitter", 5, "ml")])
    by_mass = _beer(
        2, hops=[("Cascade", "end", "aroma", 20, "grams"), ("C", "end", "aroma", 5, "g")]
    )
    frame = explore.beers_frame([by_mass, by_volume])
    assert frame["hop_grams"].isna().tolist() == [True, False]  # in id order
    assert frame.loc[2, "hop_grams"] == 25


def test_schema_table_lists_every_field(catalog_beers):
    table = explore.schema_table(catalog_beers)
    assert table.loc["ibu", "nulls"] == 5
    assert table.loc["ingredients.hops[].add", "types"] == "string"
    assert table.loc["method.mash_temp[].duration", "types"] == "number"
    assert table.loc["image_url", "nulls"] == 61
    assert table.loc["ibu", "types"] == "number"  # a null is counted, not listed as a type


def test_schema_table_tells_booleans_from_numbers():
    table = explore.schema_table([{"id": 1, "organic": True}, {"id": 2, "organic": None}])
    assert table.loc["organic", "types"] == "boolean"
    assert table.loc["id", "types"] == "number"
    assert table.loc["id", "example"] == 1  # the first value seen


def test_an_empty_catalogue_has_no_nulls():
    assert explore.null_table([]).empty


def test_null_table_matches_the_contract(catalog_beers):
    nulls = explore.null_table(catalog_beers)["nulls"].to_dict()
    assert nulls == {
        "image_url": 61,
        "ebc": 6,
        "srm": 6,
        "ibu": 5,
        "ph": 2,
        "target_fg": 1,
        "target_og": 1,
        "attenuation_level": 1,
    }
    table = explore.null_table(catalog_beers)
    assert list(table.index)[:3] == ["image_url", "ebc", "srm"]  # most nulls first
    assert table.loc["image_url", "share"] == pytest.approx(61 / 325)


def test_quirks_table_finds_the_documented_quirks(catalog_beers):
    quirks = explore.quirks_table(catalog_beers)
    assert quirks.loc["abv outside [0, 20]", "ids"] == "24, 137, 185"
    assert quirks.loc["ibu outside [0, 300]", "ids"] == "137, 185"
    assert quirks.loc["ph outside [2.5, 7]", "ids"] == "317"
    assert quirks.loc["target_fg > target_og", "beers"] == 13
    assert quirks.loc["hop amount not in grams", "beers"] == 3
    assert quirks.loc["first_brewed is a bare year (YYYY)", "beers"] > 0
    # more than eight beers: the first eight, and how many more
    assert quirks.loc["target_fg > target_og", "ids"] == (
        "28, 70, 127, 131, 193, 214, 221, 222, … (+5)"
    )
    assert quirks["beers"].to_dict() == {
        **{f"{f} is null": n for f, n in {"ibu": 5, "target_fg": 1, "target_og": 1}.items()},
        **{f"{f} is null": n for f, n in {"ebc": 6, "srm": 6, "ph": 2}.items()},
        "attenuation_level is null": 1,
        "image_url is null": 61,
        "abv outside [0, 20]": 3,
        "ibu outside [0, 300]": 2,
        "ph outside [2.5, 7]": 1,
        "target_fg > target_og": 13,
        "first_brewed is a bare year (YYYY)": 91,
        "hop add: mixed case or free text": 85,
        "hop add: minutes instead of a stage": 65,
        "hop attribute: mixed case or misspelt": 93,
        "hop amount not in grams": 3,
        "malt amount not in kilograms": 2,
    }


def test_quirks_on_made_up_beers():
    beers = [
        _beer(1, target_fg=1010, target_og=1010),  # equal gravities: not a quirk
        _beer(2, hops=[("A", "60", "bitter", 10, "grams")]),  # minutes, but nothing else
        _beer(3, hops=[("A", "start", "Aroma", 10, "grams")], malts=("kilograms", "grams")),
        _beer(4, hops=[("A", " 60 ", "bitter", 10, "grams")], ph=0),  # ph 0: below 2.5
    ]
    quirks = explore.quirks_table(beers)["ids"].to_dict()
    assert "target_fg > target_og" not in quirks
    assert quirks["hop add: minutes instead of a stage"] == "2, 4"
    assert quirks["hop add: mixed case or free text"] == "4"
    assert quirks["ph outside [2.5, 7]"] == "4"
    assert quirks["hop attribute: mixed case or misspelt"] == "3"
    assert quirks["malt amount not in kilograms"] == "3"  # one malt of several is enough


@pytest.mark.parametrize(
    ("add", "stage"),
    [
        ("Dry Hop", "dry hop / fermenter"),
        ("FV", "dry hop / fermenter"),
        ("Flame Out", "flame out / whirlpool"),
        (" Dry Hop ", "dry hop / fermenter"),
        ("FV Addition", "dry hop / fermenter"),
        ("Secondary", "dry hop / fermenter"),
        ("Maturation", "dry hop / fermenter"),
        ("First Wort Hops", "start"),
        ("Mash", "start"),
        ("Kettle", "start"),
        ("Whirlpool", "flame out / whirlpool"),
        ("0", "flame out / whirlpool"),
        ("70", "start"),
        ("45", "start"),
        ("30", "middle"),
        ("20", "middle"),
        ("18", "middle"),  # nearer 30 than 5, the minutes the model assumes for each word
        ("17", "end"),
        ("15", "end"),
        ("10", "end"),
        ("middle", "middle"),
        ("Wood Ageing", "other"),
    ],
)
def test_hop_stage(add, stage):
    assert explore.hop_stage(add) == stage


def test_hop_grams_and_attributes():
    hop = {"amount": {"value": 1.5, "unit": "kilogram"}}
    assert explore.hop_grams(hop) == 1500
    assert explore.hop_grams({"amount": {"value": 5, "unit": "ml"}}) is None
    assert explore.hop_grams({"amount": {"value": 25, "unit": " G"}}) == 25
    assert explore.hop_grams({"amount": {"value": 2, "unit": "gram"}}) == 2
    assert explore.hop_grams({"amount": {"value": 0.1, "unit": "kg"}}) == 100
    assert explore.hop_grams({"amount": {"value": None, "unit": "grams"}}) is None
    assert explore.hop_attribute(" Bitering") == "bitter"
    assert explore.hop_attribute("flavoour") == "flavour"


def test_hop_schedule_summary(catalog_beers):
    summary = explore.hop_schedule_summary(catalog_beers)
    assert summary["additions"].sum() == 1817
    assert list(summary.index)[:3] == ["start", "middle", "end"]
    assert summary.loc["dry hop / fermenter", "main_attribute"] == "aroma"
    # 10 and 15 minutes before the end of the boil are late additions, mostly for flavour
    assert summary.loc["end", "additions"] == 488 + 58
    assert summary.loc["start", "raw_add_values"].startswith("start, Start, ")
    assert summary.loc["start", "raw_add_values"].endswith("… (+4)")


def test_hop_schedule_and_top_hops_on_made_up_beers():
    beers = [
        _beer(1, hops=[("Simcoe", "start", "aroma", 10, "grams")]),
        _beer(2, hops=[("Simcoe", "start", "bitter", 10, "grams")]),
        _beer(
            3,
            hops=[
                ("Simcoe", "start", "bitter", 100, "grams"),
                ("Citra", "end", "aroma", 5, "grams"),
            ],
        ),
    ]
    summary = explore.hop_schedule_summary(beers)
    assert summary.loc["start", "median_grams"] == 10  # the median, not the mean (40)
    assert summary.loc["start", "main_attribute"] == "bitter"  # the usual one, not the first
    top = explore.top_hops(beers)
    assert list(top.index) == ["Simcoe", "Citra"]  # in the most beers first
    assert top.loc["Simcoe", "total_grams"] == 120
    # in as many beers: the more additions first
    tied = [
        _beer(1, hops=[("Amarillo", "start", "bitter", 10, "grams")]),
        _beer(2, hops=[("Bravo", "start", "bitter", 5, "grams")] * 2),
    ]
    assert list(explore.top_hops(tied).index) == ["Bravo", "Amarillo"]


def test_top_hops_are_ten_unless_told(catalog_beers):
    assert len(explore.top_hops(catalog_beers)) == 10
    assert len(explore.top_hops(catalog_beers, n=3)) == 3


def test_plots_are_figures(frame):
    for fig in (
        explore.plot_distributions(frame),
        explore.plot_ibu_vs_abv(frame, ibu_max=300),
        explore.plot_correlation_heatmap(frame),
    ):
        assert isinstance(fig, Figure) and fig.axes
    assert "2 beer(s) above IBU 300" in explore.plot_ibu_vs_abv(frame, 300).axes[0].get_title()


def test_ibu_vs_abv_axis_spans_the_beers_shown(frame):
    # the two beers above IBU 300 brew at 32 and 41 % ABV; every beer shown is under 20 %
    fig = explore.plot_ibu_vs_abv(frame, ibu_max=300)
    assert fig.axes[0].get_xlim()[1] < 25
    assert fig.axes[0].get_ylim() == (0, 300)
    [points] = fig.axes[0].collections
    assert len(points.get_offsets()) == 320 - 2  # beers with both numbers, less the two above
    untrimmed = explore.plot_ibu_vs_abv(frame, ibu_max=2000).axes[0]
    assert untrimmed.get_title() == "IBU vs ABV"  # nothing hidden, nothing said


def test_ibu_vs_abv_shows_a_beer_at_the_limit():
    frame = explore.pd.DataFrame({"abv": [5.0, 6.0, 7.0], "ibu": [10.0, 300.0, 301.0]})
    ax = explore.plot_ibu_vs_abv(frame, ibu_max=300).axes[0]
    assert len(ax.collections[0].get_offsets()) == 2
    assert ax.get_title() == "IBU vs ABV (1 beer(s) above IBU 300 not shown)"


def test_correlations_are_of_ranks():
    frame = explore.pd.DataFrame({"abv": [1.0, 2, 3, 4, 5], "ibu": [1.0, 10, 100, 1000, 10000]})
    assert explore.correlations(frame, ["abv", "ibu"]).loc["abv", "ibu"] == pytest.approx(1.0)


def test_the_heatmap_shows_every_correlation_on_a_fixed_scale(frame):
    fig = explore.plot_correlation_heatmap(frame)
    ax = fig.axes[0]
    n = len(explore.NUMERIC_FIELDS)
    assert len(ax.texts) == n * n
    assert [ax.texts[i * n + i].get_text() for i in range(n)] == ["1.00"] * n
    assert ax.images[0].get_clim() == (-1, 1)


def test_catalogue_figures(catalog_beers):
    figures = explore.catalogue_figures(catalog_beers)
    assert figures["beers_crawled"] == figures["unique_ids"] == 325
    assert (figures["ibu_nulls"], figures["ebc_nulls"], figures["ph_nulls"]) == (5, 6, 2)
    assert (figures["min_id"], figures["max_id"]) == (1, 325)
    assert (figures["quirks"], figures["hop_additions"]) == (18, 1817)
    assert (figures["median_abv"], figures["median_ibu"]) == (7.2, 50.0)


def test_distributions_leave_out_and_count_the_extremes(frame):
    fig = explore.plot_distributions(frame, fields=["abv", "ph"])
    abv, ph = (ax.get_title() for ax in fig.axes)
    assert "max 55" in abv and "not shown" in abv
    assert abv.startswith("abv (n=325, median 7.2)\n4 above ")
    shown = sum(patch.get_height() for patch in fig.axes[0].patches)
    assert shown == 325 - 4  # every beer up to the 99th percentile is in a bar
    assert "max 79" in ph
    assert max(patch.get_x() + patch.get_width() for patch in fig.axes[1].patches) < 7


def test_distributions_say_the_cut_as_a_value_shown_and_label_the_units():
    # the 99th percentile of 1..99 and 1000 is 108.01, a value no beer has
    frame = explore.pd.DataFrame({"abv": [float(v) for v in range(1, 100)] + [1000.0]})
    ax = explore.plot_distributions(frame, fields=["abv"]).axes[0]
    assert ax.get_title().endswith("\n1 above 99 not shown (max 1000)")
    assert ax.get_xlabel() == "Alcohol by volume, %"  # the cleaned column's comment


def test_distributions_keep_values_at_the_percentile():
    # the two highest values are equal, so the 99th percentile is that value: none is beyond
    frame = explore.pd.DataFrame({"ph": [float(v) for v in range(1, 99)] + [120.0, 120.0]})
    ax = explore.plot_distributions(frame, fields=["ph"]).axes[0]
    assert sum(patch.get_height() for patch in ax.patches) == 100
    assert ax.get_title() == "ph (n=100, median 50.5)"


@pytest.mark.slow
def test_notebook_01_on_aws_explores_another_catalogue(
    catalog_beers, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """GIVEN the aws target, whose Punk API (a v3 service by default) serves another
    catalogue than the local one, WHEN notebook 01 runs with its defaults, THEN it explores
    what it finds instead of failing on the local catalogue's count."""
    [notebook] = discover(only=["01"])
    monkeypatch.setenv("BREWOPS_BUILD_DIR", str(tmp_path / "build"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    with running_server(beers=catalog_beers[:100], api_version="v3") as url:
        monkeypatch.setenv("BREWOPS_PUNKAPI_URL", url)  # the aws target's Punk API
        run = execute([notebook], target="aws", out_dir=tmp_path / "build", progress=False)

    [result] = run.notebooks
    assert result.status == "ok", result.error
    assert (result.figures["api_version"], result.figures["beers_crawled"]) == ("v3", 100)


@pytest.mark.slow
def test_notebook_01_says_so_when_the_api_serves_no_beers(tmp_path: Path, monkeypatch):
    """GIVEN the aws target and an API that serves no beers (expected_beers unchecked there),
    WHEN notebook 01 runs, THEN it stops naming the API, not on an IndexError of the first beer."""
    [notebook] = discover(only=["01"])
    monkeypatch.setenv("BREWOPS_BUILD_DIR", str(tmp_path / "build"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    with running_server(beers=[], api_version="v3") as url:
        monkeypatch.setenv("BREWOPS_PUNKAPI_URL", url)
        run = execute([notebook], target="aws", out_dir=tmp_path / "build", progress=False)

    [result] = run.notebooks
    assert result.status == "failed"
    assert f"{url} served no beers" in result.error and "api_url" in result.error


@pytest.mark.parametrize(("fields", "rows"), [(4, 2), (3, 2), (2, 1), (1, 1)])
def test_distributions_are_two_panels_to_a_row_each_as_tall_as_one_row(frame, fields, rows):
    # four in one row, even at the width of one, are too narrow to read
    fig = explore.plot_distributions(frame, fields=explore.DISTRIBUTION_FIELDS[:fields])
    grids = {ax.get_subplotspec().get_geometry()[:2] for ax in fig.axes}
    assert grids == {(rows, min(fields, 2))}
    assert len(fig.axes) == fields  # a grid's unused place is left empty
    assert fig.get_figheight() == pytest.approx(3.2 * rows)


def test_one_field_named_as_text_is_that_field_not_its_letters(frame):
    distributions = explore.plot_distributions(frame, fields="abv")
    heatmap = explore.plot_correlation_heatmap(frame, fields="ibu")

    assert [ax.get_title().split(" ")[0] for ax in distributions.axes] == ["abv"]
    assert [t.get_text() for t in heatmap.axes[0].get_xticklabels()] == ["ibu"]
    assert list(explore.correlations(frame, "ibu").columns) == ["ibu"]


def test_distributions_spanning_decades_are_binned_on_a_log_axis(frame):
    # ebc runs from 2 to 400 below its 99th percentile; abv (0.5 to 18) and ibu (from 0) do not
    fig = explore.plot_distributions(frame, fields=["abv", "ibu", "ebc"])
    assert [ax.get_xscale() for ax in fig.axes] == ["linear", "linear", "log"]
    ebc = fig.axes[2]
    widths = [patch.get_width() for patch in ebc.patches]
    assert widths[-1] / widths[0] > 50  # equal on the log axis, not on the values
    assert sum(patch.get_height() for patch in ebc.patches) == 319 - 3
    fig.canvas.draw()
    ticks = [t.get_text() for t in ebc.get_xticklabels() if t.get_visible()]
    assert {"10", "100"} <= set(ticks), ticks  # plain numbers


def test_the_heatmap_numbers_keep_their_contrast_on_every_shade(frame):
    ax = explore.plot_correlation_heatmap(frame).axes[0]
    assert ax.texts
    assert not low_contrast_cell_numbers(ax)


def test_the_figures_are_legible_at_the_width_notebooks_show(frame):
    for fig in (
        explore.plot_distributions(frame),
        explore.plot_ibu_vs_abv(frame, ibu_max=300),
        explore.plot_correlation_heatmap(frame),
    ):
        assert not legibility_problems(fig)
