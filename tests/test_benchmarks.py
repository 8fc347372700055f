"""The benchmark scripts that are quick enough to run here, on small sizes: they must keep
running and printing their figures (the figures themselves are not asserted)."""

from __future__ import annotations

import json
import subprocess
import sys

from brewops.paths import repo_root

MODEL_BENCHMARK = repo_root() / "benchmarks" / "model.py"


def test_model_benchmark_prints_its_figures(catalog_path):
    result = subprocess.run(
        [sys.executable, str(MODEL_BENCHMARK), "--beers", "60", "--catalog", str(catalog_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["training_beers"] == 320  # the catalogue's beers with an IBU, deduplicated
    assert figures["beers"] == 60
    for name in (
        "fit_seconds",
        "model_mb",
        "load_seconds",
        "features_per_s",
        "predict_per_s",
        "one_beer_ms",
        "peak_rss_mb",
    ):
        assert figures[name] > 0, name


def test_model_benchmark_rejects_an_empty_run():
    result = subprocess.run(
        [sys.executable, str(MODEL_BENCHMARK), "--beers", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "--beers must be at least 1" in result.stderr
