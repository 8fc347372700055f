"""A client for any Punk API server, v2 or v3, that always returns v2-shaped beers.

Base URLs include the version prefix, e.g. http://127.0.0.1:8325/v2 or a v3 service's /v3.
Transient failures (5xx, 429, connection errors, truncated bodies) are retried by tenacity
with exponential backoff and jitter; a server's Retry-After or X-RateLimit-Reset is
honoured, up to `max_wait` seconds; a hint that is not a finite, non-negative number is
ignored. A body is read up to MAX_BODY_BYTES, counted decompressed, and decoded strictly in
the charset its Content-Type names, else in UTF-8; a body past the cap, with a byte not of
its charset or not JSON is retried as well. Every beer is checked against the schema: by
default a mismatch raises SchemaError; with `on_invalid="keep"` the beer is returned as
sent, logged and recorded in `schema_errors`, so one bad beer does not stop a crawl.
Downstream, the pipeline's transform is the validator that decides: a kept beer it cannot
clean goes to the error prefix, and the function logs why.

Kept free of pandas: the producer Lambda uses this module.
"""

from __future__ import annotations

import codecs
import datetime
import email.message
import email.utils
import ipaddress
import logging
import math
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Literal
from urllib.parse import urlsplit

import requests
import urllib3
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)
from tenacity.stop import stop_base
from tenacity.wait import wait_base
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.util import Timeout

from brewops import __version__
from brewops.catalog import to_v2_shape
from brewops.environ import LOOPBACK_HOSTS
from brewops.jsontext import parse_json
from brewops.punkapi import canonical_api_version
from brewops.punkapi.errors import (
    RETRYABLE,
    BadRequest,
    ClientError,
    NotFound,
    PunkApiError,
    PunkApiUrlError,
    RateLimited,
    SchemaError,
    ServerError,
    TransportError,
    shorten,
)
from brewops.punkapi.models import validate_beer

V2_FILTERS = frozenset(
    {"abv_gt", "abv_lt", "ibu_gt", "ibu_lt", "ebc_gt", "ebc_lt", "beer_name", "yeast", "hops"}
    | {"malt", "food", "brewed_before", "brewed_after", "ids"}
)
V3_FILTERS = V2_FILTERS - {"hops", "malt", "yeast"}
MAX_PER_PAGE = 80
ON_INVALID = ("raise", "keep")
# A page of 80 beers is about 200 kB: a body far past that is no page (a runaway server, a
# decompression bomb), and read whole it could take all the memory of a small Lambda.
MAX_BODY_BYTES = 32 * 1024 * 1024
BODY_CHUNK_BYTES = 64 * 1024

logger = logging.getLogger(__name__)


def _seconds(text: str) -> float | None:
    """A finite, non-negative number of seconds, else None (nan, inf, -5, "soon")."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def _on_this_machine(host: str | None) -> bool:
    try:
        return host in LOOPBACK_HOSTS or ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


def retry_after_seconds(response: requests.Response, now: float | None = None) -> float | None:
    """The server's hint of when to come back: Retry-After (seconds or HTTP date), else the
    rate-limit window's end (X-RateLimit-Reset, epoch seconds) when no requests remain.

    A hint that is not a finite, non-negative number is ignored, as if it were absent.
    """
    now = time.time() if now is None else now
    header = response.headers.get("Retry-After")
    if header:
        seconds = _seconds(header)
        if seconds is not None:
            return seconds
        try:
            when = email.utils.parsedate_to_datetime(header)
            # an HTTP date is GMT, also in the asctime form that names no zone
            if when.tzinfo is None:
                when = when.replace(tzinfo=datetime.UTC)
            return max(when.timestamp() - now, 0.0)
        except (TypeError, ValueError, OverflowError):
            pass
    reset = response.headers.get("X-RateLimit-Reset")
    if reset and response.headers.get("X-RateLimit-Remaining", "0") == "0":
        reset_at = _seconds(reset)
        return None if reset_at is None else max(reset_at - now, 0.0)
    return None


class wait_server_hint(wait_base):
    """Wait as long as the server asked (Retry-After / rate-limit reset), else back off
    exponentially with jitter; never longer than `cap` seconds."""

    def __init__(self, initial: float, cap: float, jitter: float | None = None) -> None:
        self.cap = cap
        # `multiplier`: tenacity 9.2 deprecates `initial`, its old name
        self.backoff = wait_exponential_jitter(
            multiplier=initial, max=cap, jitter=initial if jitter is None else jitter
        )

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        hint = getattr(outcome.exception(), "retry_after", None) if outcome else None
        if hint is not None:
            return min(hint, self.cap)
        return min(self.backoff(retry_state), self.cap)


class stop_if_hint_exceeds(stop_base):
    """Give up at once when the server asks to wait longer than we are willing to."""

    def __init__(self, cap: float) -> None:
        self.cap = cap

    def __call__(self, retry_state: RetryCallState) -> bool:
        outcome = retry_state.outcome
        hint = getattr(outcome.exception(), "retry_after", None) if outcome else None
        return hint is not None and hint > self.cap


class stop_at_deadline(stop_base):
    """Give up when the next wait would end past `deadline` (a time.monotonic() value)."""

    def __init__(self, deadline: float | None) -> None:
        self.deadline = deadline

    def __call__(self, retry_state: RetryCallState) -> bool:
        if self.deadline is None:
            return False
        return time.monotonic() + retry_state.upcoming_sleep >= self.deadline


def api_version_of(base_url: str, default: str = "v2") -> str:
    """The contract a base URL speaks, from its last path segment (…/v2 or …/v3)."""
    last = base_url.rstrip("/").rsplit("/", 1)[-1]
    try:
        return canonical_api_version(last)
    except ValueError:
        return default


def check_base_url(base_url: Any, given_as: str = "the Punk API URL") -> str:
    """`base_url`, if a request can be sent to it; else PunkApiUrlError, naming where it
    came from (`given_as`: "BREWOPS_PUNKAPI_URL", say). requests would refuse it on every
    retry, which would take half a minute."""
    parts = urlsplit(base_url) if isinstance(base_url, str) else None
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or any(character.isspace() for character in base_url)
    ):
        raise PunkApiUrlError(
            f"{given_as} must be an http:// or https:// URL with a host and no spaces "
            f"(e.g. http://127.0.0.1:8080/v2), not {base_url!r}"
        )
    return base_url


class PunkApiClient:
    """Talks to one Punk API server. All methods return v2-shaped beer dicts.

    `on_invalid` says what to do with a beer that fails the schema (or is not a JSON object):
    "raise" SchemaError, or "keep" it as the server sent it (v3 beers still reshaped to v2),
    log a warning and append the error to `schema_errors`, which callers may show or clear.
    A page that is not what the endpoint promises (not an array, v2's single-beer endpoints
    not returning one beer) always raises.
    """

    def __init__(
        self,
        base_url: str,
        api_version: str = "v2",
        *,
        timeout: float = 10.0,
        retries: int = 5,
        backoff: float = 0.5,
        max_wait: float = 60.0,
        validate: bool = True,
        on_invalid: Literal["raise", "keep"] = "raise",
        session: requests.Session | None = None,
        sleep: Any = time.sleep,
    ) -> None:
        api_version = canonical_api_version(api_version)
        if on_invalid not in ON_INVALID:
            raise ValueError(f"on_invalid must be one of {ON_INVALID}, not {on_invalid!r}")
        check_base_url(base_url)
        self.base_url = base_url.rstrip("/")
        self.api_version = api_version
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_wait = max_wait
        self.validate = validate
        self.on_invalid = on_invalid
        self.schema_errors: list[SchemaError] = []  # beers kept despite the schema
        self.session = session or requests.Session()
        if session is None:
            # lets a deadline end a wait for the headers, too (a caller's session is its own)
            for prefix in ("http://", "https://"):
                self.session.mount(prefix, _CutOffAdapter())
        if session is None and _on_this_machine(urlsplit(base_url).hostname):
            # a proxy set in the shell (HTTP_PROXY…) is for other machines, but requests
            # sends this one's addresses through it too unless NO_PROXY names them
            self.session.trust_env = False
        self.session.headers.setdefault("User-Agent", f"brewops/{__version__}")
        self.session.headers["Accept"] = "application/json"
        self._sleep = sleep
        self.requests_made = 0  # HTTP requests, retries included
        # A time.monotonic() value past which no retry starts and no request goes on (one
        # sent past it gets 0.1 s): set by a caller that must answer in time (the producer
        # Lambda, before its own timeout). Name lookup is the one wait it cannot end.
        self.deadline: float | None = None

    def __repr__(self) -> str:
        return f"PunkApiClient({self.base_url!r}, api_version={self.api_version!r})"

    # -- public API

    def beers(self, page: int = 1, per_page: int = MAX_PER_PAGE, **filters: Any) -> list[dict]:
        """One page of beers, optionally filtered (v2 filter names)."""
        params = {"page": page, "per_page": per_page, **self._filter_params(filters)}
        payload = self._get("/beers", params)
        if not isinstance(payload, list):
            raise SchemaError(
                f"Expected a JSON array of beers from {self.base_url}/beers, got "
                f"{_what_came(payload)}",
                field="<response>",
            )
        return [self._beer(b) for b in payload]

    def iter_beers(
        self, per_page: int = MAX_PER_PAGE, progress: bool = False, **filters: Any
    ) -> Iterator[dict[str, Any]]:
        """Every matching beer, page after page until a short or empty page.

        A full page equal to the first or the previous one raises SchemaError: a server
        that ignores `page` would otherwise repeat its beers without end."""
        bar = None
        if progress:
            from brewops.progress import ProgressBar  # only a crawl with a bar needs it

            # the URL last: a narrow terminal cuts the end of the line, not the count
            bar = ProgressBar(desc="Crawling", unit=" beers", postfix=self.base_url)
        try:
            page = 1
            first: list[dict] | None = None
            previous: list[dict] | None = None
            while True:
                beers = self.beers(page=page, per_page=per_page, **filters)
                for number, seen in ((1, first), (page - 1, previous)):
                    if beers and beers == seen:
                        raise SchemaError(
                            f"{self.base_url}/beers page {page} repeats page {number}: the "
                            "server ignores the page parameter; check that the URL names a "
                            "Punk API server",
                            field="<response>",
                        )
                first = beers if first is None else first
                previous = beers
                if bar is not None:
                    bar.update(len(beers))
                yield from beers
                if len(beers) < per_page:
                    return
                page += 1
        finally:
            if bar is not None:
                bar.close()

    def all_beers(self, progress: bool = True, per_page: int = MAX_PER_PAGE) -> list[dict]:
        """The whole catalogue."""
        return list(self.iter_beers(per_page=per_page, progress=progress))

    def beer(self, beer_id: int) -> dict[str, Any]:
        """One beer by id; NotFound if there is none."""
        try:
            payload = self._get(f"/beers/{beer_id}")
        except BadRequest as exc:
            # v3 answers an id past the end with 422 on the path parameter: it is a miss.
            if self.api_version == "v3" and _is_id_out_of_range(exc.details):
                raise NotFound(
                    f"No beer found that matches the ID {beer_id}",
                    status=exc.status,
                    url=exc.url,
                    body=exc.body,
                ) from exc
            raise
        return self._one(payload, f"/beers/{beer_id}")

    def random(self, n: int = 1) -> list[dict[str, Any]]:
        """`n` random beers, one request each (the API serves one at a time)."""
        return [self._one(self._get("/beers/random"), "/beers/random") for _ in range(n)]

    # -- internals

    def _filter_params(self, filters: dict[str, Any]) -> dict[str, Any]:
        allowed = V2_FILTERS if self.api_version == "v2" else V3_FILTERS
        unknown = sorted(set(filters) - allowed)
        if unknown:
            raise ValueError(
                f"Unsupported filter(s) for the {self.api_version} API: {', '.join(unknown)}; "
                f"allowed: {', '.join(sorted(allowed))}"
            )
        params = {}
        for name, value in filters.items():
            if value is None:
                continue
            if name == "ids":
                value = self._ids_param(value)
            elif isinstance(value, str) and name in {"beer_name", "yeast", "hops", "malt", "food"}:
                value = value.replace(" ", "_")
            params[name] = value
        return params

    def _ids_param(self, ids: Any) -> str:
        """v2 separates ids with "|", v3 with ",": either is accepted, the right one sent."""
        if isinstance(ids, int):
            parts: Iterable[Any] = [ids]
        elif isinstance(ids, str):
            parts = re.split(r"[,|]", ids)
        else:
            parts = ids
        return ("|" if self.api_version == "v2" else ",").join(str(p).strip() for p in parts)

    def _beer(self, beer: Any) -> Any:
        if self.api_version == "v3" and isinstance(beer, dict):
            beer = to_v2_shape(beer, image_base=f"{self.base_url}/images")
        try:
            if not isinstance(beer, dict):
                raise SchemaError(f"Expected a beer object, got {beer!r:.80}", field="<beer>")
            return validate_beer(beer) if self.validate else beer
        except SchemaError as error:
            if self.on_invalid == "raise":
                raise
            self.schema_errors.append(error)
            logger.warning("Keeping a beer that does not match the schema: %s", error)
            return beer

    def _one(self, payload: Any, path: str) -> Any:
        if self.api_version == "v2":
            if not isinstance(payload, list) or len(payload) != 1:
                came = f", got {_what_came(payload)}" if isinstance(payload, dict) else ""
                raise SchemaError(
                    f"Expected an array of one beer from {self.base_url}{path}{came}",
                    field="<response>",
                )
            payload = payload[0]
        return self._beer(payload)

    def _get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        retrying = Retrying(
            retry=retry_if_exception_type(RETRYABLE),
            stop=stop_after_attempt(self.retries + 1)
            | stop_if_hint_exceeds(self.max_wait)
            | stop_at_deadline(self.deadline),
            wait=wait_server_hint(self.backoff, self.max_wait),
            sleep=self._sleep,
            reraise=True,
        )
        return retrying(self._get_once, self.base_url + path, params)

    def _get_once(self, url: str, params: dict[str, Any] | None) -> Any:
        self.requests_made += 1
        started = time.monotonic()
        timeout: float | Timeout = self.timeout
        ends_by = None
        if self.deadline is not None:
            # requests refuses a timeout of 0 or less: a request past the deadline gets 0.1 s
            time_left = max(self.deadline - started, 0.1)
            ends_by = started + time_left
            # connecting (a TLS handshake as a whole, too) gets the time left (`total`); the
            # cut-off ends the wait for the headers and the body then
            timeout = Timeout(connect=self.timeout, read=self.timeout, total=time_left)
        cut_off = _CutOff(ends_by)
        try:
            try:
                with (
                    cut_off,
                    self.session.get(
                        url,
                        params=params,
                        # requests passes a urllib3 Timeout on as it is; its stubs know floats
                        timeout=timeout,  # type: ignore[arg-type]
                        stream=True,
                    ) as response,
                    # a shut down ends a read in progress, as end of file
                    cut_off.watching(
                        lambda: response.raw.shutdown(), "the body was still arriving"
                    ),
                ):
                    content = _read_body(response)
            except requests.RequestException:  # a cut off shows as a truncated answer
                if not cut_off.cut.is_set():
                    raise
            if cut_off.cut.is_set():  # what was read may be short of the whole answer
                raise requests.ReadTimeout(f"{cut_off.what_was_cut} at the deadline")
        except requests.Timeout as exc:
            waited = time.monotonic() - started
            raise TransportError(f"Timed out after {waited:.1f} s: {exc}", url=url) from exc
        except requests.RequestException as exc:  # refused, reset, truncated body
            raise TransportError(f"No usable answer: {exc}", url=url) from exc
        if response.status_code >= 400:
            raise self._error(response, content)
        return _payload(response, content)

    def _error(self, response: requests.Response, content: bytearray | None) -> PunkApiError:
        status = response.status_code
        text = ""
        if content is not None:  # past the cap: no message, and still the status's error
            try:
                text = _body_text(content, response.headers)
            except ValueError:  # read for its message only: U+FFFD for a wrong byte will do
                text = content.decode("utf-8", "replace")
        try:
            body = parse_json(text)
        except ValueError:
            body = text
        message = _server_message(body) or f"HTTP {status} {response.reason}"
        kw = {"status": status, "url": response.url, "body": body}
        if status == 429:
            return RateLimited(message, retry_after=retry_after_seconds(response), **kw)
        if status >= 500:  # a 503 may say when to come back
            return ServerError(message, retry_after=retry_after_seconds(response), **kw)
        if status == 404:
            return NotFound(message, **kw)
        if status in (400, 422):
            entries = (
                _entries(body.get("data") or body.get("detail")) if isinstance(body, dict) else []
            )
            details = [e for e in entries if isinstance(e, dict)]
            return BadRequest(message, details=details, **kw)
        return ClientError(message, **kw)


def _payload(response: requests.Response, content: bytearray | None) -> Any:
    """The JSON of an answer that is no error; TransportError when its body is past the cap,
    has a byte not of its charset or is not JSON."""

    def unusable(reason: str) -> TransportError:
        return TransportError(f"The body {reason}", status=response.status_code, url=response.url)

    if content is None:
        raise unusable(
            f"exceeded {MAX_BODY_BYTES:,} bytes (a page of beers is about 200 kB); "
            "the rest was not read"
        )
    first_bytes = f"first bytes: {bytes(content[:80])!r}"
    try:
        text = _body_text(content, response.headers)
    except ValueError as exc:  # UnicodeDecodeError, or a codec's own complaint
        named = _charset(response.headers.get("Content-Type"))
        expected = (
            f"{named}, the charset its Content-Type names"
            if named
            else "UTF-8, which JSON must be when its Content-Type names no known charset"
        )
        why = (
            f"byte {content[exc.start]:#04x} at {exc.start}: {exc.reason}"
            if isinstance(exc, UnicodeDecodeError)
            else str(exc)
        )
        raise unusable(f"is not {expected} ({why}); {first_bytes}") from exc
    try:
        return parse_json(text)
    except ValueError as exc:
        raise unusable(f"is not JSON ({exc}); {first_bytes}") from exc


class _CutOff:
    """Ends at `ends_by` (a time.monotonic() value) the wait for the answer to the request
    made in its block; `cut` says whether it did. A read timeout bounds each wait for a
    byte, not the whole answer: a server trickling its headers or its body would hold the
    reader past any deadline. What is read is watched in turn: the connection's socket
    until the headers are in (`_CutOffAdapter`'s connections ask for it), then the body;
    `what_was_cut` says which was cut off. With no `ends_by` it does nothing, and starts
    no thread."""

    def __init__(self, ends_by: float | None) -> None:
        self.ends_by = ends_by
        self.cut = threading.Event()
        self._lock = threading.Lock()  # the watched read, against the timer
        self._due = False
        self._shutdown: Callable[[], object] | None = None
        self._watched = ""
        self.what_was_cut = ""
        self._timer: threading.Timer | None = None
        self._token: Any = None

    def __enter__(self) -> _CutOff:
        if self.ends_by is not None:
            self._token = _cut_off_in_progress.set(self)
            self._timer = threading.Timer(
                max(self.ends_by - time.monotonic(), 0.0), self._at_deadline
            )
            self._timer.daemon = True
            self._timer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._timer is not None:
            _cut_off_in_progress.reset(self._token)
            self._timer.cancel()
            # a cut off in progress ends, and says so, before the read's outcome is judged
            # or another request takes the connection
            self._timer.join()

    def watch(self, shutdown: Callable[[], object] | None, what: str = "") -> None:
        """From now on the deadline calls `shutdown` (None: nothing), at once if it has
        passed; `what` says what it cuts off."""
        with self._lock:  # a shut down under way ends before the read goes on
            self._shutdown, self._watched = shutdown, what
            if self._due:
                self._shut_down()

    @contextmanager
    def watching(self, shutdown: Callable[[], object], what: str) -> Iterator[None]:
        """`watch` while in the block."""
        self.watch(shutdown, what)
        try:
            yield
        finally:
            self.watch(None)

    def _at_deadline(self) -> None:
        with self._lock:
            self._due = True
            self._shut_down()

    def _shut_down(self) -> None:
        if self._shutdown is None:  # between reads: the next one is cut off as it starts
            return
        try:
            self._shutdown()
        # no socket (not connected yet, or closed), or the body was read and the
        # connection is back in the pool
        except (AttributeError, ValueError, RuntimeError, OSError):
            return
        if not self.cut.is_set():  # the first cut off is the one that shows
            self.what_was_cut = self._watched
            self.cut.set()


_cut_off_in_progress: ContextVar[_CutOff | None] = ContextVar("cut_off_in_progress", default=None)


class _CutOffConnection(HTTPConnection):
    """A connection whose wait for the status line and headers, and for the body of a
    redirect requests reads on its own, the request's deadline can end (see _CutOff)."""

    def getresponse(self) -> urllib3.HTTPResponse:  # type: ignore[override]
        cut_off = _cut_off_in_progress.get()
        if cut_off is None:
            return super().getresponse()
        # no response to shut down yet: the connection's socket, then
        with cut_off.watching(
            lambda: self.sock.shutdown(socket.SHUT_RDWR),
            "the status line and headers were still arriving",
        ):
            response = super().getresponse()
        # then its body, until another read is watched: requests reads a redirect's body
        # before it follows the redirect
        cut_off.watch(response.shutdown, "the body was still arriving")
        return response


class _CutOffHTTPSConnection(_CutOffConnection, HTTPSConnection):
    pass


class _CutOffPool(HTTPConnectionPool):
    ConnectionCls = _CutOffConnection


class _CutOffHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _CutOffHTTPSConnection


_CUT_OFF_POOLS: dict[str, type[HTTPConnectionPool]] = {
    "http": _CutOffPool,
    "https": _CutOffHTTPSPool,
}


class _CutOffAdapter(requests.adapters.HTTPAdapter):
    """An HTTPAdapter whose connections, direct or through an HTTP(S) proxy, a client's
    deadline can cut off while they wait for the headers."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _CUT_OFF_POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if isinstance(manager, urllib3.ProxyManager):  # a SOCKS proxy keeps pools of its own
            manager.pool_classes_by_scheme = _CUT_OFF_POOLS
        return manager


def _read_body(response: requests.Response) -> bytearray | None:
    """The body of a response opened with stream=True, decompressed; None once it passes
    MAX_BODY_BYTES, the rest left unread (closing the response drops the connection)."""
    content = bytearray()
    for chunk in response.iter_content(BODY_CHUNK_BYTES):
        content += chunk
        if len(content) > MAX_BODY_BYTES:
            return None
    return content


def _charset(content_type: str | None) -> str | None:
    """The charset a Content-Type names, if Python has a codec of that name for text."""
    header = email.message.Message()
    header["Content-Type"] = content_type or ""
    charset = header.get_content_charset()
    if not charset:
        return None
    try:
        # LookupError: no codec of that name, or one not for text (hex); ValueError: a
        # codec that takes no "replace" (idna)
        b" ".decode(charset, "replace")
    except (LookupError, ValueError):
        return None
    return codecs.lookup(charset).name


def _body_text(content: bytes | bytearray, headers: Mapping[str, str]) -> str:
    """The body as text, in the charset its Content-Type names, else in UTF-8, which JSON
    between systems must be (RFC 8259, 8.1); a byte order mark is dropped. A byte not of
    the charset raises UnicodeDecodeError (a ValueError) instead of becoming U+FFFD, which
    would change a beer's name unseen."""
    charset = _charset(headers.get("Content-Type")) or "utf-8"
    return content.decode(charset).removeprefix("\ufeff")


# Error bodies are read defensively: a body of an unexpected shape must still give the
# error its status calls for, never a TypeError from the error path itself.


def _entries(value: Any) -> list[Any]:
    """The per-parameter entries of an error body; an empty list when they are not a list."""
    return value if isinstance(value, list) else []


def _v2_entry(entry: Any) -> str:
    if not isinstance(entry, dict):
        return shorten(str(entry))
    return f"{entry.get('param')}={entry.get('value')!r}: {entry.get('msg')}"


def _v3_entry(entry: Any) -> str:
    if not isinstance(entry, dict):
        return shorten(str(entry))
    loc = entry.get("loc")
    where = ".".join(str(p) for p in loc) if isinstance(loc, list) else loc
    message = entry.get("msg") or entry.get("type") or shorten(str(entry))
    return f"{where}: {message}" if where else str(message)


def _what_came(payload: Any) -> str:
    """What a page that is no array of beers is, quoting the message of an error object a
    proxy or a cache answered with 200."""
    message = _server_message(payload) if isinstance(payload, dict) else None
    if message:
        return f"an error object with 200: {shorten(message)!r}"
    return type(payload).__name__


def _server_message(body: Any) -> str | None:
    """The human part of an error body: v2's message (+ per-parameter msgs) or v3's detail."""
    if not isinstance(body, dict):
        return body.strip()[:200] if isinstance(body, str) and body.strip() else None
    if "message" in body:
        extra = "; ".join(_v2_entry(e) for e in _entries(body.get("data")))
        return f"{body['message']}: {extra}" if extra else str(body["message"])
    detail = body.get("detail")
    if isinstance(detail, str):
        return detail
    return "; ".join(_v3_entry(e) for e in _entries(detail)) or None


def _is_id_out_of_range(details: Iterable[dict[str, Any]]) -> bool:
    for detail in details:
        loc = detail.get("loc")
        if (
            isinstance(loc, list)
            and loc
            and loc[-1] == "id"
            and detail.get("type") == "less_than_equal"  # past the end; 0 is a bad id
        ):
            return True
    return False
