"""Features of the IBU model: the Tinseth estimate, hop names and stages, unit quirks, shapes."""

from __future__ import annotations

import gc
import json
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

from brewops.catalog import load_catalog, to_v3_shape
from brewops.model import bands, features, hops, predict
from brewops.model.predict import predict_beers


def hop(name: str, grams: Any, add: Any, unit: str = "grams", attribute: str = "bitter") -> dict:
    return {
        "name": name,
        "amount": {"value": grams, "unit": unit},
        "add": add,
        "attribute": attribute,
    }


def recipe(hop_schedule: list[dict], **fields: Any) -> dict[str, Any]:
    beer = {
        "id": 1,
        "name": "Test Pale",
        "tagline": "American Pale Ale.",
        "first_brewed": "04/2015",
        "abv": 5.0,
        "ibu": 40,
        "target_fg": 1010,
        "target_og": 1050,
        "ebc": 20,
        "srm": 10,
        "ph": 4.4,
        "attenuation_level": 80,
        "volume": {"value": 20, "unit": "litres"},
        "boil_volume": {"value": 25, "unit": "litres"},
        "method": {
            "mash_temp": [{"temp": {"value": 65, "unit": "celsius"}, "duration": 75}],
            "fermentation": {"temp": {"value": 19, "unit": "celsius"}},
            "twist": None,
        },
        "ingredients": {
            "malt": [{"name": "Extra Pale", "amount": {"value": 4.0, "unit": "kilograms"}}],
            "hops": hop_schedule,
            "yeast": "Wyeast 1056 - American Ale™",
        },
        "food_pairing": ["Cheese"],
        "image_url": None,
    }
    beer.update(fields)
    return beer


# Hand computation at OG 1.050 in 20 litres:
#   bigness = 1.65 * 0.000125 ** 0.050 = 1.052766
#   60 min: (1 - e^-2.4) / 4.15 = 0.219104 -> utilisation 0.230665
#   30 min: (1 - e^-1.2) / 4.15 = 0.168387 -> utilisation 0.177272
#   28 g Cascade (6.0 % alpha) at the start:  0.060 * 28000 / 20 = 84 mg/L  -> 19.376 IBU
#   20 g Citra (12.0 % alpha) in the middle: 0.120 * 20000 / 20 = 120 mg/L -> 21.273 IBU
#   100 g Citra dry hopped: no isomerisation -> 0 IBU
HAND_COMPUTED_IBU = 19.376 + 21.273


def test_tinseth_estimate_matches_a_hand_computed_recipe():
    beer = recipe(
        [
            hop("Cascade", 28, "start"),
            hop("Citra", 20, "middle", attribute="flavour"),
            hop("Citra", 100, "dry hop", attribute="aroma"),
        ]
    )
    row = features.beer_features(beer)
    assert row["tinseth_ibu"] == pytest.approx(HAND_COMPUTED_IBU, abs=0.01)
    assert row["tinseth_boil_ibu"] == pytest.approx(HAND_COMPUTED_IBU, abs=0.01)
    assert row["log_tinseth_ibu"] == pytest.approx(math.log1p(HAND_COMPUTED_IBU), abs=1e-3)
    assert row["dry_g_per_l"] == pytest.approx(5.0)
    assert row["bittering_g_per_l"] == pytest.approx(28 / 20)
    assert row["bu_gu_estimate"] == pytest.approx(HAND_COMPUTED_IBU / 50, abs=1e-3)


def test_tinseth_utilisation_follows_gravity_and_time():
    assert hops.tinseth_utilisation(0, 1.050) == 0
    assert hops.tinseth_utilisation(60, 1.050) == pytest.approx(0.230665, abs=1e-6)
    assert hops.tinseth_utilisation(60, 1.100) < hops.tinseth_utilisation(60, 1.050)
    assert hops.tinseth_utilisation(90, 1.050) > hops.tinseth_utilisation(60, 1.050)


def test_volume_and_gravity_come_from_the_record():
    base = features.beer_features(recipe([hop("Cascade", 28, "start")]))
    double_volume = features.beer_features(
        recipe([hop("Cascade", 28, "start")], volume={"value": 40, "unit": "litres"})
    )
    assert double_volume["tinseth_ibu"] == pytest.approx(base["tinseth_ibu"] / 2)
    as_specific_gravity = features.beer_features(
        recipe([hop("Cascade", 28, "start")], target_og=1.050)
    )
    assert as_specific_gravity["tinseth_ibu"] == pytest.approx(base["tinseth_ibu"])
    assert as_specific_gravity["target_og"] == pytest.approx(1050)


@pytest.mark.parametrize(
    ("amount", "unit"),
    [
        (0.028, "kilogram"),
        (0.028, "kilograms"),
        ("28", "grams"),
        (28, "g"),
        (28, "ml"),
        (28, " Grams "),
        (0.028, "kg"),
        (28000, "mg"),
        (28 / 28.3495, "oz"),
        (28 / 453.592, "lb"),
        (28 / 28.3495, "oz."),
        (0.028, "l"),
    ],
)
def test_hop_amount_units_are_converted_to_grams(amount, unit):
    expected = features.beer_features(recipe([hop("Cascade", 28, "start")]))["tinseth_ibu"]
    row = features.beer_features(recipe([hop("Cascade", amount, "start", unit=unit)]))
    assert row["tinseth_ibu"] == pytest.approx(expected)


@pytest.mark.parametrize(
    "addition",
    [
        hop("1 lemon drop chilli", 1, "maturation", unit="total"),  # a count, no mass
        hop("Cascade", None, "start"),
        {"name": "Cascade", "amount": None, "add": "start"},
        {"name": None},
        "not a hop",
        hop("Cascade", -5, "start"),
        hop("Cascade", 0, "start"),
        {"name": "Cascade", "amount": {"value": None, "unit": "grams"}, "add": "start"},
    ],
)
def test_additions_without_a_usable_mass_add_nothing(addition):
    row = features.beer_features(recipe([hop("Cascade", 28, "start"), addition]))
    only = features.beer_features(recipe([hop("Cascade", 28, "start")]))
    assert row["tinseth_ibu"] == pytest.approx(only["tinseth_ibu"])
    assert row["hops_g_per_l"] == pytest.approx(only["hops_g_per_l"])
    assert row["hop_additions"] == only["hop_additions"]


@pytest.mark.parametrize("unit", ["handfuls", "pellets", "total"])
def test_a_hop_amount_in_a_unit_not_known_leaves_the_hop_schedule_missing(unit):
    """Summed without that hop, the beer would read as less bitter than it is (5 IBU
    predicted for a 60 IBU beer): missing, the model fills it in, and gives no estimate."""
    schedule = [hop("Cascade", 28, "start"), hop("Cascade", 28, "start", unit=unit)]
    summary = features.hop_features(schedule, gravity=1.05, litres=20)
    counts = {"hop_varieties": 1.0, "adjunct_additions": 0.0}
    assert {k: v for k, v in summary.items() if not math.isnan(v)} == counts
    assert math.isnan(features.beer_features(recipe(schedule))["tinseth_ibu"])
    # an adjunct's units are none of the hop schedule's: it adds nothing, as before
    juice = hop("Peach Juice", 1, "end", unit=unit)
    with_juice = features.hop_features([schedule[0], juice], gravity=1.05, litres=20)
    alone = features.hop_features(schedule[:1], gravity=1.05, litres=20)
    assert with_juice["tinseth_ibu"] == pytest.approx(alone["tinseth_ibu"])


@pytest.mark.parametrize("amount", [28, "28", {"value": 28}, {"value": 28, "unit": ""}])
def test_a_hop_amount_without_a_unit_is_in_grams(amount):
    expected = features.beer_features(recipe([hop("Cascade", 28, "start")]))["tinseth_ibu"]
    addition = {"name": "Cascade", "amount": amount, "add": "start"}
    assert features.beer_features(recipe([addition]))["tinseth_ibu"] == pytest.approx(expected)


def test_adjuncts_in_the_hop_schedule_carry_no_alpha_acids():
    beer = recipe(
        [
            hop("Magnum", 10, "60"),
            hop("Muscovado Sugar", 900, "Kettle", attribute="Flavour"),
            hop("Vanilla Extract", 25, "End", attribute="Flavour"),
            hop("Cold Brew Coffee", 160, "FV Addition", unit="ml", attribute="Flavour"),
        ]
    )
    row = features.beer_features(beer)
    magnum_only = features.beer_features(recipe([hop("Magnum", 10, "60")]))
    assert row["tinseth_ibu"] == pytest.approx(magnum_only["tinseth_ibu"])
    assert row["adjunct_additions"] == 3


@pytest.mark.parametrize(
    ("name", "normalised", "kind", "alpha"),
    [
        ("Hallertauer Mittelfrüh", "hallertau mittelfruh", "hop", 4.0),
        ("NZ Nelson Sauvin", "nelson sauvin", "hop", 12.5),
        ("  German   Cascade ", "cascade", "hop", 6.0),
        ("Mt.Hood", "mount hood", "hop", 5.5),
        ("East Kent Goldings", "east kent golding", "hop", 5.5),
        ("HBC 366", "equinox", "hop", 14.5),
        ("Citra Cryo", "citra cryo", "hop", 24.0),
        ("C02 Extract", "co2 extract", "extract", hops.EXTRACT_ALPHA),
        ("Columbus Extract", "columbus extract", "extract", hops.EXTRACT_ALPHA),
        ("Vanilla Extract", "vanilla extract", "adjunct", 0.0),
        ("Mandarina Bavaria", "mandarina bavaria", "hop", 8.5),
        ("Mandarin Segements", "mandarin segements", "adjunct", 0.0),
        ("Hopshot", "co2 extract", "extract", hops.EXTRACT_ALPHA),
        ("BRU-1", "bru 1", "hop", 14.5),
        ("Galaxy Hop Oil", "galaxy hop oil", "adjunct", 0.0),
        ("Phantasm Powder", "phantasm powder", "adjunct", 0.0),
        ("Galactic Unicorn", "galactic unicorn", "unknown", hops.DEFAULT_ALPHA),
        (None, "", "unknown", hops.DEFAULT_ALPHA),
    ],
)
def test_hop_names_are_normalised_and_classified(name, normalised, kind, alpha):
    info = hops.hop_info(name)
    assert (info.name, info.kind) == (normalised, kind)
    assert info.alpha == pytest.approx(alpha)


def test_an_unknown_hop_gets_the_default_alpha():
    known = features.beer_features(recipe([hop("Centennial", 20, "start")]))  # 10 % in the table
    unknown = features.beer_features(recipe([hop("Galactic Unicorn", 20, "start")]))
    assert hops.ALPHA_ACIDS["centennial"] == hops.DEFAULT_ALPHA
    assert unknown["tinseth_ibu"] == pytest.approx(known["tinseth_ibu"])
    assert unknown["unknown_hop_share"] == 1.0


def test_every_hop_of_the_real_catalogue_is_in_the_table_or_an_adjunct(catalog_beers):
    unknown = {
        h["name"]
        for beer in catalog_beers
        for h in beer["ingredients"]["hops"]
        if hops.hop_info(h["name"]).kind == "unknown"
    }
    assert unknown == set()


@pytest.mark.parametrize(
    ("add", "attribute", "group", "minutes"),
    [
        ("start", None, "boil", 60),
        ("Start", None, "boil", 60),
        ("middle", None, "boil", 30),
        ("end", None, "whirlpool", hops.HOT_WORT_MINUTES),
        ("Flame Out", None, "whirlpool", hops.HOT_WORT_MINUTES),
        ("whirlpool", None, "whirlpool", hops.HOT_WORT_MINUTES),
        ("0", None, "whirlpool", hops.HOT_WORT_MINUTES),
        ("70", None, "boil", 70),
        (45, None, "boil", 45),
        ("10 min", None, "boil", 10),
        ("Dry Hop", None, "dry", 0),
        ("FV Addition", None, "dry", 0),
        ("Wood Ageing", None, "dry", 0),
        ("First Wort Hops", None, "boil", hops.FIRST_WORT_MINUTES),
        ("Mash", None, "mash", hops.MASH_MINUTES),
        ("Kettle", None, "boil", 60),
        ("Boil", None, "boil", 60),
        ("Bittering", None, "boil", 60),
        ("FWH", None, "boil", hops.FIRST_WORT_MINUTES),
        ("First addition", "Bittering", "boil", 60),  # first wort takes both words
        ("Mid", None, "boil", 30),
        ("Late", None, "whirlpool", hops.HOT_WORT_MINUTES),
        ("Flameout.", None, "whirlpool", hops.HOT_WORT_MINUTES),
        ("sometime", "Bittering", "boil", 60),
        ("sometime", "flavour", "boil", 30),
        ("sometime", "Aroma", "whirlpool", hops.HOT_WORT_MINUTES),
        ("sometime", "Bitering", "boil", 60),  # as two recipes of the catalogue spell it
        ("sometime", "Flavor", "boil", 30),
        (None, None, "unknown", 0),
        ("???", "twist", "unknown", 0),
    ],
)
def test_addition_stages(add, attribute, group, minutes):
    assert hops.parse_stage(add, attribute) == hops.Stage(group, minutes)


def test_a_record_with_nothing_in_it_gives_nan_not_an_error():
    row = features.beer_features({})
    assert set(row) == set(features.FEATURE_COLUMNS)
    assert math.isnan(row["abv"])
    assert row["tinseth_ibu"] == 0
    # no hops: no share of unknown ones; no malt or gravity: no figure rather than zero
    assert (row["unknown_hop_share"], row["malts"]) == (0, 0)
    for name in ("mean_boil_alpha", "malt_kg_per_l", "crystal_share", "bu_gu_estimate"):
        assert math.isnan(row[name]), name
    empty_method = {"method": {"mash_temp": [None], "fermentation": {"temp": None}}}
    not_lists = {"ingredients": {"hops": 28, "malt": 4.0}}
    frame = features.build_features(
        [{}, {"ingredients": None, "volume": "20"}, empty_method, not_lists]
    )
    assert list(frame.columns) == list(features.FEATURE_COLUMNS)
    assert len(frame) == 4
    assert frame[["mash_temp", "mash_minutes", "fermentation_temp"]].isna().all(axis=None)


@pytest.mark.parametrize(
    "fields",
    [
        {"volume": None},
        {"volume": {"value": 0, "unit": "litres"}},
        {"volume": {"value": -20, "unit": "litres"}},
        {"volume": {"value": 40, "unit": "barrels"}},  # a unit it does not know
        {"target_og": None},
        {"target_og": 0},
        {"target_og": "n/a"},
    ],
)
def test_without_a_usable_volume_or_gravity_the_estimate_assumes_20_litres_at_1050(fields):
    base = features.beer_features(recipe([hop("Cascade", 28, "start")]))  # 20 L at 1.050
    row = features.beer_features(recipe([hop("Cascade", 28, "start")], **fields))
    assert row["tinseth_ibu"] == pytest.approx(base["tinseth_ibu"])
    assert row["hops_g_per_l"] == pytest.approx(base["hops_g_per_l"])


@pytest.mark.parametrize("target_og", [1.000, 1.001])
def test_an_original_gravity_of_water_has_no_bu_gu_ratio(target_og):
    row = features.beer_features(recipe([hop("Cascade", 28, "start")], target_og=target_og))
    assert row["tinseth_ibu"] > 0 and math.isnan(row["bu_gu_estimate"])


def test_the_v3_catalogue_gives_the_same_features_and_predictions_as_v2(
    catalog_beers, small_trained_model, tmp_path
):
    v3_file = tmp_path / "v3.json"
    v3_file.write_text(json.dumps([to_v3_shape(b) for b in catalog_beers]), encoding="utf-8")
    served = json.loads(v3_file.read_text(encoding="utf-8"))
    assert all("image" in b and "image_url" not in b for b in served)
    expected_features = features.build_features(catalog_beers)
    model = small_trained_model.model
    expected_predictions = predict_beers(model, catalog_beers)
    for v3 in (served, load_catalog(v3_file)):  # as the API serves it, as the commands read it
        pd.testing.assert_frame_equal(features.build_features(v3), expected_features)
        assert predict_beers(model, v3) == expected_predictions


def test_absurd_values_become_missing_and_leave_the_other_beers_alone():
    normal = recipe([hop("Cascade", 28, "start")])
    absurd = [
        recipe([hop("Cascade", 1e308, "start", unit="kg")]),
        recipe([hop("Cascade", 28, "start")], volume={"value": 1e-300, "unit": "litres"}),
        recipe([hop("Cascade", 28, "start")], target_og=1e308),
        recipe([hop("Cascade", 28, "start")], abv=1e39),  # finite, beyond float32
    ]
    frame = features.build_features([normal, *absurd])
    # what the forests see: float32, where an out-of-range value would be infinite
    with np.errstate(over="ignore"):
        assert np.isfinite(frame.fillna(0).to_numpy(np.float32)).all()
    assert frame[["tinseth_ibu", "hops_g_per_l"]].iloc[1].isna().all()
    assert frame["hops_g_per_l"].isna().tolist() == [False, True, True, False, False]
    assert math.isnan(frame.loc[3, "target_og"]) and math.isnan(frame.loc[4, "abv"])
    pd.testing.assert_series_equal(frame.iloc[0], features.build_features([normal]).iloc[0])


def test_a_table_of_raw_records_gives_the_same_features_as_dicts(catalog_beers):
    beers = catalog_beers[:40]
    as_json_strings = pd.DataFrame(
        [
            {k: json.dumps(v) if isinstance(v, dict | list) else v for k, v in b.items()}
            for b in beers
        ]
    )
    as_objects = pd.DataFrame(beers)
    as_arrays = as_objects.assign(food_pairing=as_objects["food_pairing"].map(np.array))
    expected = features.build_features(beers)
    for frame in (as_json_strings, as_objects, as_arrays):
        pd.testing.assert_frame_equal(features.build_features(frame), expected)


def test_labelled_deduplicates_by_id_and_drops_beers_without_ibu(catalog_beers):
    assert len(features.labelled(catalog_beers)) == 320
    older = {**catalog_beers[0], "ibu": 1.0}
    newer = {**catalog_beers[0], "ibu": 99.0}
    beers = features.labelled(
        [older, catalog_beers[1], newer, {**catalog_beers[2], "ibu": float("nan")}]
    )
    assert [b["id"] for b in beers] == sorted([catalog_beers[0]["id"], catalog_beers[1]["id"]])
    assert {b["id"]: b["ibu"] for b in beers}[catalog_beers[0]["id"]] == 99.0


# The bands are the challenge's; another set of edges changes more than bands.EDGES
THE_BANDS = (-1.0, 30.0, 50.0, 70.0, math.inf)
OTHER_BANDS = (
    "bands.EDGES is {edges}, and the bands are the challenge's, {bands}. Other bands also "
    "change the labels in lib/brewops/json_schemas/ (metrics, evaluation, model_card, "
    "prediction), the edges these tests pin, and every registered model (refused when loaded)"
)


def test_bands_are_right_closed():
    assert bands.EDGES == THE_BANDS, OTHER_BANDS.format(edges=bands.EDGES, bands=THE_BANDS)
    assert bands.band_index([0, 30, 30.5, 50, 51, 70, 70.1, 1157]).tolist() == [
        0,
        0,
        1,
        1,
        2,
        2,
        3,
        3,
    ]
    assert bands.band_label(3) == "(70, inf)"
    with pytest.raises(ValueError):
        bands.band_index([float("nan")])
    with pytest.raises(ValueError):  # one among numbers too
        bands.band_index([40.0, float("nan")])


def test_the_estimate_is_the_strongest_single_signal(catalog_beers):
    """On the real catalogue the Tinseth estimate alone lands in the right band about half
    the time (chance is a quarter) and tracks the recorded IBU."""
    beers = features.labelled(catalog_beers)
    frame = features.build_features(beers)
    ibu = features.ibu_values(beers)
    same_band = bands.band_index(frame["tinseth_ibu"].to_numpy()) == bands.band_index(ibu)
    assert same_band.mean() > 0.45
    plausible = ibu <= 150
    correlation = np.corrcoef(frame["log_tinseth_ibu"][plausible], np.log1p(ibu[plausible]))[0, 1]
    assert correlation > 0.6


@pytest.mark.parametrize(
    "name, key",
    [
        ("Punk IPA 2007 - 2010", "punk ipa 2007 2010"),
        ("  AB:23 ", "ab 23"),
        ("Sink The Bismarck!", "sink the bismarck"),
        ("Tokyo*", "tokyo"),
        ("Hello My Name Is Päivi", "hello my name is päivi"),
        ("Dead_Pony Club", "dead pony club"),
        ("Weißbier", "weissbier"),  # case-folded, not only lower-cased
        (None, ""),
    ],
)
def test_a_beer_is_known_by_its_normalised_name(name, key):
    assert features.beer_key({"id": 7, "name": name}) == key


def test_beer_keys_tell_every_beer_of_the_catalogue_apart(catalog_beers):
    assert len({features.beer_key(beer) for beer in catalog_beers}) == len(catalog_beers)


# ---------------------------------------------------------------------------------------
# Promised behaviour pinned beyond the cases above (each test kills a mutant of the code)


@pytest.mark.parametrize("edge", [30.0, 50.0, 70.0])
def test_band_edges_are_exactly_30_50_70(edge):
    assert edge in bands.EDGES, OTHER_BANDS.format(edges=bands.EDGES, bands=THE_BANDS)
    just_above = np.nextafter(edge, math.inf)
    lower, upper = bands.band_index([edge, just_above]).tolist()
    assert upper == lower + 1
    assert bands.LABELS[lower].endswith(f"{edge:g}]")
    assert bands.LABELS[upper].startswith(f"({edge:g},")


def test_counts_give_every_band_in_order_even_an_empty_one_and_nan_in_none():
    assert bands.counts(np.array([10.0, 20.0, math.nan, 55.0])) == [2, 0, 1, 0]


def test_the_labels_follow_from_the_edges():
    assert bands.labels_of((-1.0, 40.0, 70.0, math.inf)) == ("(-1, 40]", "(40, 70]", "(70, inf)")
    assert bands.labels_of(bands.EDGES) == bands.LABELS
    assert len(bands.EDGES) - 1 == bands.N_BANDS


@pytest.mark.parametrize(
    ("add", "group", "minutes"),
    [
        ("Dryhop", "dry", 0),
        ("Add at 15 mins", "boil", 15),
        ("240", "boil", 180),  # a boil longer than three hours counts as three hours
        # the stage or the minutes, not the word boil, say when in the boil
        ("Middle of boil", "boil", 30),
        ("Mid-boil", "boil", 30),
        ("End of boil", "whirlpool", hops.HOT_WORT_MINUTES),
        ("Late boil", "whirlpool", hops.HOT_WORT_MINUTES),
        ("Boil 15 min", "boil", 15),
        ("Kettle, 30 mins", "boil", 30),
    ],
)
def test_more_addition_stages(add, group, minutes):
    assert hops.parse_stage(add) == hops.Stage(group, minutes)


def test_first_wort_and_mash_hops_against_a_60_minute_addition():
    def ibu(add: str) -> float:
        return features.beer_features(recipe([hop("Cascade", 28, add)]))["tinseth_ibu"]

    start = ibu("start")
    # first-wort hops isomerise a few per cent more than a 60-minute addition
    assert 1.02 * start < ibu("First Wort Hops") < 1.05 * start
    # mash hops: about a fifth of a boil addition
    assert ibu("Mash") / start == pytest.approx(0.2, abs=0.02)
    # flame-out hops still add some bitterness (the wort stays hot)
    assert 0 < ibu("Flame Out") < ibu("middle")
    assert ibu("Flame Out") / start == pytest.approx(0.2, abs=0.02)  # a few minutes' worth


@pytest.mark.parametrize(
    ("name", "normalised", "alpha"),
    [("Amarillo Pellets", "amarillo", 9.0), ("Simcoe Leaf", "simcoe", 13.0)],
)
def test_trailing_form_words_are_dropped_from_hop_names(name, normalised, alpha):
    info = hops.hop_info(name)
    assert (info.name, info.kind, info.alpha) == (normalised, "hop", alpha)


def test_tinseth_ibu_of_no_hops_or_no_wort_is_zero():
    assert hops.tinseth_ibu(-5, 6.0, 60, 1.050, 20) == 0
    assert hops.tinseth_ibu(28, 6.0, 60, 1.050, 0) == 0
    assert hops.tinseth_ibu(28, -6.0, 60, 1.050, 20) == 0  # no alpha acids, no bitterness


@pytest.mark.parametrize(
    "volume",
    [
        {"value": 20000, "unit": "ml"},
        {"value": 0.2, "unit": "hectolitres"},
        {"value": 20 / 3.78541, "unit": "gallons"},
        {"value": 20},  # litres unless it says otherwise
        20,
        "20",
    ],
)
def test_volume_units_are_converted_to_litres(volume):
    expected = features.beer_features(recipe([hop("Cascade", 28, "start")]))
    row = features.beer_features(recipe([hop("Cascade", 28, "start")], volume=volume))
    assert row["volume_litres"] == pytest.approx(20)
    assert row["tinseth_ibu"] == pytest.approx(expected["tinseth_ibu"])


def test_gravity_of_the_record_lowers_the_estimate_as_tinseth_says():
    base = features.beer_features(recipe([hop("Cascade", 28, "start")]))
    strong = features.beer_features(recipe([hop("Cascade", 28, "start")], target_og=1080))
    assert strong["tinseth_ibu"] == pytest.approx(base["tinseth_ibu"] * 0.000125**0.030)


def test_fahrenheit_temperatures_and_specific_gravity_fg_are_converted():
    method = {
        "mash_temp": [
            {"temp": {"value": 149, "unit": "fahrenheit"}, "duration": 60},
            {"temp": {"value": 170, "unit": "fahrenheit"}, "duration": 10},
        ],
        "fermentation": {"temp": {"value": 66.2, "unit": "F"}},
    }
    row = features.beer_features(recipe([], method=method, target_fg=1.012))
    # the first mash step is the mash
    assert (row["mash_temp"], row["mash_minutes"]) == (pytest.approx(65), 60)
    assert row["fermentation_temp"] == pytest.approx(19)
    assert row["target_fg"] == pytest.approx(1012)


@pytest.mark.parametrize(
    ("temp", "celsius"),
    [
        ({"value": 66.2, "unit": "°F"}, 19),
        ({"value": 66.2, "unit": "deg F"}, 19),
        ({"value": 19, "unit": "°C"}, 19),
        ({"value": 292.15, "unit": "kelvin"}, 19),
        ({"value": 19, "unit": "centigrade"}, 19),
        ({"value": 19}, 19),  # celsius unless it says otherwise
    ],
)
def test_temperature_units_are_converted_to_celsius(temp, celsius):
    row = features.beer_features(recipe([], method={"fermentation": {"temp": temp}}))
    assert row["fermentation_temp"] == pytest.approx(celsius)


def test_a_temperature_in_a_unit_not_known_is_missing_not_taken_for_celsius():
    method = {
        "mash_temp": [{"temp": {"value": 3, "unit": "gas mark"}, "duration": 60}],
        "fermentation": {"temp": {"value": 535, "unit": "rankine"}},
    }
    row = features.beer_features(recipe([], method=method))
    assert math.isnan(row["mash_temp"]) and math.isnan(row["fermentation_temp"])
    assert row["mash_minutes"] == 60


def test_hop_schedule_by_stage_and_alpha_acids_in_mg_per_litre():
    schedule = [
        hop("Cascade", 28, "start"),  # 6 % alpha: 84 mg/L
        hop("Citra", 20, "45"),  # 12 %: 120 mg/L, still bittering
        hop("Citra", 10, "15", attribute="flavour"),  # middle
        hop("Cascade", 10, "10", attribute="aroma"),  # late, in the boil
        hop("Cascade", 10, "whirlpool", attribute="aroma"),  # late, after it
        hop("Citra", 100, "dry hop", attribute="aroma"),  # 600 mg/L, no isomerisation
    ]
    row = features.beer_features(recipe(schedule))

    def ibu(grams: float, alpha: float, minutes: float) -> float:
        return hops.tinseth_ibu(grams, alpha, minutes, 1.050, 20)

    assert row["bittering_g_per_l"] == pytest.approx(48 / 20)
    assert row["middle_g_per_l"] == pytest.approx(10 / 20)
    assert row["late_g_per_l"] == pytest.approx(20 / 20)
    assert row["dry_g_per_l"] == pytest.approx(100 / 20)
    assert row["hops_g_per_l"] == pytest.approx(178 / 20)  # every stage, dry hops too
    boil = ibu(28, 6, 60) + ibu(20, 12, 45) + ibu(10, 12, 15)
    late = ibu(10, 6, 10) + ibu(10, 6, hops.HOT_WORT_MINUTES)
    assert row["tinseth_boil_ibu"] == pytest.approx(boil)
    assert row["tinseth_late_ibu"] == pytest.approx(late)
    assert row["tinseth_ibu"] == pytest.approx(boil + late)
    assert row["bittering_alpha_mg_per_l"] == pytest.approx(84 + 120)
    boil_alpha = 84 + 120 + 60 + 30
    assert row["boil_alpha_mg_per_l"] == pytest.approx(boil_alpha)
    assert row["alpha_mg_per_l"] == pytest.approx(boil_alpha + 30 + 600)
    # weighted by grams: (6 * 28 + 12 * 20 + 12 * 10 + 6 * 10) / 68
    assert row["mean_boil_alpha"] == pytest.approx(588 / 68)
    assert (row["hop_additions"], row["hop_varieties"]) == (6, 2)
    assert row["longest_boil_minutes"] == 60


@pytest.mark.parametrize(
    ("add", "stage"), [("44", "middle"), ("45", "bittering"), ("14", "late"), ("15", "middle")]
)
def test_45_and_15_minutes_part_bittering_middle_and_late_hops(add, stage):
    row = features.beer_features(recipe([hop("Cascade", 20, add)]))
    assert row[f"{stage}_g_per_l"] == pytest.approx(20 / 20)


def test_mash_hops_are_late_hops_not_boil_hops():
    row = features.beer_features(recipe([hop("Cascade", 20, "Mash")]))
    assert row["late_g_per_l"] == pytest.approx(20 / 20)
    assert (row["boil_alpha_mg_per_l"], row["longest_boil_minutes"]) == (0, 0)
    assert math.isnan(row["mean_boil_alpha"])


def test_extract_grams_and_varieties_by_their_normalised_names():
    schedule = [
        hop("Cascade", 28, "start"),
        hop("US Cascade Pellets", 10, "end"),  # the same variety
        hop("Hop Extract", 10, "start"),
    ]
    row = features.beer_features(recipe(schedule))
    assert row["extract_g_per_l"] == pytest.approx(10 / 20)
    assert row["hop_varieties"] == 2


def test_unknown_hop_share_is_a_share_of_the_hop_grams():
    row = features.beer_features(
        recipe([hop("Cascade", 30, "start"), hop("Galactic Unicorn", 10, "start")])
    )
    assert row["unknown_hop_share"] == pytest.approx(0.25)


def test_malt_bill_shares_and_bare_amounts_in_kilograms():
    malts = [
        {"name": "Extra Pale", "amount": 4.0},  # a bare number: kilograms
        {"name": "Caramalt", "amount": {"value": 0.5, "unit": "kilograms"}},
        {"name": "Chocolate", "amount": {"value": 250, "unit": "grams"}},
        {"name": "Wheat", "amount": {"value": 0.25, "unit": "kilograms"}},
    ]
    beer = recipe([])
    beer["ingredients"]["malt"] = malts
    row = features.beer_features(beer)
    assert row["malt_kg_per_l"] == pytest.approx(5.0 / 20)
    assert row["malts"] == 4
    shares = [row[f"{kind}_share"] for kind in ("crystal", "dark", "wheat", "sugar")]
    assert shares == pytest.approx([0.1, 0.05, 0.05, 0.0])


def test_malt_names_of_the_catalogue_count_as_what_they_do():
    malts = [
        {"name": "Crystal 150", "amount": 1.0},
        {"name": "Roasted Barley", "amount": 1.0},
        {"name": "Black Malt", "amount": 1.0},
        {"name": "Dark Crystal", "amount": 1.0},  # crystal and dark both
        {"name": "Cane Sugar", "amount": 1.0},
        {"name": "Munich", "amount": 0},  # no mass: not in the bill
    ]
    beer = recipe([])
    beer["ingredients"]["malt"] = malts
    row = features.beer_features(beer)
    assert row["malts"] == 5
    shares = [row[f"{kind}_share"] for kind in ("crystal", "dark", "wheat", "sugar")]
    assert shares == pytest.approx([0.4, 0.6, 0.0, 0.2])


def test_style_and_yeast_come_from_their_own_fields_as_whole_words():
    row = features.beer_features(recipe([]))  # "Test Pale", "American Pale Ale.", Wyeast 1056
    assert row["style_pale"] == 1.0  # from the tagline
    assert row["yeast_american"] == 1.0  # from the yeast, not the name
    words = features.style_features("Twitter", "A bitter with hops")
    assert words["style_wheat"] == 0.0  # "wit" is in "Twitter" and "with", not a word there
    assert words["style_bitter"] == 1.0
    # at either end of the text too
    assert features.style_features("IPA")["style_ipa"] == 1.0


def test_numeric_text_with_a_decimal_comma():
    assert features.number("4,5") == 4.5
    # neither a flag nor an infinity is a number of the record
    values = (True, "inf", float("-inf"), " 7 ")
    assert [features.number(value) for value in values] == [None, None, None, 7]
    assert features.beer_features(recipe([], abv="4,5"))["abv"] == 4.5


def test_an_integer_too_large_for_a_float_is_missing_not_an_error():
    huge = 10**400  # JSON integers have no size limit; Python's float() refuses this one
    assert features.number(huge) is None
    assert hops.parse_stage(huge) == hops.Stage("boil", hops.MAX_MINUTES)
    assert hops.parse_stage(-huge) == hops.Stage("whirlpool", hops.HOT_WORT_MINUTES)
    beer = recipe([hop("Citra", huge, "70"), hop("Citra", 50, huge)], abv=huge)
    assert math.isnan(features.beer_features(beer)["abv"])


@pytest.mark.parametrize("add", [True, math.inf, math.nan], ids=["flag", "inf", "nan"])
def test_a_flag_or_a_number_that_is_not_finite_is_no_time_and_the_attribute_decides(add):
    assert hops.parse_stage(add, "Aroma") == hops.Stage("whirlpool", hops.HOT_WORT_MINUTES)


def test_deduplicate_sorts_by_numeric_id_and_keeps_records_without_one():
    beers = [{"id": 10}, {"name": "no id"}, {"id": 9}, {"id": 2, "v": 1}, {"id": 2, "v": 2}]
    assert features.deduplicate(beers) == [
        {"id": 2, "v": 2},
        {"id": 9},
        {"id": 10},
        {"name": "no id"},
    ]
    # numeric text sorts as its number, other ids after every number
    mixed = [{"id": "b"}, {"id": 10}, {"id": "a"}, {"id": "9"}]
    assert features.deduplicate(mixed) == [{"id": "9"}, {"id": 10}, {"id": "a"}, {"id": "b"}]


def test_a_nested_field_nested_too_deeply_to_read_is_none():
    too_deep = "[" * 100_000 + "]" * 100_000

    [record] = features.beer_records([{"id": 1, "ingredients": too_deep}])

    assert record["ingredients"] is None


def test_one_record_is_decoded_like_a_list_of_one(catalog_beers):
    beer = to_v3_shape(next(b for b in catalog_beers if b["name"] == "Buzz"))
    stored = {k: json.dumps(v) if k in ("ingredients", "method") else v for k, v in beer.items()}
    assert features.beer_records(stored) == features.beer_records([stored])
    assert "image_url" in features.beer_records(stored)[0]
    pd.testing.assert_frame_equal(features.build_features(stored), features.build_features([beer]))


def test_nested_lists_read_back_as_arrays_give_the_same_features(catalog_beers):
    # as a Parquet table returns them: lists inside the nested fields are numpy arrays
    beers = catalog_beers[:10]

    def as_arrays(beer: dict) -> dict:
        ingredients = {
            k: np.array(v, dtype=object) if isinstance(v, list) else v
            for k, v in beer["ingredients"].items()
        }
        method = {**beer["method"], "mash_temp": np.array(beer["method"]["mash_temp"])}
        return {**beer, "ingredients": ingredients, "method": method}

    frame = pd.DataFrame([as_arrays(b) for b in beers])
    pd.testing.assert_frame_equal(features.build_features(frame), features.build_features(beers))


def test_the_features_of_labelled_beers_make_each_record_plain_once(catalog_beers, monkeypatch):
    # as tables return them: nested fields as JSON text, a missing number as NaN
    stored = [
        {k: json.dumps(v) if isinstance(v, dict | list) else v for k, v in b.items()}
        | {"ph": math.nan}
        for b in catalog_beers[:40]
    ]
    beers = features.labelled(stored)
    expected = features.build_features([s for s in stored if s["id"] in {b["id"] for b in beers}])
    made_plain = []
    original = features.beer_records
    monkeypatch.setattr(
        features, "beer_records", lambda data: made_plain.append(data) or original(data)
    )
    pd.testing.assert_frame_equal(predict.feature_matrix(beers), expected)
    assert made_plain == [], "labelled beers are plain already: made plain again"


def test_records_are_made_plain_with_the_collector_paused_and_left_as_found(
    catalog_beers, monkeypatch
):
    # plain copies hold no reference cycle: the cyclic collector would only run over them
    collector_on = []
    original = features._plain
    monkeypatch.setattr(
        features,
        "_plain",
        lambda key, value: collector_on.append(gc.isenabled()) or original(key, value),
    )
    assert gc.isenabled()

    records = features.beer_records(catalog_beers[:5])

    assert gc.isenabled()
    assert collector_on and not any(collector_on)
    assert records == catalog_beers[:5]
    with pytest.raises(AttributeError):  # a row that is no record
        features.beer_records([catalog_beers[0], 7])
    assert gc.isenabled()


class _StandInModel:
    """Probabilities and IBU for every beer alike: the estimate comes from the recipe."""

    def predict_proba(self, X):
        return np.tile([0.1, 0.6, 0.2, 0.1], (len(X), 1))

    def predict_ibu(self, X):
        return np.full(len(X), 45.0)


def test_a_prediction_gives_the_recipes_tinseth_estimate_rounded_as_the_predicted_ibu():
    hand_computed = recipe(
        [
            hop("Cascade", 28, "start"),
            hop("Citra", 20, "middle", attribute="flavour"),
            hop("Citra", 100, "dry hop", attribute="aroma"),
        ]
    )
    # an amount beyond what the forests compute in: the estimate cannot be given
    absurd = recipe([hop("Cascade", 1e300, "start", unit="kilograms")], id=2)
    first, second = predict_beers(_StandInModel(), [hand_computed, absurd])
    assert first["estimated_ibu"] == round(HAND_COMPUTED_IBU, 1) == 40.6
    assert first["predicted_ibu"] == 45.0  # the model's, beside it
    assert second["estimated_ibu"] is None
