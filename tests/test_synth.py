"""Synthetic catalogues: deterministic by seed, new ids, jittered numbers, streamed."""

from __future__ import annotations

import inspect
import json
import tracemalloc
from pathlib import Path

from brewops.catalog import load_catalog, write_catalog
from brewops.punkapi.models import validate_beer
from brewops.synth import JITTERED_FIELDS, iter_synthetic_beers, synthesize


def test_same_seed_same_bytes(tmp_path: Path, catalog_path: Path):
    a = synthesize(300, tmp_path / "a.json", seed=11, catalog=catalog_path)
    b = synthesize(300, tmp_path / "b.json", seed=11, catalog=catalog_path)
    c = synthesize(300, tmp_path / "c.json", seed=12, catalog=catalog_path)
    assert a.path.read_bytes() == b.path.read_bytes()
    assert a.path.read_bytes() != c.path.read_bytes()


def test_new_ids_real_shapes_jittered_numbers(tmp_path: Path, catalog_path: Path, catalog_beers):
    report = synthesize(1000, tmp_path / "big.json", seed=3, catalog=catalog_path)
    assert (report.beers, report.source_beers) == (1000, 325)
    beers = load_catalog(report.path)
    assert [b["id"] for b in beers] == list(range(1, 1001))
    for beer in beers:
        validate_beer(beer)  # still a valid beer
    by_name = {b["name"]: b for b in catalog_beers}
    changed = 0
    for beer in beers:
        source = by_name[beer["name"].rsplit(" #", 1)[0]]
        assert beer["ingredients"] == source["ingredients"]
        for field in JITTERED_FIELDS:
            if source[field] is None:
                assert beer[field] is None  # the real gaps are kept
            else:
                assert beer[field] >= 0
                assert abs(beer[field] - source[field]) <= 0.35 * source[field] + 1
                changed += beer[field] != source[field]
    assert changed > 1000  # most numbers moved


def test_synthesis_streams(tmp_path: Path, catalog_beers):
    # synthesize() is write_catalog(iter_synthetic_beers(...)); measured here without the load
    # a generator: nothing is produced before it is asked for
    assert inspect.isgenerator(iter_synthetic_beers(catalog_beers, 10**9))
    small, large = 50, 1000

    def peak(n: int) -> int:
        tracemalloc.start()
        try:
            write_catalog(iter_synthetic_beers(catalog_beers, n, seed=1), tmp_path / f"{n}.json")
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    peak_small, peak_large = peak(small), peak(large)
    file_growth = (tmp_path / f"{large}.json").stat().st_size - (
        tmp_path / f"{small}.json"
    ).stat().st_size
    assert file_growth > 1_500_000
    # memory does not grow with the output: well under a tenth of what was written
    assert peak_large - peak_small < file_growth / 10


def test_zero_beers_is_an_empty_array(tmp_path: Path, catalog_path: Path):
    report = synthesize(0, tmp_path / "empty.json", catalog=catalog_path)
    assert json.loads(report.path.read_text()) == []
