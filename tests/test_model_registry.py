"""The model registry: local version folders and round trips through S3 (a moto server)."""

from __future__ import annotations

import dataclasses
import errno
import io
import json
import os
import subprocess
import sys
import tempfile
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import boto3
import numpy as np
import pytest
from click.testing import CliRunner

from brewops import provenance
from brewops.local.state import emulator_environment
from brewops.model import features, predict, registry, train
from brewops.model.cli import model as model_group
from fixtures.json_schemas import renamed, retyped, schema_errors


@pytest.fixture
def trained(small_trained_model: train.TrainingResult) -> train.TrainingResult:
    return small_trained_model


@pytest.fixture
def bucket(emulator_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """An empty bucket in the session's emulator; the SDK pointed at it with dummy keys."""
    for name, value in emulator_environment(emulator_endpoint, "eu-west-1").items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    name = f"brewops-test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(
        Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    return name


@pytest.fixture
def registry_uri(bucket: str) -> str:
    return f"s3://{bucket}/models/ibu/"


def evaluate(location: str, catalog_path) -> Any:
    return CliRunner().invoke(
        model_group, ["evaluate", "--model", location, "--catalog", str(catalog_path)]
    )


def one_line_error(result: Any) -> str:
    """The message of a command that failed as the CLI should: one line, no traceback."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


def test_version_ids_sort_in_time_order():
    sha = "abcabcab" + "0" * 56
    earlier = registry.new_version(sha, datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC))
    later = registry.new_version("00000000", datetime(2025, 11, 2, 3, 4, 5, tzinfo=UTC))
    assert earlier == "20250102T030405Z-abcabcab"
    assert sorted([later, earlier]) == [earlier, later]
    assert registry.VERSION_PATTERN.match(earlier)
    # another time zone is written in UTC, an upper-case checksum in lower case
    paris = timezone(timedelta(hours=1))
    assert registry.new_version(sha.upper(), datetime(2025, 1, 2, 4, 4, 5, tzinfo=paris)) == earlier


def test_a_version_folder_round_trips(trained, tmp_path, catalog_beers):
    folder = registry.save(
        trained.model, trained.metrics, {**trained.card, "version": "v"}, tmp_path
    )
    assert {p.name for p in folder.iterdir()} == set(registry.VERSION_FILES)
    metrics = json.loads((folder / registry.METRICS_FILE).read_text(encoding="utf-8"))
    assert {"cv", "baselines", "time_split"} <= set(metrics)
    assert {"accuracy", "macro_f1", "mae"} <= set(metrics["cv"])
    card = json.loads((folder / registry.CARD_FILE).read_text(encoding="utf-8"))
    assert card["artifact"]["sha256"] == registry.sha256_file(folder / registry.MODEL_FILE)
    assert "## Metrics" in (folder / registry.CARD_MARKDOWN_FILE).read_text(encoding="utf-8")
    loaded = registry.load(folder)
    assert loaded.version == "v"  # from the card
    np.testing.assert_array_equal(
        loaded.model.predict_proba(catalog_beers), trained.model.predict_proba(catalog_beers)
    )


# A save killed while it writes the model file: pickling this object ends the process.
_SAVE_KILLED_MIDWAY = """
import os, sys
from brewops.model import registry

class EndsTheProcess:
    def __reduce__(self):
        os._exit(9)

registry.save([b"weights" * 100_000, EndsTheProcess()], {}, {"version": "new"}, sys.argv[1])
"""


def test_a_save_killed_midway_leaves_the_version_the_folder_held(trained, tmp_path):
    folder = registry.save(
        trained.model, trained.metrics, {**trained.card, "version": "old"}, tmp_path / "model"
    )

    killed = subprocess.run([sys.executable, "-c", _SAVE_KILLED_MIDWAY, str(folder)], check=False)

    assert killed.returncode == 9
    assert registry.load(folder).version == "old"


@pytest.mark.parametrize("moved", [1, 2, 3])
def test_a_save_that_dies_between_its_moves_never_loads_as_a_mix_of_versions(
    trained, tmp_path, monkeypatch, moved
):
    folder = registry.save(trained.model, {"r2": 0.1}, {"version": "old"}, tmp_path / "model")
    # another model file: the same bytes would match the old card
    other = dataclasses.replace(trained.model, band_labels=trained.model.band_labels[::-1])
    replace = os.replace

    def dies_after_some_moves(source: Any, destination: Any) -> None:
        if len(list(folder.glob(".partial-*/*"))) == len(registry.VERSION_FILES) - moved:
            raise OSError(errno.ENOSPC, "No space left on device")
        replace(source, destination)

    monkeypatch.setattr(os, "replace", dies_after_some_moves)
    with pytest.raises(OSError, match="No space"):
        registry.save(other, {"r2": 0.2}, {"version": "new"}, folder)
    monkeypatch.undo()

    try:
        loaded = registry.load(folder)
    except registry.RegistryError:
        return  # a model its card does not match
    assert (loaded.version, loaded.metrics) == ("old", {"r2": 0.1})


def test_a_save_on_a_full_disk_names_the_version_folder(trained, tmp_path, monkeypatch):
    import joblib

    def disk_full(*args: Any, **kwargs: Any) -> None:  # as the write to the open file fails
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(joblib, "dump", disk_full)
    folder = tmp_path / "model"
    with pytest.raises(OSError) as raised:
        registry.save(trained.model, {"r2": 0.1}, {"version": "new"}, folder)

    assert raised.value.errno == errno.ENOSPC and raised.value.filename == str(folder)
    assert list(folder.iterdir()) == []


def test_metrics_are_written_as_strict_json(trained, tmp_path):
    metrics = {
        "n": np.int64(3),
        "share": np.float32(0.5),
        "counts": np.array([1, 2]),
        "r2": float("nan"),  # the R² of one beer; strict readers refuse NaN
        "spread": np.array([np.inf, 0.25]),
        "folder": tmp_path,
    }
    folder = registry.save(trained.model, metrics, trained.card, tmp_path)
    text = (folder / registry.METRICS_FILE).read_text(encoding="utf-8")
    written = json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} written"))
    assert written == {
        "n": 3,
        "share": 0.5,
        "counts": [1, 2],
        "r2": None,
        "spread": [None, 0.25],
        "folder": str(tmp_path),
    }


def test_metrics_and_card_keep_beer_names_as_they_are_spelled(trained, tmp_path):
    named = "bräu æble"  # beer_key() keeps accented letters
    card = {**trained.card, "data": {**trained.card["data"], "beer_keys": [named]}}
    metrics = {**trained.metrics, "worst": {"name": "Bräu Æble"}}

    folder = registry.save(trained.model, metrics, card, tmp_path)

    for name, expected in ((registry.METRICS_FILE, "Bräu Æble"), (registry.CARD_FILE, named)):
        raw = (folder / name).read_bytes()
        assert expected.encode("utf-8") in raw and b"\\u00" not in raw, name
    loaded = registry.load(folder)
    assert loaded.card["data"]["beer_keys"] == [named]
    assert loaded.metrics["worst"] == {"name": "Bräu Æble"}
    # the checksums are of the model file and the beers, not of these files' bytes
    assert loaded.card["artifact"]["sha256"] == registry.sha256_file(folder / registry.MODEL_FILE)
    assert loaded.card["data"]["sha256"] == trained.card["data"]["sha256"]


def test_the_markdown_card_shows_what_the_card_records(trained, tmp_path):
    card = {**trained.card, "version": "20250102T030405Z-abcabcab"}
    folder = registry.save(trained.model, trained.metrics, card, tmp_path)
    assert "artifact" not in card  # the caller's card is left as it was
    page = (folder / registry.CARD_MARKDOWN_FILE).read_text(encoding="utf-8")
    data, metrics, split = card["data"], card["metrics"], card["metrics"]["time_split"]
    assert page.startswith(f"# Model card: {card['model']} {card['version']}\n")
    assert f"- rows used: {data['rows_used']}\n- sha256: `{data['sha256']}`" in page
    assert f"- accuracy: {metrics['cv']['accuracy']:.3f}\n" in page
    for name, figures in metrics["baselines"].items():
        assert f"- {name}: accuracy {figures['accuracy']:.3f}, macro_f1" in page
    assert f"- n_test {split['n_test']}, accuracy {split['accuracy']:.3f}, macro_f1" in page
    assert f"scikit-learn {card['library_versions']['scikit-learn']}" in page
    # the code that trained it: this checkout's commit, none in a download without .git
    assert card["code"] == provenance.code_version()
    code = card["code"]
    changes = ", with changes not committed" if code["modified"] else ""
    shown = f"commit `{code['commit']}`{changes}" if code["commit"] else "no git commit recorded"
    assert f"## Code\nbrewops {code['brewops']}, {shown}" in page


@pytest.mark.parametrize(
    ("code", "shown"),
    [
        (
            {"brewops": "0.1.0", "commit": "a" * 40, "modified": False},
            f"brewops 0.1.0, commit `{'a' * 40}`",
        ),
        (
            {"brewops": "0.1.0", "commit": None, "modified": None},
            "brewops 0.1.0, no git commit recorded (not run from a git checkout git could read)",
        ),
    ],
)
def test_the_card_page_names_the_code_when_the_card_records_it(trained, code, shown):
    assert shown in registry.card_markdown({**trained.card, "code": code}).splitlines()
    older = {key: value for key, value in trained.card.items() if key != "code"}
    assert "## Code" not in registry.card_markdown(older)


def test_a_tampered_model_file_is_not_loaded(trained, tmp_path):
    folder = registry.save(trained.model, trained.metrics, trained.card, tmp_path)
    with open(folder / registry.MODEL_FILE, "ab") as handle:
        handle.write(b"\0")
    actual = registry.sha256_file(folder / registry.MODEL_FILE)
    recorded = json.loads((folder / registry.CARD_FILE).read_text(encoding="utf-8"))["artifact"][
        "sha256"
    ]
    with pytest.raises(
        registry.RegistryError, match=f"has sha256 {actual}, its card says {recorded}"
    ) as error:
        registry.load(folder)
    assert "brewops model train" in str(error.value)


@pytest.mark.parametrize("artifact", [None, "model.joblib", {"file": "model.joblib"}])
def test_a_card_without_the_model_checksum_is_not_loaded(trained, tmp_path, artifact):
    folder = registry.save(trained.model, trained.metrics, trained.card, tmp_path)
    card = json.loads((folder / registry.CARD_FILE).read_text(encoding="utf-8"))
    card["artifact"] = artifact
    (folder / registry.CARD_FILE).write_text(json.dumps(card), encoding="utf-8")
    with pytest.raises(registry.RegistryError, match="its card says None: not loading it"):
        registry.load(folder)


def test_an_incomplete_folder_is_refused(tmp_path):
    with pytest.raises(registry.RegistryError, match="missing"):
        registry.load(tmp_path)


@pytest.mark.parametrize("name", [registry.MODEL_FILE, registry.METRICS_FILE, registry.CARD_FILE])
def test_a_folder_without_one_of_its_files_is_refused_naming_it(trained, tmp_path, name):
    folder = registry.save(trained.model, trained.metrics, trained.card, tmp_path)
    (folder / name).unlink()
    with pytest.raises(
        registry.RegistryError, match=f"not a model version folder: missing {name}$"
    ):
        registry.load(folder)


def test_the_markdown_card_is_not_needed_to_load(trained, tmp_path):
    folder = registry.save(trained.model, trained.metrics, trained.card, tmp_path)
    (folder / registry.CARD_MARKDOWN_FILE).unlink()
    assert isinstance(registry.load(folder).model, type(trained.model))


DEEPLY_NESTED = "[" * 100_000 + "]" * 100_000  # deeper than Python's JSON reader goes


def _model_file_replaced(folder, content: bytes) -> None:
    """Another model file, its card updated to match: it passes the checksum."""
    (folder / registry.MODEL_FILE).write_bytes(content)
    card = json.loads((folder / registry.CARD_FILE).read_text(encoding="utf-8"))
    card["artifact"]["sha256"] = registry.sha256_file(folder / registry.MODEL_FILE)
    (folder / registry.CARD_FILE).write_text(json.dumps(card), encoding="utf-8")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (
            lambda f: (f / registry.CARD_FILE).write_text("{not json", encoding="utf-8"),
            "is not readable JSON",
        ),
        (
            lambda f: (f / registry.CARD_FILE).write_text("[]", encoding="utf-8"),
            "holds a JSON list, not an object",
        ),
        (lambda f: (f / registry.METRICS_FILE).write_bytes(b"\xff{"), "is not readable JSON"),
        (
            lambda f: (f / registry.CARD_FILE).write_text(DEEPLY_NESTED, encoding="utf-8"),
            "is not readable JSON",
        ),
        (
            lambda f: (f / registry.METRICS_FILE).write_text(
                "[" + "7" * 5000 + "]", encoding="utf-8"
            ),
            "readable JSON",
        ),
        (lambda f: _model_file_replaced(f, b"not a pickle"), "does not load"),
        (lambda f: _model_file_replaced(f, b""), "does not load"),
    ],
)
def test_a_damaged_version_folder_is_refused_with_what_to_do(
    trained, tmp_path, catalog_path, damage, message
):
    folder = registry.save(trained.model, trained.metrics, trained.card, tmp_path)
    damage(folder)
    with pytest.raises(registry.RegistryError, match=message) as error:
        registry.load(folder)
    assert "brewops model train" in str(error.value)
    line = one_line_error(evaluate(str(folder), catalog_path))
    assert message.split()[-1] in line


def test_a_model_file_that_does_not_load_names_the_library_versions(trained, tmp_path):
    import sklearn

    card = {**trained.card, "library_versions": {**trained.card["library_versions"]}}
    card["library_versions"]["scikit-learn"] = "0.20.0"
    folder = registry.save(trained.model, trained.metrics, card, tmp_path)
    # a pickle of a class this scikit-learn does not have, as another version's may hold
    _model_file_replaced(folder, b"csklearn.ensemble._gone\nOldForest\n)\x81.")
    with pytest.raises(registry.RegistryError) as error:
        registry.load(folder)
    message = str(error.value)
    assert "No module named 'sklearn.ensemble._gone'" in message
    assert f"scikit-learn 0.20.0 (installed: {sklearn.__version__})" in message
    assert "install those versions, or train the model again" in message
    assert "numpy" not in message  # only the versions that differ


@pytest.mark.parametrize(
    ("library_versions", "hint"),
    [
        # a library the card names that is not installed here
        ({"hopslib": "1.0"}, "saved with hopslib 1.0 (installed: none): install those versions"),
        # a card that does not say (an older model)
        (None, "). Train the model again with `brewops model train`."),
    ],
)
def test_what_to_do_about_a_model_file_that_does_not_load(
    trained, tmp_path, library_versions, hint
):
    card = {**trained.card, "library_versions": library_versions}
    folder = registry.save(trained.model, trained.metrics, card, tmp_path)
    _model_file_replaced(folder, b"not a pickle")
    with pytest.raises(registry.RegistryError) as error:
        registry.load(folder)
    assert hint in str(error.value)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"band_labels": ("(-1, 40]", "(40, 70]", "(70, inf)")},
            "was trained with bands (-1, 40], (40, 70], (70, inf), where this code has "
            "(-1, 30], (30, 50], (50, 70], (70, inf)",
        ),
        (
            {"band_labels": ("(-1, 20]", "(20, 35]", "(35, 50]", "(50, 70]", "(70, inf)")},
            "where this code has (-1, 30], (30, 50], (50, 70], (70, inf)",
        ),
        (
            {"feature_columns": (*features.FEATURE_COLUMNS[:-1], "share_citra")},
            f"{len(features.FEATURE_COLUMNS)} features, where this code has "
            f"{len(features.FEATURE_COLUMNS)} (this code adds {features.FEATURE_COLUMNS[-1]}; "
            "this code lacks share_citra)",
        ),
        (
            # as many bands as this code's, at other edges: the classes would be misnamed
            {"band_labels": ("(-1, 25]", "(25, 50]", "(50, 70]", "(70, inf)")},
            "was trained with bands (-1, 25], (25, 50], (50, 70], (70, inf), where",
        ),
        (
            # the same features in another order: each column would be read as another
            {"feature_columns": tuple(reversed(features.FEATURE_COLUMNS))},
            f"{len(features.FEATURE_COLUMNS)} features, where this code has "
            f"{len(features.FEATURE_COLUMNS)} (in another order)",
        ),
        (
            {
                "band_labels": ("(-1, 40]", "(40, 70]", "(70, inf)"),
                "feature_columns": tuple(reversed(features.FEATURE_COLUMNS)),
            },
            f"(70, inf); and with {len(features.FEATURE_COLUMNS)} features, where this code has",
        ),
    ],
    ids=[
        "three-bands",
        "five-bands",
        "other-features",
        "four-other-bands",
        "features-reordered",
        "bands-and-features",
    ],
)
def test_a_model_trained_with_other_bands_or_features_is_refused_saying_so(
    trained, tmp_path, changes, message
):
    # GIVEN a model saved by code whose bands or features differ from this code's
    other = dataclasses.replace(trained.model, **changes)
    folder = registry.save(other, trained.metrics, trained.card, tmp_path)
    # WHEN it is loaded THEN it is refused, not used to label beers with the wrong bands
    with pytest.raises(registry.RegistryError) as error:
        registry.load(folder)
    assert message in str(error.value)
    assert "Train the model again with `brewops model train`" in str(error.value)


def test_predict_with_a_model_of_other_bands_is_one_line(trained, tmp_path, catalog_path):
    other = dataclasses.replace(trained.model, band_labels=("(-1, 40]", "(40, 70]", "(70, inf)"))
    folder = registry.save(other, trained.metrics, trained.card, tmp_path)
    result = CliRunner().invoke(
        model_group,
        ["predict", "--model", str(folder), "--catalog", str(catalog_path), "--id", "1"],
    )
    assert "was trained with bands (-1, 40]" in one_line_error(result)


def test_a_pickle_that_is_not_a_model_is_refused(trained, tmp_path):
    import joblib

    folder = registry.save(trained.model, trained.metrics, trained.card, tmp_path)
    joblib.dump({"not": "a model"}, folder / registry.MODEL_FILE)
    _model_file_replaced(folder, (folder / registry.MODEL_FILE).read_bytes())
    with pytest.raises(registry.RegistryError, match="holds a dict, not an IBU model"):
        registry.load(folder)


def test_the_card_page_gives_the_intervals_of_the_figures_and_of_the_margins(trained):
    intervals = trained.card["metrics"]["intervals"]
    low, high = intervals["time_split"]["accuracy"]
    minus_low, minus_high = intervals["cv_model_minus"]["tinseth_formula"]["mae"]
    lines = registry.card_markdown(trained.card).splitlines()

    assert (
        "## How sure: 95% intervals (bootstrap over the beers scored, one recipe's beers together)"
        in lines
    )
    shown = [line for line in lines if line.startswith("- newest fifth: ")]
    assert shown[0].startswith(f"- newest fifth: accuracy [{low:.3f}, {high:.3f}], macro_f1 [")
    assert any(
        line.startswith("  - model minus tinseth_formula: accuracy [")
        and line.endswith(f"mae [{minus_low:.3f}, {minus_high:.3f}]")
        for line in lines
    )
    older = {**trained.card, "metrics": {**trained.card["metrics"]}}
    del older["metrics"]["intervals"]
    assert "How sure" not in registry.card_markdown(older)


@pytest.mark.parametrize(
    ("folds", "heading"),
    [
        ({"n_splits": 3, "n_repeats": 1}, "## Metrics (stratified 3-fold CV, 1 repeat)\n"),
        ({"n_splits": 5, "n_repeats": 5}, "## Metrics (stratified 5-fold CV, 5 repeats)\n"),
        (None, "## Metrics (stratified k-fold CV)\n"),  # a card without its protocol
    ],
)
def test_the_card_names_the_folds_and_repeats_the_protocol_used(trained, folds, heading):
    protocol = None if folds is None else {**trained.card["protocol"], **folds}
    page = registry.card_markdown({**trained.card, "protocol": protocol})
    assert heading in page
    assert page.count("-fold") == 1


def test_the_card_page_gives_the_beers_of_each_band_when_the_card_has_them(trained):
    per_band = trained.card["data"]["beers_per_band"]
    assert sum(per_band.values()) == trained.card["data"]["rows_used"]
    line = "- beers per band: " + ", ".join(f"{band} {n}" for band, n in per_band.items())

    assert line in registry.card_markdown(trained.card).splitlines()
    older = {
        **trained.card,
        "data": {k: v for k, v in trained.card["data"].items() if k != "beers_per_band"},
    }
    assert "beers per band" not in registry.card_markdown(older)


@pytest.mark.parametrize(
    ("uri", "parts"),
    [
        ("s3://bucket/models/ibu/", ("bucket", "models/ibu/")),
        ("s3://bucket/models/ibu", ("bucket", "models/ibu/")),
        ("s3://bucket/models/ibu//", ("bucket", "models/ibu/")),
        ("s3://bucket/", ("bucket", "")),
        ("s3://bucket", ("bucket", "")),
    ],
)
def test_a_registry_uri_is_a_bucket_and_a_folder_prefix(uri, parts):
    assert registry.split_uri(uri) == parts


@pytest.mark.parametrize("uri", ["bucket/models/ibu/", "https://bucket/models/ibu/", "s3:///x"])
def test_a_location_that_is_not_an_s3_uri_is_refused(uri):
    with pytest.raises(ValueError, match="not an s3:// URI"):
        registry.split_uri(uri)


@pytest.mark.parametrize(
    "version", ["latest", "", "20250101T000000Z-ABCDEF12", "../x", "20250101T000000Z-abcdef12\n"]
)
def test_a_malformed_version_is_refused_before_any_s3_call_or_folder(tmp_path, version):
    untouchable = object()  # any S3 call through it would fail otherwise
    with pytest.raises(ValueError, match="does not look like"):
        registry.publish(tmp_path, "s3://bucket/models/ibu/", version, client=untouchable)
    with pytest.raises(ValueError, match="does not look like"):
        registry.delete_version("s3://bucket/models/ibu/", version, client=untouchable)
    if version:  # "" asks for the latest version, which only S3 knows
        # it would name the temporary folder: "../x" points it elsewhere
        with pytest.raises(ValueError, match="does not look like"):
            registry.download("s3://bucket/models/ibu/", version, client=untouchable)
        with pytest.raises(ValueError, match="does not look like"):
            registry.load_version("s3://bucket/models/ibu/", version, client=untouchable)
    assert list(tmp_path.iterdir()) == []


def test_a_download_that_finds_the_disk_full_names_the_file_it_was_writing(tmp_path):
    class FullDisk:
        def download_file(self, bucket: str, key: str, filename: str) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")  # as s3transfer raises it

    version = "20250101T000000Z-abcdef12"
    with pytest.raises(OSError) as raised:
        registry.download("s3://bucket/models/ibu/", version, dest=tmp_path, client=FullDisk())

    assert raised.value.errno == errno.ENOSPC
    assert raised.value.filename == str(tmp_path / registry.MODEL_FILE)


class _PagedS3:
    """A stand-in S3 client: listings in the given pages (S3 returns at most 1000 keys a
    page); it records the listing prefixes, deletions and uploads asked of it."""

    def __init__(self, *pages: list[str]):
        self.pages, self.prefixes, self.deleted, self.uploaded = pages, [], [], []

    def get_paginator(self, operation: str) -> Any:
        assert operation == "list_objects_v2"
        return self

    def paginate(self, Bucket: str, Prefix: str) -> list[dict]:
        self.prefixes.append(Prefix)
        return [{"Contents": [{"Key": key} for key in page]} if page else {} for page in self.pages]

    def delete_objects(self, Bucket: str, Delete: dict) -> dict:
        self.deleted.append([item["Key"] for item in Delete["Objects"]])
        return {}  # Quiet: only the keys S3 refused are answered

    def put_object(
        self, Bucket: str, Key: str, Body: Any, IfNoneMatch: str, Metadata: dict
    ) -> dict:
        assert IfNoneMatch == "*"  # a version is never overwritten
        self.uploaded.append(f"s3://{Bucket}/{Key}")
        return {}


V1, V2 = "20250101T000000Z-abcdef12", "20250601T000000Z-abcdef12"


class _FilesS3(_PagedS3):
    """A stand-in S3 client holding these objects, listed in one page."""

    def __init__(self, files: dict[str, bytes]):
        super().__init__(list(files))
        self.files = files

    def get_object(self, Bucket: str, Key: str) -> dict:
        return {"Body": io.BytesIO(self.files[Key])}


def test_a_version_nested_too_deeply_or_with_a_figure_beyond_a_float_is_listed_as_such():
    deep, huge = "20250101T000000Z-abcdef12", "20250102T000000Z-abcdef12"
    card = json.dumps({"trained_at": "2025-01-01T00:00:00Z"}).encode()
    huge_metrics = {"data": {"rows_used": 3, "sha256": "ab"}, "cv": {"accuracy": 10**400}}
    s3 = _FilesS3(
        {
            f"models/ibu/{deep}/{registry.MODEL_FILE}": b"weights",
            f"models/ibu/{deep}/{registry.METRICS_FILE}": DEEPLY_NESTED.encode(),
            f"models/ibu/{deep}/{registry.CARD_FILE}": card,
            f"models/ibu/{huge}/{registry.MODEL_FILE}": b"weights",
            f"models/ibu/{huge}/{registry.METRICS_FILE}": json.dumps(huge_metrics).encode(),
            f"models/ibu/{huge}/{registry.CARD_FILE}": card,
        }
    )
    listed = registry.describe_versions("s3://bucket/models/ibu/", client=s3).versions
    assert [summary.version for summary in listed] == [deep, huge]
    assert listed[0].problems[:2] == [
        "metrics.json is not readable JSON (nested too deeply)",
        "figures from model_card.json",
    ]
    assert (listed[1].rows_used, listed[1].cv_accuracy) == (3, None)
    assert listed[1].problems == [
        "no cv.accuracy, cv.macro_f1, cv.mae, time_split.accuracy in metrics.json"
    ]


def test_versions_are_listed_oldest_first_from_every_page_of_the_listing():
    versions = [f"2025010{day}T000000Z-abcdef12" for day in range(1, 7)]
    card = registry.CARD_FILE
    s3 = _PagedS3(
        [f"models/ibu/{v}/{card}" for v in versions[:2:-1]] + [f"models/ibu/{V1}/model.joblib"],
        [],
        [
            *(f"models/ibu/{v}/{card}" for v in versions[2::-1]),
            f"models/ibu/old-model/{card}",  # not a version folder
            f"models/ibu/{versions[0]}/backup/{card}",
        ],
    )
    assert registry.list_versions("s3://bucket/models/ibu", client=s3) == versions
    assert s3.prefixes == ["models/ibu/"]


def test_a_version_not_in_the_registry_is_refused_naming_the_five_latest():
    versions = [f"2025010{day}T000000Z-abcdef12" for day in range(1, 8)]
    s3 = _PagedS3([f"models/ibu/{v}/{registry.CARD_FILE}" for v in versions])

    registry.require_version("s3://bucket/models/ibu", versions[0], client=s3)
    with pytest.raises(registry.RegistryError, match=f"there: {', '.join(versions[2:])}$"):
        registry.require_version("s3://bucket/models/ibu", V2, client=s3)


def test_a_version_older_than_the_local_target_is_said_to_have_gone_with_its_emulator():
    # registered, then `brewops local down` and `up` again: the registry started empty
    s3 = _PagedS3([f"models/ibu/{V2}/{registry.CARD_FILE}"])
    started = "2025-03-01T00:00:00+00:00"

    with pytest.raises(registry.RegistryError, match="`brewops local down` discarded it"):
        registry.require_version("s3://b/models/ibu", V1, client=s3, started_at=started)
    newer = "20250401T000000Z-abcdef12"  # registered since: not what `down` took
    with pytest.raises(registry.RegistryError, match=f"there: {V2}$"):
        registry.require_version("s3://b/models/ibu", newer, client=s3, started_at=started)
    # nothing to say of a version registered in the second it started, of a name that is
    # no version's, or of a start time without its zone
    for version, start in [
        ("20250301T000000Z-abcdef12", started),
        (V1[:16], started),
        (V1, "2025-03-01T00:00:00"),
    ]:
        with pytest.raises(registry.RegistryError, match=f"there: {V2}$"):
            registry.require_version("s3://b/models/ibu", version, client=s3, started_at=start)


@pytest.mark.parametrize("version", [3, None, 20250301.5])
def test_a_model_version_that_is_no_string_is_refused_naming_the_versions_there_are(version):
    # model_version = 3 typed in notebook 05: was a TypeError from the version pattern
    s3 = _PagedS3([f"models/ibu/{V2}/{registry.CARD_FILE}"])
    started = "2025-03-01T00:00:00+00:00"
    with pytest.raises(registry.RegistryError, match=f"no model version {version} .*there: {V2}$"):
        registry.require_version("s3://b/models/ibu", version, client=s3, started_at=started)


def test_deleting_a_version_removes_every_page_of_its_folder_and_nothing_else():
    s3 = _PagedS3([f"models/ibu/{V1}/a", f"models/ibu/{V1}/b"], [], [f"models/ibu/{V1}/c"])
    assert registry.delete_version("s3://bucket/models/ibu/", V1, client=s3) == 3
    assert s3.deleted == [[f"models/ibu/{V1}/a", f"models/ibu/{V1}/b"], [f"models/ibu/{V1}/c"]]
    assert s3.prefixes == [f"models/ibu/{V1}/"]
    # a version that is not there: nothing to delete, and no empty request
    assert registry.delete_version("s3://bucket/models/ibu/", V2, client=_PagedS3([])) == 0


def test_a_deletion_s3_refuses_is_an_error_naming_the_keys_not_a_count_of_deleted():
    # GIVEN a bucket whose object lock keeps the model card of the version
    class Locked(_PagedS3):
        def delete_objects(self, Bucket: str, Delete: dict) -> dict:
            super().delete_objects(Bucket, Delete)
            keys = [item["Key"] for item in Delete["Objects"]]
            refused = [key for key in keys if key.endswith(registry.CARD_FILE)]
            return {"Errors": [{"Key": key, "Code": "AccessDenied"} for key in refused]}

    card = f"models/ibu/{V1}/{registry.CARD_FILE}"
    s3 = Locked([f"models/ibu/{V1}/{registry.MODEL_FILE}", card])

    # WHEN the version is deleted THEN the error names what is still there, and why
    refusal = f"1 of 2 objects of version {V1} in s3://bucket were not deleted .*{card}: AccessD"
    with pytest.raises(registry.RegistryError, match=refusal):
        registry.delete_version("s3://bucket/models/ibu/", V1, client=s3)


def test_publishing_uploads_the_card_last_and_skips_a_missing_markdown_card(trained, tmp_path):
    folder = registry.save(trained.model, trained.metrics, trained.card, tmp_path)
    (folder / registry.CARD_MARKDOWN_FILE).unlink()
    s3 = _PagedS3()
    uri = registry.publish(folder, "s3://bucket/models/ibu", V1, client=s3)
    assert uri == f"s3://bucket/models/ibu/{V1}/"
    # the card last: a listing counts a version complete once its card is there
    names = (registry.MODEL_FILE, registry.METRICS_FILE, registry.CARD_FILE)
    assert s3.uploaded == [f"{uri}{name}" for name in names]


@pytest.mark.parametrize("lost", [registry.MODEL_FILE, registry.METRICS_FILE])
def test_a_folder_without_its_model_is_not_published_as_a_complete_version(trained, tmp_path, lost):
    # GIVEN a folder that holds a card but no model (the wrong folder, or one half copied)
    folder = registry.save(trained.model, trained.metrics, trained.card, tmp_path)
    (folder / lost).unlink()
    s3 = _PagedS3()

    # WHEN it is published THEN nothing goes up: its card would list it as complete
    with pytest.raises(registry.RegistryError, match=f"missing {lost}"):
        registry.publish(folder, "s3://bucket/models/ibu", V1, client=s3)
    assert s3.uploaded == []


@pytest.mark.emulator
def test_register_list_and_load_the_latest_through_s3(
    trained, registry_uri, catalog_beers, catalog_path
):
    sha = trained.card["data"]["sha256"]
    older = registry.new_version(sha, datetime(2025, 1, 1, tzinfo=UTC))
    newer = registry.new_version(sha, datetime(2025, 6, 1, tzinfo=UTC))
    for version in (newer, older):  # upload order must not matter
        got, uri = registry.register(
            trained.model, trained.metrics, trained.card, registry_uri, version
        )
        assert got == version
        assert uri == f"{registry_uri}{version}/"
    assert registry.list_versions(registry_uri) == [older, newer]
    assert registry.latest_version(registry_uri) == newer
    registry.require_version(registry_uri, older)
    missing = registry.new_version(sha, datetime(2024, 1, 1, tzinfo=UTC))
    with pytest.raises(registry.RegistryError, match=f"the latest there: {older}, {newer}$"):
        registry.require_version(registry_uri, missing)

    bucket, prefix = registry.split_uri(registry_uri)
    keys = {
        o["Key"]
        for o in boto3.client("s3").list_objects_v2(Bucket=bucket, Prefix=f"{prefix}{newer}/")[
            "Contents"
        ]
    }
    assert keys == {f"{prefix}{newer}/{name}" for name in registry.VERSION_FILES}

    loaded = registry.load_version(registry_uri)
    assert loaded.version == newer
    assert loaded.card["version"] == newer
    assert loaded.metrics["cv"] == json.loads(json.dumps(trained.metrics["cv"]))
    beers = catalog_beers[:8]
    assert predict.predict_beers(loaded, beers) == predict.predict_beers(trained.model, beers)

    runner = CliRunner()
    for location in (registry_uri, f"{registry_uri}{older}/"):
        result = runner.invoke(
            model_group, ["evaluate", "--model", location, "--catalog", str(catalog_path)]
        )
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout.splitlines()[-1])["n"] == 320

    assert registry.delete_version(registry_uri, newer) == len(registry.VERSION_FILES)
    assert registry.list_versions(registry_uri) == [older]


@pytest.mark.emulator
@pytest.mark.parametrize("lost", [registry.MODEL_FILE, registry.CARD_FILE])
def test_a_write_whose_answer_was_lost_is_not_taken_for_another_upload(trained, registry_uri, lost):
    # GIVEN S3 writes a file of the version but its answer never comes: botocore sends the
    # PUT again, and S3 refuses it, the key being taken (by that first attempt)
    from fixtures.faults import answer_lost

    s3 = boto3.client("s3")
    lose = answer_lost(url_ending=f"/{lost}")
    s3.meta.events.register("before-send.s3.PutObject", lose)
    moment = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)

    # WHEN the model is registered
    version, _ = registry.register(
        trained.model, trained.metrics, trained.card, registry_uri, client=s3, now=moment
    )

    # THEN it is one complete version, under the id of that second: no other second's, and
    # no folder left half written
    assert lose.lost == 1
    assert version == registry.new_version(trained.card["data"]["sha256"], moment)
    listing = registry.describe_versions(registry_uri)
    assert [v.version for v in listing.versions] == [version] and listing.incomplete == []
    assert listing.versions[0].problems == []


@pytest.mark.emulator
def test_an_incomplete_upload_is_not_listed(trained, registry_uri, tmp_path):
    version = registry.new_version("abcdef12")
    folder = registry.save(trained.model, trained.metrics, trained.card, tmp_path)
    bucket, prefix = registry.split_uri(registry_uri)
    boto3.client("s3").upload_file(
        str(folder / registry.MODEL_FILE), bucket, f"{prefix}{version}/{registry.MODEL_FILE}"
    )
    assert registry.list_versions(registry_uri) == []
    with pytest.raises(registry.RegistryError, match="no model version"):
        registry.latest_version(registry_uri)
    with pytest.raises(registry.RegistryError, match=f"no model version {version} .*: none$"):
        registry.require_version(registry_uri, version)


@pytest.mark.emulator
def test_a_bucket_that_does_not_exist_is_one_line_saying_what_to_check(bucket, catalog_path):
    missing = f"s3://{bucket}-missing/models/ibu/"
    with pytest.raises(registry.RegistryError, match=r"NoSuchBucket.*Check the bucket name"):
        registry.load_version(missing)
    with pytest.raises(registry.RegistryError, match="cannot be read"):
        registry.load_version(missing, "20250101T000000Z-abcdef12")
    line = one_line_error(evaluate(missing, catalog_path))
    assert "NoSuchBucket" in line


@pytest.mark.emulator
def test_writing_to_a_bucket_that_does_not_exist_says_what_to_check(trained, bucket):
    missing = f"s3://{bucket}-missing/models/ibu/"
    with pytest.raises(registry.RegistryError, match="Check the bucket name"):
        registry.register(trained.model, trained.metrics, trained.card, missing)
    with pytest.raises(registry.RegistryError, match=r"NoSuchBucket.*Check the bucket name"):
        registry.delete_version(missing, V1)


@pytest.mark.emulator
def test_a_version_without_its_markdown_card_loads_into_a_chosen_folder(
    trained, registry_uri, tmp_path
):
    folder = registry.save(trained.model, trained.metrics, trained.card, tmp_path / "made")
    (folder / registry.CARD_MARKDOWN_FILE).unlink()
    registry.publish(folder, registry_uri, V1)
    copy = tmp_path / "copy"
    loaded = registry.load_version(registry_uri, V1, dest=copy)
    assert (loaded.version, loaded.path) == (V1, copy)
    names = {registry.MODEL_FILE, registry.METRICS_FILE, registry.CARD_FILE}
    assert {p.name for p in copy.iterdir()} == names


@pytest.mark.emulator
def test_a_registry_at_the_bucket_root_loads_by_version(trained, bucket, catalog_path):
    version, uri = registry.register(
        trained.model, trained.metrics, trained.card, f"s3://{bucket}/"
    )
    assert uri == f"s3://{bucket}/{version}/"
    keys = {o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=bucket)["Contents"]}
    assert f"{version}/{registry.MODEL_FILE}" in keys
    for location in (f"s3://{bucket}", f"s3://{bucket}/{version}", f"s3://{bucket}/{version}/"):
        assert registry.load_uri(location).version == version
        result = evaluate(location, catalog_path)
        assert result.exit_code == 0, result.output


@pytest.mark.emulator
def test_loading_from_s3_leaves_no_temporary_folder(trained, registry_uri, tmp_path, monkeypatch):
    version, uri = registry.register(trained.model, trained.metrics, trained.card, registry_uri)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    loaded = registry.load_uri(uri)
    assert loaded.version == version
    assert loaded.path == uri
    assert list(scratch.iterdir()) == []


# ---------------------------------------------------------------------------------------
# `brewops model versions`


def versions_command(*args: str) -> Any:
    return CliRunner().invoke(model_group, ["versions", *args])


def _put(registry_uri: str, version: str, name: str, body: bytes) -> None:
    bucket, prefix = registry.split_uri(registry_uri)
    boto3.client("s3").put_object(Bucket=bucket, Key=f"{prefix}{version}/{name}", Body=body)


class _RecordingS3:
    """The emulator's S3 client, recording the keys read and refusing downloads."""

    def __init__(self) -> None:
        self.client, self.read = boto3.client("s3"), []

    def get_paginator(self, operation: str) -> Any:
        return self.client.get_paginator(operation)

    def get_object(self, Bucket: str, Key: str) -> dict:
        self.read.append(Key.rsplit("/", 1)[-1])
        return self.client.get_object(Bucket=Bucket, Key=Key)

    def download_file(self, *args: Any) -> None:
        raise AssertionError("a file was downloaded")


def test_the_versions_command_says_what_it_lists():
    result = versions_command("--help")
    assert result.exit_code == 0, result.output
    help_text = " ".join(result.output.split())
    assert "oldest first" in help_text
    for option in ("--target [local|aws]", "--registry", "--json"):
        assert option in help_text


@pytest.mark.emulator
def test_versions_are_listed_oldest_first_with_the_figures_that_compare_them(trained, registry_uri):
    other = json.loads(json.dumps(registry.strict_json(trained.metrics)))
    other["cv"].update(accuracy=0.5, macro_f1=0.25, mae=30.5)
    other["time_split"]["accuracy"] = 0.125
    other["data"]["rows_used"] = 100
    older = registry.new_version("abcdef12", datetime(2025, 1, 1, tzinfo=UTC))
    newer = registry.new_version("abcdef12", datetime(2025, 6, 1, tzinfo=UTC))
    for version, metrics in ((newer, other), (older, trained.metrics)):  # order must not matter
        registry.register(trained.model, metrics, trained.card, registry_uri, version)

    s3 = _RecordingS3()
    listing = registry.describe_versions(registry_uri, client=s3)
    assert sorted(s3.read) == sorted([registry.CARD_FILE, registry.METRICS_FILE] * 2)
    assert [v.version for v in listing.versions] == [older, newer]
    assert listing.incomplete == []

    result = versions_command("--registry", registry_uri)
    assert result.exit_code == 0, result.output
    title, header, first, second = result.output.splitlines()
    assert title == f"{registry_uri}: 2 versions, oldest first"
    assert header.split("  ")[0] == "version"
    assert "problems" not in header
    cv, split, data = trained.metrics["cv"], trained.metrics["time_split"], trained.card["data"]
    trained_at = trained.card["trained_at"].replace("T", " ")[:16]
    assert first.split() == [
        older,
        *trained_at.split(),
        str(data["rows_used"]),
        data["sha256"][:12],
        f"{cv['accuracy']:.3f}",
        f"{cv['macro_f1']:.3f}",
        f"{split['accuracy']:.3f}",
        f"{cv['mae']:.1f}",
    ]
    assert second.split()[0] == newer
    assert second.split()[3:] == ["100", data["sha256"][:12], "0.500", "0.250", "0.125", "30.5"]
    # the columns line up: each figure ends where its heading does
    assert len({len(header), len(first), len(second)}) == 1

    result = versions_command("--registry", registry_uri, "--json")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [row["version"] for row in rows] == [older, newer]
    assert rows[0] == {
        "version": older,
        "uri": f"{registry_uri}{older}/",
        "trained_at": trained.card["trained_at"],
        "rows_used": data["rows_used"],
        "data_sha256": data["sha256"],
        "cv_accuracy": cv["accuracy"],
        "cv_macro_f1": cv["macro_f1"],
        "cv_mae": cv["mae"],
        "newest_fifth_accuracy": split["accuracy"],
        "problems": [],
    }
    assert rows[1]["cv_accuracy"] == 0.5 and rows[1]["rows_used"] == 100
    assert [schema_errors("model_version", row) for row in rows] == [[], []]
    assert schema_errors("model_version", renamed(rows[0], ("cv_mae",), "mae"))
    assert schema_errors("model_version", retyped(rows[0], ("rows_used",), "320"))


@pytest.mark.emulator
def test_an_empty_registry_says_so_and_how_to_register_a_version(registry_uri):
    result = versions_command("--registry", registry_uri)
    assert result.exit_code == 0, result.output
    assert result.output == (
        f"No model version under {registry_uri}. Notebook 05 registers one each run: "
        "`brewops run --target local --only 05`.\n"
    )
    # scripts read nothing on stdout; the words go to stderr
    result = versions_command("--registry", registry_uri, "--json", "--target", "aws")
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert "`brewops run --target aws --only 05`" in result.stderr


@pytest.mark.emulator
def test_a_damaged_version_is_listed_with_what_is_wrong(trained, registry_uri):
    good, *damaged = [f"2025010{day}T000000Z-abcdef12" for day in range(1, 7)]
    no_metrics, bad_metrics, list_card, no_figure, without_card = damaged
    registry.register(trained.model, trained.metrics, trained.card, registry_uri, good)
    card = json.dumps({**trained.card, "version": "x"}).encode()
    metrics = json.dumps(registry.strict_json(trained.metrics)).encode()
    for version in (no_metrics, bad_metrics, list_card, no_figure):
        _put(registry_uri, version, registry.MODEL_FILE, b"weights")
    _put(registry_uri, no_metrics, registry.CARD_FILE, card)
    _put(registry_uri, bad_metrics, registry.METRICS_FILE, b"\xff{not json")
    _put(registry_uri, bad_metrics, registry.CARD_FILE, card)
    _put(registry_uri, list_card, registry.METRICS_FILE, metrics)
    _put(registry_uri, list_card, registry.CARD_FILE, b"[]")
    partial = registry.strict_json(trained.metrics)
    partial["cv"] = {**partial["cv"], "macro_f1": "high", "mae": None}
    _put(registry_uri, no_figure, registry.METRICS_FILE, json.dumps(partial).encode())
    _put(registry_uri, no_figure, registry.CARD_FILE, card)
    _put(registry_uri, without_card, registry.MODEL_FILE, b"weights")  # an upload cut short

    result = versions_command("--registry", registry_uri, "--json")
    assert result.exit_code == 0, result.output
    rows = {row["version"]: row for row in map(json.loads, result.stdout.splitlines())}
    assert list(rows) == [good, no_metrics, bad_metrics, list_card, no_figure]
    assert rows[good]["problems"] == []
    cv = trained.metrics["cv"]
    # metrics.json unusable: the figures from the card, saying so
    assert rows[no_metrics]["problems"] == [
        "metrics.json is missing",
        "figures from model_card.json",
    ]
    assert rows[no_metrics]["cv_accuracy"] == cv["accuracy"]
    assert rows[bad_metrics]["problems"][0].startswith("metrics.json is not readable JSON (")
    assert rows[list_card]["problems"] == ["model_card.json holds a JSON list, not an object"]
    assert rows[list_card]["trained_at"] is None
    assert rows[list_card]["cv_accuracy"] == cv["accuracy"]  # metrics.json is whole
    assert rows[no_figure]["problems"] == ["no cv.macro_f1, cv.mae in metrics.json"]
    assert (rows[no_figure]["cv_macro_f1"], rows[no_figure]["cv_mae"]) == (None, None)
    assert "not listed: 1 version folder(s) without a model card" in result.stderr
    assert {version: schema_errors("model_version", row) for version, row in rows.items()} == {
        version: [] for version in rows
    }
    assert without_card in result.stderr

    result = versions_command("--registry", registry_uri)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[1].split()[-1] == "problems"
    assert lines[2].endswith("  -")  # the whole version has none
    assert lines[3].endswith("metrics.json is missing; figures from model_card.json")
    assert lines[-1].startswith("not listed: 1 version folder(s) without a model card")
    assert "Traceback" not in result.output


@pytest.mark.emulator
def test_a_registry_that_cannot_be_read_is_one_line(bucket):
    line = one_line_error(versions_command("--registry", f"s3://{bucket}-missing/models/ibu/"))
    assert "NoSuchBucket" in line and "Check the bucket name" in line
    line = one_line_error(versions_command("--registry", "models/ibu"))
    assert line == "Error: not an s3:// URI: models/ibu"


def test_versions_without_a_stack_say_what_to_do(tmp_path, monkeypatch, no_aws_settings):
    from brewops.cli import main

    monkeypatch.setenv("BREWOPS_LOCAL_STATE_DIR", str(tmp_path / "nothing-here"))
    line = one_line_error(CliRunner().invoke(main, ["model", "versions"]))
    assert "The local target is not running. Start it with `brewops local up`" in line
    line = one_line_error(CliRunner().invoke(main, ["model", "versions", "--target", "aws"]))
    assert "No AWS region for the aws target" in line


@pytest.mark.emulator
def test_versions_lists_the_registry_of_the_local_stack(trained, local_target):
    registry_uri = local_target.outputs["ModelRegistryUri"]
    version, uri = registry.register(trained.model, trained.metrics, trained.card, registry_uri)
    try:
        result = versions_command("--json")
        assert result.exit_code == 0, result.output
        rows = [json.loads(line) for line in result.stdout.splitlines()]
        assert [row["version"] for row in rows] == registry.list_versions(registry_uri)
        mine = next(row for row in rows if row["version"] == version)
        assert mine["uri"] == uri
        assert mine["cv_accuracy"] == trained.metrics["cv"]["accuracy"]
        assert mine["problems"] == []
    finally:
        registry.delete_version(registry_uri, version)


def test_a_stack_without_a_registry_output_says_to_deploy_it_again(monkeypatch):
    from types import SimpleNamespace

    from brewops.model import cli

    older_stack = SimpleNamespace(stack_name="brewops-dev", outputs={"BucketName": "b"})
    monkeypatch.setattr(cli, "use_target", lambda name: older_stack)
    line = one_line_error(versions_command())
    assert "The stack brewops-dev has no ModelRegistryUri Output" in line
    assert "`brewops local up`" in line


# Loads a saved version and saves it again, in a shell whose locale is not UTF-8.
_SAVED_AGAIN = """
import locale, sys
from brewops.model import registry

assert locale.getencoding() in ("ANSI_X3.4-1968", "ascii"), locale.getencoding()
loaded = registry.load(sys.argv[1])
registry.save(loaded.model, loaded.metrics, loaded.card, sys.argv[2])
again = registry.load(sys.argv[2])
print(ascii([again.metrics["worst"]["name"], again.card["version"]]))
"""


def test_beer_names_are_kept_in_a_shell_whose_locale_is_not_utf_8(trained, tmp_path):
    metrics = {**trained.metrics, "worst": {"name": "Bräu Æble"}}
    card = {**trained.card, "version": "v-bräu"}  # the markdown card shows the version
    folder = registry.save(trained.model, metrics, card, tmp_path / "saved")
    ascii_shell = {
        **os.environ,
        "LC_ALL": "C",
        "LANG": "C",
        "PYTHONUTF8": "0",
        "PYTHONCOERCECLOCALE": "0",
    }

    again = subprocess.run(
        [sys.executable, "-c", _SAVED_AGAIN, str(folder), str(tmp_path / "again")],
        env=ascii_shell,
        capture_output=True,
        encoding="locale",
        check=False,
    )

    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == ascii(["Bräu Æble", "v-bräu"])
    markdown = (tmp_path / "again" / registry.CARD_MARKDOWN_FILE).read_text(encoding="utf-8")
    assert "v-bräu" in markdown


@pytest.mark.emulator
def test_two_registrations_of_the_same_data_in_the_same_second_both_stay(trained, registry_uri):
    # GIVEN a version registered at a moment, and the bytes of its files
    moment = datetime(2025, 1, 2, 3, 4, 5, 600_000, tzinfo=UTC)
    first, first_uri = registry.register(
        trained.model, trained.metrics, trained.card, registry_uri, now=moment
    )
    bucket, prefix = registry.split_uri(registry_uri)
    s3 = boto3.client("s3")

    def files(version: str) -> dict[str, bytes]:
        return {
            name: s3.get_object(Bucket=bucket, Key=f"{prefix}{version}/{name}")["Body"].read()
            for name in registry.VERSION_FILES
        }

    before = files(first)
    other = {**trained.metrics, "cv": {**trained.metrics["cv"], "accuracy": 0.125}}

    # WHEN the same data is registered again in the same second
    second, second_uri = registry.register(
        trained.model, other, trained.card, registry_uri, now=moment.replace(microsecond=900_000)
    )

    # THEN the second takes the next second: both are listed, in order, the first unchanged
    assert (first, second) == (
        registry.new_version(trained.card["data"]["sha256"], moment),
        registry.new_version(trained.card["data"]["sha256"], moment + timedelta(seconds=1)),
    )
    assert (first_uri, second_uri) == (f"{registry_uri}{first}/", f"{registry_uri}{second}/")
    assert registry.list_versions(registry_uri) == [first, second]
    assert files(first) == before
    assert registry.load_version(registry_uri, second).card["version"] == second
    assert json.loads(files(second)[registry.METRICS_FILE])["cv"]["accuracy"] == 0.125


@pytest.mark.emulator
def test_publishing_a_version_that_is_there_is_refused_and_leaves_it_unchanged(
    trained, registry_uri, tmp_path
):
    # GIVEN a registered version, and its model card as stored
    registry.register(trained.model, trained.metrics, trained.card, registry_uri, V1)
    bucket, prefix = registry.split_uri(registry_uri)
    s3 = boto3.client("s3")
    key = f"{prefix}{V1}/{registry.CARD_FILE}"
    card = s3.get_object(Bucket=bucket, Key=key)["Body"].read()

    # WHEN another model is registered, or a folder published, under the same version
    other = {**trained.metrics, "cv": {**trained.metrics["cv"], "accuracy": 0.125}}
    with pytest.raises(
        registry.VersionExistsError, match=f"{V1}/ already holds a version .*delete_version"
    ):
        registry.register(trained.model, other, trained.card, registry_uri, V1)
    folder = registry.save(trained.model, other, {**trained.card, "version": V1}, tmp_path)
    with pytest.raises(registry.VersionExistsError, match=f"{V1}/ already holds a version"):
        registry.publish(folder, registry_uri, V1)

    # THEN the version holds what it held
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == card
    assert registry.load_version(registry_uri, V1).metrics["cv"]["accuracy"] != 0.125


@pytest.mark.parametrize(
    ("status", "code", "refusal"),
    [
        (412, "PreconditionFailed", registry.VersionExistsError),  # the key is there
        (409, "ConditionalRequestConflict", registry.VersionExistsError),  # being written
        (403, "AccessDenied", registry.RegistryError),
    ],
)
def test_a_refused_conditional_upload_says_whether_the_version_is_taken(
    trained, tmp_path, status, code, refusal
):
    from botocore.exceptions import ClientError

    class Refusing(_PagedS3):
        def put_object(self, **kwargs: Any) -> dict:
            answer = {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}
            raise ClientError(answer, "PutObject")

    folder = registry.save(trained.model, trained.metrics, trained.card, tmp_path)
    with pytest.raises(refusal) as refused:
        registry.publish(folder, "s3://bucket/models/ibu/", V1, client=Refusing())
    taken = isinstance(refused.value, registry.VersionExistsError)
    assert taken == (refusal is registry.VersionExistsError)
    assert ("already holds a version" in str(refused.value)) == taken


@pytest.mark.parametrize(
    ("status", "code", "given", "tried_seconds"),
    [
        # every second taken: the next ones are tried, as many as register moves on
        (412, "PreconditionFailed", None, registry._FREE_SECOND_TRIES),
        (412, "PreconditionFailed", V1, 1),  # a version asked for is not moved
        (403, "AccessDenied", None, 1),  # not a taken version: nothing to move on from
    ],
)
def test_register_moves_on_second_by_second_only_past_versions_that_are_taken(
    trained, status, code, given, tried_seconds
):
    from botocore.exceptions import ClientError

    class Refusing(_PagedS3):
        def put_object(self, **kwargs: Any) -> dict:
            self.uploaded.append(kwargs["Key"])
            answer = {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}
            raise ClientError(answer, "PutObject")

    s3 = Refusing()
    moment = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    refusal = registry.VersionExistsError if status == 412 else registry.RegistryError

    with pytest.raises(refusal):
        registry.register(
            trained.model, trained.metrics, trained.card, "s3://b/m/", given, client=s3, now=moment
        )

    sha = trained.card["data"]["sha256"]
    seconds = [moment + timedelta(seconds=n) for n in range(tried_seconds)]
    tried = [given] if given else [registry.new_version(sha, second) for second in seconds]
    # the first file of each version refused: nothing more of it was sent
    assert s3.uploaded == [f"m/{version}/{registry.MODEL_FILE}" for version in tried]


def test_a_version_written_before_the_tinseth_formula_loads_in_every_consumer(
    trained, tmp_path, capsys
):
    import copy

    import matplotlib.pyplot as plt

    from brewops.model import plots
    from brewops.model.cli import _print_table

    # metrics.json and the card as they were before the formula was scored beside the
    # baselines: the majority class and the six-column forest only
    metrics, card = copy.deepcopy(trained.metrics), copy.deepcopy(trained.card)
    for baselines in (
        metrics["baselines"],
        metrics["time_split"]["baselines"],
        card["metrics"]["baselines"],
    ):
        del baselines[train.TINSETH_FORMULA]
    version = "20250101T000000Z-abcdef12"
    folder = registry.save(trained.model, metrics, {**card, "version": version}, tmp_path)
    loaded = registry.load(folder)
    before = ["model", "majority_class", "random_forest_6_columns"]
    assert sorted(plots.comparison_frame(loaded.metrics)["model"].unique()) == sorted(before)
    assert list(plots.calibration_frame(loaded.metrics).index) == before
    plt.close(plots.plot_comparison(loaded.metrics, keys=("accuracy", "mae")))
    _print_table(loaded.metrics)
    assert "tinseth_formula" not in capsys.readouterr().out
    page = (folder / registry.CARD_MARKDOWN_FILE).read_text(encoding="utf-8")
    assert "- random_forest_6_columns: accuracy" in page and "- tinseth_formula" not in page
    # `model versions` lists it with its figures, nothing missing
    s3 = _FilesS3(
        {
            f"models/ibu/{version}/{name}": (folder / name).read_bytes()
            for name in registry.VERSION_FILES
        }
    )
    (listed,) = registry.describe_versions("s3://bucket/models/ibu/", client=s3).versions
    assert listed.problems == []
    assert listed.cv_accuracy == metrics["cv"]["accuracy"]
