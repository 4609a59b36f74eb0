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
    deadline = time.monotonic() + timeout
    last: object = None
    error: BaseException | None = None
    delay = interval
    while True:
        try:
            value = predicate()
        except retry_on as exc:
            error, last = exc, None
        else:
            if value:
                return value
            error, last = None, value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise WaitTimeout(_describe(what, timeout, last, error)) from error
        time.sleep(min(delay, remaining))
        delay = min(delay * 1.5, max_interval)


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
    deadline = time.monotonic() + timeout
    last: object = None
    error: BaseException | None = None
    delay = interval
    while True:
        try:
            value = await predicate()
        except retry_on as exc:
            error, last = exc, None
        else:
            if value:
                return value
            error, last = None, value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise WaitTimeout(_describe(what, timeout, last, error)) from error
        await asyncio.sleep(min(delay, remaining))
        delay = min(delay * 1.5, max_interval)
