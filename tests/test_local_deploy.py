"""The local deploy, offline: template loading, code packages and the SAM translation."""

from __future__ import annotations

import io
import socket
import zipfile
from pathlib import Path

import pytest

from brewops import paths
from brewops.local import deploy

MINI_TEMPLATE = Path(__file__).parent / "data" / "mini_template.yaml"
LIB = paths.repo_root() / "lib"


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the offline translation opened a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_template_loader_reads_short_form_intrinsics(tmp_path: Path) -> None:
    source = tmp_path / "t.yaml"
    source.write_text(
        "A: !Ref Stage\n"
        "B: !GetAtt Stream.Arn\n"
        'C: !Sub "${AWS::StackName}-x"\n'
        "D: !If [IsProd, !Ref X, !Ref AWS::NoValue]\n"
        'E: !Sub ["${A}", {A: !Ref B}]\n'
    )
    loaded = deploy.load_template(source)
    assert loaded["A"] == {"Ref": "Stage"}
    assert loaded["B"] == {"Fn::GetAtt": ["Stream", "Arn"]}
    assert loaded["C"] == {"Fn::Sub": "${AWS::StackName}-x"}
    assert loaded["D"] == {"Fn::If": ["IsProd", {"Ref": "X"}, {"Ref": "AWS::NoValue"}]}
    assert loaded["E"] == {"Fn::Sub": ["${A}", {"A": {"Ref": "B"}}]}


def test_code_package_is_the_package_source_without_caches(tmp_path: Path) -> None:
    source = tmp_path / "lib"
    (source / "pkg" / "__pycache__").mkdir(parents=True)
    (source / "pkg" / "__init__.py").write_text("")
    (source / "pkg" / "app.py").write_text("def handler(event, context):\n    return event\n")
    (source / "pkg" / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"\0")
    (source / "pkg.egg-info").mkdir()
    (source / "pkg.egg-info" / "PKG-INFO").write_text("x")

    body = deploy.package_code(source)

    names = zipfile.ZipFile(io.BytesIO(body)).namelist()
    assert sorted(names) == ["pkg/__init__.py", "pkg/app.py"]
    assert deploy.package_code(source) == body  # reproducible: same files, same key


def test_the_project_package_is_small_and_holds_the_handlers() -> None:
    body = deploy.package_code(LIB)
    names = set(zipfile.ZipFile(io.BytesIO(body)).namelist())
    assert "brewops/__init__.py" in names
    assert "brewops/lambdas/transform/app.py" in names
    assert "brewops/lambdas/producer/app.py" in names
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    assert not any(n.startswith(("pandas/", "sklearn/", "pyarrow/")) for n in names)
    assert len(body) < 2 * 1024 * 1024


def test_packaging_points_code_uris_at_one_uploaded_zip() -> None:
    template = deploy.load_template(MINI_TEMPLATE)

    packaged, artifacts = deploy.package_template(
        template, MINI_TEMPLATE.parent, "artifacts", "stack"
    )

    assert len(artifacts) == 1  # both functions and Globals share ../../lib
    (key,) = artifacts
    location = {"Bucket": "artifacts", "Key": key}
    assert packaged["Globals"]["Function"]["CodeUri"] == location
    assert key.startswith("stack/") and key.endswith(".zip")
    assert template["Globals"]["Function"]["CodeUri"] == "../../lib"  # input left alone


def test_missing_code_directory_is_reported(tmp_path: Path) -> None:
    template = {
        "Resources": {
            "F": {"Type": "AWS::Serverless::Function", "Properties": {"CodeUri": "nowhere"}}
        }
    }
    with pytest.raises(deploy.DeployError, match="nowhere"):
        deploy.package_template(template, tmp_path, "artifacts", "stack")


@pytest.mark.usefixtures("no_network")
def test_translation_is_offline_and_leaves_no_sam_resources() -> None:
    template = deploy.load_template(MINI_TEMPLATE)
    packaged, _ = deploy.package_template(template, MINI_TEMPLATE.parent, "artifacts", "stack")

    translated = deploy.translate(packaged, {"Stage": "dev"})

    resources = translated["Resources"]
    assert not [r for r in resources.values() if r["Type"].startswith("AWS::Serverless::")]
    producer = resources["ProducerFunction"]
    assert producer["Type"] == "AWS::Lambda::Function"
    assert producer["Properties"]["Code"] == {
        "S3Bucket": "artifacts",
        "S3Key": packaged["Globals"]["Function"]["CodeUri"]["Key"],
    }
    assert producer["Properties"]["Handler"] == "brewops.lambdas.producer.app.handler"
    assert resources["ProducerFunctionSchedule"]["Type"] == "AWS::Events::Rule"
    # a SAM policy template expanded without asking IAM
    role_policies = resources["ProducerFunctionRole"]["Properties"]["Policies"]
    assert any("kinesis:PutRecord" in str(p) for p in role_policies)
    assert "Transform" not in translated


@pytest.mark.usefixtures("no_network")
def test_the_real_template_translates_offline() -> None:
    if not paths.template_path().is_file():
        pytest.skip("no infra/template.yaml")
    prepared = deploy.prepare(
        paths.template_path(),
        "brewops-dev",
        {"PunkApiUrl": "http://127.0.0.1:1/v2", "NotATemplateParameter": "x"},
    )
    types = {r["Type"] for r in prepared.template["Resources"].values()}
    assert "AWS::Lambda::Function" in types
    assert not any(t.startswith("AWS::Serverless::") for t in types)
    # only parameters the template declares are sent
    assert prepared.parameters == {"PunkApiUrl": "http://127.0.0.1:1/v2"}
    assert len(prepared.artifacts) == 1
    # in the words moto honours, so a deleted local stack keeps its bucket as AWS does
    assert prepared.template["Resources"]["Bucket"]["DeletionPolicy"] == "Retain"
