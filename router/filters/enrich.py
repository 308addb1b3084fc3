"""Enrichment filters that read the request, not the event: geoip, user_agent.

Both read ``event.context`` (the sender's address and User-Agent, held in memory only) and write
what they derive — a country, a browser family — into the event. The address and the User-Agent
themselves are never written: not into the event, the spool, a log line or an error message.
After the spool an event has no context, so in a backend's own ``filters:`` these do nothing:
they belong in the global ``pipeline:``.

``geoip`` looks the address up in the RIR allocation data the ``iptocc`` package ships (country
only, refreshed with each release of the package), or in a MaxMind-format ``.mmdb`` file the
operator gives (GeoLite2/GeoIP2 Country or City, DB-IP lite: country and, from City files, the
first subdivision as ``region``).
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import iptocc
import maxminddb
from pydantic import Field, field_validator, model_validator
from ua_parser import parse as parse_user_agent

from ..errors import ConfigError
from ..event import Event, set_path, split_path
from .base import Filter, Options, register
from .fields import FieldPath

UNKNOWN_FAMILY = "Other"  # what ua-parser answers for a User-Agent it does not recognise


class GeoipOptions(Options):
    """Where the country (and region) go, and which database gives them."""

    database: str | None = Field(
        None, description="a MaxMind-format .mmdb file; none: the iptocc package's data")
    country: FieldPath = Field("geo.country", description="path written with the ISO 3166-1 "
                                                          "alpha-2 country code")
    region: FieldPath | None = Field(
        None, description="path written with the ISO 3166-2 subdivision code (needs a City "
                          "database)")

    @field_validator("database")
    @classmethod
    def _readable_mmdb(cls, v: str | None) -> str | None:
        if v is not None:
            open_mmdb(v).close()
        return v

    @model_validator(mode="after")
    def _region_needs_database(self) -> GeoipOptions:
        if self.region is not None and self.database is None:
            raise ValueError("`region:` needs `database:` (a MaxMind-format City file); the "
                             "built-in data knows countries only")
        return self


def open_mmdb(path: str) -> maxminddb.Reader:
    """The reader for a MaxMind-format file; ValueError saying why it cannot be one."""
    if not Path(path).is_file():
        raise ValueError(f"{path}: no such file")
    try:
        return maxminddb.open_database(path)
    except (OSError, maxminddb.InvalidDatabaseError) as exc:
        raise ValueError(f"{path}: not a MaxMind-format database ({type(exc).__name__})") from None


@register
class Geoip(Filter):
    """Write the sender's country (and region) derived from its address; never the address."""

    type = "geoip"
    Options = GeoipOptions

    def __init__(self, options: GeoipOptions) -> None:
        super().__init__(options)
        self._country = split_path(options.country)
        self._region = split_path(options.region) if options.region is not None else None
        self._reader: maxminddb.Reader | None = None
        if options.database is not None:
            try:
                self._reader = open_mmdb(options.database)
            except ValueError as exc:  # the file changed since the config was checked
                raise ConfigError(str(exc), file=options.database) from exc

    def __call__(self, event: Event) -> Event | None:
        context = event.context
        if context is None or not context.client_ip:
            return event
        country, region = self.lookup(context.client_ip)
        if country is not None:
            set_path(event.data, self._country, country)
        if region is not None and self._region is not None:
            set_path(event.data, self._region, region)
        return event

    def lookup(self, address: str) -> tuple[str | None, str | None]:
        """(country, region) of an address; None for what the data does not know (private
        ranges, a malformed address)."""
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return None, None
        if not ip.is_global:
            return None, None
        if self._reader is None:
            return iptocc.country_code(str(ip)), None
        try:
            record: Any = self._reader.get(ip)
        except ValueError:  # an IPv6 address in an IPv4-only database
            return None, None
        if not isinstance(record, dict):
            return None, None
        country = (record.get("country") or record.get("registered_country") or {}).get("iso_code")
        subdivisions = record.get("subdivisions") or [{}]
        return country, subdivisions[0].get("iso_code")


class UserAgentOptions(Options):
    """Where the browser, OS and device families go."""

    into: FieldPath = Field("client", description="object path that gets browser, os, device")
    versions: bool = Field(False, description="also write browser_version and os_version "
                                              "(major only)")


@register
class UserAgent(Filter):
    """Write the browser, OS and device family the User-Agent names; never the User-Agent."""

    type = "user_agent"
    Options = UserAgentOptions

    def __init__(self, options: UserAgentOptions) -> None:
        super().__init__(options)
        self._into = split_path(options.into)
        self._versions = options.versions

    def __call__(self, event: Event) -> Event | None:
        context = event.context
        if context is None or not context.user_agent:
            return event
        set_path(event.data, self._into, self.describe(context.user_agent))
        return event

    def describe(self, user_agent: str) -> dict[str, str | None]:
        """The families ua-parser reads from a User-Agent (``Other`` when it cannot tell)."""
        result = parse_user_agent(user_agent)
        browser, os, device = result.user_agent, result.os, result.device
        described: dict[str, str | None] = {
            "browser": browser.family if browser else UNKNOWN_FAMILY,
            "os": os.family if os else UNKNOWN_FAMILY,
            "device": device.family if device else UNKNOWN_FAMILY,
        }
        if self._versions:
            described["browser_version"] = browser.major if browser else None
            described["os_version"] = os.major if os else None
        return described
