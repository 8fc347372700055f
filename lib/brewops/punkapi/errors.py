"""Typed errors of the Punk API client. 4xx errors carry the server's own message."""

from __future__ import annotations

from typing import Any

from brewops.errors import ActionableError


def shorten(text: str, limit: int = 80) -> str:
    """`text`, cut to `limit` characters ending in "…" when longer: a whole beer or error
    body quoted in a message would bury the message."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


class PunkApiUrlError(ValueError, ActionableError):
    """A Punk API base URL no request can be sent to."""


class PunkApiError(ActionableError):
    """Base of every error the client raises."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        url: str | None = None,
        body: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.url = url
        self.body = body

    def __str__(self) -> str:
        where = f" ({self.status} from {self.url})" if self.status and self.url else ""
        return f"{self.message}{where}"


class ClientError(PunkApiError):
    """The server refused the request (4xx); retrying the same request will not help."""


class BadRequest(ClientError):
    """Invalid parameters (v2: 400, v3: 422). `details` lists the server's per-parameter entries."""

    def __init__(self, message: str, *, details: list[dict[str, Any]] | None = None, **kw: Any):
        super().__init__(message, **kw)
        self.details = details or []


class NotFound(ClientError):
    """No such beer or endpoint."""


class RateLimited(PunkApiError):
    """429 Too Many Requests. `retry_after` is the server's hint in seconds, if it gave one."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class ServerError(PunkApiError):
    """5xx from the server. `retry_after` is its Retry-After hint in seconds, if it gave one."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class TransportError(PunkApiError):
    """No usable answer: connection refused or reset, timeout, a body truncated, too large
    or not JSON."""


class SchemaError(PunkApiError):
    """A beer from the server does not match the schema; names the beer id and the field."""

    def __init__(self, message: str, *, beer_id: Any = None, field: str | None = None, **kw: Any):
        super().__init__(message, **kw)
        self.beer_id = beer_id
        self.field = field


RETRYABLE = (RateLimited, ServerError, TransportError)
