"""Synthetic catalogues: deterministic by seed, new ids, jittered numbers, streamed."""

from __future__ import annotations

import inspect
import json
import tracemalloc
from collections import Counter
from pathlib import Path

import pytest

from brewops.catalog import CatalogError, load_catalog, write_catalog
from brewops.punkapi.models import validate_beer
from brewops.synth import iter_synthetic_beers, synthesize

# what `data synth` promises: every number jittered, then kept to these decimals (a copy on
# purpose, so a change to the promise shows here)
PRECISION = {
    "abv": 1,
    "ibu": 0,
    "target_fg": 0,
    "target_og": 0,
    "ebc": 0,
    "srm": 1,
    "ph": 1,
    "attenuation_level": 1,
}


def test_same_seed_same_bytes(tmp_path: Path, catalog_path: Path):
    a = synthesize(300, tmp_path / "a.json", seed=11, catalog=catalog_path)
    b = synthesize(300, tmp_path / "b.json", seed=11, catalog=catalog_path)
    c = synthesize(300, tmp_path / "c.json", seed=12, catalog=catalog_path)
    assert a.path.read_bytes() == b.path.read_bytes()
    assert a.path.read_bytes() != c.path.read_bytes()
    assert (a.seed, c.seed) == (11, 12)


def test_new_ids_real_shapes_jittered_numbers(tmp_path: Path, catalog_path: Path, catalog_beers):
    report = synthesize(1000, tmp_path / "big.json", seed=3, catalog=catalog_path)
    assert (report.beers, report.source_beers) == (1000, 325)
    beers = load_catalog(report.path)
    assert [b["id"] for b in beers] == list(range(1, 1001))
    for beer in beers:
        validate_beer(beer)  # still a valid beer
    by_name = {b["name"]: b for b in catalog_beers}
    changed: Counter[str] = Counter()
    for beer in beers:
        name, number = beer["name"].rsplit(" #", 1)
        assert int(number) == beer["id"]  # each synthetic beer's name is its own
        source = by_name[name]
        assert beer["ingredients"] == source["ingredients"]
        for field in PRECISION:
            if source[field] is None:
                assert beer[field] is None  # the real gaps are kept
            else:
                assert beer[field] >= 0
                assert abs(beer[field] - source[field]) <= 0.35 * source[field] + 1
                changed[field] += beer[field] != source[field]
    assert sum(changed.values()) > 1000  # most numbers moved
    assert set(changed) == set(PRECISION) and min(changed.values()) > 100  # every field


def test_jittered_numbers_keep_their_precision(catalog_beers):
    beers = list(iter_synthetic_beers(catalog_beers, 500, seed=5))
    for field, decimals in PRECISION.items():
        values = [b[field] for b in beers if b[field] is not None]
        if decimals == 0:
            assert all(type(v) is int for v in values), field  # written as 12, not 12.0
        else:
            assert all(round(v, decimals) == v for v in values), field
            assert any(round(v, decimals - 1) != v for v in values), field


def test_no_jitter_keeps_the_real_numbers(tmp_path: Path, catalog_path: Path, catalog_beers):
    by_name = {b["name"]: b for b in catalog_beers}
    report = synthesize(200, tmp_path / "still.json", seed=2, catalog=catalog_path, jitter=0.0)
    beers = load_catalog(report.path)
    assert len(beers) == 200
    for beer in beers:
        source = by_name[beer["name"].rsplit(" #", 1)[0]]
        for field, decimals in PRECISION.items():
            real = source[field]
            assert beer[field] == (None if real is None else round(real, decimals or None))


def test_a_wide_jitter_never_makes_a_number_negative(catalog_beers):
    beers = list(iter_synthetic_beers(catalog_beers, 300, seed=7, jitter=3.0))
    values = [b[f] for b in beers for f in PRECISION if b[f] is not None]
    assert min(values) == 0  # clipped at zero, where the jitter went below it


@pytest.mark.parametrize(
    "odd",
    ["4.5", True, float("nan"), float("inf"), 10**400],
    ids=["text", "boolean", "nan", "infinity", "400 digits"],
)
def test_a_number_that_cannot_be_jittered_is_kept_as_it_is(odd):
    # a catalogue file may hold any JSON value there; the cleaners downstream must meet it
    source = [{"id": 1, "name": "Odd", "abv": odd, "ibu": odd}]
    [beer] = iter_synthetic_beers(source, 1, jitter=0.5)
    assert beer["abv"] is odd
    assert beer["ibu"] is odd


def test_a_jitter_past_the_largest_float_keeps_the_number():
    largest = 1.7976931348623157e308
    beers = iter_synthetic_beers([{"id": 1, "name": "Big", "ibu": largest}], 20, jitter=0.5)
    assert {beer["ibu"] for beer in beers} >= {largest}  # not rounded as an infinity


@pytest.mark.parametrize(
    "name", [{}, {"name": None}, {"name": 7}], ids=["missing", "null", "number"]
)
def test_a_beer_without_a_text_name_keeps_its_name_as_it_is(tmp_path: Path, name: dict):
    # the catalogue loader asks each beer for an id only: `data synth` must take such a file
    source = tmp_path / "nameless.json"
    source.write_text(json.dumps([{"id": 1, "abv": 5.0, **name}]), encoding="utf-8")
    report = synthesize(2, tmp_path / "out.json", catalog=source)
    beers = json.loads(report.path.read_text(encoding="utf-8"))
    assert [beer["id"] for beer in beers] == [1, 2]
    assert [{k: v for k, v in beer.items() if k == "name"} for beer in beers] == [name, name]


def test_every_beer_of_the_source_can_be_drawn(catalog_beers):
    two = catalog_beers[:2]
    drawn = {b["name"].rsplit(" #", 1)[0] for b in iter_synthetic_beers(two, 50, seed=1)}
    assert drawn == {b["name"] for b in two}
    [only] = iter_synthetic_beers(catalog_beers[:1], 1)
    assert only["name"] == f"{catalog_beers[0]['name']} #1"


def test_a_negative_count_is_refused_and_nothing_written(tmp_path: Path, catalog_path: Path):
    with pytest.raises(ValueError, match="n must be >= 0"):
        synthesize(-1, tmp_path / "negative.json", catalog=catalog_path)
    assert not (tmp_path / "negative.json").exists()


def test_an_empty_catalogue_is_refused_and_nothing_written(tmp_path: Path):
    empty = tmp_path / "empty.json"
    empty.write_text("[]", encoding="utf-8")
    with pytest.raises(CatalogError, match="no beers to resample"):
        synthesize(5, tmp_path / "out.json", catalog=empty)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.json"]


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
    assert json.loads(report.path.read_text(encoding="utf-8")) == []
