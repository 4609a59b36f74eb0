"""
title: Langfuse Tracing
author: openwebui-langfuse
version: 0.1.0
license: MIT
description: Open WebUI chats to Langfuse over OTLP: a trace per chat, a generation per turn.
"""

# This file is loaded as a module of its own by two runtimes, so it must stay a single
# self-contained file:
#   - the open-webui Pipelines server, which instantiates `Pipeline` (a filter pipeline);
#   - Open WebUI itself, as a Filter Function (Admin > Functions), which instantiates `Filter`.
#     Open WebUI picks a function's type from the first class it finds among Pipe, Filter,
#     Action and Event, so no class of those other names may be defined here.
# It deliberately has no frontmatter dependency line: both runtimes pip-install those (from the
# internet) on every load.
#
# Shape of the work:
#   inlet  -> remember when and what was asked (a small record in a bounded map)
#   outlet -> complete the record and put it on the exporter's queue (no I/O)
#   worker -> a background thread per exporter encodes OTLP/JSON and posts batches to Langfuse
# The exporter is rebuilt whenever the valves change; nothing is shared across instances. It is
# made lazily by the first request that needs it and flushes on its own (no hook must run).

import asyncio
import contextlib
import gzip
import hashlib
import json
import logging
import os
import threading
import time
import urllib.parse
import uuid
import weakref
from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
from pydantic import BaseModel, Field

FILTER_VERSION = "0.1.0"
OTLP_TRACES_PATH = "/api/public/otel/v1/traces"
SCOPE_NAME = "openwebui-langfuse-filter"

# Langfuse accepts up to 4.5 MB per request; stay well below it after compression is undone.
MAX_REQUEST_BYTES = 3_000_000
# One huge prompt must not make a span unsendable; longer text is cut with a marker.
MAX_TEXT_CHARS = 500_000
# Inline media (base64 data URLs) would dominate every payload; Langfuse gets a placeholder.
MAX_INLINE_DATA_URL_CHARS = 256
RETRY_BACKOFF_MAX_SECONDS = 30.0
MODEL_PARAMETER_KEYS = (
    "temperature",
    "top_p",
    "top_k",
    "max_tokens",
    "max_completion_tokens",
    "frequency_penalty",
    "presence_penalty",
    "seed",
    "stop",
    "reasoning_effort",
)

ConversationKind = Literal["chat", "temporary-chat", "channel", "api"]
TRACE_NAMES: dict[ConversationKind, str] = {
    "chat": "open-webui chat",
    "temporary-chat": "open-webui temporary chat",
    "channel": "open-webui channel",
    "api": "open-webui api request",
}
USER_TURN_NAME = "assistant response"

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# What one observation is, from inlet to export
# --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Observation:
    """One LLM call seen by the filter: a user turn (inlet + outlet) or a background task."""

    trace_key: str
    kind: ConversationKind
    session_id: str | None
    user_id: str | None
    tags: tuple[str, ...]
    name: str
    start_ns: int
    model: str | None
    model_id: str | None
    model_name: str | None
    chat_id: str | None
    message_id: str | None
    task: str | None
    stream: bool | None
    capture_content: bool
    model_parameters: dict[str, Any] | None = None
    messages: list[Any] | None = None
    end_ns: int | None = None
    output: Any = None
    usage: Any = None
    level: str | None = None
    status_message: str | None = None
    inlet_seen: bool = True


# --------------------------------------------------------------------------------------------
# OTLP/JSON encoding (runs on the worker thread, never on the chat path)
# --------------------------------------------------------------------------------------------


def trace_id_for(trace_key: str) -> str:
    """A stable 32-hex trace id per conversation, so no chat -> trace map has to be kept."""
    return hashlib.sha256(trace_key.encode("utf-8")).hexdigest()[:32]


def otlp_value(value: Any) -> dict[str, Any]:
    """Encode one attribute value the way the OTLP JSON mapping does."""
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, list | tuple):
        return {"arrayValue": {"values": [otlp_value(item) for item in value]}}
    return {"stringValue": str(value)}


def otlp_attributes(attributes: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [
        {"key": key, "value": otlp_value(value)}
        for key, value in attributes.items()
        if value is not None
    ]


def cut(text: str) -> str:
    if len(text) <= MAX_TEXT_CHARS:
        return text
    return text[:MAX_TEXT_CHARS] + f"... [truncated {len(text) - MAX_TEXT_CHARS} characters]"


def to_json(value: Any) -> str:
    return cut(json.dumps(value, ensure_ascii=False, default=str))


def without_inline_media(value: Any) -> Any:
    """Replace long `data:` URLs (pasted images, files) by a short placeholder, copying lazily."""
    if isinstance(value, str):
        if value.startswith("data:") and len(value) > MAX_INLINE_DATA_URL_CHARS:
            media_type = value[5:].split(";", 1)[0].split(",", 1)[0] or "unknown"
            return f"[inline {media_type} omitted: {len(value)} characters]"
        return value
    if isinstance(value, list):
        items = [without_inline_media(item) for item in value]
        return items if any(a is not b for a, b in zip(items, value, strict=True)) else value
    if isinstance(value, dict):
        changed = {key: without_inline_media(item) for key, item in value.items()}
        return changed if any(changed[k] is not value[k] for k in value) else value
    return value


def message_text(message: Any) -> str | None:
    """The text of a chat message whose content is a string or a list of OpenAI content parts."""
    if not isinstance(message, dict):
        return None
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        ]
        return "\n".join(texts)
    return None


def _count(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value) if value >= 0 else None


def _first_count(usage: Mapping[str, Any], *keys: str) -> int | None:
    for key in keys:
        found = _count(usage.get(key))
        if found is not None:
            return found
    return None


def _detail_count(usage: Mapping[str, Any], parents: tuple[str, ...], key: str) -> int:
    for parent in parents:
        details = usage.get(parent)
        if isinstance(details, Mapping):
            found = _count(details.get(key))
            if found:
                return found
    return 0


def usage_and_cost(usage: Any) -> tuple[dict[str, int] | None, dict[str, float] | None]:
    """Map the usage Open WebUI puts on the assistant message to Langfuse usage/cost details.

    Langfuse prices each usage key with the model price of the same key, so the keys are
    `input`/`output` (not `prompt_tokens` or `input_tokens`), with cached and reasoning tokens
    split out of them the way Langfuse itself splits an OpenAI usage object.
    """
    if not isinstance(usage, Mapping):
        return None, None
    prompt = _first_count(usage, "prompt_tokens", "input_tokens", "prompt_eval_count")
    completion = _first_count(usage, "completion_tokens", "output_tokens", "eval_count")
    details: dict[str, int] = {}
    if prompt is not None:
        cached = _detail_count(
            usage, ("prompt_tokens_details", "input_tokens_details"), "cached_tokens"
        )
        cached = min(cached, prompt)
        details["input"] = prompt - cached
        if cached:
            details["input_cached_tokens"] = cached
    if completion is not None:
        reasoning = _detail_count(
            usage, ("completion_tokens_details", "output_tokens_details"), "reasoning_tokens"
        )
        reasoning = min(reasoning, completion)
        details["output"] = completion - reasoning
        if reasoning:
            details["output_reasoning_tokens"] = reasoning
    if details:
        total = _count(usage.get("total_tokens"))
        details["total"] = total if total is not None else (prompt or 0) + (completion or 0)
    cost: dict[str, float] | None = None
    reported = usage.get("cost")
    if isinstance(reported, int | float) and not isinstance(reported, bool) and reported >= 0:
        cost = {"total": float(reported)}
    return details or None, cost


def span_attributes(obs: Observation) -> dict[str, Any]:
    """Langfuse's OTLP attribute mapping (langfuse.* plus user.id / session.id)."""
    attributes: dict[str, Any] = {
        "langfuse.trace.name": TRACE_NAMES[obs.kind],
        "langfuse.trace.tags": list(obs.tags),
        "user.id": obs.user_id,
        "session.id": obs.session_id,
        "langfuse.trace.metadata.source": json.dumps("open-webui"),
        "langfuse.trace.metadata.conversation": json.dumps(obs.kind),
        "langfuse.observation.type": "generation",
        "langfuse.observation.model.name": obs.model,
        "langfuse.observation.level": obs.level,
        "langfuse.observation.status_message": obs.status_message,
    }
    if obs.chat_id:
        attributes["langfuse.trace.metadata.chat_id"] = json.dumps(obs.chat_id)
    if obs.model_parameters:
        attributes["langfuse.observation.model.parameters"] = to_json(obs.model_parameters)
    metadata = {
        "interface": "open-webui",
        "filter_version": FILTER_VERSION,
        "chat_id": obs.chat_id,
        "message_id": obs.message_id,
        "task": obs.task,
        "stream": obs.stream,
        "model_id": obs.model_id,
        "model_name": obs.model_name,
        "inlet_seen": obs.inlet_seen,
    }
    for key, value in metadata.items():
        if value is not None:
            attributes[f"langfuse.observation.metadata.{key}"] = json.dumps(value)
    usage_details, cost_details = usage_and_cost(obs.usage)
    if usage_details:
        attributes["langfuse.observation.usage_details"] = json.dumps(usage_details)
    if cost_details:
        attributes["langfuse.observation.cost_details"] = json.dumps(cost_details)
    if obs.capture_content:
        if obs.messages is not None:
            attributes["langfuse.observation.input"] = to_json(without_inline_media(obs.messages))
        output = obs.output
        if output is not None:
            attributes["langfuse.observation.output"] = (
                cut(output) if isinstance(output, str) else to_json(output)
            )
        if obs.task is None:
            # The chat's own turns (never its background tasks) define what the trace shows as
            # its input and output: the last question and answer.
            last_question = None
            for message in reversed(obs.messages or []):
                if isinstance(message, dict) and message.get("role") == "user":
                    last_question = message_text(message)
                    break
            if last_question is not None:
                attributes["langfuse.trace.input"] = cut(last_question)
            if isinstance(output, str):
                attributes["langfuse.trace.output"] = cut(output)
    return attributes


def encode_span(obs: Observation) -> str:
    end_ns = obs.end_ns if obs.end_ns is not None else obs.start_ns
    span = {
        "traceId": trace_id_for(obs.trace_key),
        "spanId": os.urandom(8).hex(),
        "name": obs.name,
        "kind": 1,
        "startTimeUnixNano": str(obs.start_ns),
        "endTimeUnixNano": str(max(end_ns, obs.start_ns)),
        "attributes": otlp_attributes(span_attributes(obs)),
        "status": {},
    }
    return json.dumps(span, ensure_ascii=False, separators=(",", ":"))


# --------------------------------------------------------------------------------------------
# The exporter: one per valves configuration, with its own queue, worker thread and HTTP client
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExporterConfig:
    host: str
    public_key: str
    secret_key: str = field(repr=False)
    environment: str = ""
    release: str = ""
    flush_interval: float = 1.0
    max_batch_size: int = 200
    max_queue_size: int = 10_000
    timeout: float = 10.0
    debug: bool = False

    @property
    def endpoint(self) -> str:
        return self.host.rstrip("/") + OTLP_TRACES_PATH


def sanitized_environment(value: str) -> str:
    """Langfuse accepts `^(?!langfuse)[a-z0-9_-]+$`; anything else would be rejected."""
    cleaned = "".join(c if c.isascii() and (c.isalnum() or c in "_-") else "-" for c in value)
    cleaned = cleaned.lower().strip("-")[:40]
    return "" if cleaned.startswith("langfuse") else cleaned


class RetryableExportError(Exception):
    """Langfuse could not take the batch now (unreachable, timeout, 5xx, 429): try again."""


class RejectedExportError(Exception):
    """Langfuse refused the batch for good (bad keys, malformed request): drop it."""


class LangfuseExporter:
    """Batches finished observations and posts them to Langfuse's OTLP endpoint.

    `submit` is the only method on the chat path: an append to a bounded deque. A full queue
    drops its oldest entry (counted in `dropped`). Delivery problems are logged when they start
    and when they end, never per message; retryable failures keep the batch and back off.
    """

    def __init__(self, config: ExporterConfig) -> None:
        self.config = config
        self.sent_spans = 0
        self.dropped = 0
        self.rejected_spans = 0
        self._queue: deque[Observation] = deque(maxlen=max(1, config.max_queue_size))
        self._batch_size = max(1, config.max_batch_size)
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._idle = threading.Condition()
        self._busy = False
        self._unsent: list[bytes] = []
        self._failing_since: float | None = None
        self._failure_reason = ""
        self._drops_reported = 0
        self._dropping = False
        self._client: httpx.Client | None = None
        # Parsed once: a str URL would be re-parsed by httpx on every request.
        self._endpoint = httpx.URL(config.endpoint)
        self._thread = threading.Thread(
            target=self._run, name=f"langfuse-export-{config.public_key[:12]}", daemon=True
        )
        self._thread.start()

    # -- chat path --------------------------------------------------------------------------

    def submit(self, obs: Observation) -> None:
        queue = self._queue
        if len(queue) == queue.maxlen:
            self.dropped += 1  # deque(maxlen) evicts the oldest entry on append
        queue.append(obs)
        if len(queue) >= self._batch_size:
            self._wake.set()

    # -- control ----------------------------------------------------------------------------

    def flush(self, timeout: float) -> bool:
        """Wait until everything queued so far was delivered or given up; False on timeout."""
        deadline = time.monotonic() + max(0.0, timeout)
        self._wake.set()
        with self._idle:
            while self._queue or self._unsent or self._busy:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._thread.is_alive():
                    return False
                self._wake.set()
                self._idle.wait(min(remaining, 0.05))
        return True

    def close(self, timeout: float) -> None:
        """Flush within `timeout` seconds, then stop the worker; what is left is reported lost."""
        if self._closing.is_set():
            return
        delivered = self.flush(timeout)
        self._closing.set()
        self._wake.set()
        # A request in flight finishes on its own (the thread is a daemon and exits after it);
        # waiting for it here would stretch the bound by the HTTP timeout.
        self._thread.join(timeout=1.0)
        left = len(self._queue) + sum(payload_span_count(p) for p in self._unsent)
        if not delivered and left:
            log.warning(
                "Langfuse exporter for %s closed with undelivered spans (%s); %d spans lost",
                self.config.host,
                self._failure_reason or "flush timed out",
                left,
            )

    # -- worker -----------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._closing.is_set():
                self._wake.wait(self.config.flush_interval)
                self._wake.clear()
                self._drain()
        finally:
            if self._client is not None:
                self._client.close()
            with self._idle:
                self._idle.notify_all()

    def _drain(self) -> None:
        backoff = 0.5
        while not self._closing.is_set():
            with self._idle:
                self._busy = True
            try:
                if not self._unsent:
                    self._unsent = self._encode_batches()
                if not self._unsent:
                    return
                self._send_one(self._unsent[0])
                self._unsent.pop(0)
                backoff = 0.5
            except RetryableExportError as exc:
                self._note_failure(str(exc))
                self._report_drops()
                # Interruptible wait: close() ends it at once.
                if self._closing.wait(backoff):
                    return
                backoff = min(backoff * 2, RETRY_BACKOFF_MAX_SECONDS)
            except RejectedExportError as exc:
                self._note_failure(str(exc))
                self._unsent.pop(0)
            except Exception as exc:  # never let the worker die
                log.warning("Langfuse export failed unexpectedly: %s", type(exc).__name__)
                if self._unsent:
                    self._unsent.pop(0)
            finally:
                with self._idle:
                    self._busy = False
                    self._idle.notify_all()

    def _encode_batches(self) -> list[bytes]:
        spans: list[str] = []
        while len(spans) < self._batch_size:
            try:
                obs = self._queue.popleft()
            except IndexError:
                break
            try:
                spans.append(encode_span(obs))
            except Exception as exc:
                log.warning("dropping one observation that could not be encoded: %s", exc)
        self._report_drops()
        if not spans:
            return []
        batches: list[bytes] = []
        current: list[str] = []
        size = 0
        for span in spans:
            if current and size + len(span) > MAX_REQUEST_BYTES:
                batches.append(self._envelope(current))
                current, size = [], 0
            current.append(span)
            size += len(span)
        batches.append(self._envelope(current))
        return batches

    def _envelope(self, spans: list[str]) -> bytes:
        resource: dict[str, Any] = {"service.name": "open-webui-pipelines"}
        environment = sanitized_environment(self.config.environment)
        if environment:
            resource["langfuse.environment"] = environment
        if self.config.release:
            resource["langfuse.release"] = self.config.release
        scope = {
            "name": SCOPE_NAME,
            "version": FILTER_VERSION,
            "attributes": otlp_attributes({"public_key": self.config.public_key}),
        }
        compact = (",", ":")
        # Spans are pre-encoded strings; splice them in rather than decoding them again.
        body = (
            '{"resourceSpans":[{"resource":'
            + json.dumps({"attributes": otlp_attributes(resource)}, separators=compact)
            + ',"scopeSpans":[{"scope":'
            + json.dumps(scope, separators=compact)
            + ',"spans":['
            + ",".join(spans)
            + "]}]}]}"
        )
        return gzip.compress(body.encode("utf-8"), compresslevel=5)

    def _http(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(
                auth=httpx.BasicAuth(self.config.public_key, self.config.secret_key),
                timeout=self.config.timeout,
                headers={
                    "Content-Type": "application/json",
                    "Content-Encoding": "gzip",
                    "User-Agent": f"{SCOPE_NAME}/{FILTER_VERSION}",
                    "x-langfuse-sdk-name": SCOPE_NAME,
                    "x-langfuse-sdk-version": FILTER_VERSION,
                    "x-langfuse-public-key": self.config.public_key,
                },
            )
        return self._client

    def _send_one(self, payload: bytes) -> None:
        try:
            response = self._http().post(self._endpoint, content=payload)
        except httpx.TimeoutException as exc:
            raise RetryableExportError(f"timeout after {self.config.timeout}s") from exc
        except httpx.HTTPError as exc:
            raise RetryableExportError(f"unreachable ({type(exc).__name__})") from exc
        status = response.status_code
        if status in (408, 429) or status >= 500:
            raise RetryableExportError(f"HTTP {status}")
        if status >= 300:
            spans = payload_span_count(payload)
            self.rejected_spans += spans
            hint = " (check public/secret key and host)" if status in (401, 403) else ""
            raise RejectedExportError(f"HTTP {status}{hint}; {spans} spans rejected")
        self.sent_spans += payload_span_count(payload)
        self._note_success()
        if self.config.debug:
            log.info("Langfuse accepted a batch (%d bytes gzip)", len(payload))

    # -- outage bookkeeping: one line when it starts, one when it ends -----------------------

    def _note_failure(self, reason: str) -> None:
        if self._failing_since is None:
            self._failing_since = time.monotonic()
            self._failure_reason = reason
            log.warning(
                "Langfuse export to %s failing: %s; chats continue, spans are kept and retried",
                self.config.endpoint,
                reason,
            )
        elif self.config.debug:
            log.info("Langfuse export still failing: %s", reason)

    def _note_success(self) -> None:
        if self._failing_since is not None:
            log.warning(
                "Langfuse export to %s recovered after %.1fs (was: %s)",
                self.config.endpoint,
                time.monotonic() - self._failing_since,
                self._failure_reason,
            )
            self._failing_since = None
            self._failure_reason = ""
        self._report_drops()

    def _report_drops(self) -> None:
        """One line when the queue starts dropping, one with the count once it has drained."""
        if self.dropped > self._drops_reported and not self._dropping:
            self._dropping = True
            log.warning(
                "Langfuse export queue full (%d spans): dropping the oldest ones",
                self._queue.maxlen,
            )
        elif self._dropping and not self._queue and self._failing_since is None:
            log.warning(
                "Langfuse export queue drained; %d spans were dropped",
                self.dropped - self._drops_reported,
            )
            self._drops_reported = self.dropped
            self._dropping = False


def payload_span_count(payload: bytes) -> int:
    # Only called per batch on the worker; counting `"spanId"` avoids decoding the spans.
    return gzip.decompress(payload).count(b'"spanId":')


# --------------------------------------------------------------------------------------------
# The Pipelines filter
# --------------------------------------------------------------------------------------------


class PendingTurns:
    """User turns between inlet and outlet, bounded by count and age (oldest first).

    A turn is found again by its message id. Plain API calls have none at inlet time (Open
    WebUI mints the outlet's id later), so those wait in a first-in-first-out line per
    (user, model) and an outlet without a known id takes the oldest of its line.
    """

    def __init__(self) -> None:
        self._turns: OrderedDict[str, Observation] = OrderedDict()
        self._lines: dict[str, deque[str]] = {}
        self._line_of: dict[str, str] = {}
        self._sequence = 0

    def __len__(self) -> int:
        return len(self._turns)

    def put(self, message_id: str, obs: Observation) -> Observation | None:
        """Remember a turn; return a previous one with the same id (a retried request)."""
        key = "id:" + message_id
        previous = self._remove(key)
        self._turns[key] = obs
        return previous

    def put_in_line(self, line: str, obs: Observation) -> None:
        self._sequence += 1
        key = f"#{self._sequence}"
        self._turns[key] = obs
        self._line_of[key] = line
        self._lines.setdefault(line, deque()).append(key)

    def pop(self, message_id: str) -> Observation | None:
        return self._remove("id:" + message_id)

    def pop_from_line(self, line: str) -> Observation | None:
        keys = self._lines.get(line)
        if not keys:
            return None
        return self._remove(keys[0])

    def evict(self, now_ns: int, max_age_ns: int, max_count: int) -> list[Observation]:
        evicted: list[Observation] = []
        turns = self._turns
        while turns:
            key, oldest = next(iter(turns.items()))
            if len(turns) <= max_count and now_ns - oldest.start_ns <= max_age_ns:
                break
            self._remove(key)
            evicted.append(oldest)
        return evicted

    def drain(self) -> list[Observation]:
        turns = list(self._turns.values())
        self._turns.clear()
        self._lines.clear()
        self._line_of.clear()
        return turns

    def _remove(self, key: str) -> Observation | None:
        obs = self._turns.pop(key, None)
        line = self._line_of.pop(key, None)
        if line is not None:
            keys = self._lines[line]
            # Lines are first-in-first-out and eviction takes the oldest, so the key is
            # almost always the head; remove() covers a retried request.
            if keys[0] == key:
                keys.popleft()
            else:
                keys.remove(key)
            if not keys:
                del self._lines[line]
        return obs


def prompt_to_keep(messages: Any) -> list[Any] | None:
    """A shallow copy of the prompt (the caller may reuse its list) without inline media.

    Pasted images arrive as base64 data URLs inside list contents; dropping them here keeps a
    turn waiting for its outlet, or queued during an outage, at the size of its text.
    """
    if not isinstance(messages, list):
        return None
    return [
        without_inline_media(message)
        if isinstance(message, dict) and isinstance(message.get("content"), list)
        else message
        for message in messages
    ]


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


# Open WebUI's chat id prefixes: temporary chats (`local:` before 0.10) are never stored,
# channel conversations are group chats; any other non-empty id is a saved chat.
TEMPORARY_CHAT_PREFIXES = ("temporary:", "local:")
CHANNEL_PREFIX = "channel:"


def _is_saved(chat_id: str | None) -> bool:
    if not chat_id or chat_id == "local":
        return False
    return not chat_id.startswith((*TEMPORARY_CHAT_PREFIXES, CHANNEL_PREFIX))


def exporter_config(valves: Any) -> tuple[ExporterConfig | None, str]:
    """The exporter settings the valves ask for, or None and why tracing stays off."""
    public_key, secret_key = valves.public_key.strip(), valves.secret_key.strip()
    host = valves.host.strip()
    if not (public_key and secret_key and host):
        return None, "public_key, secret_key or host not set"
    try:
        parts = urllib.parse.urlsplit(host)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
        httpx.URL(host.rstrip("/") + OTLP_TRACES_PATH)
    except (ValueError, httpx.InvalidURL):
        valid = False
    if not valid:
        return None, f"host {host[:200]!r} is not an http(s) URL"
    return (
        ExporterConfig(
            host=host,
            public_key=public_key,
            secret_key=secret_key,
            environment=valves.environment,
            release=valves.release,
            flush_interval=min(max(valves.flush_interval_seconds, 0.05), 60.0),
            max_batch_size=max(valves.max_batch_size, 1),
            max_queue_size=max(valves.max_queue_size, 1),
            timeout=min(max(valves.request_timeout_seconds, 0.1), 120.0),
            debug=valves.debug,
        ),
        "",
    )


class Pipeline:
    class Valves(BaseModel):
        pipelines: list[str] = Field(
            default=["*"], description="Model ids this filter applies to; ['*'] means all."
        )
        priority: int = Field(default=0, description="Filter order in Open WebUI (lower first).")
        public_key: str = Field(default="", description="Langfuse project public key (pk-lf-…).")
        secret_key: str = Field(default="", description="Langfuse project secret key (sk-lf-…).")
        host: str = Field(
            default="https://cloud.langfuse.com", description="Langfuse base URL, no path."
        )
        tags: list[str] = Field(default=["open-webui"], description="Tags put on every trace.")
        use_model_name_instead_of_id_for_generation: bool = Field(
            default=False,
            description="Report the model's display name instead of its id (decides price match).",
        )
        user_identity: Literal["id", "email"] = Field(
            default="id", description="What identifies the user in Langfuse: 'id' or 'email'."
        )
        capture_content: bool = Field(
            default=True, description="Send prompts and answers; off sends only usage and timing."
        )
        capture_temporary_chat_content: bool = Field(
            default=False,
            description="Send prompts and answers of temporary (unsaved) chats too.",
        )
        environment: str = Field(
            default="", description="Langfuse environment (lowercase letters, digits, - and _)."
        )
        release: str = Field(default="", description="Langfuse release label.")
        flush_interval_seconds: float = Field(
            default=1.0, description="Longest time a finished turn waits before it is sent."
        )
        max_batch_size: int = Field(default=200, description="Spans per export request.")
        max_queue_size: int = Field(
            default=10_000, description="Spans kept while Langfuse is unreachable; oldest dropped."
        )
        request_timeout_seconds: float = Field(
            default=10.0, description="HTTP timeout of one export request."
        )
        flush_timeout_seconds: float = Field(
            default=5.0, description="Time bound for flushing on shutdown and valves updates."
        )
        pending_turn_timeout_seconds: float = Field(
            default=900.0,
            description="A turn whose outlet never comes is sent unfinished after this long.",
        )
        max_pending_turns: int = Field(
            default=2_000, description="Turns awaiting their outlet, at most."
        )
        debug: bool = Field(
            default=False, description="Log payloads and export details (includes prompts)."
        )

    def __init__(self) -> None:
        self.type = "filter"
        self.name = "Langfuse Tracing"
        # Environment variables only seed the first valves, like other Pipelines filters do;
        # valves stored by Pipelines (or pushed by the operator) win over them.
        self.valves = self.Valves(
            public_key=os.environ.get("LANGFUSE_PUBLIC_KEY", ""),
            secret_key=os.environ.get("LANGFUSE_SECRET_KEY", ""),
            host=os.environ.get("LANGFUSE_BASE_URL")
            or os.environ.get("LANGFUSE_HOST")
            or "https://cloud.langfuse.com",
        )
        self._exporter: LangfuseExporter | None = None
        self._exporter_valves: Pipeline.Valves | None = None
        self._pending = PendingTurns()
        self._error_counts: dict[str, int] = {}
        self._disabled_reason = ""

    # -- lifecycle hooks called by Pipelines ------------------------------------------------

    # Pipelines aborts its own start (and every later restart: valves are persisted) when
    # on_startup raises, and answers a valves update with 500 when on_valves_updated does;
    # so these hooks log their problems and leave tracing off instead of raising.

    async def on_startup(self) -> None:
        try:
            self._sync_exporter()
        except Exception as exc:
            self._report_error("on_startup", exc)

    async def on_valves_updated(self) -> None:
        try:
            old = self._sync_exporter(close_old=False)
        except Exception as exc:
            self._report_error("on_valves_updated", exc)
            return
        if old is not None:
            # Flush what the old keys were collecting without holding the event loop.
            await _in_thread(old.close, self.valves.flush_timeout_seconds)

    async def on_shutdown(self) -> None:
        exporter = self._exporter
        self._exporter = None
        self._exporter_valves = None
        if exporter is None:
            return
        now = time.time_ns()
        for obs in self._pending.drain():
            exporter.submit(self._unfinished(obs, now))
        await _in_thread(exporter.close, self.valves.flush_timeout_seconds)

    # -- chat hooks -------------------------------------------------------------------------

    async def inlet(
        self, body: dict[str, Any], user: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        try:
            self._on_inlet(body, user)
        except Exception as exc:
            self._report_error("inlet", exc)
        return body

    async def outlet(
        self, body: dict[str, Any], user: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        try:
            self._on_outlet(body, user)
        except Exception as exc:
            self._report_error("outlet", exc)
        return body

    # -- internals --------------------------------------------------------------------------

    def _sync_exporter(self, close_old: bool = True) -> LangfuseExporter | None:
        """Make the exporter match the valves; return the replaced exporter if not closed."""
        valves = self.valves
        self._exporter_valves = valves
        old = self._exporter
        config, problem = exporter_config(valves)
        if old is not None and old.config == config:
            return None
        self._exporter = LangfuseExporter(config) if config is not None else None
        if config is None:
            if problem != self._disabled_reason:  # once per reason, not per chat
                log.warning("Langfuse tracing is off: %s", problem)
                self._disabled_reason = problem
        else:
            self._disabled_reason = ""
            log.info("Langfuse tracing to %s (public key %s)", config.host, config.public_key)
        if old is not None and close_old:
            # Not on the event loop's critical path: a background thread does the bounded flush.
            threading.Thread(
                target=old.close, args=(valves.flush_timeout_seconds,), daemon=True
            ).start()
            return None
        return old

    def _current_exporter(self) -> LangfuseExporter | None:
        if self._exporter_valves is not self.valves:
            # Valves replaced without on_valves_updated (e.g. set directly): follow them.
            self._sync_exporter()
        return self._exporter

    def _on_inlet(self, body: Any, user: Any, fallback_metadata: Any = None) -> None:
        """Record a turn's start. `fallback_metadata` stands in for `body["metadata"]` when the
        body has none (a Filter Function gets it as `__metadata__` too)."""
        exporter = self._current_exporter()
        if exporter is None or not isinstance(body, dict):
            return
        valves = self.valves
        if valves.debug:
            log.info("inlet body: %s", to_json(body))
        metadata = _metadata_of(body, fallback_metadata)
        now = time.time_ns()
        chat_id = _str_or_none(metadata.get("chat_id")) or _str_or_none(body.get("chat_id"))
        message_id = _str_or_none(metadata.get("message_id"))
        task = _str_or_none(metadata.get("task"))
        obs = self._observation(body, metadata, user, chat_id, message_id, task, now)

        if task is not None:
            # Open WebUI runs only the inlet for background tasks (titles, tags, follow-ups):
            # there is no outlet to wait for, so the task is recorded now.
            obs.end_ns = now
            exporter.submit(obs)
        else:
            if message_id is not None:
                replaced = self._pending.put(message_id, obs)
                if replaced is not None:
                    exporter.submit(self._unfinished(replaced, now))
            else:
                line = self._line(chat_id, obs.user_id, obs.model_id)
                self._pending.put_in_line(line, obs)
        for stale in self._pending.evict(
            now,
            int(valves.pending_turn_timeout_seconds * 1e9),
            max(valves.max_pending_turns, 1),
        ):
            exporter.submit(self._unfinished(stale, now))

    def _on_outlet(self, body: Any, user: Any, fallback_metadata: Any = None) -> None:
        """Complete a turn and queue it (no I/O). Body fields win over `fallback_metadata`."""
        exporter = self._current_exporter()
        if exporter is None or not isinstance(body, dict):
            return
        if self.valves.debug:
            log.info("outlet body: %s", to_json(body))
        now = time.time_ns()
        metadata = _metadata_of(body, fallback_metadata)
        chat_id = _str_or_none(body.get("chat_id")) or _str_or_none(metadata.get("chat_id"))
        message_id = _str_or_none(body.get("id")) or _str_or_none(metadata.get("message_id"))
        messages = body.get("messages")
        if not isinstance(messages, list):
            messages = []
        answer: Any = None
        prompt_end = len(messages)
        for index in range(len(messages) - 1, -1, -1):
            message = messages[index]
            if isinstance(message, dict) and message.get("role") == "assistant":
                answer = message
                prompt_end = index
                break
        user_id = self._user_id(user)
        model_id = _str_or_none(body.get("model"))
        prompt = messages[:prompt_end]
        obs = self._pending.pop(message_id) if message_id is not None else None
        if obs is None and not _is_saved(chat_id):
            # API calls reach the outlet under an id Open WebUI mints after the inlet.
            obs = self._pending.pop_from_line(self._line(chat_id, user_id, model_id))
        if obs is None:
            # No inlet seen (restart in between, or a filter added mid-turn): still record it.
            obs = self._observation(body, metadata, user, chat_id, message_id, None, now)
            obs.messages = prompt_to_keep(prompt) if obs.capture_content else None
            obs.inlet_seen = False
        obs.end_ns = now
        if obs.message_id is None:
            obs.message_id = message_id
        if answer is not None:
            obs.output = message_text(answer)
            obs.usage = answer.get("usage")
        exporter.submit(obs)

    def _observation(
        self,
        body: dict[str, Any],
        metadata: dict[str, Any],
        user: Any,
        chat_id: str | None,
        message_id: str | None,
        task: str | None,
        now: int,
    ) -> Observation:
        valves = self.valves
        kind: ConversationKind
        if chat_id is None:
            kind = "api"
            trace_key = "api:" + (message_id or uuid.uuid4().hex)
            session_id = None
        elif chat_id == "local" or chat_id.startswith(TEMPORARY_CHAT_PREFIXES):
            kind = "temporary-chat"
            if chat_id == "local":
                chat_id = "local:" + str(
                    metadata.get("session_id") or body.get("session_id") or "unknown"
                )
            trace_key = chat_id
            session_id = chat_id
        else:
            kind = "channel" if chat_id.startswith(CHANNEL_PREFIX) else "chat"
            trace_key = chat_id
            session_id = chat_id
        model_id = _str_or_none(body.get("model"))
        model_info = metadata.get("model")
        model_name = None
        if isinstance(model_info, dict):
            model_name = _str_or_none(model_info.get("name"))
        model = model_id
        if valves.use_model_name_instead_of_id_for_generation and model_name:
            model = model_name
        tags = tuple(valves.tags)
        if kind != "chat":
            tags += (kind,)
        if task is not None:
            tags += (task,)
        capture = valves.capture_content and (
            kind != "temporary-chat" or valves.capture_temporary_chat_content
        )
        parameters = {key: body[key] for key in MODEL_PARAMETER_KEYS if key in body}
        stream = body.get("stream")
        return Observation(
            trace_key=trace_key,
            kind=kind,
            session_id=session_id,
            user_id=self._user_id(user),
            tags=tags,
            name=f"task:{task}" if task else USER_TURN_NAME,
            start_ns=now,
            model=model,
            model_id=model_id,
            model_name=model_name,
            chat_id=chat_id,
            message_id=message_id,
            task=task,
            stream=stream if isinstance(stream, bool) else None,
            capture_content=capture,
            model_parameters=parameters or None,
            messages=prompt_to_keep(body.get("messages")) if capture else None,
        )

    def _user_id(self, user: Any) -> str | None:
        if not isinstance(user, dict):
            return None
        if self.valves.user_identity == "email":
            return _str_or_none(user.get("email")) or _str_or_none(user.get("id"))
        return _str_or_none(user.get("id"))

    @staticmethod
    def _line(chat_id: str | None, user_id: str | None, model_id: str | None) -> str:
        return f"{chat_id}\x00{user_id}\x00{model_id}"

    @staticmethod
    def _unfinished(obs: Observation, now: int) -> Observation:
        obs.end_ns = now
        obs.level = "WARNING"
        obs.status_message = "no outlet received for this turn (aborted, failed or not traced)"
        return obs

    def _report_error(self, hook: str, exc: Exception) -> None:
        # Never raise into Open WebUI (that would abort the chat) and never log the prompt:
        # the exception type and where it happened are enough to file a bug.
        where = type(exc).__name__
        tb = exc.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        if tb is not None:
            where += f" at line {tb.tb_lineno}"
        key = f"{hook}:{where}"
        count = self._error_counts.get(key, 0) + 1
        if len(self._error_counts) < 100 or key in self._error_counts:
            self._error_counts[key] = count
        if count == 1 or count % 1000 == 0:
            log.warning(
                "Langfuse filter %s error (%s), occurrence %d; the chat is not affected",
                hook,
                where,
                count,
            )
        if self.valves.debug:
            log.exception("Langfuse filter %s error details", hook)


async def _in_thread(function: Any, *args: Any) -> None:
    with contextlib.suppress(Exception):
        await asyncio.to_thread(function, *args)


def _metadata_of(body: dict[str, Any], fallback: Any) -> dict[str, Any]:
    metadata = body.get("metadata")
    if isinstance(metadata, dict):
        return metadata
    return fallback if isinstance(fallback, dict) else {}


def _close_in_background(exporter: LangfuseExporter, timeout: float) -> None:
    with contextlib.suppress(Exception):
        threading.Thread(target=exporter.close, args=(timeout,), daemon=True).start()


# --------------------------------------------------------------------------------------------
# The Open WebUI Filter Function
# --------------------------------------------------------------------------------------------


class Filter(Pipeline):
    """The same filter as an Open WebUI Filter Function, sharing every code path with `Pipeline`.

    What differs in that runtime: Open WebUI injects only the named parameters a hook declares
    (`__user__`, `__metadata__`, ...), replaces `self.valves` with a fresh `Valves(**stored)` on
    every request (the exporter follows when the settings differ from the ones it was built
    for), and never calls `on_startup`, `on_valves_updated` or `on_shutdown`: the exporter is
    made by the first request and its worker flushes on its own. Outlet is awaited before the
    answer completes, so it only queues. When Open WebUI drops this instance (the function's
    code was updated), its exporter is closed in the background instead of running forever.
    `type` and `name`, set by `Pipeline.__init__`, are not read by Open WebUI for filters.
    """

    def __init__(self) -> None:
        super().__init__()
        self._retire: weakref.finalize[Any, Any] | None = None

    async def inlet(
        self,
        body: dict[str, Any],
        __user__: dict[str, Any] | None = None,
        __metadata__: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        try:
            self._on_inlet(body, __user__, __metadata__)
        except Exception as exc:
            self._report_error("inlet", exc)
        return body

    async def outlet(
        self,
        body: dict[str, Any],
        __user__: dict[str, Any] | None = None,
        __metadata__: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        try:
            self._on_outlet(body, __user__, __metadata__)
        except Exception as exc:
            self._report_error("outlet", exc)
        return body

    def _sync_exporter(self, close_old: bool = True) -> LangfuseExporter | None:
        before = self._exporter
        old = super()._sync_exporter(close_old)
        exporter = self._exporter
        if exporter is not before:
            if self._retire is not None:
                self._retire.detach()
                self._retire = None
            if exporter is not None:
                self._retire = weakref.finalize(
                    self, _close_in_background, exporter, self.valves.flush_timeout_seconds
                )
                self._retire.atexit = False
        return old
