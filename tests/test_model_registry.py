"""The model registry: local version folders and round trips through S3 (a moto server)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

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
def registry_uri(emulator_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """An empty bucket in the session's emulator; the SDK pointed at it with dummy keys."""
    for name, value in emulator_environment(emulator_endpoint, "eu-west-1").items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    bucket = f"brewops-test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    return f"s3://{bucket}/models/ibu/"


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
