"""Exploration helpers on the real catalogue: the documented quirks must show up."""

from __future__ import annotations

from pathlib import Path

import pytest
from matplotlib.figure import Figure

from brewops import explore
from brewops.punkapi.server import running_server
from brewops.runner import discover, execute


@pytest.fixture(scope="module")
def frame(catalog_beers):
    return explore.beers_frame(catalog_beers)


def test_beers_frame(frame):
    assert len(frame) == 325 and frame.index.is_unique
    assert frame.loc[24, "abv"] == 55
    assert frame.loc[106, "n_hops"] > 0
    assert frame.loc[1, "brewed_year"] == 2007


def test_schema_table_lists_every_field(catalog_beers):
    table = explore.schema_table(catalog_beers)
    assert table.loc["ibu", "nulls"] == 5
    assert table.loc["ingredients.hops[].add", "types"] == "string"
    assert table.loc["method.mash_temp[].duration", "types"] == "number"
    assert table.loc["image_url", "nulls"] == 61


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


def test_quirks_table_finds_the_documented_quirks(catalog_beers):
    quirks = explore.quirks_table(catalog_beers)
    assert quirks.loc["abv outside [0, 20]", "ids"] == "24, 137, 185"
    assert quirks.loc["ibu outside [0, 300]", "ids"] == "137, 185"
    assert quirks.loc["ph outside [2.5, 7]", "ids"] == "317"
    assert quirks.loc["target_fg > target_og", "beers"] == 13
    assert quirks.loc["hop amount not in grams", "beers"] == 3
    assert quirks.loc["first_brewed is a bare year (YYYY)", "beers"] > 0


@pytest.mark.parametrize(
    ("add", "stage"),
    [
        ("Dry Hop", "dry hop / fermenter"),
        ("FV", "dry hop / fermenter"),
        ("Flame Out", "flame out / whirlpool"),
        ("0", "flame out / whirlpool"),
        ("70", "start"),
        ("45", "start"),
        ("30", "middle"),
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


def test_catalogue_figures(catalog_beers):
    figures = explore.catalogue_figures(catalog_beers)
    assert figures["beers_crawled"] == figures["unique_ids"] == 325
    assert (figures["ibu_nulls"], figures["ebc_nulls"], figures["ph_nulls"]) == (5, 6, 2)


def test_distributions_leave_out_and_count_the_extremes(frame):
    fig = explore.plot_distributions(frame, fields=["abv", "ph"])
    abv, ph = (ax.get_title() for ax in fig.axes)
    assert "max 55" in abv and "not shown" in abv
    assert "max 79" in ph
    assert max(patch.get_x() + patch.get_width() for patch in fig.axes[1].patches) < 7


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
