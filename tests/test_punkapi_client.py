"""The client against the local server over real HTTP: shapes, errors, retries, schema."""

from __future__ import annotations

import copy
import functools
import gzip
import http.server
import io
import itertools
import json
import logging
import os
import re
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace

import pytest
import requests

from brewops.punkapi import client as client_module
from brewops.punkapi import server
from brewops.punkapi.client import (
    PunkApiClient,
    api_version_of,
    retry_after_seconds,
    stop_if_hint_exceeds,
    wait_server_hint,
)
from brewops.punkapi.errors import (
    BadRequest,
    NotFound,
    PunkApiError,
    RateLimited,
    SchemaError,
    ServerError,
    TransportError,
    shorten,
)
from brewops.punkapi.models import validate_beer


class Sleeps(list):
    """Records the waits instead of sleeping, so retry tests stay fast."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def client(url: str, version: str = "v2", **kw) -> PunkApiClient:
    kw.setdefault("sleep", Sleeps())
    return PunkApiClient(url, version, **kw)


class ScriptedResponse(requests.Response):
    """Says whether it was closed, and how many bytes of its body had been read by then."""

    closed = False
    bytes_read: int | None = None

    def close(self) -> None:
        self.closed, self.bytes_read = True, self.raw.tell()
        super().close()


class ScriptedSession(requests.Session):
    """Answers each GET with the next (status, body, headers); the last answer repeats.

    Bytes are sent as they are, a str in UTF-8, anything else as JSON: for shapes the local
    server never sends. `responses` are the answers given.
    """

    def __init__(self, *answers: tuple[int, object, dict[str, str]]) -> None:
        super().__init__()
        self.answers = answers
        self.calls = 0
        self.timeouts: list[float] = []
        self.responses: list[ScriptedResponse] = []

    def get(self, url, params=None, timeout=None, **kw) -> requests.Response:
        status, body, headers = self.answers[min(self.calls, len(self.answers) - 1)]
        self.calls += 1
        self.timeouts.append(timeout)
        response = ScriptedResponse()
        response.status_code = status
        response.reason = "Scripted"
        response.url = url
        if not isinstance(body, bytes):
            body = (body if isinstance(body, str) else json.dumps(body)).encode()
        response.raw = io.BytesIO(body)
        self.responses.append(response)
        response.headers.update(headers)
        return response


@contextmanager
def serving_with(answer: type[http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    """A server on 127.0.0.1 whose requests `answer` handles, quietly; yields its /v2 URL."""

    class Quiet(answer):
        def log_message(self, *args):
            pass

    answering = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=answering.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{answering.server_address[1]}/v2"
    finally:
        answering.shutdown()
        answering.server_close()


@contextmanager
def serving(body: bytes, headers: dict[str, str]) -> Iterator[str]:
    """A server on 127.0.0.1 answering every GET with 200, `body` and `headers`; yields
    its /v2 base URL. Over real HTTP, as requests decodes what a server sends."""

    class Answer(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    with serving_with(Answer) as url:
        yield url


@contextmanager
def answering_slowly(headers_after: float, byte_every: float | None) -> Iterator[str]:
    """A server on 127.0.0.1 that answers every GET with 200 and its headers after
    `headers_after` seconds, then a body of 50 spaces, one every `byte_every` seconds, or no
    byte at all when it is None; yields its /v2 base URL."""
    stopped = threading.Event()

    class Answer(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if stopped.wait(headers_after):
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "50")
            self.end_headers()
            try:
                for _ in range(50 if byte_every is not None else 0):
                    if stopped.wait(byte_every):
                        return
                    self.wfile.write(b" ")
            except OSError:  # the client gave up
                return
            stopped.wait()

    with serving_with(Answer) as url:
        try:
            yield url
        finally:
            stopped.set()  # the answers still waiting end before the server stops


@contextmanager
def trickling_headers(
    byte_every: float, header_bytes: int = 30, status_at_once: bool = False
) -> Iterator[str]:
    """A server on 127.0.0.1 that answers every GET with a status line and headers sent one
    byte every `byte_every` seconds (the status line at once if `status_at_once`), with
    `header_bytes` of filler; yields its /v2 base URL."""
    stopped = threading.Event()
    filler = "x" * header_bytes
    status = b"HTTP/1.1 200 OK\r\n"
    head = status + f"X-Filler: {filler}\r\nContent-Length: 2\r\n\r\n[]".encode()

    class Answer(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            try:
                if status_at_once:
                    self.wfile.write(status)
                for at in range(len(status) if status_at_once else 0, len(head)):
                    if stopped.wait(byte_every):
                        return
                    self.wfile.write(head[at : at + 1])
                    self.wfile.flush()
            except OSError:  # the client gave up
                return

    with serving_with(Answer) as url:
        try:
            yield url
        finally:
            stopped.set()


# ----------------------------------------------------------------------------- shapes


def test_full_crawl_v2(punkapi_url, catalog_beers):
    c = client(punkapi_url)
    assert c.all_beers(progress=False) == catalog_beers
    assert c.requests_made == 5  # 80 + 80 + 80 + 80 + 5


def test_full_crawl_v3_returns_the_v2_shape(punkapi_v3_url, catalog_beers):
    beers = client(punkapi_v3_url, "v3").all_beers(progress=False)
    assert len(beers) == 325
    for got, want in zip(beers, catalog_beers, strict=True):
        assert list(got) == list(want)
        assert {k: v for k, v in got.items() if k != "image_url"} == {
            k: v for k, v in want.items() if k != "image_url"
        }
    assert beers[1]["image_url"] == f"{punkapi_v3_url}/images/2.png"
    assert requests.get(beers[1]["image_url"], timeout=10).status_code == 200


def test_a_server_on_this_machine_is_reached_past_a_proxy_set_in_the_shell(
    punkapi_url, monkeypatch
):
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # nothing answers there
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)

    assert client(punkapi_url, retries=0).beer(1)["id"] == 1
    # any other server is reached through the proxy, as the shell says
    assert client("https://punkapi.example/v2").session.trust_env is True


def test_crawl_with_a_progress_bar(punkapi_url, capsys):
    assert len(client(punkapi_url).all_beers(progress=True)) == 325
    assert "325" in capsys.readouterr().err


class _Terminal(io.StringIO):
    def fileno(self) -> int:
        return 2


def test_a_crawl_bar_keeps_its_count_whole_in_a_narrow_terminal(
    punkapi_url, monkeypatch: pytest.MonkeyPatch
):
    """tqdm cuts each line at the terminal's width: what comes first must be the figures."""
    stderr = _Terminal()
    monkeypatch.setattr(sys, "stderr", stderr)
    # 41 columns, of which tqdm draws 40
    monkeypatch.setattr(os, "get_terminal_size", lambda fd=None: os.terminal_size((41, 20)))

    assert len(list(client(punkapi_url).iter_beers(per_page=25, progress=True))) == 325

    lines = [line.strip() for line in stderr.getvalue().split("\r") if line.strip()]
    assert lines and all(len(line) <= 40 for line in lines)
    assert all(re.match(r"Crawling: \d+ beers ", line) for line in lines), lines
    assert lines[-1].startswith("Crawling: 325 beers ")


@pytest.mark.parametrize("version", ["v2", "v3"])
def test_beer_random_and_filters(request, version, catalog_beers):
    url = request.getfixturevalue("punkapi_url" if version == "v2" else "punkapi_v3_url")
    c = client(url, version)
    assert c.beer(106)["name"] == "Punk IPA 2010 - Current"
    picks = c.random(3)
    assert len(picks) == 3 and all(set(b) == set(catalog_beers[0]) for b in picks)
    assert [b["id"] for b in c.beers(ids=[29, 1, 4])] == [1, 4, 29]
    strong = [b["id"] for b in c.iter_beers(abv_gt=12)]
    assert strong == [b["id"] for b in catalog_beers if b["abv"] > 12]
    assert 106 in [b["id"] for b in c.beers(beer_name="punk ipa 2010")]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("beer_name", "punk ipa"),
        ("food", "blue cheese"),
        ("hops", "east kent goldings"),
        ("malt", "extra pale"),
        ("yeast", "wyeast 1056"),
    ],
)
def test_text_filters_are_sent_with_underscores_for_spaces(punkapi_url, name, value):
    c = client(punkapi_url)
    urls = []
    c.session.hooks["response"].append(lambda r, *args, **kw: urls.append(r.url))
    got = c.beers(**{name: value})
    assert f"{name}={value.replace(' ', '_')}" in urls[0]
    assert got


def test_one_page_is_80_beers_and_a_filter_of_none_is_no_filter(punkapi_url):
    c = client(punkapi_url)
    assert [b["id"] for b in c.beers()] == list(range(1, 81))
    assert [b["id"] for b in c.beers(ids=None, beer_name=None, abv_gt=None)] == list(range(1, 81))


def test_no_random_beers_is_no_request(punkapi_url):
    c = client(punkapi_url)
    assert c.random(0) == [] and c.requests_made == 0


def test_a_base_url_with_a_trailing_slash(punkapi_url):
    c = client(f"{punkapi_url}/")
    assert c.base_url == punkapi_url
    assert c.beer(1)["id"] == 1


@pytest.mark.parametrize("name", ["hops", "malt", "yeast"])
def test_v3_refuses_filters_it_does_not_have(punkapi_v3_url, name):
    with pytest.raises(ValueError, match=name):
        client(punkapi_v3_url, "v3").beers(**{name: "citra"})


def test_paging_stops_on_a_short_page(punkapi_url):
    c = client(punkapi_url)
    assert len(list(c.iter_beers(per_page=25, ibu_gt=100))) < 25
    assert c.requests_made == 1


@pytest.mark.parametrize("pages", [1, 2])
def test_a_server_that_ignores_the_page_stops_the_crawl_instead_of_repeating_it(
    catalog_beers, pages
):
    # full pages that come round again: page 1 forever, or pages 1, 2, 1, 2…
    answers = [(200, catalog_beers[2 * n : 2 * n + 2], {}) for n in range(pages)]
    session = ScriptedSession(*answers * 50)
    c = client("http://punk.test/v2", session=session)
    crawled = []
    with pytest.raises(SchemaError, match=f"page {pages + 1} repeats page") as info:
        crawled.extend(itertools.islice(c.iter_beers(per_page=2), 100))
    assert info.value.field == "<response>"
    assert crawled == catalog_beers[: 2 * pages]  # each beer once


def test_a_server_that_stops_at_its_last_full_page_stops_the_crawl(catalog_beers):
    # pages 1, 2, 2, 2…: a server that answers any page past its last with the last one
    first, last = catalog_beers[:2], catalog_beers[2:4]
    session = ScriptedSession(*[(200, first, {})], *[(200, last, {})] * 50)
    c = client("http://punk.test/v2", session=session)
    crawled = []
    with pytest.raises(SchemaError, match="page 3 repeats page 2"):
        crawled.extend(itertools.islice(c.iter_beers(per_page=2), 100))
    assert crawled == catalog_beers[:4]


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("version", ["v2", "v3"])
def test_not_found(request, version):
    url = request.getfixturevalue("punkapi_url" if version == "v2" else "punkapi_v3_url")
    with pytest.raises(NotFound, match="No beer found that matches the ID 9999"):
        client(url, version).beer(9999)


def test_v3_id_zero_is_a_bad_request_not_a_miss(punkapi_v3_url):
    with pytest.raises(BadRequest) as info:
        client(punkapi_v3_url, "v3").beer(0)
    assert not isinstance(info.value, NotFound) and info.value.status == 422


@pytest.mark.parametrize(
    ("version", "ids", "expected"),
    [
        ("v2", "1,4", [1, 4]),
        ("v2", "1|4", [1, 4]),
        ("v3", "1|4", [1, 4]),
        ("v3", " 1, 4 ", [1, 4]),  # v3 refuses spaces in its list: they are stripped
        ("v2", 29, [29]),
        ("v3", 29, [29]),
    ],
)
def test_ids_as_text_use_the_separator_of_the_version(request, version, ids, expected):
    url = request.getfixturevalue("punkapi_url" if version == "v2" else "punkapi_v3_url")
    got = client(url, version).beers(ids=ids, **({"page": 1} if version == "v3" else {}))
    assert [b["id"] for b in got] == expected


def test_bad_request_carries_the_server_message_v2(punkapi_url):
    with pytest.raises(BadRequest) as info:
        client(punkapi_url).beers(per_page=100, abv_gt=-1)
    err = info.value
    assert err.status == 400
    assert "Invalid query params" in str(err)
    assert "Must be a number greater than 0 and less than 80" in str(err)
    assert [d["param"] for d in err.details] == ["per_page", "abv_gt"]
    assert err.message == (
        "Invalid query params: per_page='100': Must be a number greater than 0 and less than 80; "
        "abv_gt='-1': Must be a number greater than 0"
    )
    with pytest.raises(BadRequest, match="beerId must be a number"):
        client(punkapi_url).beer(0)


def test_bad_request_carries_the_server_message_v3(punkapi_v3_url):
    with pytest.raises(BadRequest) as info:
        client(punkapi_v3_url, "v3").beers(per_page=5)
    assert info.value.status == 422
    assert "query.per_page: Input should be greater than or equal to 10" in str(info.value)


def test_an_error_says_its_status_and_url_after_the_server_message(punkapi_url):
    with pytest.raises(NotFound) as info:
        client(punkapi_url).beer(9999)
    assert info.value.message == "No beer found that matches the ID 9999"
    assert str(info.value) == f"{info.value.message} (404 from {punkapi_url}/beers/9999)"


def test_client_errors_are_not_retried(punkapi_url):
    c = client(punkapi_url)
    with pytest.raises(NotFound):
        c.beer(9999)
    assert c.requests_made == 1


# ----------------------------------------------------------------------------- retries


def test_survives_ten_percent_errors(punkapi_server, catalog_beers):
    url = punkapi_server(error_rate=0.1, seed=42)
    c = client(url)
    assert c.all_beers(progress=False) == catalog_beers
    for beer_id in range(1, 31):
        assert c.beer(beer_id) == catalog_beers[beer_id - 1]
    assert c.requests_made > 5 + 30  # some were retried
    assert len(c._sleep) == c.requests_made - 35


def test_survives_bursts_truncation_and_latency(punkapi_server, catalog_beers):
    url = punkapi_server(error_rate=0.1, burst_rate=0.05, truncate_rate=0.1, latency=0.01, seed=5)
    c = client(url, retries=8)
    assert c.all_beers(progress=False) == catalog_beers
    assert [c.beer(i)["id"] for i in range(1, 61)] == list(range(1, 61))
    assert 1 in c._sleep  # a burst's Retry-After: 1 was honoured


def test_v3_survives_faults(punkapi_server, catalog_beers):
    url = punkapi_server(api_version="v3", error_rate=0.15, truncate_rate=0.05, seed=9)
    beers = client(url, "v3", retries=8).all_beers(progress=False)
    assert [b["id"] for b in beers] == [b["id"] for b in catalog_beers]


def test_gives_up_after_the_retries(punkapi_server):
    url = punkapi_server(error_rate=1.0, error_statuses=(503,), seed=1)
    c = client(url, retries=3)
    with pytest.raises(ServerError) as info:
        c.beers()
    assert info.value.status == 503
    assert c.requests_made == 4
    assert len(c._sleep) == 3
    # exponential from 0.5 s, plus up to 0.5 s of jitter: 0.5-1.0, then 1.0-1.5, then 2.0-2.5
    assert 0.5 <= c._sleep[0] <= 1.0 <= c._sleep[1] <= 1.5 <= 2.0 <= c._sleep[2] <= 2.5


def test_the_jitter_adds_up_to_the_first_backoff(monkeypatch):
    # drawing the jitter at its top shows the most a wait can be
    monkeypatch.setattr("tenacity.wait.random", SimpleNamespace(uniform=lambda low, high: high))
    session = ScriptedSession((503, {"message": "busy"}, {}))
    c = client("http://punk.test/v2", session=session, retries=3, backoff=0.5)
    with pytest.raises(ServerError):
        c.beers()
    assert c._sleep == [1.0, 1.5, 2.5]


def test_no_retry_starts_past_the_deadline(punkapi_server):
    url = punkapi_server(error_rate=1.0, error_statuses=(503,), seed=1)
    # answered at once: a request to a server is given no more than the 0.4 s left, and on a
    # loaded machine it times out before the 503, a transport error instead
    instant = ScriptedSession((503, {"message": "busy"}, {}))
    short = client("http://punk.test/v2", session=instant, retries=5)
    ample = client(url, retries=5)
    short.deadline = time.monotonic() + 0.4  # sooner than the first backoff (0.5-1.0 s) ends
    ample.deadline = time.monotonic() + 3600

    for c in (short, ample):
        with pytest.raises(ServerError):
            c.beers()

    assert (short.requests_made, short._sleep) == (1, [])
    assert ample.requests_made == 6
    unbounded = client(url, retries=7)  # no deadline: only the retries stop it
    with pytest.raises(ServerError):
        unbounded.beers()
    assert unbounded.requests_made == 8


def test_a_request_waits_no_longer_than_the_deadline_but_is_still_sent_past_it():
    session = ScriptedSession((200, [], {}))
    c = client("http://punk.test/v2", session=session, timeout=10)
    c.beers()
    c.deadline = time.monotonic() + 5
    c.beers()
    c.deadline = time.monotonic() - 5  # requests refuses a timeout of 0 or less
    c.beers()
    assert session.timeouts[0] == 10
    # connecting and waiting for the headers share the time left
    assert 4 < session.timeouts[1].total <= 5 and session.timeouts[1].connect_timeout <= 5
    assert session.timeouts[2].total == 0.1


def test_rate_limit_retry_honours_retry_after(punkapi_server, catalog_beers, monkeypatch):
    # the window runs on a clock that only the client's waits move: on a loaded machine
    # three requests can take longer than a one-second window of real time, and the third
    # would then open a window of its own instead of being refused
    now = [0.0]
    clocked = functools.partial(server.PunkApiApp, clock=lambda: now[0])
    monkeypatch.setattr(server, "PunkApiApp", clocked)
    url = punkapi_server(rate_limit=2, rate_window=1.0)
    waits = Sleeps()

    def sleep(seconds):
        waits(seconds)
        now[0] += seconds

    c = PunkApiClient(url, retries=3, sleep=sleep)
    got = [c.beer(i)["id"] for i in (1, 2, 3)]
    assert got == [1, 2, 3]
    assert c.requests_made == 4  # the third was refused once, then served
    assert waits == [1.0]  # the server's Retry-After, not the client's own 0.5-1.0 s backoff


def test_a_hint_beyond_max_wait_gives_up_at_once(punkapi_server):
    url = punkapi_server(rate_limit=1)  # hourly window: Retry-After ~3600 s
    c = client(url, max_wait=30)
    c.beer(1)
    with pytest.raises(RateLimited) as info:
        c.beer(2)
    assert info.value.retry_after > 3000
    assert "You have reached your limit" in str(info.value)
    assert c.requests_made == 2 and c._sleep == []


def test_connection_refused_is_retried_then_raised():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket closes
    c = client(f"http://127.0.0.1:{port}/v2", retries=2, timeout=2)
    with pytest.raises(TransportError):
        c.beers()
    assert c.requests_made == 3


def test_no_request_waits_past_the_deadline():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()  # connections are taken, never answered
        c = client(f"http://127.0.0.1:{s.getsockname()[1]}/v2", retries=0, timeout=10)
        c.deadline = time.monotonic() + 0.5
        started = time.monotonic()
        with pytest.raises(TransportError, match=r"Timed out after (\d+\.\d) s") as info:
            c.beers()
        assert time.monotonic() - started < 3  # not the 10 s timeout
    # the message says how long it waited, not the timeout it did not wait out
    assert float(re.search(r"after (\d+\.\d) s", str(info.value))[1]) < 3


class SlowBody(io.BytesIO):
    """A body read whole, slowly, that a cut off cannot stop: it has no socket (`shutdown`
    missing), or its shutdown raises as urllib3's does without one or once it is read."""

    def __init__(self, body: bytes, shutdown_raises: type[Exception] | None) -> None:
        super().__init__(body)
        if shutdown_raises is not None:
            self.shutdown = functools.partial(self._refuse, shutdown_raises)

    @staticmethod
    def _refuse(error: type[Exception]) -> None:
        raise error("no socket to shut down")

    def read(self, *args) -> bytes:
        time.sleep(1.0)  # long past the 0.1 s a request sent past its deadline gets
        return super().read(*args)


@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")
@pytest.mark.parametrize("shutdown_raises", [None, ValueError, RuntimeError])
def test_a_body_the_deadline_could_not_cut_off_is_read_whole(shutdown_raises):
    session = ScriptedSession((200, [], {}))
    answer = session.get

    def slow_get(*args, **kwargs) -> requests.Response:
        response = answer(*args, **kwargs)
        response.raw = SlowBody(response.raw.getvalue(), shutdown_raises)
        return response

    session.get = slow_get
    c = client("http://punk.test/v2", session=session)
    c.deadline = time.monotonic() - 5

    assert c.beers() == []  # not a timeout: all of it was read


@pytest.mark.parametrize("headers_after", [5.0, 0.0], ids=["headers late", "body silent"])
def test_a_deadline_far_off_still_waits_no_longer_than_the_timeout_for_a_byte(headers_after):
    with answering_slowly(headers_after, byte_every=None) as url:
        c = client(url, retries=0, timeout=1)
        c.deadline = time.monotonic() + 30
        started = time.monotonic()
        with pytest.raises(TransportError):
            c.beers()
        took = time.monotonic() - started
    assert took < 10, f"a 1 s timeout waited {took:.1f} s"  # not until the deadline


def test_a_deadline_far_off_still_waits_no_longer_than_the_timeout_to_connect():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(0)
        # one connection not taken fills the queue: the next one is left waiting to connect
        with socket.create_connection(s.getsockname()):
            c = client(f"http://127.0.0.1:{s.getsockname()[1]}/v2", retries=0, timeout=1)
            c.deadline = time.monotonic() + 30
            started = time.monotonic()
            with pytest.raises(TransportError):
                c.beers()
            took = time.monotonic() - started
    assert took < 10, f"a 1 s timeout waited {took:.1f} s to connect"  # not until the deadline


@pytest.mark.parametrize(
    ("headers_after", "byte_every"),
    [(0.0, 0.2), (2.5, None)],
    ids=["a body trickled for 10 s", "headers just before the deadline, then silence"],
)
def test_a_request_ends_by_the_deadline_however_slowly_the_server_answers(
    headers_after, byte_every
):
    # a read timeout bounds each wait for a byte, not the whole answer: a server that
    # trickles its body, or stays silent after its headers, would hold the call past the deadline
    with answering_slowly(headers_after, byte_every) as url:
        c = client(url, retries=3, timeout=10)
        c.deadline = time.monotonic() + 3
        with pytest.raises(TransportError) as info:
            c.beers()
        late = time.monotonic() - c.deadline
    # 1.5 s: a loaded machine's margin; left to the read timeouts, the call ends 2.5-7 s late
    assert late < 1.5, f"the call ended {late:.1f} s past the deadline"
    assert "Timed out" in str(info.value) and "at the deadline" in str(info.value)
    assert c.requests_made == 1  # and no retry starts then


@pytest.mark.parametrize(
    ("status_at_once", "through_proxy"),
    [(False, False), (True, False), (False, True)],
    ids=["status line trickled", "headers trickled", "through a proxy"],
)
def test_a_request_ends_by_the_deadline_however_slowly_the_headers_arrive(
    status_at_once, through_proxy, monkeypatch
):
    # a read timeout bounds each wait for a byte: a status line and headers trickled one
    # byte every 0.2 s would hold the call for as long as the server keeps sending them
    with trickling_headers(byte_every=0.2, status_at_once=status_at_once) as url:
        if through_proxy:  # the proxy trickles them: a host not on this machine goes through it
            for name in ("http_proxy", "HTTP_PROXY"):
                monkeypatch.setenv(name, url.removesuffix("/v2"))
            for name in ("no_proxy", "NO_PROXY"):
                monkeypatch.delenv(name, raising=False)
            url = "http://punk.test/v2"
        c = client(url, retries=3, timeout=10)
        c.deadline = time.monotonic() + 2
        with pytest.raises(TransportError, match=r"^Timed out after \d+\.\d s: ") as info:
            c.beers()
        late = time.monotonic() - c.deadline
    # 1.5 s: a loaded machine's margin; left to the read timeout, the call ends 14 s late
    assert late < 1.5, f"the call ended {late:.1f} s past the deadline"
    assert "headers were still arriving at the deadline" in str(info.value)
    assert c.requests_made == 1  # and no retry starts then


def test_a_request_ends_by_the_deadline_however_slowly_a_redirect_arrives():
    # requests reads a redirect's body before it follows it: trickled, it would hold the
    # call for as long as the server keeps sending it
    stopped = threading.Event()

    class Redirect(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            try:
                if not self.path.startswith("/v2/"):
                    self.send_response(200)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"[]")
                    return
                self.send_response(302)
                self.send_header("Location", "/moved/beers")
                self.send_header("Content-Length", "50")
                self.end_headers()
                for _ in range(50):
                    if stopped.wait(0.2):
                        return
                    self.wfile.write(b" ")
                    self.wfile.flush()
            except OSError:  # the client gave up
                return

    with serving_with(Redirect) as url:
        try:
            c = client(url, retries=3, timeout=10)
            c.deadline = time.monotonic() + 2
            with pytest.raises(TransportError, match="body was still arriving at the deadline"):
                c.beers()
            late = time.monotonic() - c.deadline
        finally:
            stopped.set()
    # 1.5 s: a loaded machine's margin; left to the read timeout, the call ends 8 s late
    assert late < 1.5, f"the call ended {late:.1f} s past the deadline"
    assert c.requests_made == 1


def test_a_connection_answered_before_the_deadline_is_kept_for_the_next_request(monkeypatch):
    ports, deadlines = [], []

    class HeldDeadline:
        """The deadline's timer, going off when the test says, not with the clock: however
        long a loaded machine takes to answer, the answer is in before it."""

        def __init__(self, interval, function):
            self.function, self.cancelled, self.daemon = function, False, True

        def start(self):
            deadlines.append(self)

        def cancel(self):
            self.cancelled = True

        def join(self, timeout=None):
            pass

        def go_off(self):
            if not self.cancelled:
                self.function()

    class KeepAlive(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            ports.append(self.client_address[1])
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"[]")

    monkeypatch.setattr(threading, "Timer", HeldDeadline)
    with serving_with(KeepAlive) as url:
        c = client(url, retries=0)
        for _ in range(3):
            c.deadline = time.monotonic() + 60  # connecting gets the time left: plenty
            assert c.beers() == []
            # past the deadline: nothing cuts the idle connection off
            deadlines[-1].go_off()
    assert c.requests_made == len(deadlines) == 3
    assert len(set(ports)) == 1, f"{len(set(ports))} connections for 3 requests"


def test_without_a_deadline_no_thread_is_started(punkapi_url, monkeypatch):
    # crawls and notebooks call without a deadline: they pay for no timer thread
    start = threading.Thread.start
    calling = threading.current_thread()

    def start_unless_the_caller(thread):  # the server's threads still start
        assert threading.current_thread() is not calling, "the client started a thread"
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", start_unless_the_caller)
    assert client(punkapi_url).beer(1)["id"] == 1


# ----------------------------------------------------------------------------- wait strategy


def state(exc: Exception | None, attempt: int = 1) -> SimpleNamespace:
    outcome = SimpleNamespace(exception=lambda: exc, failed=exc is not None)
    return SimpleNamespace(outcome=outcome, attempt_number=attempt)


def test_wait_uses_the_hint_capped():
    wait = wait_server_hint(initial=0.5, cap=60)
    assert wait(state(RateLimited("x", retry_after=7))) == 7
    assert wait_server_hint(0.5, cap=2)(state(RateLimited("x", retry_after=7))) == 2
    backoff = [wait(state(ServerError("x"), attempt=n)) for n in (1, 4, 8)]
    assert 0.5 <= backoff[0] <= 1.0 and backoff[2] > backoff[0]
    assert all(b <= 60 for b in backoff)
    assert stop_if_hint_exceeds(60)(state(RateLimited("x", retry_after=61)))
    assert not stop_if_hint_exceeds(60)(state(RateLimited("x", retry_after=59)))


def test_the_backoff_uses_no_deprecated_tenacity_argument():
    # tenacity 9.2 deprecates wait_exponential_jitter(initial=...): the producer function
    # builds this wait for every request, and a removed argument would fail every tick
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        wait = wait_server_hint(initial=0.5, cap=60)

    assert 0.5 <= wait(state(ServerError("x"), attempt=1)) <= 1.0
    assert 4.0 <= wait(state(ServerError("x"), attempt=4)) <= 4.5


def fake_response(**headers: str) -> requests.Response:
    r = requests.Response()
    r.headers.update(headers)
    return r


def test_retry_after_parsing():
    now = 1_000_000.0
    assert retry_after_seconds(fake_response(**{"Retry-After": "12"}), now) == 12
    date = "Mon, 12 Jan 1970 13:46:50 GMT"  # epoch 1_000_010
    assert retry_after_seconds(fake_response(**{"Retry-After": date}), now) == pytest.approx(10)
    reset = {"X-RateLimit-Reset": str(int(now) + 30), "X-RateLimit-Remaining": "0"}
    assert retry_after_seconds(fake_response(**reset), now) == 30
    reset["X-RateLimit-Remaining"] = "5"  # requests remain: the reset is no reason to wait
    assert retry_after_seconds(fake_response(**reset), now) is None
    assert retry_after_seconds(fake_response(), now) is None


@pytest.mark.parametrize("hint", ["nan", "NaN", "inf", "-inf", "1e400", "-5", "soon", " "])
def test_a_hint_that_is_not_a_wait_is_ignored(hint):
    now = 1_000_000.0
    assert retry_after_seconds(fake_response(**{"Retry-After": hint}), now) is None
    reset = {"X-RateLimit-Reset": hint, "X-RateLimit-Remaining": "0"}
    assert retry_after_seconds(fake_response(**reset), now) is None
    # an ignored Retry-After leaves the rate-limit window's end as the hint
    both = {"Retry-After": hint, "X-RateLimit-Reset": str(int(now) + 30)}
    assert retry_after_seconds(fake_response(**both), now) == 30


@pytest.mark.parametrize("hint", ["nan", "inf", "-1", "garbage"])
def test_a_bad_retry_after_falls_back_to_our_backoff(hint):
    session = ScriptedSession((429, {"message": "slow"}, {"Retry-After": hint}), (200, [], {}))
    c = client("http://punk.test/v2", session=session, backoff=0.5)
    assert c.beers() == []
    assert session.calls == 2
    assert len(c._sleep) == 1 and 0.5 <= c._sleep[0] <= 1.0  # first backoff, with jitter


def test_a_503_retry_after_is_honoured():
    session = ScriptedSession((503, {"message": "busy"}, {"Retry-After": "3"}), (200, [], {}))
    c = client("http://punk.test/v2", session=session, backoff=0.5)
    assert c.beers() == []
    assert c._sleep == [3]


def test_a_retry_after_of_zero_is_honoured_not_ignored():
    assert retry_after_seconds(fake_response(**{"Retry-After": "0"}), 1_000_000.0) == 0
    session = ScriptedSession((429, {"message": "slow"}, {"Retry-After": "0"}), (200, [], {}))
    c = client("http://punk.test/v2", session=session, backoff=0.5)
    assert c.beers() == []
    assert c._sleep == [0]  # come back now, not after our own 0.5-1.0 s backoff


@pytest.mark.parametrize("zone", ["UTC", "Asia/Tokyo", "America/New_York"])
def test_a_retry_after_date_in_the_asctime_form_is_in_gmt_wherever_the_client_runs(
    monkeypatch, zone
):
    # HTTP's third date form names no zone: it is GMT, like the other two (RFC 9110, 5.6.7)
    monkeypatch.setenv("TZ", zone)
    time.tzset()
    try:
        for date in ("Mon Jan 12 13:46:50 1970", "Mon, 12 Jan 1970 13:46:50 -0000"):
            hint = retry_after_seconds(fake_response(**{"Retry-After": date}), 1_000_000.0)
            assert hint == pytest.approx(10)  # epoch 1_000_010
    finally:
        monkeypatch.undo()
        time.tzset()


def test_a_retry_after_date_in_the_past_is_no_wait():
    now = 1_000_000.0
    past = "Mon, 12 Jan 1970 13:46:30 GMT"  # epoch 999_990: ten seconds ago
    assert retry_after_seconds(fake_response(**{"Retry-After": past}), now) == 0.0
    stale = {"X-RateLimit-Reset": str(int(now) - 10), "X-RateLimit-Remaining": "0"}
    assert retry_after_seconds(fake_response(**stale), now) == 0.0


def test_a_hint_of_exactly_max_wait_is_waited_for():
    session = ScriptedSession((429, {"message": "slow"}, {"Retry-After": "30"}), (200, [], {}))
    c = client("http://punk.test/v2", session=session, max_wait=30)
    assert c.beers() == []
    assert (session.calls, c._sleep) == (2, [30])


# ----------------------------------------------------------------------------- odd error bodies


@pytest.mark.parametrize(
    "body",
    [
        {"statusCode": 503, "message": "down", "data": 5},
        {"message": "down", "data": "not a list"},
        {"message": "down", "data": [5, None, {"param": "page"}]},
        {"message": None},
        {"detail": 5},
        {"detail": [{"loc": "query", "msg": "x"}, "plain", {}]},
        [1, 2, 3],
        None,
        "<html>Bad gateway</html>",
        "",
    ],
)
def test_a_5xx_with_an_odd_body_is_still_retried(body):
    session = ScriptedSession((503, body, {}), (200, [], {}))
    c = client("http://punk.test/v2", session=session)
    assert c.beers() == []
    assert session.calls == 2


def test_a_long_error_page_is_cut_to_200_characters():
    page = "<html>" + "x" * 500 + "</html>"
    session = ScriptedSession((502, page, {}))
    with pytest.raises(ServerError) as info:
        client("http://punk.test/v2", session=session, retries=0).beers()
    assert info.value.message == page[:200]


def test_a_body_that_is_not_json_is_retried_then_raised():
    session = ScriptedSession((200, "<html>maintenance</html>", {}), (200, [], {}))
    assert client("http://punk.test/v2", session=session).beers() == []
    assert session.calls == 2
    session = ScriptedSession((200, "<html>maintenance</html>", {}))
    with pytest.raises(TransportError, match=r"not JSON.*maintenance"):
        client("http://punk.test/v2", session=session, retries=1).beers()
    assert session.calls == 2


DEEPLY_NESTED = "[" * 100_000 + "]" * 100_000  # deeper than Python's JSON reader goes


def test_a_body_nested_too_deeply_is_not_json_and_an_error_body_so_deep_is_text():
    session = ScriptedSession((200, DEEPLY_NESTED, {}))
    with pytest.raises(TransportError, match=r"not JSON \(nested too deeply\); first bytes"):
        client("http://punk.test/v2", session=session, retries=1).beers()
    assert session.calls == 2
    session = ScriptedSession((400, DEEPLY_NESTED, {}))
    with pytest.raises(BadRequest) as info:
        client("http://punk.test/v2", session=session).beers()
    assert info.value.message == DEEPLY_NESTED[:200]


# ----------------------------------------------------------------------------- large bodies


@pytest.fixture
def body_cap(monkeypatch) -> int:
    """A cap of 1,000 bytes, read 100 at a time, so a body past it stays small."""
    monkeypatch.setattr(client_module, "MAX_BODY_BYTES", 1000)
    monkeypatch.setattr(client_module, "BODY_CHUNK_BYTES", 100)
    return 1000


def test_a_body_past_the_cap_is_retried_then_raised_unread_and_closed(body_cap):
    page = "[" + " " * (10 * body_cap) + "]"  # an empty page, ten times too long
    session = ScriptedSession((200, page, {}))
    with pytest.raises(TransportError, match=r"body exceeded 1,000 bytes") as info:
        client("http://punk.test/v2", session=session, retries=1).beers()
    assert session.calls == 2
    assert info.value.status == 200
    # read no further than the cap and a chunk, and closed every time
    assert [(r.closed, r.bytes_read) for r in session.responses] == [(True, body_cap + 100)] * 2


def test_a_body_at_the_cap_is_read(body_cap):
    session = ScriptedSession((200, "[" + " " * (body_cap - 2) + "]", {}))
    assert client("http://punk.test/v2", session=session).beers() == []
    assert [(r.closed, r.bytes_read) for r in session.responses] == [(True, body_cap)]


def test_a_compressed_body_is_counted_as_it_unpacks(body_cap):
    bomb = gzip.compress(b"[" + b" " * 500_000 + b"]")  # 500 kB of an empty page in 0.5 kB
    assert len(bomb) < body_cap
    with (
        serving(bomb, {"Content-Type": "application/json", "Content-Encoding": "gzip"}) as url,
        pytest.raises(TransportError, match=r"body exceeded 1,000 bytes"),
    ):
        client(url, retries=0).beers()


def test_an_error_body_past_the_cap_still_gives_its_status_error_and_hint(body_cap):
    huge = "x" * (body_cap + 1)
    session = ScriptedSession((429, huge, {"Retry-After": "7"}), (200, [], {}))
    c = client("http://punk.test/v2", session=session)
    assert c.beers() == []
    assert c._sleep == [7]
    session = ScriptedSession((404, huge, {}))
    with pytest.raises(NotFound, match="HTTP 404 Scripted"):
        client("http://punk.test/v2", session=session).beer(1)
    assert session.responses[0].closed


# ----------------------------------------------------------------------------- charsets


def page_of(name: str, catalog_beers: list[dict]) -> str:
    """A page of one beer named `name`, all else in ASCII: any charset can carry it."""
    return json.dumps([{**catalog_beers[0], "name": "?"}]).replace(
        '"name": "?"', f'"name": "{name}"'
    )


@pytest.mark.parametrize("content_type", ["application/json", "text/plain", None])
def test_a_body_not_utf8_and_naming_no_charset_is_refused_not_mangled(catalog_beers, content_type):
    latin1 = page_of("Bräu", catalog_beers).encode("latin-1")
    headers = {"Content-Type": content_type} if content_type else {}
    with serving(latin1, headers) as url, pytest.raises(TransportError) as info:
        client(url, retries=1).random()
    assert "The body is not UTF-8, which JSON must be" in str(info.value)
    assert "byte 0xe4 at" in str(info.value)
    assert info.value.status == 200


def test_a_utf8_body_with_a_byte_order_mark_is_read(catalog_beers):
    with_bom = b"\xef\xbb\xbf" + page_of("Bräu", catalog_beers).encode()
    with serving(with_bom, {"Content-Type": "application/json"}) as url:
        assert client(url).random()[0]["name"] == "Bräu"


@pytest.mark.parametrize(
    ("content_type", "encoding"),
    [
        ("application/json; charset=iso-8859-1", "latin-1"),
        ('application/json; charset="UTF-16"', "utf-16"),
        ("application/json; charset=utf8mb4", "utf-8"),  # no codec of that name: UTF-8
        ("application/json; charset=hex", "utf-8"),  # a codec, but not for text: UTF-8
    ],
)
def test_the_charset_the_content_type_names_is_honoured(catalog_beers, content_type, encoding):
    body = page_of("Bräu", catalog_beers).encode(encoding)
    with serving(body, {"Content-Type": content_type}) as url:
        assert client(url).random()[0]["name"] == "Bräu"


def test_a_byte_not_of_the_charset_named_is_refused_not_mangled(catalog_beers):
    latin1 = page_of("Bräu", catalog_beers).encode("latin-1")
    with (
        serving(latin1, {"Content-Type": "application/json; charset=utf-8"}) as url,
        pytest.raises(TransportError, match=r"not utf-8, the charset its Content-Type names"),
    ):
        client(url, retries=0).random()


def test_an_error_body_not_in_its_charset_still_gives_its_message():
    session = ScriptedSession((404, '{"message": "No beer Bräu"}'.encode("latin-1"), {}))
    with pytest.raises(NotFound, match="No beer Br\ufffdu"):
        client("http://punk.test/v2", session=session).beer(1)


def test_a_5xx_with_an_odd_body_gives_up_as_a_server_error():
    session = ScriptedSession((503, {"statusCode": 503, "message": "down", "data": 5}, {}))
    with pytest.raises(ServerError, match="down") as info:
        client("http://punk.test/v2", session=session, retries=2).random()
    assert info.value.status == 503
    assert session.calls == 3


@pytest.mark.parametrize(
    ("detail", "message"),
    [
        ([{"loc": [], "type": "less_than_equal", "msg": "x"}], "x"),
        (["bad"], "bad"),
        (["bad", {"loc": ["path", "id"], "msg": "too big"}], "bad; path.id: too big"),
        ([{"loc": "path", "msg": "bad id"}], "path: bad id"),
        ([{"loc": ["path", "id"], "type": "int_parsing"}], "path.id: int_parsing"),
        ([{"loc": None}], "{'loc': None}"),
        ([], "HTTP 422 Scripted"),
        ({"loc": ["path", "id"]}, "HTTP 422 Scripted"),
    ],
)
def test_a_v3_422_with_an_odd_detail_is_a_readable_bad_request(detail, message):
    session = ScriptedSession((422, {"detail": detail}, {}))
    with pytest.raises(BadRequest) as info:
        client("http://punk.test/v3", "v3", session=session).beer(999)
    assert info.value.message == message
    assert all(isinstance(d, dict) for d in info.value.details)
    assert session.calls == 1


# ----------------------------------------------------------------------------- schema


def test_a_malformed_beer_names_the_id_and_field(punkapi_server, catalog_beers):
    beers = copy.deepcopy(catalog_beers[:10])
    beers[6]["abv"] = "4.5%"
    del beers[8]["ingredients"]["hops"][1]["amount"]
    url = punkapi_server(beers=beers)
    with pytest.raises(SchemaError) as info:
        client(url).beers()
    assert (info.value.beer_id, info.value.field) == (7, "abv")
    assert "Beer 7" in str(info.value) and "'4.5%'" in str(info.value)
    with pytest.raises(SchemaError) as info:
        client(url).beer(9)
    assert info.value.field == "ingredients.hops[1].amount"
    # validation can be turned off for a server known to be odd
    assert len(client(url, validate=False).beers()) == 10


def test_a_schema_error_shows_only_the_start_of_a_long_input(catalog_beers):
    beer = copy.deepcopy(catalog_beers[100])
    del beer["tagline"]  # pydantic's input for a missing field is the whole beer
    with pytest.raises(SchemaError) as info:
        validate_beer(beer)
    assert info.value.field == "tagline"
    assert "(got {'id': 101, 'name': 'Riptide'" in str(info.value)
    assert "…)" in str(info.value) and len(str(info.value)) < 160


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"abv": "4.5"}, "abv"),  # a number sent as a string is an error, not coerced
        ({"id": "1"}, "id"),
        ({"id": 0}, "id"),  # ids start at 1
        ({"food_pairing": None}, "food_pairing"),
        ({"volume": {"value": 20, "unit": None}}, "volume.unit"),
    ],
)
def test_the_schema_is_strict(catalog_beers, change, field):
    beer = {**copy.deepcopy(catalog_beers[0]), **change}
    with pytest.raises(SchemaError) as info:
        validate_beer(beer)
    assert info.value.field == field


def test_a_missing_nullable_field_is_an_error_and_further_problems_are_counted(catalog_beers):
    beer = copy.deepcopy(catalog_beers[0])
    del beer["method"]["twist"]  # null in most beers, but always there
    with pytest.raises(SchemaError) as info:
        validate_beer(beer)
    assert info.value.field == "method.twist"
    assert "more problem" not in str(info.value)
    beer["abv"], beer["ibu"] = "4.5", "60"
    with pytest.raises(SchemaError, match=r"; 2 more problem\(s\)$"):
        validate_beer(beer)


def test_shorten_cuts_to_the_limit_with_an_ellipsis():
    assert shorten("x" * 80) == "x" * 80
    assert shorten("x" * 81) == "x" * 79 + "…"
    assert BadRequest("no details").details == []


def test_the_schema_lets_fields_a_newer_server_adds_through(catalog_beers):
    beer = copy.deepcopy(catalog_beers[0])
    beer["brewery"] = "BrewDog"
    beer["volume"]["note"] = "approx."
    beer["ingredients"]["hops"][0]["origin"] = "NZ"
    assert validate_beer(beer) is beer


def test_keep_returns_malformed_beers_as_sent_and_says_why(punkapi_server, catalog_beers, caplog):
    beers = copy.deepcopy(catalog_beers[:10])
    beers[6]["abv"] = "4.5%"
    del beers[8]["tagline"]
    c = client(punkapi_server(beers=beers), on_invalid="keep")
    with caplog.at_level(logging.WARNING, logger="brewops.punkapi.client"):
        assert c.beers() == beers
    assert [(e.beer_id, e.field) for e in c.schema_errors] == [(7, "abv"), (9, "tagline")]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert all(str(e) in w for e, w in zip(c.schema_errors, warnings, strict=True))


def test_keep_lets_a_whole_crawl_through_one_malformed_beer(punkapi_server, catalog_beers):
    beers = copy.deepcopy(catalog_beers)
    del beers[100]["tagline"]
    url = punkapi_server(beers=beers)
    with pytest.raises(SchemaError, match="Beer 101"):
        client(url).all_beers(progress=False)  # the default still stops at the first
    c = client(url, on_invalid="keep")
    assert c.all_beers(progress=False) == beers
    assert [e.beer_id for e in c.schema_errors] == [101]


def test_keep_still_reshapes_a_malformed_v3_beer(punkapi_server, catalog_beers):
    beers = copy.deepcopy(catalog_beers[:10])
    beers[6]["abv"] = "4.5%"
    url = punkapi_server(beers=beers, api_version="v3")
    c = client(url, "v3", on_invalid="keep")
    beer = c.beer(7)
    assert beer["abv"] == "4.5%" and "image" not in beer
    assert beer["image_url"] == f"{url}/images/7.png"
    assert [e.field for e in c.schema_errors] == ["abv"]


def test_keep_returns_a_beer_that_is_not_an_object_as_sent(catalog_beers):
    page = [catalog_beers[0], 5, None, "junk"]
    with pytest.raises(SchemaError, match="Expected a beer object, got 5"):
        client("http://punk.test/v2", session=ScriptedSession((200, page, {}))).beers()
    c = client("http://punk.test/v2", session=ScriptedSession((200, page, {})), on_invalid="keep")
    assert c.beers() == page
    assert [e.field for e in c.schema_errors] == ["<beer>"] * 3
    c = client(
        "http://punk.test/v2", session=ScriptedSession((200, ["junk"], {})), on_invalid="keep"
    )
    assert c.random(2) == ["junk", "junk"]
    assert len(c.schema_errors) == 2


@pytest.mark.parametrize(
    ("payload", "call"),
    [
        ({"beers": []}, lambda c: c.beers()),
        ([], lambda c: c.random()),
        ([{"id": 1}, {"id": 2}], lambda c: c.beer(1)),
        ({"id": 1}, lambda c: c.random()),
    ],
)
def test_keep_still_raises_for_a_page_that_is_not_what_the_endpoint_promises(payload, call):
    c = client(
        "http://punk.test/v2", session=ScriptedSession((200, payload, {})), on_invalid="keep"
    )
    with pytest.raises(SchemaError) as info:
        call(c)
    assert info.value.field == "<response>"
    assert c.schema_errors == []


@pytest.mark.parametrize(
    ("version", "call"),
    [("v2", lambda c: c.beers()), ("v2", lambda c: c.beer(1)), ("v3", lambda c: c.beers())],
)
def test_an_error_object_answered_with_200_is_refused_with_the_servers_message(version, call):
    """A proxy or a cache may answer an error with 200: its message says what went wrong."""
    error = {"statusCode": 429, "error": "Too Many Requests", "message": "wait an hour"}
    c = client(f"http://punk.test/{version}", version, session=ScriptedSession((200, error, {})))
    with pytest.raises(SchemaError, match=r"an error object with 200: 'wait an hour'") as info:
        call(c)
    assert info.value.field == "<response>"


def test_on_invalid_must_be_raise_or_keep():
    with pytest.raises(ValueError, match="on_invalid"):
        PunkApiClient("http://punk.test/v2", on_invalid="drop")


@pytest.mark.parametrize(
    "url", ["localhost:8080/v2", "127.0.0.1:8080", "ftp://punk.test/v2", "", "http:///v2", 8080]
)
def test_a_url_without_http_is_refused_at_once_saying_what_one_looks_like(url):
    # requests refuses it only when asked, on every retry: half a minute for one line
    with pytest.raises(ValueError, match=r"must be an http:// or https:// URL with a host"):
        PunkApiClient(url)


def test_a_url_over_https_is_taken():
    assert PunkApiClient("https://punk.test/v2/").base_url == "https://punk.test/v2"


def test_errors_share_a_base(punkapi_url):
    with pytest.raises(PunkApiError):
        client(punkapi_url).beer(9999)


def test_unknown_api_version():
    with pytest.raises(ValueError, match=r"api_version must be one of \('v2', 'v3'\), not 'V4'"):
        PunkApiClient("http://127.0.0.1:1/v4", "V4")


@pytest.mark.parametrize(("said", "expected"), [("V2", "v2"), ("V3", "v3"), ("v3", "v3")])
def test_the_api_version_is_taken_in_either_case(said, expected):
    client = PunkApiClient(f"http://127.0.0.1:1/{expected}", said)

    assert client.api_version == expected
    assert api_version_of(f"http://127.0.0.1:1/{said}") == expected


def test_the_client_imports_without_pandas_or_numpy():
    # the producer Lambda imports the client; its package must stay small
    code = (
        "import sys, brewops.punkapi.client, brewops.catalog, brewops.punkapi.server;"
        "heavy = {'pandas', 'numpy', 'matplotlib', 'tqdm'} & set(sys.modules);"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    ("url", "expected"),
    [("http://127.0.0.1:1/v3", "v3"), ("http://h/v2/", "v2"), ("http://h/api", "v2")],
)
def test_the_api_version_is_read_from_the_base_url(url, expected):
    assert api_version_of(url) == expected


def test_only_what_the_client_makes_for_this_machine_leaves_the_shells_proxy():
    for url in ("http://127.0.0.2:5000/v2", "http://[::1]:5000/v2", "http://localhost:5000"):
        assert client(url).session.trust_env is False, url
    # a session the caller gives is used as it is
    given = requests.Session()
    assert client("http://127.0.0.1:5000/v2", session=given).session.trust_env is True
