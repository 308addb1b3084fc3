"""What the ingest processes know of the delivery process (``serve --delivery process``).

The delivery process answers ``GET /state`` on a unix socket (router/serve/delivery_process.py)
with its pid, its last reload and, per backend, what ``/readyz`` and the admin API show:
healthy, consecutive failures, last error, last success, queued events and the age of the
oldest. An ingest process asks it per probe through :class:`DeliveryLink`; when the delivery
process is away (restarting after a crash) the answer says so and ingest stays ready: events
are durable in the spool, and the supervisor restarts delivery.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import aiohttp
import orjson
import structlog

from .logs import Throttled

log = structlog.get_logger(__name__)
throttled = Throttled(log, interval=30.0)

STATE_PATH = "/state"
ASK_TIMEOUT = 2.0  # seconds: a probe must not hang on a stuck delivery process


def merge_backends(parts: Iterable[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """One backend's state over several spool files (``--workers N``): healthy only if every
    file's worker is, the largest failure streak and oldest age, queues summed."""
    merged: dict[str, dict[str, Any]] = {}
    for part in parts:
        for name, state in part.items():
            have = merged.get(name)
            if have is None:
                merged[name] = dict(state)
                continue
            have["healthy"] = have["healthy"] and state["healthy"]
            have["queued"] = (have.get("queued") or 0) + (state.get("queued") or 0)
            if state["consecutive_failures"] > have["consecutive_failures"]:
                have["consecutive_failures"] = state["consecutive_failures"]
                have["last_error"] = state["last_error"]
            have["last_error"] = have["last_error"] or state["last_error"]
            have["last_success"] = max((t for t in (have["last_success"],
                                                    state["last_success"]) if t), default=None)
            have["oldest_event_age_seconds"] = max(have.get("oldest_event_age_seconds", 0.0),
                                                   state.get("oldest_event_age_seconds", 0.0))
    return merged


class DeliveryLink:
    """The ingest side's client of the delivery process's state socket."""

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self._session: aiohttp.ClientSession | None = None

    async def state(self) -> dict[str, Any] | None:
        """The delivery process's state, or None while it cannot be reached."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.UnixConnector(path=self.socket_path),
                timeout=aiohttp.ClientTimeout(total=ASK_TIMEOUT))
        try:
            async with self._session.get(f"http://delivery{STATE_PATH}") as resp:
                if resp.status != 200:
                    raise aiohttp.ClientResponseError(resp.request_info, (), status=resp.status)
                answer: dict[str, Any] = orjson.loads(await resp.read())
                return answer
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
            throttled("warning", "delivery process not reachable", error=str(exc) or
                      type(exc).__name__)
            return None

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
