"""`brewops model train|evaluate|predict`, run as the real command."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from brewops.catalog import to_v3_shape
from brewops.json_schemas import schema as model_schema
from brewops.model import bands, features, predict, registry, uncertainty
from brewops.model import train as training
from brewops.model.cli import HEADLINE, PROBABILITY_FIGURES
from brewops.model.cli import model as model_group
from fixtures.commands import run_in_group
from fixtures.json_schemas import renamed, retyped, schema_errors


def brewops(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return run_in_group(
        [sys.executable, "-m", "brewops.cli", "model", *args],
        capture_output=True,
        encoding="locale",
        timeout=300,
        env=None if env is None else {**os.environ, **env},
    )


def brewops_in_process(*args: str):
    """The same command group, in this process (no interpreter start-up)."""
    return CliRunner().invoke(model_group, list(args))


@pytest.fixture(scope="module")
def split_catalogue(catalog_beers, tmp_path_factory) -> tuple[Path, Path]:
    """Older beers to train on (v2 file) and the rest to evaluate on (v3 file, renumbered
    like the community API does)."""
    folder = tmp_path_factory.mktemp("catalogues")
    train_beers = [b for b in catalog_beers if b["id"] % 3]
    unseen = [
        {**to_v3_shape(b), "id": index + 1}
        for index, b in enumerate(b for b in catalog_beers if not b["id"] % 3)
    ]
    train_file, unseen_file = folder / "train.json", folder / "unseen_v3.json"
    train_file.write_text(json.dumps(train_beers), encoding="utf-8")
    unseen_file.write_text(json.dumps(unseen), encoding="utf-8")
    return train_file, unseen_file


@pytest.fixture(scope="module")
def training_run(split_catalogue, tmp_path_factory) -> tuple[Path, str]:
    """`train` on the older beers: the model folder, and what the command printed. One
    repeat of two folds: what is tested is what the command writes and prints, not the
    figures of the fixed protocol."""
    train_file, _ = split_catalogue
    out = tmp_path_factory.mktemp("model") / "ibu"
    result = brewops(
        "train", "--catalog", str(train_file), "--out", str(out),
        "--repeats", "1", "--folds", "2", "--no-progress",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return out, result.stdout


@pytest.fixture(scope="module")
def trained_dir(training_run) -> Path:
    return training_run[0]


def card_of(folder: Path) -> dict:
    return json.loads((folder / registry.CARD_FILE).read_text(encoding="utf-8"))


def test_train_writes_the_model_metrics_and_card(trained_dir: Path):
    assert {p.name for p in trained_dir.iterdir()} == set(registry.VERSION_FILES)
    metrics = json.loads((trained_dir / registry.METRICS_FILE).read_text(encoding="utf-8"))
    assert {"accuracy", "macro_f1", "mae"} <= set(metrics["cv"])
    assert {"majority_class", "random_forest_6_columns", "tinseth_formula"} == set(
        metrics["baselines"]
    )
    assert set(metrics["time_split"]["baselines"]) == set(metrics["baselines"])
    assert {"accuracy", "macro_f1", "mae", "n_test", "over_seeds"} <= set(metrics["time_split"])
    card = card_of(trained_dir)
    assert registry.VERSION_PATTERN.match(card["version"])
    assert card["data"]["source"]["file"] == "train.json"
    assert len(card["data"]["source"]["file_sha256"]) == 64


def test_train_prints_the_figures_and_ends_in_one_json_object(training_run):
    out, stdout = training_run
    metrics = json.loads((out / registry.METRICS_FILE).read_text(encoding="utf-8"))
    version = card_of(out)["version"]
    lines = stdout.strip().splitlines()
    assert json.loads(lines[-1]) == {
        "version": version,
        "out": str(out),
        **{key: metrics["cv"][key] for key in HEADLINE},
    }
    assert lines[-2] == f"model {version} written to {out}"
    # the table: the model and each baseline, in cross-validation and on the newest fifth
    rows = [line.split("  ")[0] for line in lines]
    for name in ("model", *metrics["baselines"]):
        assert {f"{name} (cv)", f"{name} (newest fifth)"} <= set(rows), name
    assert training.seed_spread_summary(metrics["time_split"]) in lines


def test_train_options_reach_the_protocol(catalog_path: Path, tmp_path: Path, monkeypatch):
    asked = {}

    def train_no_further(beers, protocol, progress, source):
        asked.update(protocol=protocol, progress=progress, source=source)
        raise training.TrainingError("stopped before training")

    monkeypatch.setattr(training, "train", train_no_further)
    result = brewops_in_process(
        "train", "--catalog", str(catalog_path), "--out", str(tmp_path / "out"),
        "--folds", "3", "--repeats", "2", "--seed", "11", "--jobs", "1", "--no-progress",
    )  # fmt: skip
    assert result.output.strip().splitlines()[-1] == "Error: stopped before training"
    assert asked == {
        "protocol": training.Protocol(n_splits=3, n_repeats=2, seed=11, n_jobs=1),
        "progress": False,
        "source": {
            "file": catalog_path.name,
            "file_sha256": hashlib.sha256(catalog_path.read_bytes()).hexdigest(),
        },
    }


def test_evaluate_prints_one_json_object_last(trained_dir: Path, split_catalogue):
    _, unseen_file = split_catalogue
    result = brewops("evaluate", "--model", str(trained_dir), "--catalog", str(unseen_file))
    assert result.returncode == 0, result.stderr
    last = json.loads(result.stdout.strip().splitlines()[-1])
    expected_n = sum(
        1 for b in json.loads(unseen_file.read_text(encoding="utf-8")) if b["ibu"] is not None
    )
    assert last["n"] == expected_n
    assert 0.5 < last["accuracy"] <= 1
    assert 0.4 < last["macro_f1"] <= 1
    assert last["mae"] > 0
    assert len(last["confusion_matrix"]) == 4
    # renumbered, and none of them trained on: all of them count as new
    assert last["seen_in_training"] == 0
    assert last["unseen"] == {key: last[key] for key in last["unseen"]}
    assert "none of these beers is in the model's training data" in result.stdout
    assert set(last["per_class"]) == set(bands.LABELS)
    assert last["model_version"] == card_of(trained_dir)["version"]
    assert f"{expected_n} beers with an IBU in {unseen_file}" in result.stdout
    assert f"  {'macro_f1':16s} {last['macro_f1']:.3f}\n" in result.stdout
    # the band probabilities' figures, and how often band and IBU disagree
    for key in ("brier", "log_loss", "ece", "band_ibu_disagreement"):
        assert 0 <= last[key] == last["unseen"][key], key
    assert f"band probabilities: brier {last['brier']:.3f}, " in result.stdout
    # the brewer's formula on the same beers, all of them new here
    beers = features.labelled(json.loads(unseen_file.read_text(encoding="utf-8")))
    estimate = features.build_features(beers)["tinseth_ibu"].to_numpy()
    ibu = features.ibu_values(beers)
    formula = last["tinseth_formula"]
    assert formula["n"] == expected_n == formula["unseen"]["n"]
    right = bands.band_index(estimate) == bands.band_index(ibu)
    assert formula["accuracy"] == pytest.approx(right.mean()) == formula["unseen"]["accuracy"]
    assert formula["mae"] == pytest.approx(abs(estimate - ibu).mean())
    assert f"the Tinseth formula alone on these beers: accuracy {formula['accuracy']:.3f}" in (
        result.stdout
    )


def test_evaluate_gives_the_wilson_interval_of_its_accuracy(trained_dir: Path, split_catalogue):
    _, unseen_file = split_catalogue
    result = brewops_in_process(
        "evaluate", "--model", str(trained_dir), "--catalog", str(unseen_file)
    )
    last = last_json_line(result)
    right = round(last["accuracy"] * last["n"])
    assert last["accuracy_interval"] == pytest.approx(list(uncertainty.wilson(right, last["n"])))
    low, high = last["accuracy_interval"]
    assert low < last["accuracy"] < high
    assert last["unseen"]["accuracy_interval"] == last["accuracy_interval"]  # all new here
    assert (
        f"accuracy 95 % interval [{low:.3f}, {high:.3f}] (Wilson, {last['n']} beers)"
        in result.stdout
    )


def test_evaluate_tells_the_beers_trained_on_from_new_ones(
    trained_dir: Path, split_catalogue, tmp_path: Path
):
    train_file, unseen_file = split_catalogue
    unseen = json.loads(unseen_file.read_text(encoding="utf-8"))
    trained_on = json.loads(train_file.read_text(encoding="utf-8"))[:40]
    mixed = tmp_path / "mixed.json"
    # numbered after the new ones: beers are matched by name, not id
    renumbered = [{**to_v3_shape(b), "id": 1000 + i} for i, b in enumerate(trained_on)]
    mixed.write_text(json.dumps(unseen + renumbered), encoding="utf-8")

    outputs = {}

    def last_line(catalogue: Path) -> dict:
        result = brewops_in_process(
            "evaluate", "--model", str(trained_dir), "--catalog", str(catalogue)
        )
        assert result.exit_code == 0, result.output
        outputs[catalogue] = result.output
        return json.loads(result.output.strip().splitlines()[-1])

    alone, together = last_line(unseen_file), last_line(mixed)
    n_trained_on = sum(1 for b in trained_on if b["ibu"] is not None)
    assert together["n"] == alone["n"] + n_trained_on
    assert together["seen_in_training"] == n_trained_on
    # the figures on new beers are those of the new beers alone
    unseen_figures = dict(together["unseen"])
    assert unseen_figures.pop("accuracy_interval") == pytest.approx(alone["accuracy_interval"])
    assert unseen_figures == pytest.approx(
        {"n": alone["n"], **{k: alone[k] for k in unseen_figures if k != "n"}}
    )
    assert together["accuracy"] != alone["accuracy"]
    assert (
        f"{n_trained_on} of these beers are in the model's training data (same name): in-sample;"
        f" on the {alone['n']} others: accuracy {alone['accuracy']:.3f}"
    ) in outputs[mixed]


def test_evaluate_on_beers_all_trained_on_has_no_new_beer_to_score(
    trained_dir: Path, split_catalogue
):
    train_file, _ = split_catalogue
    result = brewops_in_process(
        "evaluate", "--model", str(trained_dir), "--catalog", str(train_file)
    )
    assert result.exit_code == 0, result.output
    last = json.loads(result.output.strip().splitlines()[-1])
    assert (last["seen_in_training"], last["unseen"]) == (last["n"], None)
    assert "in-sample; no new beer to score" in result.output


def test_a_model_whose_card_does_not_list_its_beers_tells_nothing_apart(
    trained_dir: Path, split_catalogue, tmp_path: Path
):
    # an older model: its card has no beer_keys (the card is not part of the checksum)
    older = tmp_path / "older"
    shutil.copytree(trained_dir, older)
    card = card_of(older)
    del card["data"]["beer_keys"]
    (older / registry.CARD_FILE).write_text(json.dumps(card), encoding="utf-8")
    train_file, _ = split_catalogue
    result = brewops_in_process("evaluate", "--model", str(older), "--catalog", str(train_file))
    assert result.exit_code == 0, result.output
    last = json.loads(result.output.strip().splitlines()[-1])
    assert (last["seen_in_training"], last["unseen"]) == (None, None)
    assert "does not list its training beers: seen and new beers not told apart" in result.output
    first_id = str(json.loads(train_file.read_text(encoding="utf-8"))[0]["id"])
    result = brewops_in_process(
        "predict", "--model", str(older), "--catalog", str(train_file), "--id", first_id
    )
    assert json.loads(result.output)["seen_in_training"] is None


@pytest.mark.parametrize(
    "edit",
    [
        {"beer_keys": 5},
        {"beer_keys": ["buzz", {"name": "AB:01"}]},  # a dict cannot be looked up by name
        "train.json",  # data itself edited into text
        ["buzz", "AB:01"],  # or into a list: beer names, but not where a card keeps them
    ],
)
@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_a_card_whose_beer_names_were_edited_into_another_shape_is_one_line(
    trained_dir: Path, split_catalogue, tmp_path: Path, edit, command: str
):
    edited = tmp_path / "edited"
    shutil.copytree(trained_dir, edited)
    card = card_of(edited)
    card["data"] = {**card["data"], **edit} if isinstance(edit, dict) else edit
    (edited / registry.CARD_FILE).write_text(json.dumps(card), encoding="utf-8")
    train_file, _ = split_catalogue
    result = brewops_in_process(command, "--model", str(edited), "--catalog", str(train_file))
    assert result.exit_code == 1, result.output
    assert result.output == (
        f"Error: {edited}: model_card.json holds no list of beer names in data.beer_keys: the "
        "version is damaged. Train the model again with `brewops model train`, or load "
        "another version.\n"
    )


def test_predict_prints_a_band_per_beer(trained_dir: Path, split_catalogue):
    _, unseen_file = split_catalogue
    result = brewops(
        "predict",
        "--model",
        str(trained_dir),
        "--catalog",
        str(unseen_file),
        "--id",
        "1",
        "--id",
        "2",
    )
    assert result.returncode == 0, result.stderr
    predictions = [json.loads(line) for line in result.stdout.strip().splitlines()]
    assert [p["id"] for p in predictions] == [1, 2]
    assert all(
        set(p["probabilities"]) == {"(-1, 30]", "(30, 50]", "(50, 70]", "(70, inf)"}
        for p in predictions
    )
    # the held-out file: beers the model has not been trained on
    assert [p["seen_in_training"] for p in predictions] == [False, False]
    # each line names the version that made it, as evaluate's last line does
    assert {p["model_version"] for p in predictions} == {card_of(trained_dir)["version"]}
    assert all(p["predicted_ibu_band"] in bands.LABELS for p in predictions)
    # beside the model's IBU, the recipe's own Tinseth estimate, rounded as it is
    beers = {b["id"]: b for b in json.loads(unseen_file.read_text(encoding="utf-8"))}
    for prediction in predictions:
        estimate = features.beer_features(beers[prediction["id"]])["tinseth_ibu"]
        assert prediction["estimated_ibu"] == round(estimate, 1)


def test_predict_help_says_band_and_ibu_can_disagree():
    result = brewops_in_process("predict", "--help")
    shown = " ".join(result.output.split())
    assert "`predicted_ibu_band` names the band the predicted IBU lies in" in shown
    assert "`estimated_ibu` is the recipe's own Tinseth estimate" in shown


@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_evaluate_and_predict_draw_a_bar_on_stderr_and_print_the_same(
    command: str, trained_dir: Path, split_catalogue, monkeypatch: pytest.MonkeyPatch
):
    _, unseen = split_catalogue
    args = [command, "--model", str(trained_dir), "--catalog", str(unseen)]
    quiet = brewops_in_process(*args, "--no-progress")
    by_default = brewops_in_process(*args)  # stderr is no terminal here: no bar
    # features built ten beers at a time: the predictions are those of all built at once
    monkeypatch.setattr(predict, "CHUNK_BEERS", 10)
    drawn = brewops_in_process(*args, "--progress")

    assert (quiet.exit_code, by_default.exit_code, drawn.exit_code) == (0, 0, 0), drawn.output
    assert drawn.stdout == quiet.stdout == by_default.stdout
    assert quiet.stderr == by_default.stderr == ""
    last_state = drawn.stderr.replace("\r", "\n").strip().splitlines()[-1]
    assert re.match(rf"{command}: 100%\|.*\| (\d+)/\1 \[", last_state), drawn.stderr


@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_evaluate_and_predict_print_their_lines_with_stderr_closed(
    command: str, trained_dir: Path, split_catalogue
):
    _, unseen = split_catalogue
    result = run_in_group(
        [sys.executable, "-m", "brewops.cli", "model", command, "--model", str(trained_dir),
         "--catalog", str(unseen), "--progress"],
        preexec_fn=lambda: os.close(2),  # `2>&-`: the bars have nowhere to go, the lines do
        stdout=subprocess.PIPE,
        encoding="locale",
        timeout=300,
    )  # fmt: skip

    assert result.returncode == 0
    assert json.loads(result.stdout.splitlines()[-1])


def test_predict_with_stdout_closed_fails_saying_so(trained_dir: Path, split_catalogue):
    _, unseen = split_catalogue
    result = run_in_group(
        [sys.executable, "-m", "brewops.cli", "model", "predict", "--model", str(trained_dir),
         "--catalog", str(unseen)],
        preexec_fn=lambda: os.close(1),  # `>&-`: the predictions cannot be written
        stderr=subprocess.PIPE,
        encoding="locale",
        timeout=300,
    )  # fmt: skip

    assert result.returncode == 1
    assert result.stderr.startswith("Error: stdout is closed (Bad file descriptor)")


def test_predict_flags_the_beers_the_model_was_trained_on(trained_dir: Path, split_catalogue):
    train_file, _ = split_catalogue
    first_id = json.loads(train_file.read_text(encoding="utf-8"))[0]["id"]
    result = brewops_in_process(
        "predict", "--model", str(trained_dir), "--catalog", str(train_file), "--id", str(first_id)
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["seen_in_training"] is True


def test_predict_writes_names_as_they_are(trained_dir: Path, split_catalogue):
    train_file, _ = split_catalogue
    beer = next(
        b for b in json.loads(train_file.read_text(encoding="utf-8")) if not b["name"].isascii()
    )
    result = brewops_in_process(
        "predict",
        "--model",
        str(trained_dir),
        "--catalog",
        str(train_file),
        "--id",
        str(beer["id"]),
    )
    assert result.exit_code == 0, result.output
    assert f'"name": "{beer["name"]}"' in result.output  # not escaped to ASCII


def test_predict_writes_utf8_json_where_the_terminal_is_not_utf8(
    trained_dir: Path, split_catalogue
):
    # a Latin-1 locale (LANG=de_DE) has no combining accents: "Zé" is e + U+0301 here
    train_file, _ = split_catalogue
    beers = [
        b for b in json.loads(train_file.read_text(encoding="utf-8")) if not b["name"].isascii()
    ]
    ids = [arg for b in beers for arg in ("--id", str(b["id"]))]
    result = brewops(
        "predict", "--model", str(trained_dir), "--catalog", str(train_file), *ids,
        env={"PYTHONIOENCODING": "latin-1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert [json.loads(line)["name"] for line in result.stdout.splitlines()] == [
        b["name"] for b in beers
    ]


def test_predict_names_the_ids_it_cannot_find(trained_dir: Path, split_catalogue):
    _, unseen_file = split_catalogue
    result = brewops_in_process(
        "predict", "--model", str(trained_dir), "--catalog", str(unseen_file),
        "--id", "1", "--id", "99992", "--id", "88889",
    )  # fmt: skip
    assert result.exit_code != 0
    # in numeric order (these two are not, as a set of ints)
    assert "no beer with id 88889, 99992 in" in result.output


def test_predict_of_one_id_refuses_a_catalogue_with_a_bad_entry_elsewhere(
    trained_dir: Path, catalog_beers, tmp_path: Path
):
    # the file is the user's to mend: predicting beer 1 from it does not make it a catalogue
    catalogue = tmp_path / "newer.json"
    catalogue.write_text(json.dumps([*catalog_beers[:5], {"name": "No Id"}]), encoding="utf-8")
    every = brewops_in_process("predict", "--model", str(trained_dir), "--catalog", str(catalogue))
    one = brewops_in_process(
        "predict", "--model", str(trained_dir), "--catalog", str(catalogue), "--id", "1"
    )
    assert (one.exit_code, one.stdout) == (1, "")
    assert one.stderr == every.stderr
    assert 'entries without one: 1 of 6 (entry 6 ("No Id"): no id)' in one.stderr


def test_predict_refuses_an_empty_catalogue(trained_dir: Path, tmp_path: Path):
    # as evaluate does: no line and status 0 would pass for every beer predicted
    empty = tmp_path / "empty.json"
    empty.write_text("[]", encoding="utf-8")
    result = brewops("predict", "--model", str(trained_dir), "--catalog", str(empty))
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == f"Error: {empty} holds no beer to predict: it is []\n"


def test_evaluate_refuses_a_folder_that_is_not_a_model(tmp_path: Path, split_catalogue):
    _, unseen_file = split_catalogue
    result = brewops_in_process("evaluate", "--model", str(tmp_path), "--catalog", str(unseen_file))
    assert result.exit_code != 0
    assert "not a model version folder" in result.output


def test_predict_with_a_model_folder_that_does_not_exist_says_how_to_make_one(
    tmp_path: Path, catalog_path: Path
):
    result = brewops_in_process(
        "predict", "--model", str(tmp_path / "nowhere"), "--catalog", str(catalog_path)
    )
    assert result.exit_code != 0
    assert "nowhere does not exist" in result.output
    assert "brewops model train --catalog FILE --out DIR" in result.output

    a_file = tmp_path / "model.joblib"
    a_file.write_bytes(b"")
    result = brewops_in_process("predict", "--model", str(a_file), "--catalog", str(catalog_path))
    assert "model.joblib is a file, not a folder" in result.output


def test_evaluate_refuses_a_catalogue_without_ibu(trained_dir: Path, tmp_path: Path, catalog_beers):
    no_ibu = tmp_path / "no_ibu.json"
    no_ibu.write_text(json.dumps([{**catalog_beers[0], "ibu": None}]), encoding="utf-8")
    result = brewops_in_process("evaluate", "--model", str(trained_dir), "--catalog", str(no_ibu))
    assert result.exit_code != 0
    assert "no beer with an IBU" in result.output
    assert f"1 beer(s) without a numeric IBU (id {catalog_beers[0]['id']})" in result.output

    empty = tmp_path / "empty.json"
    empty.write_text("[]", encoding="utf-8")
    result = brewops_in_process("evaluate", "--model", str(trained_dir), "--catalog", str(empty))
    assert result.exit_code == 1
    assert result.output == f"Error: {empty} holds no beer to evaluate on: it is []\n"


def test_evaluate_counts_the_beers_it_cannot_score(
    trained_dir: Path, tmp_path: Path, catalog_beers
):
    """Every beer of the file is scored or counted as left out, with the value that was
    not an IBU: none is dropped without a word."""
    scored = [b for b in catalog_beers if b["ibu"] is not None][:20]
    not_measured, mistyped, ranged = (
        {**beer, "ibu": ibu}
        for beer, ibu in zip(catalog_beers[200:203], (None, "n/a", "30-40"), strict=True)
    )
    catalogue = tmp_path / "newer.json"
    catalogue.write_text(json.dumps([*scored, not_measured, mistyped, ranged]), encoding="utf-8")

    result = brewops_in_process(
        "evaluate", "--model", str(trained_dir), "--catalog", str(catalogue)
    )

    assert result.exit_code == 0, result.output
    last = json.loads(result.stdout.strip().splitlines()[-1])
    assert (last["n"], last["without_ibu"], last["duplicates_dropped"]) == (20, 3, 0)
    assert (
        f"left out: 3 beer(s) without a numeric IBU (id {not_measured['id']}, "
        f'{mistyped["id"]} "n/a", {ranged["id"]} "30-40")\n'
    ) in result.stdout


@pytest.mark.parametrize(
    ("beers", "message"),
    [
        (lambda beers: [], "no beer in the catalogue has an IBU"),
        (lambda beers: [{**b, "ibu": None} for b in beers[:30]], "no beer in the catalogue"),
        (lambda beers: [b for b in beers if (b["ibu"] or 99) <= 30][:40], "at least two bands"),
        (
            lambda beers: (
                [b for b in beers if (b["ibu"] or 99) <= 30][:30]
                + [b for b in beers if 30 < (b["ibu"] or 0) <= 50][:4]
            ),
            "(30, 50] has 4, and each band needs at least 5",
        ),
    ],
)
def test_train_refuses_data_it_cannot_train_on_in_one_line(
    beers, message, catalog_beers, tmp_path: Path
):
    catalogue = tmp_path / "catalogue.json"
    catalogue.write_text(json.dumps(beers(catalog_beers)), encoding="utf-8")
    result = brewops_in_process(
        "train", "--catalog", str(catalogue), "--out", str(tmp_path / "out"), "--no-progress"
    )
    assert result.exit_code == 1, result.output
    (line,) = result.output.strip().splitlines()
    assert line.startswith("Error: ") and message in line
    assert not (tmp_path / "out").exists()


def test_train_with_one_band_is_one_line_from_the_real_command(catalog_beers, tmp_path: Path):
    """It used to end in a traceback from the joblib workers."""
    catalogue = tmp_path / "one_band.json"
    catalogue.write_text(
        json.dumps([b for b in catalog_beers if (b["ibu"] or 99) <= 30][:40]), encoding="utf-8"
    )
    result = brewops("train", "--catalog", str(catalogue), "--out", str(tmp_path / "out"))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "Error: all 40 beers with an IBU are in the band (-1, 30]: the model needs beers of "
        "at least two bands. Add beers of other bitterness."
    ]


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--repeats", "0", "0 is not in the range x>=1"),
        ("--folds", "1", "1 is not in the range x>=2"),
        ("--jobs", "0", "0 would run no fold"),
        ("--seed", "-1", "-1 is not in the range 0<=x<=4294967295"),
    ],
)
def test_train_refuses_options_that_run_nothing(option, value, message, catalog_path):
    result = brewops_in_process(
        "train", "--catalog", str(catalog_path), "--out", "unused", option, value
    )
    assert result.exit_code == 2
    assert message in result.output


@pytest.mark.parametrize("mode", [0o644, 0o755], ids=["file", "executable-file"])
def test_train_refuses_a_folder_it_cannot_write_before_training(
    catalog_path, tmp_path: Path, monkeypatch, mode
):
    monkeypatch.setattr(training, "train", lambda *a, **kw: pytest.fail("trained"))
    (tmp_path / "build").write_text("a file, not a folder", encoding="utf-8")
    (tmp_path / "build").chmod(mode)  # one that may be written and "searched" is no folder either

    result = brewops_in_process(
        "train", "--catalog", str(catalog_path), "--out", str(tmp_path / "build" / "ibu")
    )

    assert result.exit_code == 2
    assert f"{tmp_path / 'build'} is not a folder you can write in" in result.output


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write in any folder")
def test_train_refuses_a_read_only_folder_before_training(
    catalog_path, tmp_path: Path, monkeypatch
):
    monkeypatch.setattr(training, "train", lambda *a, **kw: pytest.fail("trained"))
    (tmp_path / "build").mkdir(mode=0o555)

    result = brewops_in_process(
        "train", "--catalog", str(catalog_path), "--out", str(tmp_path / "build" / "ibu")
    )

    assert result.exit_code == 2
    assert f"{tmp_path / 'build'} is not a folder you can write in" in result.output


def test_train_refuses_a_folder_that_takes_no_new_file_before_training(
    catalog_path, tmp_path: Path, monkeypatch
):
    import tempfile

    monkeypatch.setattr(training, "train", lambda *a, **kw: pytest.fail("trained"))

    def refused(*args, **kwargs):  # as /proc answers root, whom access() lets write there
        raise FileNotFoundError(2, "No such file or directory")

    monkeypatch.setattr(tempfile, "TemporaryFile", refused)

    result = brewops_in_process(
        "train", "--catalog", str(catalog_path), "--out", str(tmp_path / "ibu")
    )

    assert result.exit_code == 2
    assert f"{tmp_path} is not a folder you can write in" in result.output


def test_train_help_does_not_promise_five_folds():
    result = brewops_in_process("train", "--help")
    assert result.exit_code == 0
    assert "5-fold" not in result.output
    assert "Repeats of the cross-validation" in result.output


def test_a_repeated_id_is_deduplicated_and_reported(
    trained_dir: Path, catalog_beers, tmp_path: Path
):
    beers = [b for b in catalog_beers if b["ibu"] is not None][:20]
    # the last record of id 1 wins: as the protocol says, and as the model card records
    # the same beer, its name written another way: not another beer
    renamed = f"{beers[0]['name'].upper()}!"
    repeated = [{**beers[0], "ibu": 1, "name": renamed}, *beers, {**beers[1], "ibu": 2}]
    catalogue = tmp_path / "repeated.json"
    catalogue.write_text(json.dumps(repeated), encoding="utf-8")
    result = brewops_in_process(
        "evaluate", "--model", str(trained_dir), "--catalog", str(catalogue)
    )
    assert result.exit_code == 0, result.output
    assert result.stderr.strip().splitlines() == [
        f"repeated.json: dropped 2 duplicate record(s) of id {beers[0]['id']}, {beers[1]['id']}"
        " (the last record of each id is used)"
    ]
    last = json.loads(result.stdout.strip().splitlines()[-1])
    assert (last["n"], last["duplicates_dropped"]) == (20, 2)
    result = brewops_in_process("predict", "--model", str(trained_dir), "--catalog", str(catalogue))
    predictions = [json.loads(line) for line in result.stdout.strip().splitlines()]
    assert [p["ibu"] for p in predictions[:2]] == [beers[0]["ibu"], 2]


def test_an_id_given_to_two_different_beers_says_which_beer_is_left_out(
    trained_dir: Path, catalog_beers, tmp_path: Path
):
    # newer beers numbered on from the v2 catalogue, and three renumbered v3 records among
    # them: all three are named, with nothing more to hint at
    newer = [{**b, "id": 400 + i} for i, b in enumerate(catalog_beers[:10])]
    v3_records = [{**to_v3_shape(b), "id": 403 + i} for i, b in enumerate(catalog_beers[10:13])]
    catalogue = tmp_path / "newer.json"
    catalogue.write_text(json.dumps([*newer, *v3_records]), encoding="utf-8")

    result = brewops_in_process(
        "evaluate", "--model", str(trained_dir), "--catalog", str(catalogue)
    )

    assert result.exit_code == 0, result.output
    named = "; ".join(
        f'id {403 + i} "{newer[3 + i]["name"]}", not "{catalog_beers[10 + i]["name"]}"'
        for i in range(3)
    )
    assert result.stderr.strip().splitlines() == [
        "newer.json: dropped 3 duplicate record(s) of id 403, 404, 405 (the last record of each"
        f" id is used); 3 of them is another beer than the one kept ({named}): give each beer"
        " its own id to use it"
    ]


@pytest.mark.parametrize(("repeated", "more"), [(10, ""), (12, ", …")])
def test_many_repeated_ids_are_reported_on_one_short_line(
    catalog_beers, tmp_path: Path, repeated, more
):
    beers = [b for b in catalog_beers if (b["ibu"] or 99) <= 30][:repeated]
    catalogue = tmp_path / "repeated.json"
    catalogue.write_text(json.dumps(beers + beers), encoding="utf-8")
    result = brewops_in_process(
        "train", "--catalog", str(catalogue), "--out", str(tmp_path / "out"), "--no-progress"
    )
    first_ten = ", ".join(str(b["id"]) for b in beers[:10])
    assert result.stderr.strip().splitlines()[0] == (
        f"repeated.json: dropped {repeated} duplicate record(s) of id {first_ten}{more}"
        " (the last record of each id is used)"
    )


def test_evaluate_on_a_single_beer_still_ends_in_strict_json(
    trained_dir: Path, catalog_beers, tmp_path: Path
):
    # R² of one beer is undefined (NaN), which strict JSON readers refuse: it prints null
    catalogue = tmp_path / "one.json"
    catalogue.write_text(
        json.dumps([b for b in catalog_beers if b["ibu"] is not None][:1]), encoding="utf-8"
    )

    result = brewops_in_process(
        "evaluate", "--model", str(trained_dir), "--catalog", str(catalogue)
    )

    assert result.exit_code == 0, result.output
    last = json.loads(result.stdout.strip().splitlines()[-1], parse_constant=pytest.fail)
    assert last["n"] == 1 and last["r2"] is None


def test_a_catalogue_that_is_not_json_is_one_line_naming_it(tmp_path: Path):
    broken = tmp_path / "broken.json"
    broken.write_text("{not json", encoding="utf-8")
    result = brewops_in_process(
        "train", "--catalog", str(broken), "--out", str(tmp_path / "out"), "--no-progress"
    )
    assert result.exit_code == 1, result.output
    (line,) = result.output.strip().splitlines()
    assert line.startswith("Error: ") and "broken.json" in line
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------
# The JSON Schemas of what scripts read: checked against what the commands really write


def last_json_line(result) -> dict:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1], parse_constant=pytest.fail)


def json_lines(result) -> list[dict]:
    assert result.exit_code == 0, result.output
    return [json.loads(line, parse_constant=pytest.fail) for line in result.stdout.splitlines()]


@pytest.fixture(scope="module")
def older_model(trained_dir: Path, tmp_path_factory) -> Path:
    """A model whose card predates the beer names and the training ranges."""
    older = tmp_path_factory.mktemp("older") / "ibu"
    shutil.copytree(trained_dir, older)
    card = card_of(older)
    for key in ("beer_keys", "feature_ranges", "hop_varieties"):
        del card["data"][key]
    (older / registry.CARD_FILE).write_text(json.dumps(card), encoding="utf-8")
    return older


def test_the_schemas_name_the_models_bands_and_headline_figures():
    prediction, evaluation = model_schema("prediction"), model_schema("evaluation")
    assert prediction["$defs"]["band"]["enum"] == list(bands.LABELS)
    assert prediction["properties"]["probabilities"]["required"] == list(bands.LABELS)
    assert evaluation["$defs"]["per_class"]["required"] == list(bands.LABELS)
    assert evaluation["$defs"]["headline"]["required"] == list(HEADLINE)
    assert evaluation["$defs"]["probability_figures"]["required"] == list(PROBABILITY_FIGURES)


def test_the_files_train_writes_follow_their_schemas(trained_dir: Path):
    metrics = json.loads((trained_dir / registry.METRICS_FILE).read_text(encoding="utf-8"))
    assert schema_errors("metrics", metrics) == []
    assert schema_errors("model_card", card_of(trained_dir)) == []


def test_the_files_of_a_version_that_has_no_tinseth_formula_follow_their_schemas(
    trained_dir: Path,
):
    # the versions `model versions` lists include those registered before it was scored
    metrics = json.loads((trained_dir / registry.METRICS_FILE).read_text(encoding="utf-8"))
    card = card_of(trained_dir)
    for figures in (metrics, metrics["time_split"], card["metrics"]):
        del figures["baselines"]["tinseth_formula"]

    assert schema_errors("metrics", metrics) == []
    assert schema_errors("model_card", card) == []


def test_the_files_of_a_version_trained_before_the_intervals_follow_their_schemas(
    trained_dir: Path,
):
    metrics = json.loads((trained_dir / registry.METRICS_FILE).read_text(encoding="utf-8"))
    card = card_of(trained_dir)
    del metrics["cv"]["intervals"], metrics["time_split"]["intervals"], card["metrics"]["intervals"]

    assert schema_errors("metrics", metrics) == []
    assert schema_errors("model_card", card) == []


def test_the_lines_of_predict_follow_their_schema(
    trained_dir: Path, older_model: Path, split_catalogue, tmp_path: Path
):
    train_file, unseen_file = split_catalogue
    # new beers (some outside the training ranges), trained ones, one with an IBU as text
    beers = json.loads(unseen_file.read_text(encoding="utf-8"))[:40] + [
        {**b, "id": 1000 + i}
        for i, b in enumerate(json.loads(train_file.read_text(encoding="utf-8"))[:5])
    ]
    beers[0] = {**beers[0], "ibu": "n/a"}
    catalogue = tmp_path / "mixed.json"
    catalogue.write_text(json.dumps(beers), encoding="utf-8")

    for folder in (trained_dir, older_model):
        lines = json_lines(
            brewops_in_process("predict", "--model", str(folder), "--catalog", str(catalogue))
        )
        assert len(lines) == len(beers)
        assert [error for line in lines for error in schema_errors("prediction", line)] == []
    assert {line["seen_in_training"] for line in lines} == {None}  # the older model's


def test_the_last_line_of_evaluate_follows_its_schema(
    trained_dir: Path, older_model: Path, split_catalogue, catalog_beers, tmp_path: Path
):
    train_file, unseen_file = split_catalogue
    one_beer = tmp_path / "one.json"
    one_beer.write_text(
        json.dumps([b for b in catalog_beers if b["ibu"] is not None][:1]), encoding="utf-8"
    )
    runs = [
        (trained_dir, unseen_file),  # new beers: `unseen`, and some outside the ranges
        (trained_dir, train_file),  # all trained on: `unseen` null
        (trained_dir, one_beer),  # R² of one beer: null
        (older_model, unseen_file),  # nothing told apart, nothing checked: nulls
    ]
    for folder, catalogue in runs:
        last = last_json_line(
            brewops_in_process("evaluate", "--model", str(folder), "--catalog", str(catalogue))
        )
        assert schema_errors("evaluation", last) == [], (folder, catalogue)


def test_the_schemas_fail_an_output_with_a_renamed_key_or_another_type(
    trained_dir: Path, split_catalogue
):
    _, unseen_file = split_catalogue
    args = ["--model", str(trained_dir), "--catalog", str(unseen_file)]
    prediction = json_lines(brewops_in_process("predict", *args, "--id", "1"))[0]
    evaluation = last_json_line(brewops_in_process("evaluate", *args))
    metrics = json.loads((trained_dir / registry.METRICS_FILE).read_text(encoding="utf-8"))
    card = card_of(trained_dir)

    cases = [
        ("prediction", prediction, ("predicted_ibu",), "ibu_predicted"),
        ("prediction", prediction, ("probabilities", "(70, inf)"), "(70, 1000]"),
        ("prediction", prediction, ("outside_training", "new_hops"), "hops_new"),
        ("evaluation", evaluation, ("mae",), "mean_absolute_error"),
        ("evaluation", evaluation, ("unseen", "accuracy"), "acc"),
        ("evaluation", evaluation, ("outside_training", "n_new_hops"), "new_hops"),
        ("metrics", metrics, ("cv", "macro_f1_std"), "macro_f1_spread"),
        ("metrics", metrics, ("time_split", "over_seeds", "seeds"), "forest_seeds"),
        ("model_card", card, ("data", "beer_keys"), "beer_names"),
    ]
    for name, document, path, new_key in cases:
        assert schema_errors(name, renamed(document, path, new_key)), (name, path)
    retypes = [
        ("prediction", prediction, ("band_index",), "2"),
        ("prediction", prediction, ("seen_in_training",), 0),
        ("evaluation", evaluation, ("seen_in_training",), "0"),
        ("evaluation", evaluation, ("confusion_matrix",), {}),
        ("metrics", metrics, ("cv", "accuracy"), "0.6"),
        ("model_card", card, ("data", "rows_used"), 320.5),
    ]
    for name, document, path, value in retypes:
        assert schema_errors(name, retyped(document, path, value)), (name, path)


def _properties(schema) -> set[str]:
    """Every key a schema names, at any depth."""
    if isinstance(schema, dict):
        return set(schema.get("properties", {})).union(*map(_properties, schema.values()))
    if isinstance(schema, list):
        return set().union(*map(_properties, schema))
    return set()


@pytest.mark.parametrize(
    ("command", "name"), [("predict", "prediction"), ("evaluate", "evaluation")]
)
def test_the_help_names_every_key_of_the_json_and_no_other(command: str, name: str):
    schema = model_schema(name)
    # what --help shows above the options
    text = " ".join(model_group.commands[command].help.split())
    named = set(re.findall(r"`([a-z_0-9]+)`", text))
    top_level = set(schema["properties"]).union(
        *(
            schema["$defs"][part["$ref"].removeprefix("#/$defs/")]["properties"]
            for part in schema.get("allOf", [])
        )
    )
    assert top_level - named == set(), "keys written, not in --help"
    assert named - _properties(schema) == set(), "keys in --help, not written"
    assert f"`brewops schema {name}`" in text


def test_the_last_line_of_train_follows_its_schema(training_run):
    _, stdout = training_run
    last = json.loads(stdout.strip().splitlines()[-1], parse_constant=pytest.fail)
    assert schema_errors("training", last) == []
    assert schema_errors("training", renamed(last, ("version",), "model_version"))
    assert schema_errors("training", retyped(last, ("mae",), "12.5"))


def test_the_help_of_train_names_every_key_of_its_last_line():
    text = " ".join(model_group.commands["train"].help.split())
    named = set(re.findall(r"`([a-z_0-9]+)`", text))
    assert set(model_schema("training")["properties"]) <= named
    assert "`brewops schema training`" in text
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    (line,) = [line for line in readme.splitlines() if line.startswith("brewops model train")]
    assert "JSON (version, out, CV figures)" in line
