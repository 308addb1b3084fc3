"""The stdout backend: JSON Lines on standard output."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest

from router.backends.stdout import StdoutBackend
from router.config.loader import loads
from router.errors import ConfigError


async def test_prints_each_event_as_one_json_line(capsys, make_events):
    batch = make_events(3)

    result = await StdoutBackend("debug").send(batch)

    assert result.ok
    out = capsys.readouterr().out
    assert [json.loads(line) for line in out.splitlines()] == [e.to_dict() for e in batch]


async def test_a_closed_stdout_is_retried_not_raised(monkeypatch, make_events):
    closed = io.StringIO()
    closed.close()
    monkeypatch.setattr(sys, "stdout", closed)

    result = await StdoutBackend("debug").send(make_events(2))

    assert result.retry == (0, 1)
    assert "stdout" in result.reason


def test_writes_to_the_real_stdout_of_a_process():
    script = (
        "import asyncio\n"
        "from router.backends.stdout import StdoutBackend\n"
        "from router.event import Event\n"
        "batch = [Event.new({'version': '2.0.0'}), Event.new({'version': '2.1.0'})]\n"
        "assert asyncio.run(StdoutBackend('debug').send(batch)).ok\n"
    )

    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, check=True, timeout=30
    ).stdout

    assert [json.loads(line)["data"]["version"] for line in out.splitlines()] == ["2.0.0", "2.1.0"]


def test_render_lists_the_lines_it_would_print(capsys, make_events):
    batch = make_events(2)

    [request] = StdoutBackend("debug").render(batch)

    assert [json.loads(line) for line in request.body] == [e.to_dict() for e in batch]
    assert capsys.readouterr().out == ""


def test_it_takes_no_options():
    with pytest.raises(ConfigError) as err:
        loads("backends: {debug: {type: stdout, pretty: true}}")

    assert "backends.debug.pretty" in str(err.value)
    assert loads("backends: {debug: {type: stdout}}").backends["debug"].build().type == "stdout"
