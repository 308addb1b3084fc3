"""The file backend: JSON Lines in real files under tmp_path, rotated by size."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from router.backends.file import FileBackend, FileOptions
from router.config.loader import loads
from router.errors import ConfigError


@pytest.fixture
async def file_backend() -> AsyncIterator[Callable[..., FileBackend]]:
    made: list[FileBackend] = []

    def make(path: Path | str, **options: object) -> FileBackend:
        backend = FileBackend("archive", FileOptions(path=str(path), **options))
        made.append(backend)
        return backend

    yield make
    for backend in made:
        await backend.aclose()


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines()


async def test_each_event_is_one_json_line_of_its_persisted_form(
    tmp_path, file_backend, make_events
):
    batch = make_events(3)
    path = tmp_path / "events.jsonl"

    assert (await file_backend(path).send(batch)).ok

    assert path.read_bytes().endswith(b"\n")
    assert [json.loads(line) for line in lines_of(path)] == [e.to_dict() for e in batch]


async def test_creates_missing_parent_directories(tmp_path, file_backend, make_events):
    path = tmp_path / "a" / "b" / "events.jsonl"

    assert (await file_backend(path).send(make_events(1))).ok

    assert len(lines_of(path)) == 1


async def test_rotates_at_max_bytes_and_keeps_keep_files(tmp_path, file_backend, make_events):
    batches = [make_events(n) for n in (1, 4, 2, 7, 3, 5, 1, 6)]
    sent = [event for batch in batches for event in batch]
    line_size = max(len(e.to_json()) + 1 for e in sent)
    path = tmp_path / "events.jsonl"
    backend = file_backend(path, max_bytes=3 * line_size, keep=3)

    for batch in batches:
        assert (await backend.send(batch)).ok

    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["events.jsonl", "events.jsonl.1", "events.jsonl.2", "events.jsonl.3"]
    oldest_first = [tmp_path / f"events.jsonl.{i}" for i in (3, 2, 1)] + [path]
    for f in oldest_first:
        assert 0 < f.stat().st_size <= 3 * line_size
    # Every line is valid JSON, and the kept files hold the newest events in order.
    kept = [json.loads(line)["uuid"] for f in oldest_first for line in lines_of(f)]
    assert kept == [e.uuid for e in sent][-len(kept) :]
    assert len(kept) > 3 * 3  # more than the rotated files alone could hold


async def test_a_restarted_backend_appends_and_counts_the_existing_size(
    tmp_path, file_backend, make_events
):
    path = tmp_path / "events.jsonl"
    first, second = make_events(2), make_events(1)
    line_size = max(len(e.to_json()) + 1 for e in [*first, *second])
    assert (await file_backend(path, max_bytes=2 * line_size).send(first)).ok

    assert (await file_backend(path, max_bytes=2 * line_size).send(second)).ok

    assert [json.loads(line)["uuid"] for line in lines_of(path)] == [second[0].uuid]
    rotated = [json.loads(line)["uuid"] for line in lines_of(tmp_path / "events.jsonl.1")]
    assert rotated == [e.uuid for e in first]


async def test_a_torn_last_line_is_ended_before_new_lines(tmp_path, file_backend, make_events):
    path = tmp_path / "events.jsonl"
    path.write_bytes(b'{"uuid": "from-a-crash", "da')  # what a crash mid-write leaves
    batch = make_events(2)

    assert (await file_backend(path).send(batch)).ok

    torn, *rest = lines_of(path)
    assert torn == b'{"uuid": "from-a-crash", "da'
    assert [json.loads(line)["uuid"] for line in rest] == [e.uuid for e in batch]


async def test_a_file_moved_away_is_reopened_at_the_path(tmp_path, file_backend, make_events):
    path = tmp_path / "events.jsonl"
    backend = file_backend(path)
    assert (await backend.send(make_events(1))).ok
    path.rename(tmp_path / "taken-by-logrotate.jsonl")

    assert (await backend.send(make_events(2))).ok

    assert len(lines_of(path)) == 2
    assert len(lines_of(tmp_path / "taken-by-logrotate.jsonl")) == 1


async def test_a_full_disk_is_retried(file_backend, make_events):
    result = await file_backend("/dev/full", fsync=True).send(make_events(2))  # ENOSPC on write

    assert result.retry == (0, 1)
    assert "No space left" in result.reason


async def test_an_unwritable_path_is_retried(tmp_path, file_backend, make_events):
    (tmp_path / "not-a-dir").write_text("a file where a directory should be")

    result = await file_backend(tmp_path / "not-a-dir" / "events.jsonl").send(make_events(1))

    assert result.retry == (0,)


async def test_with_fsync_the_lines_are_written_the_same(tmp_path, file_backend, make_events):
    batch = make_events(2)
    path = tmp_path / "events.jsonl"

    assert (await file_backend(path, fsync=True).send(batch)).ok

    assert [json.loads(line) for line in lines_of(path)] == [e.to_dict() for e in batch]


def test_render_lists_the_lines_send_would_append(tmp_path, make_events):
    batch = make_events(2)
    backend = FileBackend("archive", FileOptions(path=str(tmp_path / "e.jsonl")))

    [request] = backend.render(batch)

    assert request.method == "APPEND"
    assert [json.loads(line) for line in request.body] == [e.to_dict() for e in batch]
    assert not (tmp_path / "e.jsonl").exists()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"path": "e.jsonl", "max_bytes": "lots"}, "not a size"),
        ({"path": "e.jsonl", "keep": 0}, "greater than or equal to 1"),
        ({}, "required key is missing"),
    ],
)
def test_bad_options_are_config_errors_naming_the_key(options, message):
    text = json.dumps({"backends": {"archive": {"type": "file", **options}}})

    with pytest.raises(ConfigError) as err:
        loads(text)

    assert "backends.archive" in str(err.value)
    assert message in str(err.value)


def test_sizes_are_written_in_human_units():
    config = loads("backends: {archive: {type: file, path: e.jsonl, max_bytes: 100MiB, keep: 5}}")

    assert config.backends["archive"].options.max_bytes == 100 * 1024 * 1024
