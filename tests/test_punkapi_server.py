"""The local server over real HTTP, request by request against the documented contract;
what depends on time or chance is driven through the WSGI app with a test clock or seed."""

from __future__ import annotations

import calendar
import copy
import functools
import json
import math
import sys
import time
from pathlib import Path

import pytest
import requests
from werkzeug.test import Client

from brewops.catalog import CatalogError
from brewops.punkapi import server
from brewops.punkapi.server import (
    MSG_BEER_ID,
    MSG_DATE,
    MSG_NUMBER,
    MSG_RATE_LIMITED,
    MSG_TEXT,
    FaultInjector,
    Faults,
    PunkApiApp,
    RateLimiter,
    express_etag,
    filter_v2,
)
from fixtures.commands import run_in_group
from fixtures.punkapi import ServedApi

TIMEOUT = 10
LONG_NUMBER = "9" * 5000  # more digits than int() reads


def get(url: str, **kw) -> requests.Response:
    return requests.get(url, timeout=TIMEOUT, **kw)


def ids(response: requests.Response) -> list[int]:
    return [b["id"] for b in response.json()]


def bad_request(*entries: tuple[str, str, str], location: str = "query") -> dict:
    return {
        "statusCode": 400,
        "error": "Bad Request",
        "message": "Invalid query params",
        "data": [{"location": location, "param": p, "msg": m, "value": v} for p, m, v in entries],
    }


# ----------------------------------------------------------------------------- v2 endpoints


def shown(numbers: list[int]) -> str:
    """A list of ids as ranges: "1-30", not thirty numbers cut short."""
    runs: list[list[int]] = []
    for n in numbers:
        if runs and n == runs[-1][-1] + 1:
            runs[-1].append(n)
        else:
            runs.append([n])
    return ", ".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs)


def test_ids_are_shown_as_ranges():
    assert shown([1, 2, 3, 7, 9, 10]) == "1-3, 7, 9-10"


def test_beers_default_page_is_25_sorted_by_id(punkapi_url):
    r = get(f"{punkapi_url}/beers")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/json; charset=utf-8"
    assert ids(r) == list(range(1, 26)), (
        f"GET /v2/beers without per_page answered beers {shown(ids(r))}: the real v2 API "
        "answers the first 25, as the server's default per_page must (punkapi/server.py)"
    )


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("page=2&per_page=80", list(range(81, 161))),
        ("page=5&per_page=80", list(range(321, 326))),
        ("page=6&per_page=80", []),
        ("page=99999999999999999999", []),
        ("per_page=1", [1]),
        ("page=%2B2&per_page=010", list(range(11, 21))),  # validator.js accepts a sign, zeroes
        ("unknown=1&per_page=3", [1, 2, 3]),
    ],
)
def test_pagination(punkapi_url, query, expected):
    r = get(f"{punkapi_url}/beers?{query}")
    assert r.status_code == 200
    assert ids(r) == expected


def test_all_pages_cover_the_catalogue_once(punkapi_url, catalog_beers):
    seen = []
    for page in range(1, 6):
        seen += get(f"{punkapi_url}/beers?page={page}&per_page=80").json()
    assert seen == catalog_beers


def test_beer_by_id_is_an_array_of_one(punkapi_url, catalog_beers):
    r = get(f"{punkapi_url}/beers/106")
    assert r.status_code == 200
    assert r.json() == [catalog_beers[105]]
    assert r.json()[0]["name"] == "Punk IPA 2010 - Current"


def test_random_is_an_array_of_one_real_beer(punkapi_url, catalog_beers):
    for _ in range(3):
        r = get(f"{punkapi_url}/beers/random")
        assert r.status_code == 200
        (beer,) = r.json()
        assert beer == catalog_beers[beer["id"] - 1]


@pytest.mark.parametrize("path", ["/BEERS/1", "/beers/1/", "/Beers/Random"])
def test_routes_are_case_insensitive_and_ignore_a_trailing_slash(punkapi_url, path):
    assert get(punkapi_url + path).status_code == 200


# ----------------------------------------------------------------------------- v2 filters


def brewed(beer) -> tuple[int, int] | None:
    """(year, month) of an "MM/YYYY" first_brewed; a bare year never matches a date filter."""
    month, _, year = beer["first_brewed"].partition("/")
    return (int(year), int(month)) if year else None


def matching(beers, predicate):
    return [b["id"] for b in beers if predicate(b)]


@pytest.mark.parametrize(
    ("query", "predicate"),
    [
        ("abv_gt=10", lambda b: b["abv"] > 10),
        ("abv_lt=4.5", lambda b: b["abv"] < 4.5),
        ("ibu_gt=100", lambda b: (b["ibu"] or 0) > 100),
        # as in the original, null compares as 0: the null-IBU beers are "below 20"
        ("ibu_lt=20", lambda b: (b["ibu"] or 0) < 20),
        ("ebc_gt=100&ebc_lt=200", lambda b: 100 < (b["ebc"] or 0) < 200),
        ("abv_gt=1e1", lambda b: b["abv"] > 10),
        ("abv_gt=0", lambda b: b["abv"] > 0),  # numbers >= 0 are valid: 0 is
        ("ebc_lt=10.5", lambda b: (b["ebc"] or 0) < 10.5),  # colours are numbers, not ints
        ("food=cheese", lambda b: any("cheese" in f.lower() for f in b["food_pairing"])),
        ("food=blue_cheese", lambda b: any("blue cheese" in f.lower() for f in b["food_pairing"])),
        ("yeast=wyeast_1056", lambda b: "wyeast 1056" in (b["ingredients"]["yeast"] or "").lower()),
        (
            "hops=NELSON",
            lambda b: any("nelson" in h["name"].lower() for h in b["ingredients"]["hops"]),
        ),
        (
            "malt=extra_pale",
            lambda b: any("extra pale" in m["name"].lower() for m in b["ingredients"]["malt"]),
        ),
        ("ids=29|1|4", lambda b: b["id"] in (1, 4, 29)),
        ("ids=1|x|", lambda b: b["id"] == 1),
        ("ids=0x1d|4.0|1_0", lambda b: b["id"] in (4, 29)),  # entries read as Number() does
        ("brewed_before=02-2008", lambda b: (brewed(b) or (9999, 0)) < (2008, 2)),
        ("brewed_after=11-2015", lambda b: (brewed(b) or (0, 0)) > (2015, 11)),
    ],
)
def test_filters_match_the_catalogue(punkapi_url, catalog_beers, query, predicate):
    r = get(f"{punkapi_url}/beers?per_page=80&{query}")
    assert r.status_code == 200
    expected = matching(catalog_beers, predicate)[:80]
    assert expected, "the filter must select something to be a test"
    assert ids(r) == expected


def test_text_filters_are_a_case_insensitive_substring_match(punkapi_url, catalog_beers):
    r = get(f"{punkapi_url}/beers?beer_name=PUNK_ipa&per_page=80")
    want = [b["id"] for b in catalog_beers if "punk ipa" in b["name"].lower()]
    assert ids(r) == want and len(want) > 1
    # characters in order are no match ("pnk" used to find Punk IPA)
    assert get(f"{punkapi_url}/beers?beer_name=pnk").json() == []
    yeast = get(f"{punkapi_url}/beers?yeast=wyeast_1056&per_page=80")
    assert (
        ids(yeast)
        == [
            b["id"]
            for b in catalog_beers
            if "wyeast 1056" in (b["ingredients"]["yeast"] or "").lower()
        ][:80]
    )


def test_year_only_first_brewed_never_matches_a_date_filter(punkapi_url, catalog_beers):
    years_only = {b["id"] for b in catalog_beers if len(b["first_brewed"]) == 4}
    r = get(f"{punkapi_url}/beers?brewed_after=01-2000&per_page=80&page=4")
    assert years_only and not years_only & set(ids(r))


def test_filters_combine(punkapi_url, catalog_beers):
    r = get(f"{punkapi_url}/beers?abv_gt=6&ibu_lt=50&food=chocolate&per_page=80")
    want = matching(
        catalog_beers,
        lambda b: (
            b["abv"] > 6
            and (b["ibu"] or 0) < 50
            and any("chocolate" in f.lower() for f in b["food_pairing"])
        ),
    )
    assert want and ids(r) == want


def test_a_filter_matching_nothing_is_an_empty_array(punkapi_url):
    r = get(f"{punkapi_url}/beers?beer_name=zzzzzz")
    assert (r.status_code, r.json()) == (200, [])


@pytest.fixture
def far_east_of_utc(monkeypatch):
    """This machine in UTC+14 (Kiribati), an hour before midnight UTC on New Year's Eve."""
    instant = calendar.timegm((2025, 12, 31, 23, 0, 0))
    real_gmtime, real_localtime = time.gmtime, time.localtime
    monkeypatch.setenv("TZ", "LINT-14")
    time.tzset()

    def at_the_instant(real):
        return lambda seconds=None: real(instant if seconds is None else seconds)

    monkeypatch.setattr(time, "gmtime", at_the_instant(real_gmtime))
    monkeypatch.setattr(time, "localtime", at_the_instant(real_localtime))
    yield
    monkeypatch.undo()
    time.tzset()


def test_a_first_brewed_month_without_a_year_is_in_this_year_in_utc(far_east_of_utc):
    beer = {"id": 1, "first_brewed": "12"}  # moment reads a lone month as this year's
    # 2025 in UTC, while this machine's clock already says January 2026
    assert filter_v2([beer], {"brewed_before": ["01-2026"]}) == [beer]


@pytest.mark.parametrize("name", ["beer_name", "hops", "malt", "yeast"])
def test_regular_expression_characters_are_plain_text(punkapi_url, name):
    r = get(f"{punkapi_url}/beers", params={name: "a(["})
    assert r.status_code == 200 and r.json() == []


def test_filter_v2_semantics_unit(catalog_beers):
    # a repeated numeric parameter compares as NaN in the original: nothing matches
    assert filter_v2(catalog_beers, {"abv_gt": ["1", "2"]}) == []
    # an unparseable month in a valid-looking date (13, or 00) matches nothing
    assert filter_v2(catalog_beers, {"brewed_before": ["13-2010"]}) == []
    assert filter_v2(catalog_beers, {"brewed_before": ["00-2010"]}) == []
    # null compares as 0, which is not below 0: the null-IBU beers are not "below 0"
    assert filter_v2(catalog_beers, {"ibu_lt": ["0"]}) == []


NUMBER_FILTERS = ["abv_gt=1", "abv_lt=99", "ibu_gt=1", "ibu_lt=9999", "ebc_gt=1", "ebc_lt=9999"]
TEXT_FILTERS = ["beer_name=e", "food=e"]
V2_ONLY_FILTERS = ["hops=e", "malt=e", "yeast=e", "brewed_before=01-2030", "brewed_after=01-1990"]


@pytest.mark.parametrize(
    ("version", "query"),
    [
        *(("v2", q) for q in NUMBER_FILTERS + TEXT_FILTERS + V2_ONLY_FILTERS),
        *(("v3", q) for q in NUMBER_FILTERS + TEXT_FILTERS),
    ],
)
def test_a_beer_without_the_filtered_field_matches_no_filter_on_it(catalog_beers, version, query):
    # the loader asks only for ids; the original compares a missing number as NaN
    bare = {"id": catalog_beers[1]["id"]}
    app = PunkApiApp([catalog_beers[0], bare, catalog_beers[2]], version)

    answer = Client(app).get(f"/{version}/beers?{query}&page=1")

    assert answer.status_code == 200
    assert catalog_beers[1]["id"] not in [beer["id"] for beer in answer.json]


@pytest.mark.parametrize("name", ["beer_name", "food", "hops", "malt", "yeast", "ids"])
def test_a_repeated_text_filter_is_a_500_as_in_the_original(punkapi_url, name):
    # the original calls string methods on the array a repeated parameter becomes
    r = get(f"{punkapi_url}/beers?{name}=a&{name}=b")
    assert r.status_code == 500
    assert r.json() == {
        "statusCode": 500,
        "error": "Internal Server Error",
        "message": "An internal server error occurred",
    }


@pytest.mark.parametrize(("query", "expected"), [("ids=1,4", []), ("ids=1%2C4|29", [29])])
def test_ids_are_separated_by_pipes_only(punkapi_url, query, expected):
    # each "|"-separated entry is read as Number() does: "1,4" is NaN and matches nothing
    r = get(f"{punkapi_url}/beers?{query}")
    assert r.status_code == 200
    assert ids(r) == expected


def test_a_long_id_of_junk_is_answered_at_once(write_catalog_file, catalog_beers):
    # A request line near the server's 64 KiB limit: read with a backtracking pattern,
    # these digits would hold the server's only interpreter lock for minutes.
    served = ServedApi(write_catalog_file(catalog_beers[:12]))
    try:
        r = get(f"{served.url}/beers?ids={'1' * 60_000}x")
        assert (r.status_code, r.json()) == (200, [])
        assert ids(get(f"{served.url}/beers?ids=1")) == [1]
    finally:
        served.stop()


# ----------------------------------------------------------------------------- v2 errors


@pytest.mark.parametrize(
    ("query", "entries"),
    [
        ("per_page=100", [("per_page", "Must be a number greater than 0 and less than 80", "100")]),
        ("per_page=0", [("per_page", "Must be a number greater than 0 and less than 80", "0")]),
        ("page=0", [("page", MSG_NUMBER, "0")]),
        ("page=1.5", [("page", MSG_NUMBER, "1.5")]),
        ("page=", [("page", MSG_NUMBER, "")]),
        ("abv_gt=-1", [("abv_gt", MSG_NUMBER, "-1")]),
        ("ibu_lt=abc", [("ibu_lt", MSG_NUMBER, "abc")]),
        ("ebc_gt=.", [("ebc_gt", MSG_NUMBER, ".")]),
        ("brewed_before=2011", [("brewed_before", MSG_DATE, "2011")]),
        ("brewed_after=13-2011", [("brewed_after", MSG_DATE, "13-2011")]),
        ("brewed_after=01-2011-junk", [("brewed_after", MSG_DATE, "01-2011-junk")]),
        ("brewed_before=01-11", [("brewed_before", MSG_DATE, "01-11")]),  # a 4-digit year
        ("brewed_before=1-2011", [("brewed_before", MSG_DATE, "1-2011")]),  # a 2-digit month
        ("beer_name=", [("beer_name", MSG_TEXT, "")]),
        ("food=", [("food", MSG_TEXT, "")]),
        ("malt=&yeast=", [("malt", MSG_TEXT, ""), ("yeast", MSG_TEXT, "")]),
        # a repeated parameter is bad when any of its values is, and shown whole
        ("page=1&page=0", [("page", MSG_NUMBER, ["1", "0"])]),
        ("page=0&page=1", [("page", MSG_NUMBER, ["0", "1"])]),
        # a number followed by a line break is no number (validator.js anchors the whole value)
        (
            "per_page=5%0A",
            [("per_page", "Must be a number greater than 0 and less than 80", "5\n")],
        ),
        ("page=1%0A", [("page", MSG_NUMBER, "1\n")]),
        ("abv_gt=5%0A", [("abv_gt", MSG_NUMBER, "5\n")]),
        # past int()'s 4,300 digits: out of range, as JavaScript's Infinity is
        pytest.param(
            f"per_page={LONG_NUMBER}",
            [("per_page", "Must be a number greater than 0 and less than 80", LONG_NUMBER)],
            id="per_page-of-5000-digits",
        ),
        pytest.param(
            f"page=-{LONG_NUMBER}", [("page", MSG_NUMBER, f"-{LONG_NUMBER}")], id="page-below-0"
        ),
        (
            "food=&page=0&per_page=81&hops=&abv_lt=x",
            [
                ("page", MSG_NUMBER, "0"),
                ("per_page", "Must be a number greater than 0 and less than 80", "81"),
                ("abv_lt", MSG_NUMBER, "x"),
                ("hops", MSG_TEXT, ""),
                ("food", MSG_TEXT, ""),
            ],
        ),
    ],
)
def test_invalid_query_params_give_one_entry_each(punkapi_url, query, entries):
    r = get(f"{punkapi_url}/beers?{query}")
    assert r.status_code == 400
    assert r.json() == bad_request(*entries)


def test_a_page_number_too_long_for_int_is_past_the_end(punkapi_url):
    r = get(f"{punkapi_url}/beers?page={LONG_NUMBER}")
    assert (r.status_code, r.json()) == (200, [])


@pytest.mark.parametrize("beer_id", ["0", "abc", "-3", "1.5", "1x"])
def test_an_invalid_id_is_a_params_error(punkapi_url, beer_id):
    r = get(f"{punkapi_url}/beers/{beer_id}")
    assert r.status_code == 400
    assert r.json() == bad_request(("beerId", MSG_BEER_ID, beer_id), location="params")


def test_an_id_followed_by_a_line_break_is_a_params_error(punkapi_url):
    r = get(f"{punkapi_url}/beers/1%0A")
    assert r.status_code == 400
    assert r.json() == bad_request(("beerId", MSG_BEER_ID, "1\n"), location="params")


@pytest.mark.parametrize(
    "beer_id", ["9999", "0123456789", "326", pytest.param(LONG_NUMBER, id="5000-digits")]
)
def test_an_unknown_id_is_404_with_the_id_as_sent(punkapi_url, beer_id):
    r = get(f"{punkapi_url}/beers/{beer_id}")
    assert r.status_code == 404
    assert r.json() == {
        "statusCode": 404,
        "error": "Not Found",
        "message": f"No beer found that matches the ID {beer_id}",
    }


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v2/nothing?x=1"),
        ("GET", "/v2"),
        ("GET", "/v2/beers/1/2"),
        ("GET", "/v2/beers//"),  # one trailing slash is ignored, not two
        ("DELETE", "/v2/beers/8"),
        ("POST", "/v2/beers"),
        ("GET", "/beers/random"),
        ("GET", "/"),
    ],
)
def test_anything_else_is_404_naming_the_url(punkapi_url, method, path):
    root = punkapi_url.removesuffix("/v2")
    r = requests.request(method, root + path, timeout=TIMEOUT)
    assert r.status_code == 404
    assert r.json() == {
        "statusCode": 404,
        "error": "Not Found",
        "message": f"No endpoint found that matches '{path}'",
    }


# ----------------------------------------------------------------------------- v2 headers


def test_rate_limit_and_cors_headers_on_every_v2_answer(punkapi_url):
    for path in ("/beers", "/beers/0", "/beers/9999", "/nothing"):
        r = get(punkapi_url + path)
        assert r.headers["X-RateLimit-Limit"] == "3600"
        assert 0 <= int(r.headers["X-RateLimit-Remaining"]) < 3600
        assert int(r.headers["X-RateLimit-Reset"]) > time.time()
        assert r.headers["Access-Control-Allow-Origin"] == "*"


def test_no_rate_limit_headers_outside_v2(punkapi_url):
    r = get(punkapi_url.removesuffix("/v2") + "/other")
    assert "X-RateLimit-Limit" not in r.headers
    assert "Access-Control-Allow-Origin" not in r.headers


def test_remaining_counts_down(punkapi_url):
    first = int(get(f"{punkapi_url}/beers/1").headers["X-RateLimit-Remaining"])
    second = int(get(f"{punkapi_url}/beers/1").headers["X-RateLimit-Remaining"])
    assert second == first - 1


def test_head_sends_headers_only(punkapi_url):
    r = requests.head(f"{punkapi_url}/beers/1", timeout=TIMEOUT)
    assert (r.status_code, r.content) == (200, b"")
    assert int(r.headers["Content-Length"]) == len(get(f"{punkapi_url}/beers/1").content)


def test_cors_preflight(punkapi_url):
    before = get(f"{punkapi_url}/beers/1").headers["X-RateLimit-Remaining"]
    r = requests.options(f"{punkapi_url}/beers", timeout=TIMEOUT)
    assert r.status_code == 204
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    assert "GET" in r.headers["Access-Control-Allow-Methods"]
    # the rate-limit headers are on every /v2 answer; a preflight is not counted
    assert r.headers["X-RateLimit-Remaining"] == before
    assert r.headers["X-RateLimit-Limit"] and r.headers["X-RateLimit-Reset"]


def test_etag_and_if_none_match(punkapi_url):
    r = get(f"{punkapi_url}/beers?per_page=5")
    etag = r.headers["ETag"]
    assert etag == express_etag(r.content)
    assert etag.startswith('W/"')
    again = get(f"{punkapi_url}/beers?per_page=5", headers={"If-None-Match": etag})
    assert (again.status_code, again.content) == (304, b"")
    assert again.headers["ETag"] == etag
    other = get(f"{punkapi_url}/beers?per_page=6", headers={"If-None-Match": etag})
    assert other.status_code == 200
    error = get(f"{punkapi_url}/beers/0")
    assert (
        get(f"{punkapi_url}/beers/0", headers={"If-None-Match": error.headers["ETag"]}).status_code
        == 400
    )


@pytest.mark.parametrize(
    "if_none_match",
    ["*", "{strong}", '"other", {etag}', 'W/"other",{etag}'],
)
def test_if_none_match_compares_weakly_and_takes_a_list_or_a_star(punkapi_url, if_none_match):
    etag = get(f"{punkapi_url}/beers/1").headers["ETag"]
    header = if_none_match.format(etag=etag, strong=etag.removeprefix("W/"))
    assert get(f"{punkapi_url}/beers/1", headers={"If-None-Match": header}).status_code == 304


@pytest.mark.parametrize(
    ("version", "mimetype", "body"),
    [
        (
            "v2",
            "application/json",
            b'{"statusCode":500,"error":"Internal Server Error",'
            b'"message":"An internal server error occurred"}',
        ),
        ("v3", "text/plain", b"Internal Server Error"),
    ],
)
def test_an_unexpected_error_is_a_500_in_the_shape_of_each_original(
    catalog_beers, monkeypatch, version, mimetype, body
):
    def broken(*args):
        raise RuntimeError("a bug")

    monkeypatch.setattr(server, "filter_v2", broken)
    monkeypatch.setattr(server, "filter_v3", broken)

    r = Client(PunkApiApp(catalog_beers, version)).get(f"/{version}/beers?page=1")

    assert (r.status_code, r.mimetype, r.get_data()) == (500, mimetype, body)


def test_the_server_takes_the_version_in_any_case_as_the_client_does(catalog_beers):
    with server.running_server(api_version="V3", beers=catalog_beers[:3]) as url:
        assert url.endswith("/v3")
        assert get(f"{url}/beers/1").json()["id"] == 1  # in the v3 contract: an object
    with pytest.raises(ValueError, match=r"api_version must be one of \('v2', 'v3'\), not 'V4'"):
        PunkApiApp(catalog_beers, "V4")


def test_an_unexpected_v2_error_still_carries_the_rate_limit_and_cors_headers(
    catalog_beers, monkeypatch
):
    def broken(*args):
        raise RuntimeError("a bug")

    monkeypatch.setattr(server, "filter_v2", broken)
    client = Client(PunkApiApp(catalog_beers, rate_limit=10))

    r = client.get("/v2/beers")

    assert r.status_code == 500
    assert r.headers["X-RateLimit-Limit"] == "10"
    assert r.headers["X-RateLimit-Remaining"] == "9"  # counted once, like any request
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    assert client.get("/v2/beers/1").headers["X-RateLimit-Remaining"] == "8"


def test_bodies_are_compact_utf8_json(punkapi_url, catalog_beers):
    r = get(f"{punkapi_url}/beers/1")
    expected = json.dumps([catalog_beers[0]], ensure_ascii=False, separators=(",", ":"))
    assert r.content == expected.encode()


def test_rate_limit_429_with_retry_after(punkapi_server):
    url = punkapi_server(rate_limit=3)
    answers = [get(f"{url}/beers/1") for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert [a.headers["X-RateLimit-Remaining"] for a in answers] == ["2", "1", "0", "0"]
    limited = answers[-1]
    assert limited.json() == {
        "statusCode": 429,
        "error": "Too Many Requests",
        "message": MSG_RATE_LIMITED,
    }
    assert 3500 < int(limited.headers["Retry-After"]) <= 3600
    assert limited.headers["X-RateLimit-Limit"] == "3"


class Clock:
    """A clock that moves only when the test moves it."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_the_window_resets(catalog_beers):
    clock = Clock(1_000.0)
    app = PunkApiApp(catalog_beers, rate_limit=1, rate_window=60, clock=clock, wall_clock=clock)
    client = Client(app)

    first = client.get("/v2/beers/1")
    assert (first.status_code, first.headers["X-RateLimit-Reset"]) == (200, "1060")
    clock.now = 1_059.5
    limited = client.get("/v2/beers/1")
    assert (limited.status_code, limited.headers["Retry-After"]) == (429, "1")
    clock.now = 1_060.0
    renewed = client.get("/v2/beers/1")
    assert (renewed.status_code, renewed.headers["X-RateLimit-Reset"]) == (200, "1120")
    assert renewed.headers["X-RateLimit-Remaining"] == "0"


@pytest.mark.parametrize("jump", [3600.0, -3600.0])
def test_a_window_lasts_its_length_whichever_way_the_wall_clock_jumps(catalog_beers, jump):
    monotonic, wall = Clock(500.0), Clock(1_000.0)
    app = PunkApiApp(catalog_beers, rate_limit=1, rate_window=60, clock=monotonic, wall_clock=wall)
    client = Client(app)
    client.get("/v2/beers/1")

    wall.now += jump  # NTP, a laptop waking up, a user setting the date
    monotonic.now += 30
    limited = client.get("/v2/beers/1")
    monotonic.now += 30
    renewed = client.get("/v2/beers/1")

    # held back for the rest of its window, not for an hour more nor let go at once
    assert (limited.status_code, limited.headers["Retry-After"]) == (429, "30")
    assert limited.headers["X-RateLimit-Reset"] == str(int(wall.now) + 30)
    assert renewed.status_code == 200


def test_retry_after_and_the_reset_round_up_to_the_end_of_the_window(catalog_beers):
    monotonic, wall = Clock(500.0), Clock(1_000.25)
    app = PunkApiApp(catalog_beers, rate_limit=1, rate_window=60, clock=monotonic, wall_clock=wall)
    client = Client(app)
    client.get("/v2/beers/1")

    monotonic.now += 29.5
    wall.now += 29.5
    limited = client.get("/v2/beers/1")

    # 30.5 s left, until 1060.25: a client that waits as long as it is told finds it ended
    assert (limited.status_code, limited.headers["Retry-After"]) == (429, "31")
    assert limited.headers["X-RateLimit-Reset"] == "1061"


def test_the_limits_run_on_the_monotonic_clock_unless_told_otherwise(catalog_beers):
    import time

    limiters = [RateLimiter(limit=1, window=60), PunkApiApp(catalog_beers).limiter]

    assert [(lim.clock, lim.wall_clock) for lim in limiters] == [(time.monotonic, time.time)] * 2


def test_windows_that_have_ended_are_let_go():
    clock = Clock(1_000.0)
    limiter = RateLimiter(limit=1, window=60, clock=clock, wall_clock=clock)
    for number in range(1_000):
        limiter.hit(f"10.0.{number // 256}.{number % 256}")
    assert limiter.clients == 1_000

    clock.now = 1_060.0  # every window has ended
    limiter.hit("10.9.9.9")

    assert limiter.clients == 1


def test_letting_go_of_ended_windows_keeps_those_still_running():
    clock = Clock(1_000.0)
    limiter = RateLimiter(limit=1, window=60, clock=clock, wall_clock=clock)
    limiter.hit("10.0.0.1")  # its window ends at 1060, when the next sweep is due
    clock.now = 1_030.0
    limiter.hit("10.0.0.2")  # its window runs until 1090

    clock.now = 1_060.0
    limiter.hit("10.0.0.3")

    assert limiter.clients == 2
    assert limiter.hit("10.0.0.2") == (0, 1_090.0, True)  # still over its limit


def test_a_window_ends_at_its_end_between_two_sweeps():
    clock = Clock(1_000.0)
    limiter = RateLimiter(limit=1, window=60, clock=clock, wall_clock=clock)
    limiter.hit("10.0.0.1")  # the sweeps are due at 1060, 1120, ...
    clock.now = 1_030.0
    limiter.hit("10.0.0.2")  # its window runs until 1090
    clock.now = 1_060.0
    limiter.hit("10.0.0.1")

    clock.now = 1_090.0
    assert limiter.hit("10.0.0.2") == (0, 1_150.0, False)  # a new window, not a second hit


def test_a_hit_dates_the_end_of_its_window_on_the_wall_clock():
    monotonic, wall = Clock(500.0), Clock(1_000.0)
    limiter = RateLimiter(limit=1, window=60, clock=monotonic, wall_clock=wall)

    assert limiter.hit("10.0.0.1") == (0, 1_060.0, False)
    monotonic.now += 30
    wall.now += 3_630  # set an hour on, 30 s later
    assert limiter.hit("10.0.0.1") == (0, 4_660.0, True)


def test_a_preflight_neither_counts_nor_starts_a_window(catalog_beers):
    clock = Clock(1_000.0)
    client = Client(
        PunkApiApp(catalog_beers, rate_limit=1, rate_window=60, clock=clock, wall_clock=clock)
    )

    preflight = client.options("/v2/beers/1")
    clock.now = 1_030.0
    first = client.get("/v2/beers/1")

    assert (preflight.status_code, preflight.headers["X-RateLimit-Remaining"]) == (204, "1")
    # the window starts with the first counted request, not with the preflight
    assert (first.status_code, first.headers["X-RateLimit-Reset"]) == (200, "1090")


def test_rate_limit_off(punkapi_server):
    url = punkapi_server(rate_limit=None)
    r = get(f"{url}/beers/1")
    assert r.status_code == 200 and "X-RateLimit-Limit" not in r.headers


# ----------------------------------------------------------------------------- v3 mode


def test_v3_list_needs_a_page(punkapi_v3_url):
    r = get(f"{punkapi_v3_url}/beers")
    assert r.status_code == 422
    assert r.json() == {
        "detail": [
            {"type": "missing", "loc": ["query", "page"], "msg": "Field required", "input": None}
        ]
    }


def test_v3_list_defaults_to_30_and_uses_image(punkapi_v3_url, catalog_beers):
    r = get(f"{punkapi_v3_url}/beers?page=1")
    assert r.status_code == 200
    assert ids(r) == list(range(1, 31))
    first = r.json()[0]
    assert "image_url" not in first and first["image"] == "keg.png"
    assert "X-RateLimit-Limit" not in r.headers


@pytest.mark.parametrize(
    ("query", "loc", "kind"),
    [
        ("page=1&per_page=9", "per_page", "greater_than_equal"),
        ("page=1&per_page=81", "per_page", "less_than_equal"),
        ("page=0", "page", "greater_than_equal"),
        ("page=x", "page", "int_parsing"),
        ("page=1&abv_gt=x", "abv_gt", "float_parsing"),
        ("page=1&ids=1|2", "ids", "string_pattern_mismatch"),
    ],
)
def test_v3_validation_errors_are_422_in_fastapi_shape(punkapi_v3_url, query, loc, kind):
    r = get(f"{punkapi_v3_url}/beers?{query}")
    assert r.status_code == 422
    (entry,) = r.json()["detail"]
    assert entry["loc"] == ["query", loc]
    assert entry["type"] == kind
    assert {"msg", "input"} <= set(entry)


def test_v3_filters_and_comma_ids(punkapi_v3_url, catalog_beers):
    assert ids(get(f"{punkapi_v3_url}/beers?page=1&ids=29,1,4")) == [1, 4, 29]
    r = get(f"{punkapi_v3_url}/beers?page=1&per_page=80&abv_gt=10")
    assert ids(r) == [b["id"] for b in catalog_beers if b["abv"] > 10]
    # no hops filter in v3: ignored like any unknown parameter
    assert ids(get(f"{punkapi_v3_url}/beers?page=1&hops=zzz")) == list(range(1, 31))


def test_v3_an_id_too_long_for_int_matches_no_beer(punkapi_v3_url):
    r = get(f"{punkapi_v3_url}/beers?page=1&ids=1,{LONG_NUMBER}")
    assert (r.status_code, ids(r)) == (200, [1])


def test_v3_a_repeated_parameter_takes_its_last_value(punkapi_v3_url):
    # FastAPI reads a scalar query parameter given twice as its last value
    r = get(f"{punkapi_v3_url}/beers?page=2&page=1&per_page=80&per_page=10")
    assert ids(r) == list(range(1, 11))


def test_v3_nulls_never_match_a_numeric_filter(punkapi_v3_url, catalog_beers):
    # unlike v2, where null compares as 0 and the null-IBU beers are "below 20"
    r = get(f"{punkapi_v3_url}/beers?page=1&per_page=80&ibu_lt=20")
    want = [b["id"] for b in catalog_beers if b["ibu"] is not None and b["ibu"] < 20]
    assert want and ids(r) == want


def test_v3_a_bare_year_counts_as_its_january(punkapi_v3_url, catalog_beers):
    r = get(f"{punkapi_v3_url}/beers?page=1&per_page=80&brewed_after=12-2015&brewed_before=02-2016")
    want = [b["id"] for b in catalog_beers if b["first_brewed"] in ("2016", "01/2016")]
    assert "2016" in {catalog_beers[i - 1]["first_brewed"] for i in want}
    assert ids(r) == want


def test_v3_single_objects(punkapi_v3_url, catalog_beers):
    r = get(f"{punkapi_v3_url}/beers/2")
    assert r.status_code == 200
    body = r.json()
    assert isinstance(body, dict) and body["id"] == 2 and body["image"] == "2.png"
    random_beer = get(f"{punkapi_v3_url}/beers/random").json()
    assert isinstance(random_beer, dict) and 1 <= random_beer["id"] <= 325


def test_v3_id_past_the_end_is_422(punkapi_v3_url):
    r = get(f"{punkapi_v3_url}/beers/326")
    assert r.status_code == 422
    (entry,) = r.json()["detail"]
    assert (entry["loc"], entry["type"]) == (["path", "id"], "less_than_equal")
    assert get(f"{punkapi_v3_url}/beers/abc").json()["detail"][0]["type"] == "int_parsing"


def test_v3_an_id_missing_within_the_range_is_404(punkapi_server, catalog_beers):
    url = punkapi_server(api_version="v3", beers=[catalog_beers[0], catalog_beers[2]])
    r = get(f"{url}/beers/2")
    assert (r.status_code, r.json()) == (404, {"detail": "Beer with id 2 not found"})


def test_v3_a_trailing_slash_redirects_keeping_the_query(punkapi_v3_url):
    r = get(f"{punkapi_v3_url}/beers/2/?x=1", allow_redirects=False)
    assert (r.status_code, r.headers["Location"]) == (307, "/v3/beers/2?x=1")
    assert get(f"{punkapi_v3_url}/beers/2/").json()["id"] == 2


def test_v3_images_and_unknown_paths(punkapi_v3_url):
    image = get(f"{punkapi_v3_url}/images/2.png")
    assert image.status_code == 200 and image.headers["Content-Type"] == "image/png"
    assert get(f"{punkapi_v3_url}/images/nope.png").status_code == 404
    missing = get(f"{punkapi_v3_url}/nothing")
    assert (missing.status_code, missing.json()) == (404, {"detail": "Not Found"})
    posted = requests.post(f"{punkapi_v3_url}/beers", timeout=TIMEOUT)
    assert (posted.status_code, posted.json()) == (405, {"detail": "Method Not Allowed"})


# ----------------------------------------------------------------------------- faults


def test_fault_sequence_is_replayed_by_seed():
    faults = Faults(error_rate=0.2, burst_rate=0.05, truncate_rate=0.1, seed=7)
    injector_a, injector_b = FaultInjector(faults), FaultInjector(faults)
    run_a = [injector_a.decide() for _ in range(200)]
    run_b = [injector_b.decide() for _ in range(200)]
    assert run_a == run_b
    other_seed = FaultInjector(Faults(error_rate=0.2, burst_rate=0.05, truncate_rate=0.1, seed=8))
    assert [other_seed.decide() for _ in range(200)] != run_a
    statuses = [d.status for d in run_a]
    assert 20 < sum(s in (500, 503) for s in statuses) < 70
    assert any(d.truncate for d in run_a)
    # a burst is burst_length 429s in a row
    start = statuses.index(429)
    assert statuses[start : start + 3] == [429, 429, 429]


def test_injected_errors_have_the_original_shapes(punkapi_server):
    url = punkapi_server(error_rate=1.0, error_statuses=(500,), seed=1)
    r = get(f"{url}/beers")
    assert r.status_code == 500
    assert r.json()["message"] == "An internal server error occurred"
    assert "X-RateLimit-Remaining" in r.headers
    url = punkapi_server(error_rate=1.0, error_statuses=(503,), seed=1)
    assert get(f"{url}/beers").status_code == 503


@pytest.mark.parametrize("version", ["v2", "v3"])
@pytest.mark.parametrize(
    ("status", "name"),
    [(502, "Bad Gateway"), (599, "Error")],  # HTTP names no 599
)
def test_an_injected_error_names_its_own_status(catalog_beers, version, status, name):
    faults = Faults(error_rate=1.0, error_statuses=(status,), seed=1)
    r = Client(PunkApiApp(catalog_beers, version, faults=faults)).get(f"/{version}/beers?page=1")
    assert r.status_code == status
    named = r.json["error"] if version == "v2" else r.json["detail"]
    assert named == name


def test_injected_bursts_send_retry_after(punkapi_server):
    url = punkapi_server(burst_rate=1.0, burst_length=2, burst_retry_after=2, seed=1)
    r = get(f"{url}/beers")
    assert (r.status_code, r.headers["Retry-After"]) == (429, "2")
    assert r.json()["message"] == MSG_RATE_LIMITED


def test_truncated_bodies_break_off(punkapi_server):
    url = punkapi_server(truncate_rate=1.0, seed=1)
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        get(f"{url}/beers")


def test_latency_is_a_delay_up_to_the_configured_one():
    injector = FaultInjector(Faults(latency=0.2, seed=3))
    decisions = [injector.decide() for _ in range(200)]
    delays = [d.delay for d in decisions]
    assert all(0 < d <= 0.2 for d in delays)
    assert min(delays) < 0.05 and max(delays) > 0.15  # spread over the range, not fixed
    assert all(d.status is None and not d.truncate for d in decisions)


class RecordedSleeps:
    """Stands in for the time module: sleeps are recorded, not slept."""

    def __init__(self) -> None:
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)

    def __getattr__(self, name: str):
        return getattr(time, name)


def test_the_decided_delay_is_slept_before_answering(catalog_beers, monkeypatch):
    sleeps = RecordedSleeps()
    monkeypatch.setattr(server, "time", sleeps)
    client = Client(PunkApiApp(catalog_beers, faults=Faults(latency=0.2, seed=3)))

    answers = [client.get("/v2/beers/1") for _ in range(3)]

    assert [a.status_code for a in answers] == [200, 200, 200]
    replay = FaultInjector(Faults(latency=0.2, seed=3))
    assert sleeps.slept == [replay.decide().delay for _ in range(3)]


# ----------------------------------------------------------------------------- the command


def test_serve_command_prints_the_url_and_serves(write_catalog_file, catalog_beers):
    served = ServedApi(write_catalog_file(catalog_beers[:12]))
    try:
        assert served.banner.startswith("Punk API v2 serving 12 beers at http://127.0.0.1:")
        assert served.url.endswith("/v2")
        assert ids(get(f"{served.url}/beers?per_page=80")) == list(range(1, 13))
    finally:
        returncode = served.stop()
    assert returncode == 0


def test_a_served_api_is_stopped_when_the_test_fails_midway(write_catalog_file, catalog_beers):
    # left serving, `brewops api serve` outlived the test run
    with pytest.raises(AssertionError), ServedApi(write_catalog_file(catalog_beers[:3])) as served:
        raise AssertionError("a check fails before the test stops the server")
    assert served.process.poll() is not None


def test_serve_command_reports_a_bad_catalogue(tmp_path: Path):
    bad = tmp_path / "bad.json"
    bad.write_text("{", encoding="utf-8")
    proc = run_in_group(
        [sys.executable, "-m", "brewops.cli", "api", "serve", "--catalog", str(bad)],
        capture_output=True,
        encoding="locale",
        timeout=60,
    )
    assert proc.returncode == 1
    assert "not valid JSON" in proc.stderr


@pytest.mark.parametrize("version", ["v2", "v3"])
@pytest.mark.parametrize(
    ("place", "value", "said"),
    [
        (["abv"], math.nan, "abv = NaN"),
        (["ibu"], math.inf, "ibu = Infinity"),
        (
            ["method", "mash_temp", 0, "temp", "value"],
            -math.inf,
            "method.mash_temp[0].temp.value = -Infinity",
        ),
    ],
)
def test_a_number_json_cannot_carry_is_refused_at_load_naming_the_beer_and_field(
    catalog_beers, version, place, value, said
):
    # Python's JSON writer would answer with a bare NaN, which no JSON reader takes
    beer = copy.deepcopy(catalog_beers[1])
    holder = functools.reduce(lambda parent, key: parent[key], place[:-1], beer)
    holder[place[-1]] = value
    with pytest.raises(CatalogError) as info:
        PunkApiApp([catalog_beers[0], beer], version)
    assert f'beer 2 ("Trashy Blonde") has {said}. Give it a number, or null' in str(info.value)
    assert "\n" not in str(info.value)


def test_of_several_numbers_json_cannot_carry_the_first_in_the_beer_is_named(catalog_beers):
    # abv comes before ibu in a beer, and the method after both
    beer = {**copy.deepcopy(catalog_beers[1]), "abv": math.nan, "ibu": math.inf}
    beer["method"]["mash_temp"][0]["temp"]["value"] = math.nan
    with pytest.raises(CatalogError, match=r"has abv = NaN\. Give it"):
        PunkApiApp([catalog_beers[0], beer], "v2")


def test_serve_command_refuses_a_catalogue_holding_nan(tmp_path: Path, catalog_beers):
    with_nan = tmp_path / "nan.json"
    with_nan.write_text(
        json.dumps([catalog_beers[0], {**catalog_beers[1], "ibu": math.nan}]), encoding="utf-8"
    )
    proc = run_in_group(
        [sys.executable, "-m", "brewops.cli", "api", "serve", "--catalog", str(with_nan)],
        capture_output=True,
        encoding="locale",
        timeout=60,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert (
        'Error: The catalogue holds a number JSON cannot carry: beer 2 ("Trashy Blonde") has ibu = NaN'
        in proc.stderr
    )


def test_months_10_to_12_are_valid_dates(punkapi_url, catalog_beers):
    r = get(f"{punkapi_url}/beers?brewed_before=12-2007&per_page=80")
    assert r.status_code == 200
    assert ids(r) == [
        b["id"]
        for b in catalog_beers
        if len(b["first_brewed"]) == 7
        and (int(b["first_brewed"][3:]), int(b["first_brewed"][:2])) < (2007, 12)
    ]
