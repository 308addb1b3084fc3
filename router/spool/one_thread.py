"""One thread that runs blocking calls for an event loop, lighter than a ThreadPoolExecutor.

``loop.run_in_executor`` makes a ``concurrent.futures.Future`` per call (a ``Condition``, its
lock, the waiters list) and chains an asyncio future to it; on the delivery process's spool
reads (every batch read, and a look for new rows after every group commit) that came to ~50k
instructions a call (bench/README.md, "the delivery role's commits"). Here a call is one
asyncio future, one queue put and, from the thread, one ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_Call = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[..., Any], tuple[Any, ...]]


class OneThread:
    """Runs ``fn(*args)`` on its own thread, one call after another, in the order asked."""

    def __init__(self, name: str) -> None:
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._started = self._shut = False

    def run(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """``fn(*args)`` on the thread; await the result (or its exception). Cancelling the
        future does not stop a call already running, as with ``run_in_executor``."""
        if self._shut:  # as an executor refuses: nothing would ever answer
            raise RuntimeError(f"{self._thread.name}: run() after shutdown()")
        if not self._started:
            self._started = True
            self._thread.start()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._calls.put((loop, future, fn, args))
        return future

    def shutdown(self) -> None:
        """Finish the calls asked for, then stop the thread (blocking: call it off the loop,
        or once nothing is queued)."""
        self._shut = True
        if self._started:
            self._calls.put(None)
            self._thread.join()

    def _serve(self) -> None:
        while (call := self._calls.get()) is not None:
            loop, future, fn, args = call
            try:
                result, error = fn(*args), None
            except BaseException as exc:  # handed to the awaiting task, as an executor does
                result, error = None, exc
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: no one waits
                loop.call_soon_threadsafe(settle, future, result, error)


def settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    """Resolve ``future`` on its loop, unless its waiter was cancelled (a client that left)."""
    if not future.done():
        future.set_exception(error) if error is not None else future.set_result(result)
