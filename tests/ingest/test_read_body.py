"""read_body against real requests on a loopback server, with and without aiohttp's decoding."""

from __future__ import annotations

import gzip
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import zstandard
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from router.errors import BadRequest, InputError, PayloadTooLarge, UnsupportedMedia
from router.ingest import Limits, decompress, read_body
from router.ingest.body import content_encoding

LIMITS = web.AppKey("limits", Limits)
MiB = 1024 * 1024
BODY = b'{"installation_id": "5f0b6c1e", "version": "1.0.0", "counts": {"users": 37}}'


def gzip_bomb(expands_to: int) -> bytes:
    """A gzip body of zeros that would expand to ``expands_to`` bytes, built in milliseconds.

    With the window full of zeros, every further MiB of zeros compresses (sync-flushed) to the
    same bytes, so the stream is a head and one repeated block. Its trailer is never reached.
    """
    encoder = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(MiB)
    head = encoder.compress(zeros) + encoder.flush(zlib.Z_SYNC_FLUSH)
    block = encoder.compress(zeros) + encoder.flush(zlib.Z_SYNC_FLUSH)
    return head + block * (expands_to // MiB - 1)


def zstd_bomb(expands_to: int) -> bytes:
    """A zstd body of zeros that would expand to ``expands_to`` bytes, with no content size in
    its frame header (as a streaming client writes it), so only decoding reveals its size."""
    out = bytearray()
    with zstandard.ZstdCompressor(level=19, write_content_size=False).stream_writer(
        _Sink(out), closefd=False
    ) as writer:
        for _ in range(expands_to // MiB):
            writer.write(bytes(MiB))
    return bytes(out)


class _Sink:
    def __init__(self, out: bytearray) -> None:
        self.out = out

    def write(self, data: bytes) -> int:
        self.out += data
        return len(data)


def zstd(data: bytes) -> bytes:
    return zstandard.ZstdCompressor().compress(data)


def raw_deflate(data: bytes) -> bytes:
    encoder = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return encoder.compress(data) + encoder.flush()


async def echo(request: web.Request) -> web.Response:
    """Answer with the body read_body returned, or the InputError as the router's handler does."""
    try:
        body = await read_body(request, request.app[LIMITS])
    except InputError as exc:
        return web.json_response({"error": exc.error, "detail": exc.detail}, status=exc.status)
    return web.Response(body=body)


Serve = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture(params=[False, True], ids=["raw-body", "aiohttp-decompresses"])
async def serve(request: pytest.FixtureRequest, aiohttp_client: Any) -> Serve:
    """Start the echo app on 127.0.0.1 with ``auto_decompress`` off (as the router runs) or on."""

    async def start(limits: Limits | None = None) -> TestClient[Any, Any]:
        app = web.Application()
        app[LIMITS] = limits or Limits()
        app.router.add_post("/", echo)
        server = TestServer(app)
        await server.start_server(auto_decompress=request.param)
        return await aiohttp_client(server)  # type: ignore[no-any-return]

    return start


async def chunks(data: bytes, size: int = 1000) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.mark.parametrize(
    ("encoding", "encode"),
    [
        (None, lambda b: b),
        ("identity", lambda b: b),
        ("gzip", gzip.compress),
        ("GZIP", gzip.compress),
        ("x-gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", raw_deflate),
        ("gzip, identity", gzip.compress),
    ],
    ids=["none", "identity", "gzip", "GZIP", "x-gzip", "deflate-zlib", "deflate-raw", "gzip+id"],
)
async def test_body_round_trips_through_each_encoding(
    serve: Serve, encoding: str | None, encode: Callable[[bytes], bytes]
) -> None:
    client = await serve()
    headers = {"Content-Encoding": encoding} if encoding else {}
    resp = await client.post("/", data=encode(BODY), headers=headers)
    assert resp.status == 200
    assert await resp.read() == BODY


async def test_chunked_body_is_read_whole(serve: Serve) -> None:
    client = await serve()
    body = BODY * 500
    resp = await client.post("/", data=chunks(body))
    assert resp.status == 200
    assert await resp.read() == body


async def test_chunked_gzip_body_is_decompressed(serve: Serve) -> None:
    client = await serve()
    body = BODY * 500
    resp = await client.post(
        "/", data=chunks(gzip.compress(body), 100), headers={"Content-Encoding": "gzip"}
    )
    assert resp.status == 200
    assert await resp.read() == body


async def test_gzip_body_of_several_members_is_read_whole(serve: Serve) -> None:
    client = await serve()
    resp = await client.post(
        "/", data=gzip.compress(BODY) + gzip.compress(BODY), headers={"Content-Encoding": "x-gzip"}
    )
    assert resp.status == 200
    assert await resp.read() == BODY + BODY


async def test_empty_body_reads_as_empty_bytes(serve: Serve) -> None:
    client = await serve()
    resp = await client.post("/", data=b"", headers={"Content-Encoding": "gzip"})
    assert resp.status == 200
    assert await resp.read() == b""


async def test_body_of_exactly_max_body_is_accepted(serve: Serve) -> None:
    client = await serve(Limits(max_body=4096))
    resp = await client.post("/", data=b"x" * 4096)
    assert resp.status == 200


async def test_content_length_over_max_body_is_refused_with_413(serve: Serve) -> None:
    client = await serve(Limits(max_body=4096))
    resp = await client.post("/", data=b"x" * 4097)
    assert resp.status == 413
    assert (await resp.json())["detail"] == "body is 4097 bytes, at most 4 KiB accepted"


async def test_chunked_body_over_max_body_is_refused_with_413(serve: Serve) -> None:
    client = await serve(Limits(max_body=4096))
    resp = await client.post("/", data=chunks(b"x" * 10_000))
    assert resp.status == 413
    assert (await resp.json())["detail"] == "body is over 4 KiB"


async def test_compressed_size_counts_against_max_body(serve: Serve) -> None:
    client = await serve(Limits(max_body=4096))
    incompressible = gzip.compress(bytes(range(256)) * 64, compresslevel=0)
    resp = await client.post("/", data=chunks(incompressible), headers={"Content-Encoding": "gzip"})
    assert resp.status == 413


async def test_gzip_bomb_is_refused_with_413(serve: Serve) -> None:
    # 64 MiB: with aiohttp decoding, aiohttp inflates the unread rest while draining it.
    client = await serve(Limits(max_decompressed=8 * MiB))
    resp = await client.post("/", data=gzip_bomb(64 * MiB), headers={"Content-Encoding": "gzip"})
    assert resp.status == 413
    assert (await resp.json())["detail"] == "body decompresses to more than 8 MiB"


# zstd is the router's own to decode: it serves with auto_decompress=False (aiohttp would need
# backports.zstd, and would decode without the router's cap).


@pytest.fixture
async def raw_serve(aiohttp_client: Any) -> Serve:
    async def start(limits: Limits | None = None) -> TestClient[Any, Any]:
        app = web.Application()
        app[LIMITS] = limits or Limits()
        app.router.add_post("/", echo)
        server = TestServer(app)
        await server.start_server(auto_decompress=False)
        return await aiohttp_client(server)  # type: ignore[no-any-return]

    return start


@pytest.mark.parametrize(
    ("encoding", "body"),
    [("zstd", zstd(BODY)), ("ZSTD", zstd(BODY[:20]) + zstd(BODY[20:]))],
    ids=["zstd", "zstd-two-frames"],
)
async def test_zstd_body_round_trips(raw_serve: Serve, encoding: str, body: bytes) -> None:
    client = await raw_serve()
    resp = await client.post("/", data=chunks(body, 7), headers={"Content-Encoding": encoding})
    assert resp.status == 200
    assert await resp.read() == BODY


@pytest.mark.parametrize("body", [b"not zstd either", zstd(BODY)[:-4]], ids=["junk", "truncated"])
async def test_corrupt_zstd_body_is_refused_with_400(raw_serve: Serve, body: bytes) -> None:
    client = await raw_serve()
    resp = await client.post("/", data=body, headers={"Content-Encoding": "zstd"})
    assert resp.status == 400
    assert (await resp.json())["detail"].startswith("body is not valid zstd: ")


async def test_zstd_bomb_is_refused_with_413(raw_serve: Serve) -> None:
    client = await raw_serve(Limits(max_decompressed=8 * MiB))
    resp = await client.post("/", data=zstd_bomb(256 * MiB), headers={"Content-Encoding": "zstd"})
    assert resp.status == 413
    assert (await resp.json())["detail"] == "body decompresses to more than 8 MiB"


async def test_zstd_body_decompressing_to_exactly_the_cap_is_accepted(raw_serve: Serve) -> None:
    client = await raw_serve(Limits(max_decompressed=MiB))
    resp = await client.post("/", data=zstd(bytes(MiB)), headers={"Content-Encoding": "zstd"})
    assert resp.status == 200
    assert len(await resp.read()) == MiB


async def test_body_decompressing_to_exactly_the_cap_is_accepted(serve: Serve) -> None:
    client = await serve(Limits(max_decompressed=MiB))
    resp = await client.post(
        "/", data=gzip.compress(bytes(MiB)), headers={"Content-Encoding": "gzip"}
    )
    assert resp.status == 200
    assert len(await resp.read()) == MiB


@pytest.mark.parametrize(
    ("encoding", "body"),
    [("gzip", b"not gzip at all"), ("deflate", b"\xff\xfe not deflate")],
)
async def test_corrupt_compressed_body_is_refused_with_400(
    serve: Serve, encoding: str, body: bytes
) -> None:
    client = await serve()
    resp = await client.post("/", data=body, headers={"Content-Encoding": encoding})
    assert resp.status == 400
    assert (await resp.json())["error"] == "bad_request"


@pytest.mark.parametrize("encoding", ["compress", "exi", "gzip, br", "deflate, gzip"])
async def test_unknown_content_encoding_is_refused_with_415_before_reading(
    serve: Serve, encoding: str
) -> None:
    client = await serve()
    resp = await client.post("/", data=b"{}", headers={"Content-Encoding": encoding})
    assert resp.status == 415
    assert "gzip, x-gzip, deflate, zstd, identity" in (await resp.json())["detail"]


@pytest.mark.parametrize("encoding", ["br"])
async def test_brotli_is_refused_with_415_when_the_router_reads_raw_bodies(
    aiohttp_client: Any, encoding: str
) -> None:
    # With aiohttp's own decoding on, aiohttp answers these itself (400 without the codec).
    app = web.Application()
    app[LIMITS] = Limits()
    app.router.add_post("/", echo)
    server = TestServer(app)
    await server.start_server(auto_decompress=False)
    client = await aiohttp_client(server)
    resp = await client.post("/", data=b"{}", headers={"Content-Encoding": encoding})
    assert resp.status == 415


# The same rules, checked without a server.


def test_zip_bomb_never_allocates_much_past_the_cap() -> None:
    bomb = gzip_bomb(1024 * MiB)
    tracemalloc.start()
    try:
        with pytest.raises(PayloadTooLarge):
            decompress(bomb, "gzip", 8 * MiB)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # The cap, one decompression step, and zlib's copies of the (1 MiB) unread input.
    assert peak < 8 * MiB + 4 * MiB


def test_zstd_bomb_never_allocates_much_past_the_cap() -> None:
    bomb = zstd_bomb(1024 * MiB)
    tracemalloc.start()
    try:
        with pytest.raises(PayloadTooLarge):
            decompress(bomb, "zstd", 8 * MiB)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * MiB + 4 * MiB


@pytest.mark.parametrize(
    ("data", "encoding", "detail"),
    [
        (
            gzip.compress(BODY)[:-6],
            "gzip",
            "body is not valid gzip: the compressed data is truncated",
        ),
        (b"plain text", "gzip", "body is not valid gzip: incorrect header check"),
        (
            zlib.compress(BODY) + b"!",
            "deflate",
            "body is not valid deflate: bytes follow the compressed data",
        ),
        (
            zstd(BODY)[:-3],
            "zstd",
            "body is not valid zstd: the compressed data is truncated",
        ),
        (zstd(BODY) + b"junk", "zstd", "body is not valid zstd: Unknown frame descriptor"),
    ],
    ids=["truncated-gzip", "not-gzip", "trailing-bytes", "truncated-zstd", "zstd-trailing-junk"],
)
def test_malformed_compressed_data_is_a_bad_request(
    data: bytes, encoding: str, detail: str
) -> None:
    with pytest.raises(BadRequest) as caught:
        decompress(data, encoding, MiB)
    assert caught.value.detail == detail


def test_content_encoding_names_are_normalised() -> None:
    assert content_encoding(None) is None
    assert content_encoding(" Identity ") is None
    assert content_encoding("X-GZIP") == "gzip"
    assert content_encoding("deflate") == "deflate"
    with pytest.raises(UnsupportedMedia):
        content_encoding("gzip, gzip")
