"""The admin API through a real loopback server: off without a token, Bearer auth, status,
backends, and the dead-letter queue listed, replayed and purged."""

from __future__ import annotations

import hmac

import pytest
from opsupport import ADMIN_TOKEN, auth
from support import until

from router import auth as auth_module
from router.speedups import in_use

BEACON = {"installation_id": "inst-1", "version": "1.0.0"}
ENDPOINTS = [
    ("GET", "/admin/status"),
    ("GET", "/admin/backends"),
    ("GET", "/admin/backends/hook/dlq"),
    ("POST", "/admin/backends/hook/dlq/replay"),
    ("POST", "/admin/backends/hook/dlq/purge"),
    ("POST", "/admin/reload"),
]


def admin_config(receiver_url: str = "http://127.0.0.1:9/hook", token: bool = True) -> str:
    return f"""
    spool: {{path: ./data/spool.db}}
    admin: {{listen: same{f', token: "{ADMIN_TOKEN}"' if token else ""}}}
    backends:
      hook:
        type: webhook
        url: "{receiver_url}"
        batch: {{max_wait: 20ms}}
        retry: {{initial: 10ms, max: 20ms}}
    """


async def test_without_a_token_configured_every_admin_path_is_404(router_client):
    client = await router_client(admin_config(token=False))
    for method, path in ENDPOINTS:
        for headers in ({}, auth()):
            assert (await client.request(method, path, headers=headers)).status == 404, path


WRONG = [
    {},
    {"Authorization": "Bearer"},
    {"Authorization": ADMIN_TOKEN},
    {"Authorization": f"Basic {ADMIN_TOKEN}"},
    auth("not-the-token"),
    auth(ADMIN_TOKEN + "x"),
    auth(ADMIN_TOKEN[:-1]),
]


async def test_a_missing_or_wrong_token_is_401_on_every_admin_path(router_client):
    client = await router_client(admin_config())
    for method, path in ENDPOINTS:
        for headers in WRONG:
            resp = await client.request(method, path, headers=headers)
            assert resp.status == 401, (path, headers)
            assert resp.headers["WWW-Authenticate"].startswith("Bearer")
            assert (await resp.json())["error"] == "unauthorized"
            assert resp.headers["X-Content-Type-Options"] == "nosniff"


REAL_COMPARE = hmac.compare_digest


async def test_the_token_is_compared_with_compare_digest(router_client, monkeypatch):
    seen: list[tuple[bytes, bytes]] = []

    def spy(a, b):
        seen.append((a, b))
        return REAL_COMPARE(a, b)

    monkeypatch.setattr(auth_module.hmac, "compare_digest", spy)
    client = await router_client(admin_config())
    assert (await client.get("/admin/status", headers=auth("nope"))).status == 401
    assert (await client.get("/admin/status", headers=auth())).status == 200
    assert seen == [(b"nope", ADMIN_TOKEN.encode()), (ADMIN_TOKEN.encode(), ADMIN_TOKEN.encode())]


def test_source_tokens_are_all_compared_even_after_a_match(monkeypatch):
    calls = []
    monkeypatch.setattr(
        auth_module.hmac, "compare_digest", lambda a, b: calls.append(b) or REAL_COMPARE(a, b)
    )
    assert auth_module.matches("one", ["one", "two", "three"])
    assert calls == [b"one", b"two", b"three"]


async def test_status_and_backends_describe_the_running_router(router_client, receiver):
    client = await router_client(admin_config(receiver.url))
    status = await (await client.get("/admin/status", headers=auth())).json()
    assert status["config"]["file"].endswith("router.yaml")
    assert status["native"] == in_use()  # the C modules this test process (and router) runs
    assert status["spool"] == {
        "type": "sqlite",
        "writable": True,
        "used_bytes": status["spool"]["used_bytes"],
    }
    assert status["backends"] == {"hook": {"healthy": True, "queued": 0}}
    assert status["last_reload"] is None
    backends = (await (await client.get("/admin/backends", headers=auth())).json())["backends"]
    assert backends["hook"]["type"] == "webhook"
    assert backends["hook"]["running"] and backends["hook"]["health"]["healthy"]
    assert backends["hook"]["dead_letters"] == 0


async def test_dead_letters_are_listed_then_replayed_to_the_backend(router_client, receiver):
    receiver.status = 422  # refused for good: the events go to the DLQ
    client = await router_client(admin_config(receiver.url))
    sent = [{**BEACON, "installation_id": f"inst-{i}"} for i in range(3)]
    assert (await client.post("/beacon", json=sent)).status == 202

    async def dead() -> list[dict]:
        resp = await client.get("/admin/backends/hook/dlq", headers=auth())
        return (await resp.json())["dead_letters"]

    async def three_dead() -> bool:
        return len(await dead()) == 3

    await until(three_dead, timeout=30)  # polled, not counted: a loaded machine is slower
    letters = await dead()
    assert all("422" in d["reason"] and d["attempts"] == 1 for d in letters)
    assert sorted(d["event"]["data"]["installation_id"] for d in letters) == [
        "inst-0",
        "inst-1",
        "inst-2",
    ]
    limited = await client.get("/admin/backends/hook/dlq?limit=1", headers=auth())
    assert len((await limited.json())["dead_letters"]) == 1

    receiver.status = 200
    replay = await client.post(
        "/admin/backends/hook/dlq/replay",
        headers=auth(),
        json={"ids": [letters[0]["id"], letters[1]["id"]]},
    )
    assert await replay.json() == {"backend": "hook", "replayed": 2}
    await until(lambda: len(receiver.events) == 2)
    assert len(await dead()) == 1
    purge = await client.post("/admin/backends/hook/dlq/purge", headers=auth())
    assert await purge.json() == {"backend": "hook", "purged": 1, "released_queue": False}
    assert await dead() == []


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/admin/backends/hook/dlq/replay", b"{", 400),
        ("/admin/backends/hook/dlq/replay", b'{"ids": ["1"]}', 400),
        ("/admin/backends/hook/dlq/replay", b'{"since": "yesterday"}', 400),
        ("/admin/backends/hook/dlq/replay", b'{"what": 1}', 400),
        ("/admin/backends/gone/dlq/replay", b"", 409),
        ("/admin/backends/hook/dlq?limit=0", None, 400),
        ("/admin/backends/hook/dlq?since=soon", None, 400),
    ],
)
async def test_bad_admin_requests_are_4xx(router_client, path, body, status):
    client = await router_client(admin_config())
    if body is None:
        resp = await client.get(path, headers=auth())
    else:
        resp = await client.post(path, data=body, headers=auth())
    assert resp.status == status
    assert set(await resp.json()) >= {"error", "detail"}


async def test_the_admin_listener_of_its_own_answers_with_the_security_headers(
    aiohttp_client, write_config
):
    from test_protection import assert_secure

    from router.web.admin import create_admin_app
    from router.web.app import create_app

    ingest = create_app(write_config(admin_config().replace("listen: same", "listen: 127.0.0.1:0")))
    ingest_client = await aiohttp_client(ingest)  # starts the spool and delivery it shares
    admin = await aiohttp_client(create_admin_app(ingest))
    answers = [
        await admin.get("/admin/status", headers=auth()),  # 200
        await admin.get("/admin/status"),  # 401
        await admin.get("/admin/no/such/path", headers=auth()),  # 404
        await admin.post("/admin/status", headers=auth()),  # 405
    ]
    assert [r.status for r in answers] == [200, 401, 404, 405]
    for resp in answers:
        assert_secure(resp)
    await ingest_client.close()
