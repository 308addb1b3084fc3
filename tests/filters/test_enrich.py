"""geoip and user_agent on real addresses and User-Agent strings; the address is never kept."""

from __future__ import annotations

from pathlib import Path

import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from router.config.loader import loads
from router.errors import ConfigError
from router.event import Event, RequestContext
from router.filters import Pipeline
from router.filters.enrich import Geoip, GeoipOptions, UserAgent, UserAgentOptions

# Real User-Agents, as browsers, SDKs and tools send them.
CHROME_WINDOWS = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like "
                  "Gecko) Chrome/124.0.0.0 Safari/537.36")
SAFARI_IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
                 "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1")
FIREFOX_LINUX = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"
CURL = "curl/8.5.0"


def event(ip: str | None = None, ua: str | None = None) -> Event:
    return Event.new({"installation_id": "i-1", "version": "1.0.0"},
                     context=RequestContext(client_ip=ip, user_agent=ua))


def city_database(path: Path) -> str:
    """A real MaxMind-format City file (as GeoLite2-City lays records out), written by
    mmdb-writer: two networks with a subdivision, one IPv6 network with a country only."""
    writer = MMDBWriter(ip_version=6, database_type="GeoLite2-City", ipv4_compatible=True)
    writer.insert_network(IPSet(["81.2.69.0/24"]), {
        "country": {"iso_code": "GB", "names": {"en": "United Kingdom"}},
        "subdivisions": [{"iso_code": "ENG", "names": {"en": "England"}}],
    })
    writer.insert_network(IPSet(["89.160.20.0/24"]), {
        "country": {"iso_code": "SE"},
        "subdivisions": [{"iso_code": "E", "names": {"en": "Östergötland County"}}],
    })
    writer.insert_network(IPSet(["2a02:cf40::/29"]), {"country": {"iso_code": "NO"}})
    writer.to_db_file(str(path))
    return str(path)


# -- geoip with the data the iptocc package ships


@pytest.mark.parametrize(("address", "country"), [
    ("8.8.8.8", "US"),            # Google DNS
    ("193.99.144.80", "DE"),      # heise.de
    ("1.0.16.1", "JP"),           # APNIC's Japanese block
    ("2001:200::1", "JP"),        # WIDE project, IPv6
])
def test_geoip_writes_the_country_of_a_real_address_from_the_shipped_data(address, country):
    geoip = Geoip(GeoipOptions())

    out = geoip(event(address))

    assert out is not None and out.data["geo"] == {"country": country}


@pytest.mark.parametrize("address", ["10.1.2.3", "192.168.0.7", "127.0.0.1", "::1",
                                     "100.64.0.1", "not-an-address", ""])
def test_geoip_writes_nothing_for_private_or_malformed_addresses(address):
    out = Geoip(GeoipOptions())(event(address))

    assert out is not None and "geo" not in out.data


def test_geoip_without_a_request_context_leaves_the_event_alone():
    spooled = Event.from_json(event("8.8.8.8").to_json())  # after the spool: no context

    out = Geoip(GeoipOptions())(spooled)

    assert out is not None and "geo" not in out.data


def test_geoip_never_writes_the_address_into_the_event():
    out = Geoip(GeoipOptions(country="country"))(event("193.99.144.80"))

    assert out is not None
    assert "193.99.144.80" not in out.to_json().decode()
    assert out.data["country"] == "DE"


# -- geoip with an operator's MaxMind-format file


def test_geoip_reads_country_and_region_from_a_maxmind_city_file(tmp_path):
    db = city_database(tmp_path / "city.mmdb")
    geoip = Geoip(GeoipOptions(database=db, region="geo.region"))

    uk, se, no, unknown = (geoip(event(ip)) for ip in
                           ("81.2.69.160", "89.160.20.112", "2a02:cf40::1", "8.8.8.8"))

    assert uk is not None and uk.data["geo"] == {"country": "GB", "region": "ENG"}
    assert se is not None and se.data["geo"] == {"country": "SE", "region": "E"}
    assert no is not None and no.data["geo"] == {"country": "NO"}
    assert unknown is not None and "geo" not in unknown.data  # not in this file: nothing


def test_geoip_configured_in_yaml_runs_in_the_pipeline(tmp_path):
    db = city_database(tmp_path / "city.mmdb")
    config = loads(f"pipeline:\n  - {{type: geoip, database: {db}, region: where.region, "
                   f"country: where.country}}\n", file="router.yaml")

    out = Pipeline(config.pipeline)(event("81.2.69.160"))

    assert out is not None and out.data["where"] == {"country": "GB", "region": "ENG"}


def test_a_missing_database_file_is_a_config_error_naming_line_and_key(tmp_path):
    text = "pipeline:\n  - {type: opt_out}\n  - {type: geoip, database: /nonexistent.mmdb}\n"

    with pytest.raises(ConfigError) as exc:
        loads(text, file="router.yaml")

    assert "router.yaml:3" in str(exc.value) and "pipeline[1].database" in str(exc.value)
    assert "no such file" in str(exc.value)


def test_a_file_that_is_not_a_maxmind_database_is_a_config_error(tmp_path):
    bogus = tmp_path / "country.mmdb"
    bogus.write_bytes(b"this is not a database" * 100)

    with pytest.raises(ConfigError, match="not a MaxMind-format database"):
        loads(f"pipeline:\n  - {{type: geoip, database: {bogus}}}\n", file="router.yaml")


def test_region_without_a_database_is_a_config_error():
    with pytest.raises(ConfigError, match=r"region.*needs `database:`"):
        loads("pipeline:\n  - {type: geoip, region: geo.region}\n", file="router.yaml")


# -- user_agent


@pytest.mark.parametrize(("ua", "browser", "os", "device"), [
    (CHROME_WINDOWS, "Chrome", "Windows", "Other"),
    (SAFARI_IPHONE, "Mobile Safari", "iOS", "iPhone"),
    (FIREFOX_LINUX, "Firefox", "Linux", "Other"),
    (CURL, "curl", "Other", "Other"),
    ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/124.0.6367.82 Mobile Safari/537.36", "Chrome Mobile", "Android", "Pixel 8"),
])
def test_user_agent_writes_browser_os_and_device_families(ua, browser, os, device):
    out = UserAgent(UserAgentOptions())(event(ua=ua))

    assert out is not None
    assert out.data["client"] == {"browser": browser, "os": os, "device": device}
    assert ua not in out.to_json().decode()


def test_user_agent_with_versions_adds_major_versions_only():
    out = UserAgent(UserAgentOptions(into="ua", versions=True))(event(ua=CHROME_WINDOWS))

    assert out is not None and out.data["ua"] == {
        "browser": "Chrome", "os": "Windows", "device": "Other",
        "browser_version": "124", "os_version": "10",
    }


def test_an_unrecognised_user_agent_is_other_and_no_user_agent_writes_nothing():
    known = UserAgent(UserAgentOptions())(event(ua="x/y z"))
    absent = UserAgent(UserAgentOptions())(event())

    assert known is not None and known.data["client"]["browser"] == "Other"
    assert absent is not None and "client" not in absent.data
