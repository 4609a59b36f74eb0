"""Small value helpers shared by the ingestion paths: JSON decoding, timestamps, ids."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any


def decode_json_or_raw(value: Any) -> Any:
    """JSON-decode a string attribute, keeping the raw string when it is not JSON.

    Langfuse SDKs JSON-encode inputs, outputs and metadata values but send a plain Python
    `str` as is; the server tries JSON first and falls back to the raw text.
    """
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def decode_io(value: Any) -> Any:
    """Decode an observation input/output attribute: JSON objects and arrays become
    structures; anything else stays the string that was sent. The v5 SDK sends a Python
    `str` raw, so an answer "4" must stay the text "4", not become a number."""
    decoded = decode_json_or_raw(value)
    return decoded if isinstance(decoded, dict | list) else value


def iso_from_unix_nanos(nanos: int) -> str:
    """OTLP carries times as Unix nanoseconds; the API answers ISO-8601 with milliseconds."""
    moment = datetime.fromtimestamp(nanos / 1e9, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def now_iso() -> str:
    return datetime.now(tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(value: Any) -> datetime | None:
    """Parse an ISO-8601 timestamp as sent by SDKs (with `Z` or an offset); None if unparsable."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def normalise_iso(value: Any) -> str | None:
    """Re-render a client timestamp the way the API returns it (UTC, milliseconds, `Z`)."""
    parsed = parse_iso(value)
    if parsed is None:
        return None
    return parsed.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_id() -> str:
    return str(uuid.uuid4())
