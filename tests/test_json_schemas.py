"""`brewops schema NAME`: the JSON Schemas of what scripts read, one folder, one command.

Each schema is held to the real output by the tests of the command that writes it."""

from __future__ import annotations

import fnmatch
import json
import re
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner
from jsonschema import Draft202012Validator

from brewops import json_schemas, runner, validation
from brewops.cli import main
from brewops.json_schemas import NAMES, schema
from brewops.paths import repo_root
from fixtures.json_schemas import schema_errors


def brewops(*args: str):
    return CliRunner().invoke(main, list(args))


def _closed(part: dict) -> bool:
    return False in (part.get("additionalProperties"), part.get("unevaluatedProperties"))


@pytest.mark.parametrize("name", NAMES)
def test_each_schema_is_a_draft_2020_12_schema_of_a_closed_object(name: str):
    document = schema(name)
    assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(document)
    assert document["type"] == "object"
    # closed, or each of its alternatives is
    assert _closed(document) or all(_closed(part) for part in document["oneOf"])


@pytest.mark.parametrize("name", NAMES)
def test_the_schema_command_prints_the_schema_the_package_ships(name: str):
    result = brewops("schema", name)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == schema(name)


def test_the_help_of_the_schema_command_lists_every_name():
    result = brewops("schema", "--help")
    assert result.exit_code == 0, result.output
    listed = re.findall(r"^    ([a-z_]+)  ", result.output, flags=re.MULTILINE)
    assert listed == list(NAMES)
    assert re.search(r"^  schema  ", brewops("--help").output, flags=re.MULTILINE)


def test_an_unknown_name_is_refused_naming_the_schemas():
    result = brewops("schema", "predictions")
    assert result.exit_code == 2
    assert all(name in result.output for name in NAMES)
    with pytest.raises(ValueError, match="the schemas are prediction, "):
        json_schemas.schema("predictions")


def test_the_schemas_are_one_folder_of_package_data_of_the_wheel():
    pyproject = tomllib.loads((repo_root() / "pyproject.toml").read_text(encoding="utf-8"))
    package_data = pyproject["tool"]["setuptools"]["package-data"]
    folder = Path(json_schemas.__file__).parent
    files = sorted(p.name for p in folder.glob("*.json"))
    assert files == sorted(f"{name}.schema.json" for name in NAMES)
    patterns = package_data["brewops.json_schemas"]
    assert all(any(fnmatch.fnmatch(f, pattern) for pattern in patterns) for f in files)
    shipped = sorted((repo_root() / "lib").rglob("*.schema.json"))
    assert shipped == [folder / f for f in files]  # none left elsewhere


def test_the_readme_names_every_schema_and_no_command_that_is_gone():
    readme = (repo_root() / "README.md").read_text(encoding="utf-8")
    assert all(f"(`{name}`)" in readme for name in NAMES)
    assert "brewops model schema" not in readme
    assert "model" in brewops("model", "--help").output
    assert brewops("model", "schema", "prediction").exit_code == 2


def test_the_run_summary_schema_has_the_statuses_the_runner_writes():
    defs = schema("run_summary")
    # the run's own status while it runs, and each notebook's when cut short, are the run's
    ended = set(defs["properties"]["status"]["enum"]) - {"running"}
    assert set(defs["$defs"]["notebook"]["properties"]["status"]["enum"]) == ended | {"skipped"}
    fields = runner.NotebookResult.__dataclass_fields__
    assert set(defs["$defs"]["notebook"]["properties"]) == set(fields)
    assert set(defs["properties"]) == set(runner.RunSummary.__dataclass_fields__)


def test_the_readme_gives_every_status_of_the_run_summary():
    readme = " ".join((repo_root() / "README.md").read_text(encoding="utf-8").split())
    statuses = schema("run_summary")["$defs"]["notebook"]["properties"]["status"]["enum"]
    said = re.search(r"each notebook's `status` is ([^.]*)\.", readme)
    assert said, "the README does not say what a notebook's status can be"
    assert set(re.findall(r"`([a-z]+)`", said.group(1))) == set(statuses)


def test_the_validation_report_schema_names_every_gate_and_rule():
    properties = schema("validation_report")["properties"]
    assert properties["gates"]["required"] == list(validation.GATES)
    assert properties["findings"]["required"] == list(validation.FINDING_RULES)
    rules = properties["quality"]["items"]["properties"]["rule"]["enum"]
    assert rules == [r for r in validation.FINDING_RULES if r != validation.DUPLICATES]


@pytest.mark.parametrize(
    ("command", "option", "name"),
    [
        (("validate", "run"), "--json", "validation_report"),
        (("stream", "reconcile"), "--json", "reconciliation"),
        (("stream", "redrive"), "--json", "redrive"),
        (("local", "status"), "--json", "local_status"),
        (("model", "versions"), "--json", "model_version"),
        (("model", "train"), None, "training"),
        (("model", "evaluate"), None, "evaluation"),
        (("model", "predict"), None, "prediction"),
        (("run",), None, "run_summary"),
    ],
)
def test_the_help_of_each_command_writing_json_names_its_schema(command, option, name):
    result = brewops(*command, "--help")
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    if option is not None:  # the option's own help says it
        text = text[text.index(f"{option} ") :]
    assert f"`brewops schema {name}`" in text


def test_the_counts_of_a_reconciliation_follow_their_schema():
    from brewops.reconcile import Reconciliation

    nothing = Reconciliation(0, 0, 0, 0, 0, errors=[])
    lost = Reconciliation(3, 2, 2, 1, 1, errors=[], missing_from_raw=[3], missing_downstream=[2])
    for result in (nothing, lost):
        assert schema_errors("reconciliation", result.figures()) == []


def test_the_recorded_local_state_has_the_keys_of_the_status_schema():
    from brewops.local.state import LocalState, Service

    service = Service(pid=10, port=4566, url="http://127.0.0.1:4566", log="e.log", create_time=1.5)
    state = LocalState(
        "http://127.0.0.1:4566",
        "us-east-1",
        "brewops-dev",
        "2026",
        {"emulator": service, "punkapi": service},
    )
    assert schema_errors("local_status", {"running": True, **state.to_dict()}) == []


def _band_keyed_objects(part, where=""):
    """Every object schema whose keys are the bands: found by the first band's label."""
    if isinstance(part, dict):
        if any(str(key).startswith("(-1,") for key in part.get("properties", {})):
            yield where, part
        for key, value in part.items():
            yield from _band_keyed_objects(value, f"{where}/{key}")
    elif isinstance(part, list):
        for index, value in enumerate(part):
            yield from _band_keyed_objects(value, f"{where}/{index}")


@pytest.mark.parametrize("name", ["metrics", "model_card", "evaluation", "prediction"])
def test_the_band_keys_of_a_schema_are_the_models_bands(name: str):
    """The schemas spell the bands out for scripts; a band edge changed in `bands.EDGES`
    must change them too, or every file the model writes would break its schema."""
    from brewops.model import bands

    found = list(_band_keyed_objects(schema(name)))
    assert found, f"{name}.schema.json has no object keyed by the bands"
    for where, part in found:
        assert list(part["properties"]) == list(bands.LABELS), (
            f"{name}.schema.json{where} keys the bands {list(part['properties'])}, but "
            f"brewops.model.bands.LABELS is {list(bands.LABELS)}: write the bands' labels "
            "in lib/brewops/json_schemas/ as `bands.LABELS` spells them"
        )
        assert part["required"] == list(bands.LABELS), f"{name}.schema.json{where}"
