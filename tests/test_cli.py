"""The command line: errors a user can act on are one clean line; the Punk API version
follows the URL unless it is given."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import click
from click.testing import CliRunner

from brewops import streaming_cli
from brewops.cli import main

BREWOPS = Path(sys.executable).parent / "brewops"


def test_every_option_of_every_command_says_what_it_does():
    walked, undescribed = [], []

    def walk(command: click.Command, ctx: click.Context) -> None:
        walked.append(ctx.command_path)
        undescribed.extend(
            f"{ctx.command_path} {param.opts[0]}"
            for param in command.params
            if isinstance(param, click.Option) and not param.hidden and not param.help
        )
        if isinstance(command, click.Group):
            for name in command.list_commands(ctx):
                sub = command.get_command(ctx, name)
                walk(sub, click.Context(sub, parent=ctx, info_name=name))

    walk(main, click.Context(main, info_name="brewops"))

    assert {"brewops api serve", "brewops data crawl", "brewops stream backfill"} <= set(walked)
    assert undescribed == []


def test_a_target_that_is_not_running_is_one_line_saying_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("BREWOPS_LOCAL_STATE_DIR", str(tmp_path / "nothing-here"))
    result = subprocess.run([BREWOPS, "stream", "drain"], capture_output=True, text=True)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "brewops local up" in result.stderr


def test_a_bad_catalogue_file_is_one_line_too(tmp_path):
    broken = tmp_path / "catalogue.json"
    broken.write_text("{not json")
    result = subprocess.run(
        [BREWOPS, "api", "serve", "--catalog", str(broken), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr


def test_a_port_in_use_or_out_of_range_says_what_to_do(catalog_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        in_use = subprocess.run(
            [BREWOPS, "api", "serve", "--catalog", str(catalog_path), "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    too_high = subprocess.run(
        [BREWOPS, "api", "serve", "--port", "70000"], capture_output=True, text=True, timeout=60
    )

    assert in_use.returncode == 1
    assert f"Error: Cannot listen on 127.0.0.1:{port}: the port is in use" in in_use.stderr
    assert too_high.returncode == 2 and "70000 is not in the range" in too_high.stderr


def test_the_aws_target_without_a_region_is_one_line_saying_what_to_set(tmp_path):
    empty = tmp_path / "empty"
    empty.touch()
    env = {name: value for name, value in os.environ.items() if not name.startswith("AWS_")}
    env |= {
        "AWS_CONFIG_FILE": str(empty),
        "AWS_SHARED_CREDENTIALS_FILE": str(empty),
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    result = subprocess.run(
        [BREWOPS, "stream", "tick", "--target", "aws"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr, result.stderr
    assert "AWS_DEFAULT_REGION" in result.stderr


class AcceptingKinesis:
    """A Kinesis client that takes every record and keeps the partition keys (beer ids)."""

    def __init__(self) -> None:
        self.partition_keys: list[str] = []

    def put_records(self, Records: list[dict[str, Any]], **kwargs: Any) -> dict[str, Any]:
        self.partition_keys += [record["PartitionKey"] for record in Records]
        accepted = [{"SequenceNumber": "1", "ShardId": "shardId-000000000000"} for _ in Records]
        return {"FailedRecordCount": 0, "Records": accepted}


def accepting_target(monkeypatch, tmp_path, **fields: Any) -> SimpleNamespace:
    """The target the stream commands get: its Kinesis (`.kinesis`) takes every record."""
    kinesis = AcceptingKinesis()
    target = SimpleNamespace(
        outputs={"StreamName": "beers"},
        session=SimpleNamespace(client=lambda service: kinesis),
        stack_id="arn:aws:cloudformation:us-east-1:123456789012:stack/brewops-dev/1",
        kinesis=kinesis,
        **fields,
    )
    monkeypatch.setattr(streaming_cli, "use_target", lambda name: target)
    monkeypatch.setenv("BREWOPS_BUILD_DIR", str(tmp_path / "build"))
    return target


def test_backfill_speaks_the_api_version_of_the_target(punkapi_v3_url, monkeypatch, tmp_path):
    target = accepting_target(
        monkeypatch, tmp_path, name="local", punkapi_url=punkapi_v3_url, punkapi_version="v3"
    )

    result = CliRunner().invoke(streaming_cli.stream, ["backfill", "--no-progress"])

    assert result.exit_code == 0, result.output
    assert "325 of 325 beers sent" in result.output
    assert len(set(target.kinesis.partition_keys)) == 325


def test_backfill_takes_the_api_version_from_the_target_not_its_url(
    catalog_beers, monkeypatch, tmp_path
):
    # GIVEN a stack whose Punk API URL names no version, deployed with PunkApiVersion=v3
    asked: dict[str, Any] = {}

    class RecordingClient:
        def __init__(self, base_url: str, api_version: str, on_invalid: str) -> None:
            asked.update(url=base_url, api_version=api_version)
            self.schema_errors: list[str] = []

        def all_beers(self, progress: bool) -> list[dict[str, Any]]:
            return catalog_beers

    monkeypatch.setattr("brewops.punkapi.client.PunkApiClient", RecordingClient)
    accepting_target(
        monkeypatch,
        tmp_path,
        name="aws",
        punkapi_url="https://beers.example/api",
        punkapi_version="v3",
    )

    result = CliRunner().invoke(streaming_cli.stream, ["backfill", "--no-progress"])

    assert result.exit_code == 0, result.output
    assert asked == {"url": "https://beers.example/api", "api_version": "v3"}


def test_a_backfill_names_each_beer_it_could_not_send_and_why(catalog_beers, monkeypatch, tmp_path):
    target = accepting_target(monkeypatch, tmp_path, name="local", punkapi_url=None)
    catalog = tmp_path / "catalog.json"
    # NaN is what Python's JSON reader takes, and no strict reader of raw/ would
    catalog.write_text(json.dumps([catalog_beers[0], {**catalog_beers[1], "ibu": float("nan")}]))

    result = CliRunner().invoke(
        streaming_cli.stream, ["backfill", "--catalog", str(catalog), "--no-progress"]
    )

    assert result.exit_code == 1
    assert "1 of 2 beers sent" in result.output
    assert f"not sent: beer {catalog_beers[1]['id']}: NotSerialisable: " in result.output
    assert target.kinesis.partition_keys == [str(catalog_beers[0]["id"])]


def test_ids_remembered_from_several_threads_at_once_are_all_kept(monkeypatch, tmp_path):
    # `stream run --with-scheduler` ticks in a thread; a `stream tick` may run beside it
    monkeypatch.setenv("BREWOPS_BUILD_DIR", str(tmp_path))
    stack = "arn:aws:cloudformation:us-east-1:123456789012:stack/brewops-dev/1"

    def remember(first: int) -> None:
        for beer_id in range(first, first + 40):
            streaming_cli.remember_produced("local", [beer_id], stack)

    threads = [threading.Thread(target=remember, args=(n * 1000,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    ids, _ = streaming_cli.read_produced("local", stack)
    assert len(ids) == 6 * 40
