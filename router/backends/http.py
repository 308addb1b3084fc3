"""The HTTP client backends share: one lazily created session, every failure classified.

A transport failure (refused, reset, DNS, TLS, timeout) is transient by nature and becomes a
retry; an HTTP status is classified by :func:`router.backends.base.classify_status`. Reasons name
the host and what went wrong, never the URL's path or query (webhook URLs often embed tokens).
"""

from __future__ import annotations

import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp

from .. import __version__
from ..errors import RetryableError
from .base import SendResult, classify_status

USER_AGENT = f"beacon-router/{__version__}"
# Enough of a response body to read a vendor's error; a hostile receiver cannot make us buffer more.
MAX_RESPONSE_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """A response: status, case-insensitive headers, and at most ``MAX_RESPONSE_BYTES`` of body."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class HttpClient:
    """An aiohttp session created on first use (it must be made inside the running loop)."""

    def __init__(self, *, timeout: float, max_connections: int = 16) -> None:
        self.timeout = timeout
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        # HTTPS_PROXY / NO_PROXY, read once: self-hosted routers often sit behind a proxy, and
        # aiohttp's trust_env would read the environment (and ~/.netrc) again per request.
        self._proxies = urllib.request.getproxies_environment()
        self._proxy_for: dict[str, str | None] = {}

    def _proxy(self, url: str) -> str | None:
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        if origin not in self._proxy_for:
            proxy = self._proxies.get(parts.scheme)
            bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
            if proxy and bypass(parts.hostname or "", self._proxies):
                proxy = None
            self._proxy_for[origin] = proxy
        return self._proxy_for[origin]

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                connector=aiohttp.TCPConnector(limit=self._max_connections),
                headers={"User-Agent": USER_AGENT},
            )
        return self._session

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
    ) -> HttpResponse:
        """Make one request; raise ``RetryableError`` if no HTTP response came back."""
        try:
            # Redirects are not followed: a signed body must not be replayed to another host.
            async with self._get_session().request(
                method, url, headers=headers, data=body, allow_redirects=False,
                proxy=self._proxy(url),
            ) as resp:
                return HttpResponse(
                    resp.status, resp.headers, await resp.content.read(MAX_RESPONSE_BYTES)
                )
        except TimeoutError as exc:
            raise RetryableError(f"timed out after {self.timeout:g}s ({host_of(url)})") from exc
        except aiohttp.ClientConnectorError as exc:
            why = exc.os_error.strerror or type(exc.os_error).__name__
            raise RetryableError(f"cannot connect to {host_of(url)}: {why}") from exc
        except aiohttp.ServerDisconnectedError as exc:
            raise RetryableError(f"{host_of(url)} closed the connection") from exc
        except aiohttp.ClientError as exc:
            # Not str(exc): some aiohttp errors embed the full URL.
            raise RetryableError(f"{type(exc).__name__} from {host_of(url)}") from exc

    async def send(
        self,
        method: str,
        url: str,
        n: int,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
    ) -> SendResult:
        """Make one request carrying ``n`` events and classify the outcome for all of them."""
        try:
            resp = await self.request(method, url, headers=headers, body=body)
        except RetryableError as exc:
            return SendResult.retry_all(n, exc.reason)
        return classify_status(
            resp.status, n, f"HTTP {resp.status} from {host_of(url)}", resp.headers
        )

    async def aclose(self) -> None:
        """Close the session and its connections."""
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()


def host_of(url: str) -> str:
    """``host[:port]`` of a URL, without credentials, path or query: safe to log."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{host}:{port}" if port else host
