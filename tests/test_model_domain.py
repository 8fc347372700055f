"""Whether a beer is unlike those the model was trained on: the training ranges of the model
card, and the `outside_training` of predictions and evaluations."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from brewops.model import domain, features, hops, registry, train
from brewops.model.cli import model as model_group
from brewops.model.predict import predict_beer, predict_beers, predictions_frame


@pytest.fixture(scope="module")
def older_and_newer(catalog_beers):
    """The small model's training beers (every other beer) and the others."""
    return features.labelled(catalog_beers[::2]), features.labelled(catalog_beers[1::2])


@pytest.fixture(scope="module")
def card_domain(small_trained_model) -> domain.TrainingDomain:
    found = domain.TrainingDomain.from_card(small_trained_model.card)
    assert found is not None
    return found


def _scaled_volume(beer: dict, litres: float) -> dict:
    # the recipe scaled up: the same beer, brewed in a volume no training recipe had
    return {**copy.deepcopy(beer), "volume": {"value": litres, "unit": "litres"}}


def test_the_card_records_each_features_training_range_and_the_hops(
    small_trained_model, older_and_newer
):
    trained_on, _ = older_and_newer
    data = small_trained_model.card["data"]
    X = features.build_features(trained_on)
    assert list(data["feature_ranges"]) == list(features.FEATURE_COLUMNS)
    assert data["feature_ranges"]["volume_litres"] == [
        X["volume_litres"].min(),
        X["volume_litres"].max(),
    ]
    assert data["feature_ranges"]["abv"] == [X["abv"].min(), X["abv"].max()]
    assert "cascade" in data["hop_varieties"]
    assert data["hop_varieties"] == sorted(data["hop_varieties"])
    # the keys the card had before are all still there
    assert {"sha256", "rows_used", "ids", "source", "rule", "beer_keys", "beers_per_band"} < set(
        data
    )


def test_the_training_ranges_survive_the_registry_round_trip(small_trained_model, tmp_path: Path):
    trained = small_trained_model
    folder = registry.save(trained.model, trained.metrics, trained.card, tmp_path / "v")
    loaded = registry.load(folder)
    assert domain.TrainingDomain.from_card(loaded.card) == domain.TrainingDomain.from_card(
        trained.card
    )
    shown = f"- training ranges: {len(features.FEATURE_COLUMNS)} features, "
    assert shown in registry.card_markdown(loaded.card)


def test_a_beer_with_a_feature_beyond_its_training_range_is_named(
    small_trained_model, card_domain, older_and_newer
):
    _, newer = older_and_newer
    high = card_domain.ranges["volume_litres"][1]
    beer = _scaled_volume(newer[0], high * 10)
    prediction = predict_beer(small_trained_model.model, beer, training_domain=card_domain)
    outside = prediction["outside_training"]
    assert outside["features"]["volume_litres"] == {
        "value": high * 10,
        "trained": list(card_domain.ranges["volume_litres"]),
    }
    assert domain.is_outside(outside)
    assert f"volume_litres {high * 10:g} (trained " in domain.describe(outside)


def test_a_beer_like_the_training_beers_is_not_flagged(
    small_trained_model, card_domain, older_and_newer
):
    trained_on, _ = older_and_newer
    predictions = predict_beers(
        small_trained_model.model, trained_on[:20], training_domain=card_domain
    )
    # every training beer lies within the ranges, which are those of the training beers
    assert [p["outside_training"] for p in predictions] == [{"features": {}, "new_hops": []}] * 20
    assert predictions_frame(predictions)["outside_training"].tolist() == [""] * 20


def test_a_missing_value_is_not_outside_the_range(card_domain, older_and_newer):
    trained_on, _ = older_and_newer
    beer = {**trained_on[0], "abv": None, "ph": "n/a"}
    [outside] = card_domain.outside(features.build_features([beer]), [beer])
    assert outside == {"features": {}, "new_hops": []}


def test_a_hop_no_training_recipe_had_is_named(small_trained_model, card_domain, older_and_newer):
    trained_on, _ = older_and_newer
    beer = copy.deepcopy(trained_on[0])
    beer["ingredients"]["hops"].append(
        {"name": "Zythos Nova", "amount": {"value": 1, "unit": "grams"}, "add": "end"}
    )
    prediction = predict_beer(small_trained_model.model, beer, training_domain=card_domain)
    assert prediction["outside_training"]["new_hops"] == ["zythos nova"]
    assert domain.describe(prediction["outside_training"]).endswith("new hops: zythos nova")


def test_one_variety_spelled_two_ways_in_the_catalogue_is_no_new_hop(catalog_beers):
    # "East Kent Goldings" (beer 184, 2008) and "East Kent Golding" (beer 319, 2018): one
    # hop of the table, which a model trained on the older beer knows
    spellings: dict[str, set[str]] = {}
    for beer in catalog_beers:
        for addition in beer["ingredients"]["hops"]:
            info = hops.hop_info(addition["name"])
            if info.kind == "hop":
                spellings.setdefault(hops._variety(info.name), set()).add(info.name)
    assert {variety: names for variety, names in spellings.items() if len(names) > 1} == {}
    trained = domain.TrainingDomain({}, frozenset(["east kent golding"]))
    beer = {"ingredients": {"hops": [{"name": "East Kent Goldings", "amount": {"value": 5}}]}}
    [outside] = trained.outside(features.build_features([beer]), [beer])
    assert outside["new_hops"] == []


def test_the_hops_checked_are_those_the_model_counts_as_varieties(catalog_beers):
    beers = features.labelled(catalog_beers)
    counted = features.build_features(beers)["hop_varieties"].tolist()
    assert [len(domain.beer_hop_varieties(beer)) for beer in beers] == counted


@pytest.mark.parametrize(
    "nameless",
    [{"name": ""}, {}, {"name": None}, {"name": " - "}],
    ids=["empty", "missing", "null", "punctuation"],
)
def test_a_hop_without_a_name_is_no_new_hop(nameless):
    # its variety is not known: neither new nor trained on, and no variety the model counts
    trained = domain.TrainingDomain({}, frozenset(["cascade"]))
    schedule = [{"name": "Cascade"}, nameless, {"name": "Nelson Sauvin"}]
    beer = {"ingredients": {"hops": [{**a, "amount": {"value": 5}} for a in schedule]}}
    X = features.build_features([beer])
    [outside] = trained.outside(X, [beer])

    assert outside["new_hops"] == ["nelson sauvin"]
    assert domain.describe(outside) == "new hops: nelson sauvin"
    assert X["hop_varieties"].tolist() == [len(domain.beer_hop_varieties(beer))] == [2]


def test_a_card_without_training_ranges_cannot_be_checked(small_trained_model, older_and_newer):
    older_card = copy.deepcopy(small_trained_model.card)
    del older_card["data"]["feature_ranges"], older_card["data"]["hop_varieties"]
    assert domain.TrainingDomain.from_card(older_card) is None
    assert "training ranges" not in registry.card_markdown(older_card)
    _, newer = older_and_newer
    prediction = predict_beer(small_trained_model.model, newer[0])
    assert prediction["outside_training"] is None
    assert predictions_frame([prediction])["outside_training"].tolist() == [None]


@pytest.mark.parametrize(
    "edit",
    [
        {"feature_ranges": {"abv": [1.0]}},
        {"feature_ranges": [0, 1]},
        {"feature_ranges": {"abv": ["low", "high"]}},
        {"hop_varieties": "cascade"},
    ],
)
def test_training_ranges_edited_into_another_shape_are_refused(small_trained_model, edit):
    card = copy.deepcopy(small_trained_model.card)
    card["data"].update(edit)
    with pytest.raises(domain.DomainError):
        domain.TrainingDomain.from_card(card)


def test_evaluation_scores_the_beers_outside_apart_from_the_others(
    small_trained_model, card_domain, older_and_newer
):
    trained_on, newer = older_and_newer
    far = [_scaled_volume(beer, 5000.0) for beer in newer[:10]]
    beers = trained_on + far + newer[10:]
    keys = small_trained_model.card["data"]["beer_keys"]
    scores = train.evaluate_catalogue(
        small_trained_model.model, beers, keys, training_domain=card_domain
    )
    outside = scores["outside_training"]
    assert outside["by_feature"]["volume_litres"] >= 10
    assert outside["n"] >= outside["n_features"] >= 10
    # over the beers not trained on: a training beer's prediction is recalled
    assert outside["outside"]["n"] + outside["inside"]["n"] == scores["unseen"]["n"]
    flags = card_domain.outside(features.build_features(beers), beers)
    flagged = [beer for beer, entry in zip(beers, flags, strict=True) if domain.is_outside(entry)]
    alone = train.evaluate_catalogue(small_trained_model.model, flagged, None)
    assert outside["outside"]["accuracy"] == alone["accuracy"]
    assert (
        train.evaluate_catalogue(small_trained_model.model, beers, keys)["outside_training"] is None
    )


# ---------------------------------------------------------------------------------------
# The commands


def _invoke(*args: str):
    return CliRunner().invoke(model_group, list(args))


@pytest.fixture(scope="module")
def model_folder(small_trained_model, tmp_path_factory) -> Path:
    trained = small_trained_model
    return registry.save(
        trained.model, trained.metrics, trained.card, tmp_path_factory.mktemp("model") / "v"
    )


@pytest.fixture(scope="module")
def newer_catalogue(older_and_newer, card_domain, tmp_path_factory) -> Path:
    """The beers not trained on, the first brewed in ten times the largest volume."""
    _, newer = older_and_newer
    beers = [_scaled_volume(newer[0], card_domain.ranges["volume_litres"][1] * 10), *newer[1:]]
    path = tmp_path_factory.mktemp("catalogues") / "newer.json"
    path.write_text(json.dumps(beers), encoding="utf-8")
    return path


def test_predict_prints_what_lies_outside_the_training_data(model_folder, newer_catalogue):
    result = _invoke("predict", "--model", str(model_folder), "--catalog", str(newer_catalogue))
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert "volume_litres" in lines[0]["outside_training"]["features"]
    assert all(set(line["outside_training"]) == {"features", "new_hops"} for line in lines)


def test_evaluate_prints_the_drift_summary(model_folder, newer_catalogue):
    result = _invoke("evaluate", "--model", str(model_folder), "--catalog", str(newer_catalogue))
    assert result.exit_code == 0, result.output
    last = json.loads(result.output.strip().splitlines()[-1])
    outside = last["outside_training"]
    assert outside["by_feature"]["volume_litres"] >= 1
    assert outside["outside"]["n"] + outside["inside"]["n"] == last["n"]
    assert set(outside["outside"]) == {"n", "accuracy", "macro_f1", "mae", "r2"} | {
        "mae_ibu_le_150",
        "r2_ibu_le_150",
    }
    assert f"{outside['n']} of {last['n']} beers unlike the training beers (" in result.output
    assert (
        f"outside {outside['outside']['n']}: accuracy {outside['outside']['accuracy']:.3f}"
        in result.output
    )


def test_a_model_whose_card_has_no_training_ranges_predicts_and_says_it_could_not_check(
    model_folder, newer_catalogue, tmp_path: Path
):
    older = tmp_path / "older"
    shutil.copytree(model_folder, older)
    card = json.loads((older / registry.CARD_FILE).read_text(encoding="utf-8"))
    del card["data"]["feature_ranges"], card["data"]["hop_varieties"]
    (older / registry.CARD_FILE).write_text(json.dumps(card), encoding="utf-8")
    result = _invoke("predict", "--model", str(older), "--catalog", str(newer_catalogue))
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert {line["outside_training"] for line in lines} == {None}
    result = _invoke("evaluate", "--model", str(older), "--catalog", str(newer_catalogue))
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.strip().splitlines()[-1])["outside_training"] is None
    assert "the model card records no training ranges" in result.output


@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_a_card_whose_training_ranges_were_edited_is_one_line(
    model_folder, newer_catalogue, tmp_path: Path, command: str
):
    edited = tmp_path / "edited"
    shutil.copytree(model_folder, edited)
    card = json.loads((edited / registry.CARD_FILE).read_text(encoding="utf-8"))
    card["data"]["feature_ranges"] = {"abv": "high"}
    (edited / registry.CARD_FILE).write_text(json.dumps(card), encoding="utf-8")
    result = _invoke(command, "--model", str(edited), "--catalog", str(newer_catalogue))
    assert result.exit_code == 1, result.output
    assert result.output == (
        f"Error: {edited}: model_card.json: data.feature_ranges is not a [smallest, largest] "
        "pair per feature: the version is damaged. Train the model again with `brewops model "
        "train`, or load another version.\n"
    )


def test_the_help_of_predict_and_evaluate_explains_the_field():
    assert "`outside_training`" in _invoke("predict", "--help").output
    help_text = _invoke("evaluate", "--help").output
    assert "`outside_training`" in help_text and "drift summary" in help_text


def test_an_out_of_range_value_stays_out_of_the_json_as_nan(card_domain, older_and_newer):
    # the forests' float32 limit makes a huge value NaN: missing, not outside
    trained_on, _ = older_and_newer
    beer = _scaled_volume(trained_on[0], 1e300)
    [outside] = card_domain.outside(features.build_features([beer]), [beer])
    assert "volume_litres" not in outside["features"]
    assert all(np.isfinite(entry["value"]) for entry in outside["features"].values())
