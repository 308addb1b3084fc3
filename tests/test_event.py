"""Event stamping: uuids never repeat, not even across a fork."""

from __future__ import annotations

import os
import uuid

from router.event import (
    JSON_START,
    Event,
    RequestContext,
    as_to_json_writes,
    normalize_uuid,
    uuid_of_json,
)


def test_generated_uuids_are_valid_v4_and_unique():
    ids = [Event.new({}).uuid for _ in range(5000)]
    assert len(set(ids)) == 5000
    assert all(uuid.UUID(i).version == 4 for i in ids[:100])


def test_a_forked_child_does_not_repeat_its_parents_uuids():
    Event.new({})  # the parent has a pool of randomness in use
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next uuids and leave at once
        os.write(write, " ".join(Event.new({}).uuid for _ in range(50)).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = set(os.read(read, 65536).decode().split())
    parent = {Event.new({}).uuid for _ in range(50)}
    assert len(child) == 50 and not child & parent


def test_a_client_uuid_is_kept_in_canonical_form():
    given = "4D1B6F1A-0C2B-4C8F-9E7D-1234567890AB"
    assert Event.new({}, uuid=given).uuid == given.lower()
    assert normalize_uuid("not-a-uuid") is None


def test_uuid_forms_clients_send():
    canonical = "4d1b6f1a-0c2b-4c8f-9e7d-1234567890ab"
    assert normalize_uuid(canonical) == canonical
    assert normalize_uuid(canonical.replace("-", "")) == canonical
    # A trailing newline is not a UUID (a `$` anchor would let it through to UUID(), which
    # raises): the event gets a fresh uuid instead of failing the request.
    assert normalize_uuid(canonical + "\n") is None
    assert normalize_uuid(canonical.upper() + "\n") is None
    assert Event.new({}, uuid=canonical + "\n").uuid != canonical


def test_an_events_json_starts_with_its_uuid_which_is_read_off_the_front():
    event = Event.new({"a": 1}, name="x", source="posthog")
    assert event.to_json().startswith(JSON_START)
    assert uuid_of_json(event.to_json()) == event.uuid
    reordered = b'{"event":"beacon","uuid":"%s"}' % event.uuid.encode()
    assert uuid_of_json(reordered) == event.uuid  # another writer's key order: decoded


def test_a_batch_is_framed_as_to_json_writes_only_if_every_body_is():
    bodies = [Event.new({"n": n}).to_json() for n in range(3)]
    assert as_to_json_writes(bodies) and as_to_json_writes([])
    for damaged in (b'{"uuid":"truncated', b'{"event":"x","uuid":"y"}', bodies[0] + b" "):
        for at in range(4):
            assert not as_to_json_writes([*bodies[:at], damaged, *bodies[at:]])


def test_a_request_contexts_client_ip_is_worked_out_once_and_only_when_asked():
    asked: list[int] = []

    def lookup() -> str:
        asked.append(1)
        return "203.0.113.9"

    context = RequestContext(dnt=True, user_agent="curl/8", client_ip_of=lookup)
    assert asked == []  # most pipelines never ask: no lookup per request
    assert context.client_ip == "203.0.113.9" and context.client_ip == "203.0.113.9"
    assert asked == [1]
    assert "203.0.113.9" not in repr(context) and "curl" not in repr(context)
    assert RequestContext(client_ip="198.51.100.1").client_ip == "198.51.100.1"
