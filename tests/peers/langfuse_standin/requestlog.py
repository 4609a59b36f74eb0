"""The request log: what clients sent, with every secret redacted before it is stored."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

REDACTED = "[REDACTED]"
# Bounds memory under a benchmark's load; far above what any test sends.
DEFAULT_MAX_ENTRIES = 10_000
# Headers that carry credentials whatever their value looks like.
_CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})


def redact_text(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return text


def redact_value(value: Any, secrets: list[str]) -> Any:
    """Replace every occurrence of a known secret inside a JSON-like value."""
    if isinstance(value, str):
        return redact_text(value, secrets)
    if isinstance(value, list):
        return [redact_value(item, secrets) for item in value]
    if isinstance(value, dict):
        return {
            redact_text(str(key), secrets): redact_value(item, secrets)
            for key, item in value.items()
        }
    return value


def redact_headers(headers: Iterable[tuple[str, str]], secrets: list[str]) -> dict[str, str]:
    """Headers with credentials replaced: the scheme of `Authorization` is kept (it tells
    Basic from Bearer), its value never is."""
    redacted: dict[str, str] = {}
    for name, value in headers:
        lowered = name.lower()
        if lowered in _CREDENTIAL_HEADERS:
            scheme = value.split(" ", 1)[0] if " " in value else ""
            redacted[lowered] = f"{scheme} {REDACTED}".strip()
        else:
            redacted[lowered] = redact_text(value, secrets)
    return redacted


@dataclass(frozen=True)
class LoggedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    public_key: str | None  # the Basic username the client presented (not a secret)
    body: Any  # decoded JSON (redacted) or None for binary bodies
    body_size: int
    status: int
    response: Any  # the JSON answer (redacted) or None

    def as_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "headers": self.headers,
            "publicKey": self.public_key,
            "body": self.body,
            "bodySize": self.body_size,
            "status": self.status,
            "response": self.response,
        }


class RequestLog:
    """Append-only (the oldest entries go past `max_entries`), thread-safe; redaction
    happens on the way in, so nothing secret is ever held here."""

    def __init__(
        self, secrets: Callable[[], list[str]], max_entries: int = DEFAULT_MAX_ENTRIES
    ) -> None:
        self._secrets = secrets
        self._lock = threading.Lock()
        self._entries: deque[LoggedRequest] = deque(maxlen=max_entries)

    def record(
        self,
        *,
        method: str,
        path: str,
        query: dict[str, str],
        headers: Iterable[tuple[str, str]],
        public_key: str | None,
        body: Any,
        body_size: int,
        status: int,
        response: Any = None,
    ) -> None:
        secrets = self._secrets()
        entry = LoggedRequest(
            method=method,
            path=path,
            query=redact_value(query, secrets),
            headers=redact_headers(headers, secrets),
            public_key=None if public_key is None else redact_text(public_key, secrets),
            body=redact_value(body, secrets),
            body_size=body_size,
            status=status,
            response=redact_value(response, secrets),
        )
        with self._lock:
            self._entries.append(entry)

    def entries(self) -> list[LoggedRequest]:
        with self._lock:
            return list(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
