"""Deadline polling: the only way tests and launchers wait (no bare sleeps).

``wait_for(predicate, timeout, what)`` calls ``predicate`` until it returns something truthy
and returns that value. Exceptions raised by the predicate count as "not yet"; the last one is
reported when the deadline passes, together with ``what`` and the last falsy value, so a
timeout always says what it was waiting for and what it saw.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeout(TimeoutError):
    """A deadline passed; the message names what was awaited and what was last seen."""


def _describe(what: str, timeout: float, last: object, error: BaseException | None) -> str:
    parts = [f"timed out after {timeout:g}s waiting for {what}"]
    if error is not None:
        parts.append(f"last error: {type(error).__name__}: {error}")
    elif last is not None:
        parts.append(f"last value: {last!r}"[:500])
    return "; ".join(parts)


class _Deadline:
    """The bookkeeping both loops share: what was last seen, and how long to pause next
    (growing from ``interval`` to ``max_interval``, never past the deadline)."""

    def __init__(self, timeout: float, what: str, interval: float, max_interval: float) -> None:
        self.timeout = timeout
        self.what = what
        self.max_interval = max_interval
        self.deadline = time.monotonic() + timeout
        self.delay = interval
        self.last: object = None
        self.error: BaseException | None = None

    def saw_error(self, error: BaseException) -> None:
        self.error, self.last = error, None

    def saw_value(self, value: object) -> None:
        self.error, self.last = None, value

    def next_pause(self) -> float:
        """Seconds to pause before the next try; raises ``WaitTimeout`` once none are left."""
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise WaitTimeout(
                _describe(self.what, self.timeout, self.last, self.error)
            ) from self.error
        pause = min(self.delay, remaining)
        self.delay = min(self.delay * 1.5, self.max_interval)
        return pause


def wait_for(
    predicate: Callable[[], T],
    timeout: float,
    what: str,
    *,
    interval: float = 0.1,
    max_interval: float = 1.0,
    retry_on: tuple[type[BaseException], ...] = (Exception,),
) -> T:
    """Poll ``predicate`` until it returns a truthy value or ``timeout`` seconds pass."""
    deadline = _Deadline(timeout, what, interval, max_interval)
    while True:
        try:
            value = predicate()
        except retry_on as exc:
            deadline.saw_error(exc)
        else:
            if value:
                return value
            deadline.saw_value(value)
        time.sleep(deadline.next_pause())


async def async_wait_for(
    predicate: Callable[[], Awaitable[T]],
    timeout: float,  # noqa: ASYNC109 - a polling deadline is the point of this helper
    what: str,
    *,
    interval: float = 0.1,
    max_interval: float = 1.0,
    retry_on: tuple[type[BaseException], ...] = (Exception,),
) -> T:
    """``wait_for`` for coroutine predicates (``predicate`` is called, then awaited)."""
    deadline = _Deadline(timeout, what, interval, max_interval)
    while True:
        try:
            value = await predicate()
        except retry_on as exc:
            deadline.saw_error(exc)
        else:
            if value:
                return value
            deadline.saw_value(value)
        await asyncio.sleep(deadline.next_pause())
