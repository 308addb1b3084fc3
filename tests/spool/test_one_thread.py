"""router/spool/one_thread.py: the spool's read thread, in place of a ThreadPoolExecutor."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from router.spool.one_thread import OneThread


async def test_calls_run_on_one_other_thread_in_order_and_answer_the_loop():
    thread = OneThread("test-reads")
    seen: list[tuple[int, str]] = []

    def call(n: int) -> int:
        time.sleep(0.001 * (5 - n))  # the earlier calls are the slower ones
        seen.append((n, threading.current_thread().name))
        return n * n

    try:
        assert await asyncio.gather(*(thread.run(call, n) for n in range(5))) == [0, 1, 4, 9, 16]
        assert [n for n, _ in seen] == [0, 1, 2, 3, 4]
        assert {name for _, name in seen} == {"test-reads"}
    finally:
        await asyncio.to_thread(thread.shutdown)


async def test_an_exception_reaches_the_awaiting_task_and_the_thread_goes_on():
    thread = OneThread("test-reads")

    def fails() -> None:
        raise ValueError("no such table")

    try:
        with pytest.raises(ValueError, match="no such table"):
            await thread.run(fails)
        assert await thread.run(len, "abc") == 3
    finally:
        await asyncio.to_thread(thread.shutdown)


async def test_a_cancelled_wait_leaves_the_call_to_finish_and_the_next_one_answered():
    thread = OneThread("test-reads")
    release = threading.Event()
    finished: list[str] = []

    def slow() -> str:
        release.wait(5)
        finished.append("slow")
        return "slow"

    try:
        waiter = asyncio.ensure_future(thread.run(slow))
        await asyncio.sleep(0.01)
        waiter.cancel()
        release.set()
        assert await thread.run(str.upper, "next") == "NEXT"
        assert finished == ["slow"] and waiter.cancelled()
    finally:
        await asyncio.to_thread(thread.shutdown)


async def test_shutting_down_a_thread_never_started_returns_and_later_calls_are_refused():
    thread = OneThread("test-reads")
    thread.shutdown()
    with pytest.raises(RuntimeError, match="after shutdown"):
        thread.run(len, "abc")
