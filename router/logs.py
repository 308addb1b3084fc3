"""structlog set-up: JSON lines by default, a readable console when stderr is a terminal.

A JSON line carries its text under ``message`` (what Loki, Elasticsearch, Datadog and
journald's JSON importers look for) and an exception as structured data under ``exception``: a
list of ``{exc_type, exc_value, frames: [{filename, lineno, name}]}``, without local variables
(they may hold secrets).

Log lines carry counts, names and reasons — never a secret, a client IP or an installation id.
The code is written that way; :class:`Scrub` is the last line of defence behind it, run on every
event dict (ours and the standard library's, e.g. aiohttp's) right before rendering.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import sys
import threading
import time
from collections.abc import Callable, MutableMapping
from typing import Any

import structlog
import structlog.tracebacks

REDACTED = "***"
IP_REDACTED = "[ip]"

# Keys whose values are secrets or identify someone, whatever they hold.
_SECRET_KEY = re.compile(
    r"(^|_)(key|secret|token|tokens|password|passwd|api_key|write_key|authorization|cookie"
    r"|installation_id|distinct_id|client_ip|remote_addr|ip|ip_address|x_forwarded_for)$",
    re.IGNORECASE,
)
# In free text: credentials after a scheme or a name, and passwords in URLs.
_BEARER = re.compile(r"\b(Bearer|Basic|Token)\s+[A-Za-z0-9._~+/=-]+", re.IGNORECASE)
_NAMED_SECRET = re.compile(
    r"\b(api_key|apikey|token|secret|password|passwd|key|signature)([\"']?\s*[=:]\s*[\"']?)"
    r"[^\s&\"',;}]+",
    re.IGNORECASE,
)
_URL_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^@/\s]+@")
# Candidates only; each is confirmed by the ipaddress module before it is replaced.
_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?!\w|\.\d)")
_IPV6 = re.compile(  # one ending in an IPv4 address first, then plain groups (maybe + :port)
    r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){1,6}:(?:\d{1,3}\.){3}\d{1,3}"
    r"|[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,10})(?:%[\w.-]+)?(?![\w:])"
)
_MAX_DEPTH = 8
STRUCTURED_TRACEBACKS = structlog.processors.ExceptionRenderer(
    structlog.tracebacks.ExceptionDictTransformer(show_locals=False, use_rich=False)
)


class Scrub:
    """A structlog processor that masks secrets and IP addresses anywhere in an event dict.

    Values under secret-like keys (``token``, ``api_key``, ``installation_id``, …) become
    ``***``; in every string, credentials (``Bearer …``, ``token=…``, URL passwords) become
    ``***`` and IP addresses ``[ip]``, except the unspecified and loopback addresses, which
    identify no one and make listen addresses readable.
    """

    def __call__(
        self, logger: Any, method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for key, value in list(event_dict.items()):
            event_dict[key] = self.value(value, key)
        return event_dict

    def value(self, value: Any, key: str = "", depth: int = 0) -> Any:
        """``value`` with every secret and address masked (containers are copied)."""
        if key and key != "event" and _SECRET_KEY.search(key) and value not in (None, ""):
            return REDACTED
        if isinstance(value, str):
            return scrub_text(value)
        if depth >= _MAX_DEPTH:
            return value if isinstance(value, int | float | bool) or value is None else "..."
        if isinstance(value, dict):
            return {k: self.value(v, str(k), depth + 1) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [self.value(v, key, depth + 1) for v in value]
        if isinstance(value, int | float | bool) or value is None:
            return value
        return scrub_text(str(value))  # anything else is rendered as text: scrub that text


def scrub_text(text: str) -> str:
    """``text`` with credentials and (non-loopback) IP addresses masked."""
    text = _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    text = _NAMED_SECRET.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    text = _URL_PASSWORD.sub(rf"\1{REDACTED}@", text)
    if "::" in text or text.count(":") >= 2:  # first: an IPv6 address may end in an IPv4 one
        text = _IPV6.sub(_mask_ipv6, text)
    if any(c.isdigit() for c in text):
        text = _IPV4.sub(_mask_ip, text)
    return text


def _mask_ip(match: re.Match[str]) -> str:
    return _masked(match.group(0)) or match.group(0)


def _mask_ipv6(match: re.Match[str]) -> str:
    # Unbracketed, an address and a port run together ("2001:db8::1:443" may be either); an
    # invalid run is tried shorter at each colon, so the address part is masked either way.
    candidate = match.group(0)
    for end in range(len(candidate), 1, -1):
        if end == len(candidate) or candidate[end] == ":":
            masked = _masked(candidate[:end])
            if masked is not None:
                return masked + candidate[end:]
    return candidate


def _masked(candidate: str) -> str | None:
    """``[ip]`` for an address that may identify someone, itself for one that cannot (loopback,
    unspecified), None for text that is no address."""
    try:
        ip = ipaddress.ip_address(candidate)
    except ValueError:
        return None
    return candidate if ip.is_unspecified or ip.is_loopback else IP_REDACTED


class _Stderr:
    """Whatever ``sys.stderr`` is at the moment of writing, not at configure time (a test
    harness or a daemon may replace it; a closed old one must not break logging)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure(level: str = "info", fmt: str = "auto") -> None:
    """Route structlog (and stdlib logging, e.g. aiohttp's) to stderr in one format."""
    console = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    # The console shows a traceback as text under the line; JSON keeps it structured.
    exceptions: structlog.types.Processor = (
        structlog.processors.format_exc_info if console else STRUCTURED_TRACEBACKS
    )
    renderer: list[structlog.types.Processor] = (
        [structlog.dev.ConsoleRenderer()] if console
        else [structlog.processors.EventRenamer("message"), structlog.processors.JSONRenderer()]
    )
    structlog.configure(
        processors=[*shared, exceptions, Scrub(), *renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        # One write() per line (print() makes two): lines of several worker processes sharing
        # stderr never interleave mid-line.
        logger_factory=structlog.WriteLoggerFactory(file=_Stderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(_Stderr())  # type: ignore[arg-type]
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                exceptions,
                Scrub(),
                *renderer,
            ],
            foreign_pre_chain=shared,
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's access log would write every client's address: never enable it.
    logging.getLogger("aiohttp.access").disabled = True


class Throttled:
    """Log a repeated line at most once per ``interval`` seconds (per ``key``, default the
    event text); the next line that passes says how many were held back (``suppressed``).

    A fault that lasts (a full disk, a backend down) can make the same error happen for every
    request: thousands of identical lines a second that help no one and fill the very disk
    that is short. Thread-safe: the spool's writer thread and the event loop share one.
    """

    def __init__(self, logger: Any, interval: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger, self.interval, self.clock = logger, interval, clock
        self._seen: dict[str, list[float]] = {}  # key -> [last logged at, suppressed since]
        self._lock = threading.Lock()

    def __call__(self, level: str, event: str, *, key: str | None = None,
                 **fields: Any) -> bool:
        """Log ``event`` at ``level`` unless it was logged less than ``interval`` ago."""
        key = key or event
        now = self.clock()
        with self._lock:
            seen = self._seen.get(key)
            if seen is not None and now - seen[0] < self.interval:
                seen[1] += 1
                return False
            suppressed = int(seen[1]) if seen is not None else 0
            self._seen[key] = [now, 0]
        if suppressed:
            fields["suppressed"] = suppressed
        getattr(self.logger, level)(event, **fields)
        return True
