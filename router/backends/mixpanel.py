"""``type: mixpanel`` — Mixpanel's Import API, ``POST {host}/import?strict=1``.

The body is a JSON array of ``{"event", "properties": {..., "time" (ms), "distinct_id",
"$insert_id"}}``, at most 2000 events and 10 MB (uncompressed) a request, 1 MB an event; gzip by
default. Authentication is HTTP Basic with a service account (``project_id`` goes in the query)
or with the project token as the user name. ``$insert_id`` is the router event's uuid, so a
retried import is deduplicated.

With ``strict=1`` Mixpanel answers a batch with invalid events by ``400`` and ``failed_records``
(``[{"index", "$insert_id", "field", "message"}]``) and imports the rest: exactly those events are
dead-lettered. 413 → the part is halved; 429 and 5xx are retried; other 4xx dead-lettered.
Mixpanel's Import API carries events only: a forwarded PostHog event's ``$set`` / ``$set_once``
(profile updates, Mixpanel's ``/engage``) are not sent.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any, Literal
from urllib.parse import quote

from pydantic import Field, SecretStr, model_validator

from .analytics import AnalyticsEvent, HostOptions, tag
from .base import Request, classify_status, register
from .http import HttpResponse
from .vendor import Unit, VendorBackend, Verdict, json_body

REGIONS = {
    "us": "https://api.mixpanel.com",
    "eu": "https://api-eu.mixpanel.com",
    "in": "https://api-in.mixpanel.com",
}


class MixpanelOptions(HostOptions):
    """``region`` or ``host``; ``project_token``, or ``service_account`` + secret + project_id."""

    region: Literal["us", "eu", "in"] | None = Field(None,
                                                     description="data residency; default us")
    host: str | None = Field(None, description="a base URL instead of `region` (a proxy)")
    project_token: SecretStr | None = Field(None, description="Basic auth user name")
    service_account: str | None = Field(None, description="instead of the token: the user name")
    service_account_secret: SecretStr | None = Field(None,
                                                     description="the service account's secret")
    project_id: int | str | None = Field(None, description="required with a service account")
    gzip: bool = Field(True, description="compress request bodies")

    @model_validator(mode="after")
    def _one_way_in(self) -> MixpanelOptions:
        if self.region is not None and self.host is not None:
            raise ValueError("set region or host, not both")
        if self.service_account is not None:
            if self.service_account_secret is None or self.project_id is None:
                raise ValueError("service_account needs service_account_secret and project_id")
        elif self.project_token is None:
            raise ValueError(
                "set project_token, or service_account with service_account_secret and project_id"
            )
        return self

    @property
    def base_url(self) -> str:
        return self.host or REGIONS[self.region or "us"]


@register
class MixpanelBackend(VendorBackend):
    """Imports events into Mixpanel, ``$insert_id`` as the dedup key."""

    type = "mixpanel"
    Options = MixpanelOptions
    vendor = "mixpanel"
    max_batch_events = 2000
    max_request_bytes = 10_000_000
    max_event_bytes = 1_000_000

    def __init__(self, name: str, options: MixpanelOptions) -> None:
        super().__init__(name, options)
        self.options: MixpanelOptions = options
        url = f"{options.base_url}/import?strict=1"
        if options.service_account is not None:
            user = options.service_account
            password = options.service_account_secret.get_secret_value()  # type: ignore[union-attr]
            url += f"&project_id={quote(str(options.project_id), safe='')}"
        else:
            user = options.project_token.get_secret_value()  # type: ignore[union-attr]
            password = ""
        self._url = url
        self._auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    def compress(self) -> bool:
        return self.options.gzip

    def bodies(self, event: AnalyticsEvent) -> list[dict[str, Any]]:
        properties = {
            **event.properties,
            "time": event.millis,
            "distinct_id": event.distinct_id,
            "$insert_id": event.uuid,
        }
        return [{"event": event.name, "properties": properties}]

    def envelope(self, bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return bodies

    def request(self, part: Sequence[Unit], *, live: bool = False) -> Request:
        headers = {"Content-Type": "application/json", "Authorization": self._auth}
        if self.options.gzip:
            headers["Content-Encoding"] = "gzip"
        return Request(
            "POST",
            self._url,
            headers,
            self.envelope([body for unit in part for body in unit.bodies]),
        )

    def judge(self, response: HttpResponse, part: Sequence[Unit]) -> Verdict:
        if response.status == 413:
            return Verdict.too_large(self.status_reason(response, "request too large"))
        answer = json_body(response)
        failed = answer.get("failed_records") if isinstance(answer, dict) else None
        if response.status == 400 and isinstance(failed, list) and failed:
            dead: dict[int, str] = {}
            for record in failed:
                index = record.get("index") if isinstance(record, dict) else None
                if isinstance(index, int) and 0 <= index < len(part):
                    field = tag(record.get("field")) or "a field"
                    dead[index] = f"mixpanel rejected {field}"
            if dead:
                # The others were imported: a strict 400 is a partial success.
                return Verdict(dead=dead, reason=next(iter(dead.values())))
        return Verdict.from_result(
            classify_status(
                response.status, len(part), self.status_reason(response), response.headers
            )
        )
