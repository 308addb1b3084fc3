"""Logs: the scrubbing processor on its own, the output format, and a real router's log read
back for the client's address and the raw installation id it was sent."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import textwrap

import aiohttp
import pytest
from hypothesis import given
from hypothesis import strategies as st
from opsupport import HASH_KEY, file_events
from support import REPO, RouterProcess, free_port, until

from router.logs import Scrub, scrub_text


@pytest.mark.parametrize(
    ("text", "scrubbed"),
    [
        ("client 203.0.113.7 refused", "client [ip] refused"),
        ("from 10.1.2.3:5050", "from [ip]:5050"),
        ("peer 2001:db8::1 and [2001:db8:0:1::7]:443", "peer [ip] and [[ip]]:443"),
        ("mapped ::ffff:198.51.100.4", "mapped [ip]"),
        ("fe80::1%eth0 link-local", "[ip] link-local"),
        ("listening on 0.0.0.0:8080 and [::]:8080", "listening on 0.0.0.0:8080 and [::]:8080"),
        ("loopback 127.0.0.1:9 and ::1", "loopback 127.0.0.1:9 and ::1"),
        ("at 2026-11-28T00:17:42.123Z, 10:30:00", "at 2026-11-28T00:17:42.123Z, 10:30:00"),
        ("version 1.4.2 and 1.2.3.4.5", "version 1.4.2 and 1.2.3.4.5"),
        ("id 2f1c7c1e-8a5b-4e8e-9d7a-3b1f0c2d4e5f", "id 2f1c7c1e-8a5b-4e8e-9d7a-3b1f0c2d4e5f"),
        ("999.1.1.1 is no address", "999.1.1.1 is no address"),
        ("Authorization: Bearer eyJhbGciOi.x-y_z", "Authorization: Bearer ***"),
        ("https://user:hunter2@db.example.com/x", "https://user:***@db.example.com/x"),
        ("GET /e?api_key=phc_123&x=1", "GET /e?api_key=***&x=1"),
        ('{"token": "abc", "n": 1}', '{"token": "***", "n": 1}'),
    ],
)
def test_scrub_text_masks_credentials_and_addresses_only(text, scrubbed):
    assert scrub_text(text) == scrubbed


def test_scrub_masks_secret_keys_at_any_depth_and_leaves_counts_alone():
    event = {
        "event": "delivery failed for 198.51.100.9",
        "installation_id": "raw-id",
        "api_key": "phc_x",
        "client_ip": "198.51.100.9",
        "events": 3,
        "ok": True,
        "ratio": 0.5,
        "none": None,
        "detail": {
            "token": ["a", "b"],
            "hosts": ["203.0.113.1", "localhost"],
            "deep": {"authorization": "Bearer x"},
        },
        "exception": "Traceback ...\nOSError: connect to 203.0.113.5:443 failed",
    }
    out = Scrub()(None, "info", dict(event))
    assert out["event"] == "delivery failed for [ip]"
    assert out["installation_id"] == out["api_key"] == out["client_ip"] == "***"
    assert (out["events"], out["ok"], out["ratio"], out["none"]) == (3, True, 0.5, None)
    assert out["detail"] == {
        "token": "***",
        "hosts": ["[ip]", "localhost"],
        "deep": {"authorization": "***"},
    }
    assert "203.0.113.5" not in out["exception"] and "OSError" in out["exception"]


def test_scrub_renders_foreign_objects_as_scrubbed_text():
    class Peer:
        def __str__(self) -> str:
            return "Peer(203.0.113.8)"

    assert Scrub()(None, "info", {"peer": Peer()})["peer"] == "Peer([ip])"


octet = st.integers(0, 255)
public_v4 = (
    st.tuples(octet, octet, octet, octet)
    .map(lambda t: ".".join(map(str, t)))
    .filter(lambda ip: not ip.startswith(("127.", "0.0.0.0")))
)
v6 = st.ip_addresses(v=6).filter(lambda ip: not (ip.is_loopback or ip.is_unspecified)).map(str)
# What stands next to an address in a log line: separators, or words set apart by a space.
before = st.lists(
    st.sampled_from(["peer ", "from: ", "=", " ", ",", "(", "[", '"', "'", "/", "@", "://"]),
    max_size=4,
).map("".join)
after = st.tuples(
    st.sampled_from(["", ":443"]),
    st.lists(
        st.sampled_from([" failed", "]", ")", ",", ";", '"', "'", "/x", ". ", ": refused"]),
        max_size=3,
    ),
).map(lambda t: t[0] + "".join(t[1]))


@given(head=before, address=st.one_of(public_v4, v6), tail=after)
def test_no_address_survives_scrubbing_whatever_surrounds_it(head, address, tail):
    assert address not in scrub_text(f"{head}{address}{tail}")


def _emit(stderr: int | None) -> subprocess.CompletedProcess[bytes] | None:
    code = (
        "from router import logs; import structlog; logs.configure(); "
        "structlog.get_logger('t').info('hello', peer='203.0.113.4', n=1)"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        stderr=stderr,
        stdout=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": REPO},
        timeout=30,
        check=True,
    )


def test_logs_are_json_lines_when_stderr_is_not_a_terminal():
    line = _emit(subprocess.PIPE).stderr.decode().strip()
    record = json.loads(line)
    assert record["message"] == "hello" and record["peer"] == "[ip]" and record["level"] == "info"


def test_logs_are_for_humans_when_stderr_is_a_terminal():
    parent, child = pty.openpty()
    try:
        _emit(child)
        os.close(child)
        out = b""
        while True:
            try:
                chunk = os.read(parent, 4096)
            except OSError:  # EIO: the child side is closed and everything was read
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(parent)
    text = out.decode()
    assert "hello" in text and "[ip]" in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text.strip())


def default_format_router(config: str, port: int, workdir: str) -> RouterProcess:
    """``beacon-router serve`` with no --log-format: the default a container would run."""
    return RouterProcess(config, port, workdir, args=("--log-level", "debug"),
                         env={"BEACON_HASH_KEY": HASH_KEY})


CLIENT_IP = "203.0.113.77"  # the address the router believes, through a trusted proxy
RAW_ID = "raw-installation-7f3a9c51"


async def test_a_real_routers_log_holds_no_client_ip_and_no_raw_installation_id(tmp_path, receiver):
    receiver.status = 400  # a permanent refusal: dead letters, logged as an error
    (tmp_path / "router.yaml").write_text(
        textwrap.dedent(f"""
    spool: {{path: ./data/spool.db}}
    sources: {{beacon: {{tokens: [source-token-1]}}}}
    limits: {{per_ip: {{rate: 4, per: 1h}}, trusted_proxies: [127.0.0.0/8]}}
    pipeline:
      - {{type: hash, fields: [installation_id], key: "${{BEACON_HASH_KEY}}"}}
    backends:
      archive: {{type: file, path: ./data/archive.jsonl, batch: {{max_wait: 20ms}}}}
      hook: {{type: webhook, url: "{receiver.url}", batch: {{max_wait: 20ms}}}}
      down: {{type: webhook, url: "http://127.0.0.1:9/x", batch: {{max_wait: 20ms}},
              retry: {{initial: 10ms, max: 20ms}}}}
    """)
    )
    router = default_format_router(str(tmp_path / "router.yaml"), free_port(), str(tmp_path))
    router.start()
    try:
        await router.wait_ready()
        headers = {
            "X-Forwarded-For": CLIENT_IP,
            "Authorization": "Bearer source-token-1",
            "User-Agent": f"app/1.0 ({CLIENT_IP})",
        }
        beacons = [{"installation_id": RAW_ID, "version": "1.0.0", "n": i} for i in range(20)]
        async with aiohttp.ClientSession() as http:
            statuses = []
            for body, extra in (
                (beacons, {}),
                ({"installation_id": RAW_ID}, {}),
                (None, {}),
                ({"installation_id": RAW_ID}, {"Authorization": "Bearer nope"}),
                ({"installation_id": RAW_ID}, {}),
            ):
                kw = (
                    {"json": body}
                    if body is not None
                    else {
                        "data": b"{" + RAW_ID.encode(),
                        "headers": {**headers, "Content-Type": "application/json"},
                    }
                )
                kw.setdefault("headers", {**headers, **extra})
                async with http.post(f"{router.url}/beacon", **kw) as resp:
                    statuses.append(resp.status)
        assert statuses == [202, 202, 400, 401, 429]
        await until(lambda: len(file_events(tmp_path / "data" / "archive.jsonl")) == 21)
        await until(lambda: receiver.attempts >= 1 and "events dead-lettered" in router.logs())
        assert router.terminate() == 0
    finally:
        router.stop()
    log = (tmp_path / "router.log").read_text()
    lines = [json.loads(line) for line in log.splitlines()]  # JSON lines by default
    assert CLIENT_IP not in log
    assert RAW_ID not in log
    assert "source-token-1" not in log
    events = [line["message"] for line in lines]
    assert "events dead-lettered" in events and "delivery failed, will retry" in events
    # One line per batch outcome, never one per event: 21 events, far fewer lines.
    archived = [
        line for line in lines if line["message"] == "batch done" and line["backend"] == "archive"
    ]
    assert sum(line["delivered"] for line in archived) == 21
    assert len(archived) < 21


def test_a_json_line_carries_its_exception_as_structured_frames_without_locals():
    code = (
        "from router import logs; import structlog, logging; logs.configure()\n"
        "def fail(token='s3cret-local'):\n"
        "    raise ValueError('bad thing')\n"
        "try:\n"
        "    fail()\n"
        "except ValueError:\n"
        "    structlog.get_logger('t').exception('it failed')\n"
        "    logging.getLogger('aiohttp.server').exception('stdlib failed')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True,
                          env={**os.environ, "PYTHONPATH": REPO}, timeout=30, check=True)
    ours, stdlib = (json.loads(line) for line in done.stderr.decode().splitlines())
    for record, message in ((ours, "it failed"), (stdlib, "stdlib failed")):
        assert record["message"] == message and "event" not in record
        (exc,) = record["exception"]
        assert exc["exc_type"] == "ValueError" and exc["exc_value"] == "bad thing"
        assert exc["frames"][-1]["name"] == "fail" and exc["frames"][-1]["lineno"] == 3
    assert b"s3cret-local" not in done.stderr
