"""`brewops data fetch|crawl|synth` through the command line."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from brewops.catalog import CATALOG_FILENAME, load_catalog
from brewops.cli import main
from brewops.synth import synthesize
from fixtures.commands import run_in_group
from fixtures.punkapi import make_tarball


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_fetch_prints_the_path_last(runner, fake_npm, tmp_path: Path, real_bytes: bytes):
    cache = tmp_path / "cache"
    result = runner.invoke(main, ["data", "fetch"], env={"BREWOPS_CACHE_DIR": str(cache)})
    assert result.exit_code == 0, result.output
    last = result.output.strip().splitlines()[-1]
    assert last == str(cache / CATALOG_FILENAME)
    assert Path(last).read_bytes() == real_bytes


def test_fetch_force_fetches_a_cached_catalogue_again(runner, fake_npm, tmp_path: Path):
    env = {"BREWOPS_CACHE_DIR": str(tmp_path / "cache")}
    assert runner.invoke(main, ["data", "fetch"], env=env).exit_code == 0
    assert runner.invoke(main, ["data", "fetch"], env=env).exit_code == 0
    assert fake_npm.call_count() == 1
    result = runner.invoke(main, ["data", "fetch", "--force"], env=env)
    assert result.exit_code == 0, result.output
    assert fake_npm.call_count() == 2


def test_fetch_failure_exits_non_zero_with_advice(runner, fake_npm, tmp_path: Path, real_bytes):
    fake_npm.serve(make_tarball(tmp_path / "bad.tgz", real_bytes + b" "))
    cache = tmp_path / "cache"
    result = runner.invoke(main, ["data", "fetch"], env={"BREWOPS_CACHE_DIR": str(cache)})
    assert result.exit_code == 1
    assert "Checksum mismatch" in result.output
    assert not cache.exists() or list(cache.iterdir()) == []


@pytest.mark.parametrize("version", ["v2", "v3"])
def test_crawl_snapshots_a_server(runner, request, version, tmp_path: Path, catalog_beers):
    url = request.getfixturevalue("punkapi_url" if version == "v2" else "punkapi_v3_url")
    out = tmp_path / f"crawl-{version}.json"
    result = runner.invoke(
        main,
        [
            "data",
            "crawl",
            "--url",
            url,
            "--api-version",
            version,
            "--out",
            str(out),
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == str(out)
    crawled = load_catalog(out)
    if version == "v2":
        assert crawled == catalog_beers
    else:
        assert [b["name"] for b in crawled] == [b["name"] for b in catalog_beers]


def test_crawl_takes_the_api_version_from_the_url(runner, punkapi_v3_url, tmp_path: Path):
    out = tmp_path / "v3.json"
    result = runner.invoke(
        main, ["data", "crawl", "--url", punkapi_v3_url, "--out", str(out), "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    assert len(load_catalog(out)) == 325
    # 80 beers a page by default: four full pages and a short fifth
    assert f"325 beers from {punkapi_v3_url} (5 requests)" in result.stderr
    assert result.stdout == f"{out}\n"  # stdout is the path alone, for scripts


def test_crawl_asks_for_the_page_size_given(runner, punkapi_url, tmp_path: Path):
    out = tmp_path / "small-pages.json"
    args = ["data", "crawl", "--url", punkapi_url, "--out", str(out), "--per-page", "25"]
    result = runner.invoke(main, [*args, "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "(14 requests)" in result.stderr  # 13 full pages, then an empty one
    assert len(load_catalog(out)) == 325


@pytest.mark.parametrize(("flags", "drawn"), [([], False), (["--progress"], True)])
def test_crawl_shows_a_progress_bar_in_a_log_only_when_told(
    runner, punkapi_url, tmp_path: Path, flags: list[str], drawn: bool
):
    out = tmp_path / "bar.json"
    result = runner.invoke(
        main, ["data", "crawl", "--url", punkapi_url, "--out", str(out), *flags]
    )  # stderr is no terminal here
    assert result.exit_code == 0, result.output
    assert ("Crawling: " in result.stderr) is drawn
    assert result.stdout == f"{out}\n"


def test_crawl_retries_a_server_error_unless_told_not_to(
    runner, punkapi_server, catalog_beers, tmp_path: Path
):
    # seed 1: the first request gets a 500, the next five are answered
    def flaky() -> str:
        return punkapi_server(beers=catalog_beers[:100], error_rate=0.2, seed=1)

    out = tmp_path / "retried.json"
    result = runner.invoke(main, ["data", "crawl", "--url", flaky(), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "100 beers" in result.stderr and "(3 requests)" in result.stderr
    out = tmp_path / "given-up.json"
    url = flaky()
    result = runner.invoke(
        main, ["data", "crawl", "--url", url, "--out", str(out), "--retries", "0"]
    )
    assert result.exit_code == 1
    assert f"Crawl of {url} failed" in result.output
    assert not out.exists()


def test_crawl_refuses_a_server_that_repeats_ids(
    runner, punkapi_server, catalog_beers, tmp_path: Path
):
    url = punkapi_server(beers=[*catalog_beers[:5], catalog_beers[2]])
    out = tmp_path / "dup.json"
    result = runner.invoke(
        main, ["data", "crawl", "--url", url, "--out", str(out), "--no-progress"]
    )
    assert result.exit_code == 1
    assert "served duplicate ids; nothing written" in result.output
    assert not out.exists()


def test_a_crawled_v3_snapshot_can_be_served_again(
    runner, punkapi_v3_url, punkapi_server, tmp_path: Path
):
    out = tmp_path / "v3.json"
    args = ["data", "crawl", "--url", punkapi_v3_url, "--api-version", "v3", "--out", str(out)]
    assert runner.invoke(main, [*args, "--no-progress"]).exit_code == 0
    url = punkapi_server(catalog_path=out, beers=None, api_version="v3")
    from brewops.punkapi.client import PunkApiClient

    assert PunkApiClient(url, "v3").beer(2)["image_url"].endswith("/images/2.png")


@pytest.mark.parametrize(
    "command",
    [
        ["data", "crawl", "--url", "http://h/v2", "--out", "beers.json"],
        ["stream", "backfill"],
        ["api", "serve"],
    ],
    ids=lambda command: " ".join(command[:2]),
)
def test_every_api_version_option_takes_what_the_client_takes(command: list[str]):
    group = main.get_command(click.Context(main), command[0])
    assert isinstance(group, click.Group)
    leaf = group.get_command(click.Context(group), command[1])
    assert leaf is not None

    def parsed(version: str) -> object:
        args = [*command[2:], "--api-version", version]
        return leaf.make_context(command[1], args).params["api_version"]

    assert parsed("V3") == "v3"
    with pytest.raises(click.BadParameter, match="'v4' is not one of 'v2', 'v3'"):
        parsed("v4")


def test_crawl_of_a_dead_server_fails_cleanly(runner, tmp_path: Path):
    out = tmp_path / "none.json"
    result = runner.invoke(
        main,
        ["data", "crawl", "--url", "http://127.0.0.1:9/v2", "--out", str(out), "--retries", "0"],
    )
    assert result.exit_code == 1
    assert "Crawl of http://127.0.0.1:9/v2 failed" in result.output
    assert not out.exists()


@pytest.mark.parametrize(
    "url",
    [
        "notaurl",
        "127.0.0.1:8080/v2",
        "ftp://host/v2",
        "http://punk api.example/v2",
        "http://:8080/v2",
    ],
)
def test_crawl_refuses_a_url_that_is_not_http_with_a_message(runner, url, tmp_path: Path):
    out = tmp_path / "none.json"
    result = runner.invoke(main, ["data", "crawl", "--url", url, "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert "Invalid value for '--url'" in result.output
    assert "must be an http:// or https:// URL with a host and no spaces" in result.output
    assert not isinstance(result.exception, ValueError)
    assert not out.exists()


def test_synth_writes_n_beers(runner, catalog_path, tmp_path: Path):
    out = tmp_path / "synth.json"
    result = runner.invoke(
        main,
        [
            "data",
            "synth",
            "--n",
            "50",
            "--out",
            str(out),
            "--seed",
            "4",
            "--catalog",
            str(catalog_path),
        ],
    )
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == str(out)
    assert [b["id"] for b in json.loads(out.read_text(encoding="utf-8"))] == list(range(1, 51))
    assert result.stdout == f"{out}\n"
    assert "50 beers from 325 (seed 4)" in result.stderr


@pytest.mark.parametrize("stdout", ["pipe", "file"])
def test_synth_to_stdout_prints_only_the_catalogue(catalog_path, tmp_path: Path, stdout: str):
    import subprocess
    import sys

    brewops = Path(sys.executable).with_name("brewops")
    args = [brewops, "data", "synth", "--n", "3", "--out", "/dev/stdout", "--catalog", catalog_path]
    # WHEN the catalogue goes to stdout, read through a pipe or redirected to a file
    if stdout == "pipe":
        result = run_in_group(args, capture_output=True, encoding="locale", timeout=60)
        printed = result.stdout
    else:
        with (tmp_path / "redirected.json").open("wb") as redirected:
            result = run_in_group(args, stdout=redirected, stderr=subprocess.PIPE, timeout=60)
        printed = (tmp_path / "redirected.json").read_text(encoding="utf-8")
    # THEN stdout is the JSON array alone, with no path line after it
    assert result.returncode == 0, result.stderr
    assert [b["id"] for b in json.loads(printed)] == [1, 2, 3]


@pytest.mark.parametrize(
    ("options", "settings"),
    [([], {}), (["--seed", "4", "--jitter", "0"], {"seed": 4, "jitter": 0.0})],
)
def test_synth_writes_what_synthesize_writes_with_the_same_settings(
    runner, catalog_path, tmp_path: Path, options, settings
):
    out = tmp_path / "cli.json"
    args = ["data", "synth", "--n", "30", "--out", str(out), "--catalog", str(catalog_path)]
    result = runner.invoke(main, [*args, *options])
    assert result.exit_code == 0, result.output
    expected = synthesize(30, tmp_path / "api.json", catalog=catalog_path, **settings)
    assert out.read_bytes() == expected.path.read_bytes()


@pytest.mark.parametrize(("option", "value"), [("--n", "-1"), ("--jitter", "-0.1")])
def test_synth_refuses_a_negative_count_or_jitter(
    runner, catalog_path, tmp_path: Path, option: str, value: str
):
    out = tmp_path / "negative.json"
    args = ["data", "synth", "--out", str(out), "--catalog", str(catalog_path), option, value]
    result = runner.invoke(main, args)
    assert result.exit_code == 2
    assert f"Invalid value for '{option}': {value} is not in the range x>=0" in result.output
    assert not out.exists()


def test_synth_from_a_v3_catalogue(runner, write_catalog_file, catalog_beers, tmp_path: Path):
    from brewops.catalog import to_v3_shape

    source = write_catalog_file([to_v3_shape(b) for b in catalog_beers[:3]])
    out = tmp_path / "synth.json"
    result = runner.invoke(
        main, ["data", "synth", "--n", "5", "--out", str(out), "--catalog", str(source)]
    )
    assert result.exit_code == 0, result.output
    synthetic = json.loads(out.read_text(encoding="utf-8"))
    assert len(synthetic) == 5
    assert all("image_url" in b for b in synthetic)
