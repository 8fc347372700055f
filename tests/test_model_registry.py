"""The model registry: local version folders and round trips through S3 (a moto server)."""

from __future__ import annotations

import json
import tempfile
import uuid
from datetime import UTC, datetime
from typing import Any

import boto3
import numpy as np
import pytest
from click.testing import CliRunner

from brewops.local.state import emulator_environment
from brewops.model import predict, registry, train
from brewops.model.cli import model as model_group


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


def test_a_version_folder_round_trips(trained, tmp_path, catalog_beers):
    folder = registry.save(
        trained.model, trained.metrics, {**trained.card, "version": "v"}, tmp_path
    )
    assert {p.name for p in folder.iterdir()} == set(registry.VERSION_FILES)
    metrics = json.loads((folder / registry.METRICS_FILE).read_text())
    assert {"cv", "baselines", "time_split"} <= set(metrics)
    assert {"accuracy", "macro_f1", "mae"} <= set(metrics["cv"])
    card = json.loads((folder / registry.CARD_FILE).read_text())
    assert card["artifact"]["sha256"] == registry.sha256_file(folder / registry.MODEL_FILE)
    assert "## Metrics" in (folder / registry.CARD_MARKDOWN_FILE).read_text()
    loaded = registry.load(folder)
    np.testing.assert_array_equal(
        loaded.model.predict_proba(catalog_beers), trained.model.predict_proba(catalog_beers)
    )


def test_a_tampered_model_file_is_not_loaded(trained, tmp_path):
    folder = registry.save(trained.model, trained.metrics, trained.card, tmp_path)
    with open(folder / registry.MODEL_FILE, "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(registry.RegistryError, match="sha256"):
        registry.load(folder)


def test_an_incomplete_folder_is_refused(tmp_path):
    with pytest.raises(registry.RegistryError, match="missing"):
        registry.load(tmp_path)


def _model_file_replaced(folder, content: bytes) -> None:
    """Another model file, its card updated to match: it passes the checksum."""
    (folder / registry.MODEL_FILE).write_bytes(content)
    card = json.loads((folder / registry.CARD_FILE).read_text())
    card["artifact"]["sha256"] = registry.sha256_file(folder / registry.MODEL_FILE)
    (folder / registry.CARD_FILE).write_text(json.dumps(card))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda f: (f / registry.CARD_FILE).write_text("{not json"), "is not readable JSON"),
        (lambda f: (f / registry.CARD_FILE).write_text("[]"), "holds a JSON list, not an object"),
        (lambda f: (f / registry.METRICS_FILE).write_bytes(b"\xff{"), "is not readable JSON"),
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


def test_a_pickle_that_is_not_a_model_is_refused(trained, tmp_path):
    import joblib

    folder = registry.save(trained.model, trained.metrics, trained.card, tmp_path)
    joblib.dump({"not": "a model"}, folder / registry.MODEL_FILE)
    _model_file_replaced(folder, (folder / registry.MODEL_FILE).read_bytes())
    with pytest.raises(registry.RegistryError, match="holds a dict, not an IBU model"):
        registry.load(folder)


def test_the_card_names_the_folds_and_repeats_the_protocol_used(trained):
    protocol = {**trained.card["protocol"], "n_splits": 3, "n_repeats": 1}
    card = {**trained.card, "protocol": protocol}
    assert "## Metrics (stratified 3-fold CV, 1 repeat)" in registry.card_markdown(card)
    assert "5-fold" not in registry.card_markdown(card)


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
