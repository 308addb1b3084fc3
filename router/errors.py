"""The router's one error hierarchy.

    RouterError
    ├── ConfigError            bad YAML or a bad key: names file, line and key path; exit 2
    │   └── ConfigErrors       several of them, found in one pass, reported together
    ├── InputError             a client's mistake (or a full spool): a JSON answer, never a 5xx
    │   ├── BadRequest         400  bad JSON, bad shape, too deep, too many events
    │   │   └── BadRange       400  a statistics range the report cannot answer
    │   ├── Unauthorized       401  unknown source token
    │   ├── RequestTimeout     408  the body did not arrive within server.request_timeout
    │   ├── PayloadTooLarge    413  body or decompressed body over the cap
    │   ├── UnsupportedMedia   415  content type or content encoding we do not read
    │   ├── TooManyRequests    429  rate limited (carries Retry-After)
    │   └── Unavailable        503  the spool cannot take the event durably now (Retry-After)
    ├── StoreUnavailable       503  the statistics cannot read their store now
    └── DeliveryError          raised inside backends, translated by the delivery worker
        ├── RetryableError     connect errors, timeouts, 408/429/5xx: the batch is sent again
        └── Unmappable         this event can never be sent to the vendor: dead-lettered alone

Two signals never leave the module that raises them, so they derive what their catchers need:
``CoerceFailed`` (a ``ValueError``, for ``coerce``) and ``BodyTooSlow`` (a ``TimeoutError``, so
that aiohttp closes the connection quietly). Foreign errors are translated at the boundary with
``raise X(...) from exc``.
"""

from __future__ import annotations


class RouterError(Exception):
    """Base of every error the router raises on purpose."""


class ConfigError(RouterError):
    """A config file is wrong; the message names file, line and key path."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 key: str | None = None) -> None:
        self.message, self.file, self.line, self.key = message, file, line, key
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ":".join(str(p) for p in (self.file, self.line) if p is not None)
        key = f"{self.key}: " if self.key else ""
        return f"{where}: {key}{self.message}" if where else f"{key}{self.message}"


class ConfigErrors(ConfigError):
    """Several config errors found in one pass, reported together."""

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)


class InputError(RouterError):
    """A client's mistake, answered with ``status`` and ``{"error": ..., "detail": ...}``."""

    status = 400
    error = "bad_request"

    def __init__(self, detail: str, *, retry_after: float | None = None) -> None:
        self.detail = detail
        self.retry_after = retry_after
        super().__init__(detail)


class BadRequest(InputError):
    """400: the body is not valid JSON, or not the shape we accept."""


class Unauthorized(InputError):
    """401: a source token is required and this one is unknown."""

    status = 401
    error = "unauthorized"


class RequestTimeout(InputError):
    """408: the client sent its body too slowly (server.request_timeout)."""

    status = 408
    error = "request_timeout"


class PayloadTooLarge(InputError):
    """413: the body, or what it decompresses to, is over the configured cap."""

    status = 413
    error = "payload_too_large"


class UnsupportedMedia(InputError):
    """415: a content type or content encoding we do not read."""

    status = 415
    error = "unsupported_media_type"


class TooManyRequests(InputError):
    """429: a rate limit was hit; Retry-After says when to come back."""

    status = 429
    error = "rate_limited"


class Unavailable(InputError):
    """503: the event cannot be made durable right now (spool full or unreachable)."""

    status = 503
    error = "unavailable"


class DeliveryError(RouterError):
    """A backend could not take a batch."""


class RetryableError(DeliveryError):
    """Transient: try the same batch again later, after ``retry_after`` if the server said so."""

    def __init__(self, reason: str, *, retry_after: float | None = None) -> None:
        self.reason, self.retry_after = reason, retry_after
        super().__init__(reason)


class Unmappable(DeliveryError):
    """This event can never be sent to the vendor; the message is the dead-letter reason."""


class BadRange(BadRequest):
    """A statistics range the report cannot answer; the message says why."""


class StoreUnavailable(RouterError):
    """The store cannot be read now (file locked or unreadable, server down); answered 503."""


# -- signals that never leave their module ------------------------------------------------------

class CoerceFailed(ValueError):
    """The value has no sensible form of the wanted type (``coerce``)."""


class BodyTooSlow(TimeoutError):
    """Put into a request's body stream when its deadline passes.

    A TimeoutError, so that if the handler never read the body, aiohttp's lingering read after
    the response takes it as a timeout and closes the connection quietly.
    """
