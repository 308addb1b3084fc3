"""Fixtures for the operations tests: configs in tmp_path, a loopback webhook receiver."""

from __future__ import annotations

import textwrap

import pytest
from aiohttp import web
from opsupport import HASH_KEY, Receiver

from router.config import Config
from router.config.loader import load
from router.web.app import create_app


@pytest.fixture
async def receiver(aiohttp_server):
    """A started Receiver; ``receiver.url`` goes into a webhook backend's ``url:``."""
    made = Receiver()
    app = web.Application()
    app.router.add_post("/hook", made.handle)
    server = await aiohttp_server(app)
    made.url = str(server.make_url("/hook"))
    return made


@pytest.fixture
def write_config(tmp_path, monkeypatch):
    """Write YAML (dedented) to tmp_path/router.yaml and load it; the cwd is tmp_path."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BEACON_HASH_KEY", HASH_KEY)

    def write(text: str) -> Config:
        path = tmp_path / "router.yaml"
        path.write_text(textwrap.dedent(text))
        return load(str(path))

    return write


@pytest.fixture
def router_client(aiohttp_client, write_config):
    """Factory: a test client of ``create_app`` for a YAML config text."""

    async def make(text: str):
        client = await aiohttp_client(create_app(write_config(text)))
        return client

    return make
