"""A local Punk API server on 127.0.0.1.

v2 mode answers like the original Express service (punkapi-server 2.x with punkapi-lib):
the same routes, query validation and messages, filters (`null` comparing as 0, as there),
pagination, 404s, the fixed-window rate limit per client IP, CORS, weak ETags with 304.
Text filters are a case-insensitive substring match and dates are `mm-yyyy`, as the
contract says: the original matched names by "these characters in order" through a
regular expression (and answered 500 to "a(b"), and let through months like 19.

v3 mode answers like the community FastAPI service: `/v3`, single objects for one beer,
`page` required, `per_page` 10-80, comma-separated ids, 422 errors in FastAPI's shape,
`image` instead of `image_url`, no rate-limit headers.

Optional fault injection (seedable) makes it misbehave for reliability tests.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import logging
import math
import random
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from brewops.catalog import CatalogError, default_catalog_path, load_catalog, to_v3_shape
from brewops.punkapi import canonical_api_version

DEFAULT_RATE_LIMIT = 3600
RATE_WINDOW_SECONDS = 3600

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------- bodies

V2_JSON = "application/json; charset=utf-8"
V3_JSON = "application/json"
MSG_RATE_LIMITED = "You have reached your limit on this ip address please wait an hour"
MSG_INTERNAL = "An internal server error occurred"  # Boom hides the message of every 500

# helmet 3 defaults, sent by the original on every answer
SECURITY_HEADERS = {
    "X-DNS-Prefetch-Control": "off",
    "X-Frame-Options": "SAMEORIGIN",
    "Strict-Transport-Security": "max-age=15552000; includeSubDomains",
    "X-Download-Options": "noopen",
    "X-Content-Type-Options": "nosniff",
    "X-XSS-Protection": "1; mode=block",
}
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Credentials": "true",
    "Access-Control-Expose-Headers": (
        "x-ratelimit-limit,x-ratelimit-remaining,content-length,origin,content-type,accept"
    ),
}

# A 1x1 transparent PNG stands in for the bottle pictures v3 serves under /v3/images.
PLACEHOLDER_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="
)


def boom(status: int, error: str, message: str, **extra: Any) -> dict[str, Any]:
    """The error payload of the original (hapi Boom)."""
    return {"statusCode": status, "error": error, "message": message, **extra}


def js_json(value: Any) -> bytes:
    """JSON bytes as JavaScript's JSON.stringify writes them (compact, UTF-8, no escaping).
    A NaN or an infinity raises ValueError: a catalogue holding one is refused at load."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode(
        "utf-8"
    )


def non_finite_number(value: Any) -> tuple[str, float] | None:
    """The first NaN or infinity in `value` and where it is ("method.mash_temp[0].temp.value"),
    else None. Python's JSON reader takes them from a file, but JSON has no number for them.
    Walked without recursion: a beer may be nested as deep as the JSON reader went."""
    pending: list[tuple[str, Any]] = [("", value)]
    while pending:
        where, item = pending.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return where, item
        if isinstance(item, dict):
            children = [(f"{where}.{k}" if where else str(k), v) for k, v in item.items()]
        elif isinstance(item, list):
            children = [(f"{where}[{i}]", v) for i, v in enumerate(item)]
        else:
            continue
        pending.extend(reversed(children))  # in document order
    return None


_STRICT_JSON = json.JSONEncoder(allow_nan=False)


def refuse_non_finite_numbers(beers: list[dict[str, Any]]) -> None:
    """CatalogError naming the first beer and field holding a NaN or an infinity: served, it
    would be a bare NaN no JSON reader takes, and as null it would change the beer unseen."""
    for beer in beers:
        try:
            _STRICT_JSON.encode(beer)  # quick; only a beer it refuses is walked
            continue
        except (TypeError, ValueError, RecursionError):
            found = non_finite_number(beer)
        if found:
            field, value = found
            name = f" ({json.dumps(beer['name'], ensure_ascii=False)})" if beer.get("name") else ""
            raise CatalogError(
                f"The catalogue holds a number JSON cannot carry: beer {beer.get('id')}{name} has "
                f"{field} = {json.dumps(value)}. Give it a number, or null if it is unknown."
            )


def express_etag(body: bytes) -> str:
    """Express's default weak ETag: length in hex and the first 27 chars of base64 SHA-1."""
    digest = base64.b64encode(hashlib.sha1(body, usedforsecurity=False).digest()).decode()[:27]
    return f'W/"{len(body):x}-{digest}"'


def etag_matches(if_none_match: str, etag: str) -> bool:
    if if_none_match.strip() == "*":
        return True
    bare = etag.removeprefix("W/")
    return any(t.strip().removeprefix("W/") == bare for t in if_none_match.split(","))


# ----------------------------------------------------------------------------- faults


@dataclass(frozen=True)
class Faults:
    """What goes wrong, how often. Rates are probabilities per request (0-1)."""

    error_rate: float = 0.0  # answer 500 or 503
    error_statuses: tuple[int, ...] = (500, 503)
    latency: float = 0.0  # extra delay per request, uniform in [0, latency] seconds
    burst_rate: float = 0.0  # start a burst of 429s
    burst_length: int = 3
    burst_retry_after: int = 1  # seconds, sent in Retry-After during a burst
    truncate_rate: float = 0.0  # cut the body short of its Content-Length
    seed: int | None = None

    @property
    def active(self) -> bool:
        return any((self.error_rate, self.latency, self.burst_rate, self.truncate_rate))


@dataclass
class FaultDecision:
    delay: float = 0.0
    status: int | None = None  # 5xx or 429
    truncate: bool = False


class FaultInjector:
    """Draws faults from one seeded generator, so a seed replays the same sequence."""

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self._rng = random.Random(faults.seed)
        self._lock = threading.Lock()
        self._burst_left = 0

    def decide(self) -> FaultDecision:
        f = self.faults
        with self._lock:
            decision = FaultDecision(delay=self._rng.uniform(0, f.latency) if f.latency else 0.0)
            if self._burst_left:
                self._burst_left -= 1
                decision.status = 429
                return decision
            draw = self._rng.random()
            if draw < f.burst_rate:
                self._burst_left = max(f.burst_length - 1, 0)
                decision.status = 429
            elif draw < f.burst_rate + f.error_rate:
                decision.status = self._rng.choice(f.error_statuses)
            elif draw < f.burst_rate + f.error_rate + f.truncate_rate:
                decision.truncate = True
            return decision


# ----------------------------------------------------------------------------- rate limit


class RateLimiter:
    """A fixed window per client IP: `limit` requests, then 429 until the window ends.

    Windows run on `clock`, a monotonic one: a jump of the wall clock neither holds a client
    back for as long as the jump nor ends its window early. `wall_clock` only dates the end
    of a window in epoch seconds, for X-RateLimit-Reset."""

    def __init__(
        self,
        limit: int,
        window: float,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self.wall_clock = wall_clock
        self._lock = threading.Lock()
        self._windows: dict[str, tuple[float, int]] = {}
        self._next_sweep = 0.0

    @property
    def clients(self) -> int:
        """How many clients' windows are held."""
        return len(self._windows)

    def hit(self, client: str, count: bool = True) -> tuple[int, float, bool]:
        """Count a request (unless `count` is False); return (remaining, reset epoch
        seconds, over the limit)."""
        remaining, seconds_left, exceeded = self._count(client, count)
        return remaining, self.wall_clock() + seconds_left, exceeded

    def _count(self, client: str, count: bool) -> tuple[int, float, bool]:
        """(remaining, seconds until the window ends, over the limit)"""
        now = self.clock()
        with self._lock:
            if now >= self._next_sweep:  # once a window: every client ever seen would pile up
                self._windows = {c: w for c, w in self._windows.items() if w[0] > now}
                self._next_sweep = now + self.window
            reset, hits = self._windows.get(client, (0.0, 0))
            if now >= reset:
                reset, hits = now + self.window, 0
            if count:  # a look alone neither counts nor starts a window
                hits += 1
                self._windows[client] = (reset, hits)
        return max(self.limit - hits, 0), reset - now, hits > self.limit

    def headers(self, client: str, count: bool = True) -> tuple[dict[str, str], bool]:
        """The X-RateLimit-* headers of an answer, and whether the client is over."""
        remaining, seconds_left, exceeded = self._count(client, count)
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": str(math.ceil(self.wall_clock() + seconds_left)),
        }
        if exceeded:
            headers["Retry-After"] = str(max(math.ceil(seconds_left), 1))
        return headers, exceeded


# ----------------------------------------------------------------------------- v2 rules


@dataclass(frozen=True)
class QueryRule:
    name: str
    kind: str  # "int", "float", "date", "text"
    message: str
    minimum: float = 0
    maximum: float | None = None


MSG_NUMBER = "Must be a number greater than 0"
MSG_DATE = "Must be in date format of mm-yyyy"
MSG_TEXT = "Must have a value and if you are using multiple words use underscores to separate"
MSG_BEER_ID = "beerId must be a number and greater than 0"

# In the order the original validates (and lists errors).
V2_QUERY_RULES = (
    QueryRule("page", "int", MSG_NUMBER, minimum=1),
    QueryRule("per_page", "int", "Must be a number greater than 0 and less than 80", 1, 80),
    *(QueryRule(n, "float", MSG_NUMBER) for n in ("abv_gt", "abv_lt", "ibu_gt", "ibu_lt")),
    *(QueryRule(n, "float", MSG_NUMBER) for n in ("ebc_gt", "ebc_lt")),
    QueryRule("brewed_before", "date", MSG_DATE),
    QueryRule("brewed_after", "date", MSG_DATE),
    *(QueryRule(n, "text", MSG_TEXT) for n in ("beer_name", "hops", "malt", "yeast", "food")),
)

# fullmatch, not `$`, which also matches before a final line break ("5\n" is no number)
_INT_RE = re.compile(r"[-+]?[0-9]+")  # validator.js isInt, leading zeroes allowed
_FLOAT_RE = re.compile(r"[-+]?(?:[0-9]+)?(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?")
_DATE_RE = re.compile(r"(0[1-9]|1[0-2])-\d{4}")  # mm-yyyy, the whole value


def _js_integer(text: str) -> int | float:
    """An integer string as JavaScript reads it: one past int()'s 4,300 digits is beyond
    any bound, as JavaScript's Infinity is (not a ValueError, which would answer 500)."""
    try:
        return int(text)
    except ValueError:
        return -math.inf if text.startswith("-") else math.inf


def _reason(status: int) -> str:
    """The reason phrase of a status ("Bad Gateway"), "Error" for one HTTP does not name."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _valid(rule: QueryRule, value: str) -> bool:
    if rule.kind == "int":
        if not _INT_RE.fullmatch(value):
            return False
        number = _js_integer(value)
        return number >= rule.minimum and (rule.maximum is None or number <= rule.maximum)
    if rule.kind == "float":
        if value in ("", ".", "-", "+") or not _FLOAT_RE.fullmatch(value):
            return False
        try:
            return float(value) >= rule.minimum
        except ValueError:
            return False
    if rule.kind == "date":
        return bool(_DATE_RE.fullmatch(value))
    return value != ""


def validate_v2_query(args: dict[str, list[str]]) -> list[dict[str, Any]]:
    errors = []
    for rule in V2_QUERY_RULES:
        values = args.get(rule.name)
        if values is None:
            continue  # optional: only an absent parameter is skipped, an empty one is checked
        if not all(_valid(rule, v) for v in values):
            shown: Any = values[0] if len(values) == 1 else values
            errors.append(
                {"location": "query", "param": rule.name, "msg": rule.message, "value": shown}
            )
    return errors


class FilterFailed(Exception):
    """The original throws (a TypeError or a bad RegExp) and answers 500."""


def _js_number(value: Any) -> float:
    """A beer field as JavaScript's relational operators see it: null is 0."""
    return 0.0 if value is None else float(value)


# A catalogue may lack a field in some beers (the loader asks only for ids): such a beer
# matches no filter on it. The original compares a missing (undefined) number as NaN, so
# neither above nor below; a missing text is treated as a null one.
_MISSING_NUMBER = math.nan


def _ingredients(beer: dict[str, Any], kind: str) -> Any:
    """The beer's `kind` of ingredients (hops, malt: a list; yeast: a text), or None."""
    return (beer.get("ingredients") or {}).get(kind)


def _moment_month(text: str) -> tuple[int, int] | None:
    """(year, month) as moment's forgiving parse of "MM?YYYY" reads it, or None if invalid."""
    month_match = re.search(r"\d\d?", text)
    if not month_match:
        return None
    year_match = re.search(r"\d{1,4}", text[month_match.end() :])
    month = int(month_match.group())
    if year_match is None:  # this year in UTC, whatever this machine's time zone
        year = time.gmtime().tm_year
    elif len(year_match.group()) == 2:
        two = int(year_match.group())
        year = 2000 + two if two <= 68 else 1900 + two
    else:
        year = int(year_match.group())
    if not 1 <= month <= 12:
        return None
    return year, month


def _contains(text: str | None, predicate: str) -> bool:
    return text is not None and predicate.lower().replace("_", " ") in text.lower()


def _single(values: list[str]) -> str:
    if len(values) != 1:
        raise FilterFailed("array value")  # the original calls string methods on an array
    return values[0]


def filter_v2(beers: list[dict[str, Any]], args: dict[str, list[str]]) -> list[dict[str, Any]]:
    """punkapi-lib's filters, in its order, with its comparison semantics."""
    out = beers

    def numeric(name: str, field: str, greater: bool) -> None:
        nonlocal out
        if name not in args:
            return
        values = args[name]
        if len(values) != 1:
            out = []  # an array compares as NaN: nothing matches
            return
        limit = float(values[0])
        if greater:
            out = [b for b in out if _js_number(b.get(field, _MISSING_NUMBER)) > limit]
        else:
            out = [b for b in out if _js_number(b.get(field, _MISSING_NUMBER)) < limit]

    for field in ("abv", "ebc", "ibu"):
        numeric(f"{field}_gt", field, greater=True)
        numeric(f"{field}_lt", field, greater=False)
    for name, before in (("brewed_before", True), ("brewed_after", False)):
        if name in args:
            predicate = _moment_month(_single(args[name]))
            kept = []
            for b in out:
                brewed = _moment_month(b.get("first_brewed") or "")
                if predicate and brewed and (brewed < predicate if before else brewed > predicate):
                    kept.append(b)
            out = kept
    if "beer_name" in args:
        value = _single(args["beer_name"])
        out = [b for b in out if _contains(b.get("name"), value)]
    if "food" in args:
        value = _single(args["food"])
        out = [b for b in out if any(_contains(f, value) for f in b.get("food_pairing") or [])]
    for name in ("hops", "malt"):
        if name in args:
            value = _single(args[name])
            out = [
                b
                for b in out
                if any(_contains(i.get("name"), value) for i in _ingredients(b, name) or [])
            ]
    if "yeast" in args:
        value = _single(args["yeast"])
        out = [b for b in out if _contains(_ingredients(b, "yeast"), value)]
    if "ids" in args:
        wanted = {_js_id(part) for part in _single(args["ids"]).split("|")}
        out = [b for b in out if b["id"] in wanted]
    return out


# Digits split one way only between the integer and the fraction: with two (`\d+\.?\d*`), a
# long run of digits ending in junk backtracks in quadratic time, holding the GIL meanwhile.
_JS_DECIMAL = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|[-+]?Infinity")
_JS_PREFIXED = re.compile(r"0[xX][0-9a-fA-F]+|0[bB][01]+|0[oO][0-7]+")


def _js_id(text: str) -> float:
    """JavaScript's Number() of one `ids` entry ("" is 0, junk is NaN, which matches nothing)."""
    text = text.strip()
    if text == "":
        return 0
    if _JS_PREFIXED.fullmatch(text):
        return int(text, 0)
    if _JS_DECIMAL.fullmatch(text):
        return float(text.replace("Infinity", "inf"))
    return math.nan


# ----------------------------------------------------------------------------- v3 rules

V3_MONTH = r"^(0[1-9]|1[0-2])-\d{4}$"


class V3Query(BaseModel):
    model_config = ConfigDict(extra="ignore")

    page: int = Field(ge=1)
    per_page: int = Field(30, ge=10, le=80)
    abv_gt: float | None = Field(None, ge=0)
    abv_lt: float | None = Field(None, ge=0)
    ibu_gt: float | None = Field(None, ge=0)
    ibu_lt: float | None = Field(None, ge=0)
    ebc_gt: float | None = Field(None, ge=0)
    ebc_lt: float | None = Field(None, ge=0)
    beer_name: str | None = Field(None, min_length=1)
    food: str | None = Field(None, min_length=1)
    brewed_before: str | None = Field(None, pattern=V3_MONTH)
    brewed_after: str | None = Field(None, pattern=V3_MONTH)
    ids: str | None = Field(None, pattern=r"^\d+(,\d+)*$")


def fastapi_errors(exc: ValidationError, location: str) -> list[dict[str, Any]]:
    """Pydantic errors in the shape FastAPI sends them (`loc` starts with query/path)."""
    details = []
    for err in exc.errors(include_url=False):
        entry: dict[str, Any] = {
            "type": err["type"],
            "loc": [location, *err["loc"]],
            "msg": err["msg"],
            "input": None if err["type"] == "missing" else err["input"],
        }
        if "ctx" in err:
            entry["ctx"] = {
                k: v if isinstance(v, int | float | str) else str(v) for k, v in err["ctx"].items()
            }
        details.append(entry)
    return details


def _brewed(beer: dict[str, Any]) -> tuple[int, int] | None:
    text = beer.get("first_brewed") or ""
    match = re.fullmatch(r"(\d{1,2})/(\d{4})", text) or re.fullmatch(r"(\d{4})", text)
    if match is None:
        return None
    if len(match.groups()) == 1:
        return int(match.group(1)), 1  # a bare year counts as its January
    return int(match.group(2)), int(match.group(1))


def filter_v3(beers: list[dict[str, Any]], q: V3Query) -> list[dict[str, Any]]:
    out = beers
    for field in ("abv", "ibu", "ebc"):
        gt, lt = getattr(q, f"{field}_gt"), getattr(q, f"{field}_lt")
        if gt is not None:
            out = [b for b in out if b.get(field) is not None and b[field] > gt]
        if lt is not None:
            out = [b for b in out if b.get(field) is not None and b[field] < lt]
    if q.beer_name:
        out = [b for b in out if _contains(b.get("name"), q.beer_name)]
    if q.food:
        out = [b for b in out if any(_contains(f, q.food) for f in b.get("food_pairing") or [])]
    for value, before in ((q.brewed_before, True), (q.brewed_after, False)):
        if value:
            month, year = value.split("-")
            limit = (int(year), int(month))
            out = [
                b
                for b in out
                if (d := _brewed(b)) is not None and (d < limit if before else d > limit)
            ]
    if q.ids:
        wanted = {_js_integer(i) for i in q.ids.split(",")}  # past 4,300 digits: no beer
        out = [b for b in out if b["id"] in wanted]
    return out


# ----------------------------------------------------------------------------- the app


class PunkApiApp:
    """The WSGI application. `beers` are v2-shaped; the v3 mode reshapes them."""

    def __init__(
        self,
        beers: list[dict[str, Any]],
        api_version: str = "v2",
        *,
        rate_limit: int | None = DEFAULT_RATE_LIMIT,
        rate_window: float = RATE_WINDOW_SECONDS,
        faults: Faults | None = None,
        random_seed: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        api_version = canonical_api_version(api_version)
        refuse_non_finite_numbers(beers)
        self.api_version = api_version
        self.beers = sorted(beers, key=lambda b: b["id"])
        self.by_id = {b["id"]: b for b in self.beers}
        if api_version == "v3":
            self.beers = [to_v3_shape(b) for b in self.beers]
            self.by_id = {b["id"]: b for b in self.beers}
            self.images = {b["image"] for b in self.beers if b.get("image")}
            # v3 declares the id path parameter with bounds: past the last id is a 422
            last_id = max(self.by_id, default=1)
            self._v3_id = create_model("BeerId", id=(int, Field(ge=1, le=last_id)))
        self.limiter = (
            RateLimiter(rate_limit, rate_window, clock, wall_clock) if rate_limit else None
        )
        self.faults = FaultInjector(faults) if faults and faults.active else None
        self._random = random.Random(random_seed)
        self._random_lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        try:
            response = self.v2(request) if self.api_version == "v2" else self.v3(request)
        except Exception:  # keep serving: a bug answers 500 as each original would
            log.exception("unhandled error for %s", request.url)
            if self.api_version == "v2":
                body = boom(500, "Internal Server Error", MSG_INTERNAL)
                response = self._json(body, 500, V2_JSON)
            else:
                response = Response("Internal Server Error", status=500, content_type="text/plain")
        for key, value in SECURITY_HEADERS.items() if self.api_version == "v2" else ():
            response.headers.setdefault(key, value)
        return response(environ, start_response)

    # -- helpers

    @staticmethod
    def _json(payload: Any, status: int, content_type: str) -> Response:
        return Response(js_json(payload), status=status, content_type=content_type)

    def _pick_random(self) -> dict[str, Any]:
        with self._random_lock:
            return self._random.choice(self.beers)

    @staticmethod
    def _original_url(request: Request) -> str:
        raw = request.environ.get("REQUEST_URI") or request.environ.get("RAW_URI")
        if raw:
            return raw
        query = request.query_string.decode("latin-1")
        return request.path + (f"?{query}" if query else "")

    @staticmethod
    def _args(request: Request) -> dict[str, list[str]]:
        return {key: request.args.getlist(key) for key in request.args}

    def _fault(self) -> FaultDecision | None:
        if self.faults is None:
            return None
        decision = self.faults.decide()
        if decision.delay:
            time.sleep(decision.delay)
        return decision

    @staticmethod
    def _truncate(response: Response) -> Response:
        body = response.get_data()
        response.set_data(body[: len(body) // 2])
        response.headers["Content-Length"] = str(len(body))  # promise more than is sent
        response.headers["Connection"] = "close"
        return response

    # -- v2

    def v2(self, request: Request) -> Response:
        path = request.path
        lowered = path.lower()
        if not (lowered == "/v2" or lowered.startswith("/v2/")):
            return self._v2_json(request, boom(404, "Not Found", self._no_endpoint(request)), 404)
        client = request.remote_addr or "unknown"
        if request.method == "OPTIONS":  # CORS preflight: not counted, never refused
            response = Response(status=204)
            del response.headers["Content-Type"]
            response.headers.update(CORS_HEADERS)
            response.headers["Access-Control-Allow-Methods"] = "GET,HEAD,PUT,PATCH,POST,DELETE"
            response.headers["Vary"] = "Access-Control-Request-Headers"
            response.headers["Content-Length"] = "0"
            if self.limiter is not None:  # the contract: on every /v2 answer
                limit_headers, _ = self.limiter.headers(client, count=False)
                limit_headers.pop("Retry-After", None)
                response.headers.update(limit_headers)
            return response
        headers = dict(CORS_HEADERS)
        if self.limiter is not None:
            limit_headers, exceeded = self.limiter.headers(client)
            headers.update(limit_headers)
            if exceeded:
                body = boom(429, "Too Many Requests", MSG_RATE_LIMITED)
                return self._v2_json(request, body, 429, headers)
        fault = self._fault()
        if fault and fault.status == 429:
            headers["Retry-After"] = str(self.faults.faults.burst_retry_after)  # type: ignore[union-attr]
            return self._v2_json(
                request, boom(429, "Too Many Requests", MSG_RATE_LIMITED), 429, headers
            )
        if fault and fault.status:
            phrase = _reason(fault.status)  # "Service Unavailable" for a 503
            body = (
                boom(500, "Internal Server Error", MSG_INTERNAL)
                if fault.status == 500
                else boom(fault.status, phrase, phrase)
            )
            return self._v2_json(request, body, fault.status, headers)
        try:
            response = self._v2_route(request, path[3:])
        except Exception:  # a bug: still a 500 with the headers every /v2 answer carries
            log.exception("unhandled error for %s", request.url)
            body = boom(500, "Internal Server Error", MSG_INTERNAL)
            response = self._v2_json(request, body, 500)
        response.headers.update(headers)
        if fault and fault.truncate:
            return self._truncate(response)
        return response

    def _no_endpoint(self, request: Request) -> str:
        return f"No endpoint found that matches '{self._original_url(request)}'"

    def _v2_json(
        self,
        request: Request,
        payload: Any,
        status: int,
        headers: dict[str, str] | None = None,
    ) -> Response:
        body = js_json(payload)
        etag = express_etag(body)
        inm = request.headers.get("If-None-Match")
        fresh = (
            request.method in ("GET", "HEAD")
            and 200 <= status < 300
            and inm is not None
            and etag_matches(inm, etag)
        )
        if fresh:
            response = Response(status=304)
            del response.headers["Content-Type"]
        else:
            response = Response(body, status=status, content_type=V2_JSON)
        response.headers["ETag"] = etag
        if headers:
            response.headers.update(headers)
        return response

    def _v2_route(self, request: Request, sub: str) -> Response:
        # Express routing: case-insensitive, one trailing slash ignored.
        if sub.endswith("/"):
            sub = sub[:-1]
        parts = sub.split("/")[1:] if sub else []
        if request.method not in ("GET", "HEAD") or not parts or parts[0].lower() != "beers":
            return self._v2_json(request, boom(404, "Not Found", self._no_endpoint(request)), 404)
        if len(parts) == 1:
            return self._v2_beers(request)
        if len(parts) == 2 and parts[1].lower() == "random":
            return self._v2_json(request, [self._pick_random()], 200)
        if len(parts) == 2 and parts[1]:
            return self._v2_beer(request, parts[1])
        return self._v2_json(request, boom(404, "Not Found", self._no_endpoint(request)), 404)

    def _v2_beer(self, request: Request, beer_id: str) -> Response:
        if not _valid(QueryRule("beerId", "int", MSG_BEER_ID, minimum=1), beer_id):
            entry = {"location": "params", "param": "beerId", "msg": MSG_BEER_ID, "value": beer_id}
            body = boom(400, "Bad Request", "Invalid query params", data=[entry])
            return self._v2_json(request, body, 400)
        beer = self.by_id.get(_js_integer(beer_id))
        if beer is None:
            body = boom(404, "Not Found", f"No beer found that matches the ID {beer_id}")
            return self._v2_json(request, body, 404)
        return self._v2_json(request, [beer], 200)

    def _v2_beers(self, request: Request) -> Response:
        args = self._args(request)
        errors = validate_v2_query(args)
        if errors:
            body = boom(400, "Bad Request", "Invalid query params", data=errors)
            return self._v2_json(request, body, 400)
        try:
            matching = filter_v2(self.beers, args)
        except FilterFailed:
            return self._v2_json(request, boom(500, "Internal Server Error", MSG_INTERNAL), 500)
        page = _js_integer(args.get("page", ["1"])[0])
        per_page = int(args.get("per_page", ["25"])[0])  # 1 to 80, checked above
        start = (page - 1) * per_page
        # start is inf only past int()'s digits, and then no slice is taken
        shown = matching[start : start + per_page] if start < len(matching) else []  # type: ignore[index]
        return self._v2_json(request, shown, 200)

    # -- v3

    def v3(self, request: Request) -> Response:
        path = request.path
        if not path.startswith("/v3/"):
            return self._json({"detail": "Not Found"}, 404, V3_JSON)
        parts = path[len("/v3/") :].split("/")
        if path.endswith("/") and len(parts) > 1:
            target = path.rstrip("/")
            query = request.query_string.decode("latin-1")
            response = Response(status=307)
            response.headers["Location"] = target + (f"?{query}" if query else "")
            return response
        known = (
            parts == ["beers"]
            or (len(parts) == 2 and parts[0] == "beers")
            or (len(parts) == 2 and parts[0] == "images")
        )
        if not known:
            return self._json({"detail": "Not Found"}, 404, V3_JSON)
        if request.method not in ("GET", "HEAD"):
            return self._json({"detail": "Method Not Allowed"}, 405, V3_JSON)
        fault = self._fault()
        if fault and fault.status == 429:
            response = self._json({"detail": "Too Many Requests"}, 429, V3_JSON)
            response.headers["Retry-After"] = str(self.faults.faults.burst_retry_after)  # type: ignore[union-attr]
            return response
        if fault and fault.status == 500:
            return Response("Internal Server Error", status=500, content_type="text/plain")
        if fault and fault.status:
            return self._json({"detail": _reason(fault.status)}, fault.status, V3_JSON)
        response = self._v3_route(request, parts)
        if fault and fault.truncate:
            return self._truncate(response)
        return response

    def _v3_route(self, request: Request, parts: list[str]) -> Response:
        if parts[0] == "images":
            if parts[1] in self.images:
                return Response(PLACEHOLDER_PNG, status=200, content_type="image/png")
            return self._json({"detail": "Not Found"}, 404, V3_JSON)
        if len(parts) == 1:
            params = {key: request.args.getlist(key)[-1] for key in request.args}
            try:
                query = V3Query.model_validate(params)
            except ValidationError as exc:
                return self._json({"detail": fastapi_errors(exc, "query")}, 422, V3_JSON)
            matching = filter_v3(self.beers, query)
            start = (query.page - 1) * query.per_page
            return self._json(matching[start : start + query.per_page], 200, V3_JSON)
        if parts[1] == "random":
            return self._json(self._pick_random(), 200, V3_JSON)
        return self._v3_beer(parts[1])

    def _v3_beer(self, raw_id: str) -> Response:
        try:
            beer_id = self._v3_id.model_validate({"id": raw_id}).id  # type: ignore[attr-defined]
        except ValidationError as exc:
            return self._json({"detail": fastapi_errors(exc, "path")}, 422, V3_JSON)
        beer = self.by_id.get(beer_id)
        if beer is None:
            return self._json({"detail": f"Beer with id {beer_id} not found"}, 404, V3_JSON)
        return self._json(beer, 200, V3_JSON)


# ----------------------------------------------------------------------------- serving


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if self.server.verbose:  # type: ignore[attr-defined]
            super().log_request(code, size)


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket listening on host:port, or the OSError that says why it cannot be
    (socket.gaierror for a host that names no address). Bound here, not by werkzeug: when
    werkzeug cannot bind, it prints its own line and exits the process."""
    try:
        family, _, _, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except UnicodeError as error:  # a name the idna codec refuses (a label over 63 characters)
        raise socket.gaierror(socket.EAI_NONAME, f"{host!r} is not a valid host name") from error
    return socket.create_server(address, family=family)


class PunkApiServer:
    """A threaded HTTP server (on 127.0.0.1 unless `host` says otherwise) serving a
    catalogue; `url` includes /v2 or /v3. The address is bound first: a host or port that
    cannot be listened on is an OSError before the catalogue is read. `fd`: serve on that
    socket instead, one listening already (inherited from the process that bound it)."""

    def __init__(
        self,
        catalog_path: str | Path | None = None,
        api_version: str = "v2",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        beers: list[dict[str, Any]] | None = None,
        rate_limit: int | None = DEFAULT_RATE_LIMIT,
        rate_window: float = RATE_WINDOW_SECONDS,
        faults: Faults | None = None,
        random_seed: int | None = None,
        verbose: bool = False,
        fd: int | None = None,
    ) -> None:
        listening = listening_socket(host, port) if fd is None else socket.socket(fileno=fd)
        with listening:  # werkzeug serves a duplicate of it
            if beers is None:
                beers = load_catalog(catalog_path)
                if not beers:  # every /beers/random would answer 500
                    raise CatalogError(
                        f"The catalogue {catalog_path or default_catalog_path()} holds no "
                        "beers: nothing to serve. Give it one that has (--catalog on the "
                        "command line)."
                    )
            self.app = PunkApiApp(
                beers,
                api_version,
                rate_limit=rate_limit,
                rate_window=rate_window,
                faults=faults,
                random_seed=random_seed,
            )
            self.api_version = self.app.api_version
            self.beer_count = len(beers)
            bound_host, bound_port = listening.getsockname()[:2]
            self._server: BaseWSGIServer = make_server(
                bound_host,  # the address itself: werkzeug picks the socket family from it
                bound_port,
                self.app,
                threaded=True,
                request_handler=_QuietHandler,
                fd=listening.fileno(),
            )
        self._server.verbose = verbose  # type: ignore[attr-defined]
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        return self._server.server_address[0]  # type: ignore[return-value]  # AF_INET: a str

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host  # an IPv6 address
        return f"http://{host}:{self.port}/{self.api_version}"

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        self._server.serve_forever(poll_interval=poll_interval)

    def start(self) -> str:
        """Serve from a background thread; a short poll keeps `stop()` quick."""
        self._thread = threading.Thread(
            target=self.serve_forever, args=(0.05,), name="punkapi", daemon=True
        )
        self._thread.start()
        return self.url

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


def make_faults(faults: Faults | None = None, **fields: Any) -> Faults | None:
    """`faults` with some fields replaced (or a new Faults from the fields alone)."""
    return dataclasses.replace(faults or Faults(), **fields) if fields else faults


@contextmanager
def running_server(
    catalog_path: str | Path | None = None,
    api_version: str = "v2",
    port: int = 0,
    *,
    beers: list[dict[str, Any]] | None = None,
    rate_limit: int | None = DEFAULT_RATE_LIMIT,
    rate_window: float = RATE_WINDOW_SECONDS,
    faults: Faults | None = None,
    random_seed: int | None = None,
    **fault_fields: Any,
) -> Iterator[str]:
    """Serve in a background thread; yield the base URL (e.g. http://127.0.0.1:53211/v2).

    Fault fields (error_rate, latency, burst_rate, truncate_rate, seed, ...) may be given
    as keywords instead of a Faults object.
    """
    server = PunkApiServer(
        catalog_path,
        api_version,
        port=port,
        beers=beers,
        rate_limit=rate_limit,
        rate_window=rate_window,
        faults=make_faults(faults, **fault_fields),
        random_seed=random_seed,
    )
    server.start()
    try:
        yield server.url
    finally:
        server.stop()
