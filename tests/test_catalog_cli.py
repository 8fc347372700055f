"""`brewops data fetch|crawl|synth` through the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from brewops.catalog import CATALOG_FILENAME, load_catalog
from brewops.cli import main
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


def test_a_crawled_v3_snapshot_can_be_served_again(
    runner, punkapi_v3_url, punkapi_server, tmp_path: Path
):
    out = tmp_path / "v3.json"
    args = ["data", "crawl", "--url", punkapi_v3_url, "--api-version", "v3", "--out", str(out)]
    assert runner.invoke(main, [*args, "--no-progress"]).exit_code == 0
    url = punkapi_server(catalog_path=out, beers=None, api_version="v3")
    from brewops.punkapi.client import PunkApiClient

    assert PunkApiClient(url, "v3").beer(2)["image_url"].endswith("/images/2.png")


def test_crawl_of_a_dead_server_fails_cleanly(runner, tmp_path: Path):
    out = tmp_path / "none.json"
    result = runner.invoke(
        main,
        ["data", "crawl", "--url", "http://127.0.0.1:9/v2", "--out", str(out), "--retries", "0"],
    )
    assert result.exit_code == 1
    assert "Crawl of http://127.0.0.1:9/v2 failed" in result.output
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
    assert [b["id"] for b in json.loads(out.read_text())] == list(range(1, 51))


def test_synth_from_a_v3_catalogue(runner, write_catalog_file, catalog_beers, tmp_path: Path):
    from brewops.catalog import to_v3_shape

    source = write_catalog_file([to_v3_shape(b) for b in catalog_beers[:3]])
    out = tmp_path / "synth.json"
    result = runner.invoke(
        main, ["data", "synth", "--n", "5", "--out", str(out), "--catalog", str(source)]
    )
    assert result.exit_code == 0, result.output
    assert all("image_url" in b for b in json.loads(out.read_text()))
